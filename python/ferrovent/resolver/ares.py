"""gevent's c-ares resolver, which ferrovent does not have: importing this module raises ImportError.

c-ares is reached through gevent's own compiled extension. Use ``ferrovent.resolver.thread.Resolver`` (the
default: the system resolver in a thread pool, so every name the system knows resolves as without ferrovent).
"""

raise ImportError(
    "ferrovent has no c-ares resolver (gevent.resolver.ares needs gevent's own compiled extension); "
    "use the default thread resolver, ferrovent.resolver.thread.Resolver"
)

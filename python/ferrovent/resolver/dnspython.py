"""gevent's dnspython resolver, which ferrovent does not have: importing this module raises ImportError.

Use ``ferrovent.resolver.thread.Resolver`` (the default: the system resolver in a thread pool).
"""

raise ImportError(
    "ferrovent has no dnspython resolver (gevent.resolver.dnspython); "
    "use the default thread resolver, ferrovent.resolver.thread.Resolver"
)

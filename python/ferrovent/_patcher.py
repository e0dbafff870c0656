"""Which standard-library module each of ferrovent's cooperative modules stands in for.

`MAPPING` is keyed by the module's gevent name, as gevent's private ``gevent._patcher.MAPPING`` is (tools and
gevent's own tests read it through the ``gevent`` alias); `ferrovent.monkey` patches from the same table. It lists
only modules ferrovent has: gevent's ``builtins`` patch does nothing on Python 3, so ferrovent has no such module;
``contextvars`` is listed, though patching it does nothing either (its classes are the stdlib's).

Imports nothing: monkey imports it before anything is patched.
"""

MAPPING = {
    "gevent.local": "_threading_local",
    "gevent.socket": "socket",
    "gevent.select": "select",
    "gevent.selectors": "selectors",
    "gevent.ssl": "ssl",
    "gevent.thread": "_thread",
    "gevent.subprocess": "subprocess",
    "gevent.os": "os",
    "gevent.threading": "threading",
    "gevent.signal": "signal",
    "gevent.time": "time",
    "gevent.queue": "queue",
    "gevent.contextvars": "contextvars",
}

_PREFIX = "gevent."

#: stdlib module name -> the ferrovent module that patches it (``"_thread"`` -> ``"ferrovent.thread"``).
SOURCE_OF = {stdlib: "ferrovent." + name[len(_PREFIX) :] for name, stdlib in MAPPING.items()}

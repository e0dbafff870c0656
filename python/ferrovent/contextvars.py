"""Context variables for greenlets: the standard library's ``contextvars``, which greenlet already makes
greenlet-aware.

gevent offers ``gevent.contextvars`` as its own implementation for Pythons without native support. On the Pythons
ferrovent supports, greenlet gives each greenlet its own current context (a new greenlet starts with an empty one)
and switches it with the greenlet, so the stdlib's classes are the cooperative ones: this module offers them as
they are (``__imports__``), and monkey-patching has nothing to replace (``patch_contextvars`` does nothing, as
in gevent on Python 3). Unlike gevent's own implementation, they are also aware of asyncio tasks.
"""

from __future__ import annotations

from contextvars import Context, ContextVar, Token, copy_context  # noqa: F401  (offered as they are)

__implements__: list[str] = []
__imports__ = ["Context", "ContextVar", "Token", "copy_context"]
__all__ = __implements__ + __imports__

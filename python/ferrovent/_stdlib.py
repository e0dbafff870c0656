"""Building a cooperative module out of the stdlib module it replaces.

A module such as ``ferrovent.socket`` must offer every public name of ``socket`` so that it can stand in for it
(and so that monkey-patching can swap only the names it reimplements). Most names are copied as they are. Stdlib
functions that are right except that they call a blocking name through their module's globals (``create_connection``
looks up ``socket`` and ``getaddrinfo`` there) are *rebound*: the same code object runs against a copy of the
stdlib module's globals in which those names are the cooperative ones. This keeps the running Python's exact
behaviour (its signatures, defaults, error messages) instead of a hand-written copy that drifts between versions.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import CodeType, FunctionType, ModuleType
from typing import Any

__all__ = ["copy_public_names", "rebind", "rebind_self_references", "rebind_users"]

_MISSING = object()


def copy_public_names(source: ModuleType, namespace: dict[str, Any], extra: Iterable[str] = ()) -> list[str]:
    """Copies ``source``'s public names (and its ``__all__``, and ``extra``) into ``namespace``; returns them.

    Submodules the stdlib module merely imported (``socket.os``) are not copied: they are not its API.
    """
    names = {name for name in dir(source) if not name.startswith("_")}
    names.update(getattr(source, "__all__", ()))
    names.update(extra)
    copied = []
    for name in sorted(names):
        value = getattr(source, name, _MISSING)
        if value is _MISSING or isinstance(value, ModuleType):
            continue
        namespace[name] = value
        copied.append(name)
    return copied


def _names_used(code: CodeType) -> set[str]:
    """Global (and attribute) names a code object and the code nested in it refer to."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _names_used(const)
    return names


def rebind(func: FunctionType, globals_: dict[str, Any], module: str) -> FunctionType:
    """``func``'s code, defaults and closure running against ``globals_``, presented as part of ``module``."""
    bound = FunctionType(func.__code__, globals_, func.__name__, func.__defaults__, func.__closure__)
    bound.__kwdefaults__ = dict(func.__kwdefaults__) if func.__kwdefaults__ else None
    bound.__qualname__ = func.__qualname__
    bound.__doc__ = func.__doc__
    bound.__annotations__ = dict(func.__annotations__)
    bound.__dict__.update(func.__dict__)
    bound.__module__ = module
    bound.__wrapped__ = func
    return bound


def rebind_users(source: ModuleType, overrides: dict[str, Any], module: str) -> dict[str, FunctionType]:
    """Rebinds every function of ``source`` that reaches one of ``overrides`` through its globals.

    The rebound functions see a copy of ``source``'s globals with ``overrides`` and with each other, so a function
    that reaches an overridden name only through another stdlib function (``get_server_certificate`` calls
    ``_create_stdlib_context``, which builds an ``SSLContext``) is rebound too. Aliases stay aliases. Returns
    ``{name: rebound function}`` for every name of ``source`` that was rebound.
    """
    globals_ = dict(vars(source))
    globals_.update(overrides)
    functions = {
        name: value
        for name, value in vars(source).items()
        if isinstance(value, FunctionType) and value.__module__ == source.__name__ and name not in overrides
    }
    reaching = set(overrides)
    chosen: dict[str, FunctionType] = {}
    while True:
        more = {n: f for n, f in functions.items() if n not in chosen and _names_used(f.__code__) & reaching}
        if not more:
            break
        chosen.update(more)
        reaching.update(more)
    by_identity: dict[int, FunctionType] = {}
    rebound = {}
    for name, func in chosen.items():
        if id(func) not in by_identity:
            by_identity[id(func)] = rebind(func, globals_, module)
        rebound[name] = by_identity[id(func)]
    globals_.update(rebound)
    return rebound


def rebind_self_references(cls: type, globals_: dict[str, Any], module: str) -> dict[str, Any]:
    """Members of the stdlib class ``cls`` that reach ``cls`` by its global name, rebound to ``globals_``.

    The stdlib writes ``super(SSLContext, SSLContext).options.__set__(...)``: once monkey-patching has put a
    subclass under that global name, the lookup finds the subclass and recurses. Rebound to a copy of the
    module's globals taken before patching (``globals_``), such members keep meaning the stdlib class. Handles
    functions, classmethods, staticmethods and properties; returns ``{name: member}`` to set on the subclass.
    """

    def fix(func: Any) -> Any:
        if isinstance(func, FunctionType) and cls.__name__ in _names_used(func.__code__):
            return rebind(func, globals_, module)
        return func

    members = {}
    for name, member in vars(cls).items():
        if isinstance(member, property):
            parts = (fix(member.fget), fix(member.fset), fix(member.fdel))
            if parts != (member.fget, member.fset, member.fdel):
                members[name] = property(*parts, doc=member.__doc__)
        elif isinstance(member, (classmethod, staticmethod)):
            fixed = fix(member.__func__)
            if fixed is not member.__func__:
                members[name] = type(member)(fixed)
        else:
            fixed = fix(member)
            if fixed is not member:
                members[name] = fixed
    return members

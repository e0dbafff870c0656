"""Greenlet-local objects: ``threading.local`` semantics, with one set of attributes per greenlet.

Each greenlet that touches a ``local`` gets its own attribute dict; a subclass's ``__init__`` runs again, with the
arguments the object was created with, the first time each greenlet uses it. ``__slots__`` declared by a subclass
are shared by all greenlets, as with ``threading.local``. A greenlet's dict is dropped when the greenlet finishes
(a Greenlet) or is garbage-collected (any greenlet), and every dict goes when the local object does.

How: before each attribute access the object's ``__dict__`` is pointed at the current greenlet's dict, then the
normal attribute machinery runs (so properties, methods and slots behave exactly as usual). No switch can happen
between the two steps; code that does switch (a property that blocks) re-enters here and points it again.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakSet, ref

from greenlet import getcurrent

__all__ = ["local", "all_local_dicts_for_greenlet"]

_get = object.__getattribute__
_set = object.__setattr__
_delete = object.__delattr__


class _LocalImpl:
    """The per-greenlet dicts of one local object, keyed by ``id(greenlet)``, and its constructor arguments.

    ``watchers`` holds, under the same keys, a weak reference to each of those greenlets whose callback (a
    `_Forget`, also linked to the greenlet's end) drops its dict. When the local object goes, so does this, and the
    links it left on greenlets still running are removed: a greenlet that makes many short-lived locals does not
    collect a link for each.
    """

    __slots__ = ("dicts", "watchers", "args", "kwargs", "owner", "__weakref__")

    def __init__(self, owner: local, args: tuple, kwargs: dict) -> None:
        self.dicts: dict[int, dict] = {}
        self.watchers: dict[int, ref] = {}
        self.args = args
        self.kwargs = kwargs
        self.owner = ref(owner)
        _live_impls.add(self)

    def __del__(self) -> None:
        for watcher in self.watchers.values():
            greenlet = watcher()
            unlink = getattr(greenlet, "unlink", None)
            if unlink is not None:
                unlink(watcher.__callback__)


# Every live local's implementation, for all_local_dicts_for_greenlet (a walk of the heap took seconds in a big one).
_live_impls: WeakSet[_LocalImpl] = WeakSet()


class _Forget:
    """Drops one greenlet's dict from a local: linked to the greenlet's end and to its weak reference."""

    __slots__ = ("impl", "key")

    def __init__(self, impl: _LocalImpl, key: int) -> None:
        self.impl = ref(impl)
        self.key = key

    def __call__(self, _finished: Any) -> None:
        impl = self.impl()
        if impl is None:
            return
        impl.watchers.pop(self.key, None)
        localdict = impl.dicts.pop(self.key, None)
        owner = impl.owner()
        if owner is not None and localdict is not None and _get(owner, "__dict__") is localdict:
            _set(owner, "__dict__", {})  # the object still points at the dict it last served: let it go too


def _register(impl: _LocalImpl, greenlet: Any) -> dict:
    """Creates ``greenlet``'s dict in ``impl``, to be dropped when the greenlet finishes or is collected."""
    key = id(greenlet)
    forget = _Forget(impl, key)
    impl.watchers[key] = ref(greenlet, forget)
    rawlink = getattr(greenlet, "rawlink", None)
    if rawlink is not None:
        rawlink(forget)  # drop it as soon as a Greenlet finishes, not only when it is collected
    localdict: dict = {}
    impl.dicts[key] = localdict
    return localdict


def _enter(self: local) -> None:
    """Points ``self.__dict__`` at the current greenlet's dict, creating (and initialising) it on first use."""
    impl = _get(self, "_local__impl")
    greenlet = getcurrent()
    localdict = impl.dicts.get(id(greenlet))
    if localdict is not None:
        _set(self, "__dict__", localdict)
        return
    _set(self, "__dict__", _register(impl, greenlet))
    if type(self).__init__ is not object.__init__:
        self.__init__(*impl.args, **impl.kwargs)


class local:
    """An object whose attributes are separate for each greenlet (like ``threading.local`` for threads)."""

    __slots__ = ("_local__impl", "__dict__", "__weakref__")

    def __new__(cls, *args: Any, **kwargs: Any) -> local:
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError("Initialization arguments are not supported")
        self = object.__new__(cls)
        impl = _LocalImpl(self, args, kwargs)
        _set(self, "_local__impl", impl)
        # The creating greenlet's dict is made here: its __init__ is the call Python makes next.
        _set(self, "__dict__", _register(impl, getcurrent()))
        return self

    def __getattribute__(self, name: str) -> Any:
        if name == "_local__impl":
            return _get(self, name)
        _enter(self)
        return _get(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "__dict__":
            raise AttributeError(f"{type(self).__name__!r} object attribute '__dict__' is read-only")
        _enter(self)
        _set(self, name, value)

    def __copy__(self) -> local:
        """A new local of the same class, built with the same arguments; the current greenlet's attributes are
        copied into it (shallowly), those of other greenlets are not."""
        _enter(self)
        current = dict(_get(self, "__dict__"))
        impl = _get(self, "_local__impl")
        duplicate = type(self)(*impl.args, **impl.kwargs)
        _enter(duplicate)
        mine = _get(duplicate, "__dict__")
        mine.clear()
        mine.update(current)
        return duplicate

    def __delattr__(self, name: str) -> None:
        if name == "__dict__":
            raise AttributeError(f"{type(self).__name__!r} object attribute '__dict__' is read-only")
        _enter(self)
        _delete(self, name)


def all_local_dicts_for_greenlet(greenlet: Any) -> list:
    """The attributes every live `local` holds for ``greenlet``: a list of ``((type, id), dict)`` pairs, the type
    and id of the local object and its attribute dict as seen from that greenlet. A debugging aid."""
    return local_dicts_by_greenlet().get(id(greenlet), [])


def local_dicts_by_greenlet() -> dict[int, list]:
    """`all_local_dicts_for_greenlet` for every greenlet at once, by ``id(greenlet)``."""
    found: dict[int, list] = {}
    for impl in list(_live_impls):
        owner = impl.owner()
        if owner is None:
            continue
        for key, localdict in impl.dicts.items():
            watcher = impl.watchers.get(key)
            greenlet = watcher() if watcher is not None else None
            if greenlet is not None and id(greenlet) == key:
                found.setdefault(key, []).append(((type(owner), id(owner)), localdict))
    return found

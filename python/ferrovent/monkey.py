"""Make the standard library cooperative, in place: ``from ferrovent import monkey; monkey.patch_all()``.

Each ``patch_<module>`` replaces, inside the stdlib module itself, the names listed in the ``__implements__`` of
``ferrovent.<module>`` by ferrovent's cooperative versions, so code that already did ``import socket`` uses them too.
Patch first thing in the main module, on the main thread, before other imports: a module that did
``from ssl import SSLContext`` earlier keeps the original. The originals stay reachable with `get_original`.

Run a script patched, with its own argv: ``python -m ferrovent.monkey [--no-<module>|--<module>]... script.py args``
(or ``--module pkg.mod args``).

This module imports nothing at the top beyond ``sys``: it must be importable before anything is patched.
"""

from __future__ import annotations

import sys
from typing import Any

from ferrovent import _gevent_alias

__all__ = [
    "MonkeyPatchWarning",
    "get_original",
    "is_module_patched",
    "is_object_patched",
    "main",
    "patch_all",
    "patch_dns",
    "patch_os",
    "patch_queue",
    "patch_select",
    "patch_selectors",
    "patch_signal",
    "patch_socket",
    "patch_ssl",
    "patch_subprocess",
    "patch_thread",
    "patch_time",
]


class MonkeyPatchWarning(RuntimeWarning):
    """Warns about patching done too late or inconsistently (the same class as gevent's)."""


# stdlib module name -> {attribute name: the object it held before the first patch}
_saved: dict[str, dict[str, Any]] = {}
# The union of the arguments given to patch_all so far.
_patch_all_settings: dict[str, bool] = {}
_MISSING = object()

# What select/selectors lose with aggressive=True: blocking pollers that would bypass the loop (for selectors,
# those ferrovent has no cooperative version of).
_BLOCKING_SELECT = ("epoll", "kqueue", "kevent", "devpoll")
_BLOCKING_SELECTORS = ("EpollSelector", "KqueueSelector", "DevpollSelector")
# The queue classes patch_queue replaces; Empty, Full (and ShutDown) are the very same classes in ferrovent.queue.
_QUEUE_CLASSES = ("Queue", "SimpleQueue", "LifoQueue", "PriorityQueue")


# -- querying ---------------------------------------------------------------------------------------------


def is_module_patched(mod_name: str) -> bool:
    """True once some name of the stdlib module ``mod_name`` (e.g. ``'socket'``) was replaced."""
    return mod_name in _saved


def is_object_patched(mod_name: str, item_name: str) -> bool:
    """True once ``mod_name.item_name`` (e.g. ``'socket'``, ``'create_connection'``) was replaced."""
    return item_name in _saved.get(mod_name, ())


def get_original(mod_name: str | tuple[str, ...] | list[str], item_name: str | tuple[str, ...] | list[str]) -> Any:
    """The stdlib object(s) as they were before patching (the current ones if never patched).

    ``item_name`` a string: returns that object; a sequence: returns a list. ``mod_name`` may be a sequence of
    alternative module names: the first one that imports supplies every item.
    """
    mod_names = [mod_name] if isinstance(mod_name, str) else list(mod_name)
    items = [item_name] if isinstance(item_name, str) else list(item_name)
    for i, name in enumerate(mod_names):
        try:
            found = _originals(name, items)
        except ImportError:
            if i == len(mod_names) - 1:
                raise
            continue
        return found[0] if isinstance(item_name, str) else found
    raise ImportError("get_original needs at least one module name")


def _originals(mod_name: str, items: list[str]) -> list[Any]:
    saved = _saved.get(mod_name, {})
    module = None
    found = []
    for item in items:
        if item in saved:
            found.append(saved[item])
            continue
        if module is None:
            module = _import(mod_name)
        found.append(getattr(module, item))
    return found


# -- the mechanics ----------------------------------------------------------------------------------------


def _import(name: str):
    __import__(name)
    return sys.modules[name]


def _patch_item(module, name: str, new: Any) -> None:
    old = getattr(module, name, _MISSING)
    if old is not _MISSING:
        _saved.setdefault(module.__name__, {}).setdefault(name, old)
    setattr(module, name, new)


def _remove_item(module, name: str) -> None:
    old = getattr(module, name, _MISSING)
    if old is _MISSING:
        return
    _saved.setdefault(module.__name__, {}).setdefault(name, old)
    delattr(module, name)


def _patch_module(name: str, items=None, source=None):
    """Copies ``items`` (default: ``ferrovent.<name>.__implements__``) from ``source`` into the stdlib module.

    Imports ferrovent's module before the target, so ferrovent's own imports see the originals. Returns both.
    """
    if source is None:
        source = _import("ferrovent." + name)
    target = _import(name)
    for item in source.__implements__ if items is None else items:
        _patch_item(target, item, getattr(source, item))
    return source, target


def _warn(messages: list[str]) -> None:
    """Issues the queued warnings as the caller of the public patch function (stacklevel 3)."""
    if messages:
        import warnings

        for message in messages:
            warnings.warn(message, MonkeyPatchWarning, stacklevel=3)


# -- the patches ------------------------------------------------------------------------------------------


def patch_os() -> None:
    """Replaces the names of :mod:`os` listed in ``ferrovent.os.__implements__``: ``close`` (wakes the fd's
    waiters), ``fork`` (`ferrovent.fork`) and ``waitpid`` (parks only the calling greenlet)."""
    _patch_module("os")


def patch_time() -> None:
    """Replaces :func:`time.sleep` with the cooperative sleep."""
    _patch_module("time")


def patch_socket(dns: bool = True, aggressive: bool = True) -> None:
    """Replaces the socket class and functions of :mod:`socket` with cooperative ones.

    ``dns`` (default true) also replaces the name-resolution functions (see `patch_dns`). ``aggressive`` is
    accepted for gevent compatibility; on Python 3 there is nothing more for it to remove.
    """
    from ferrovent.resolver import __dns__

    socket_module = _import("ferrovent.socket")
    _patch_module("socket", [name for name in socket_module.__implements__ if name not in __dns__], socket_module)
    if dns:
        patch_dns()


def patch_dns() -> None:
    """Replaces getaddrinfo, gethostbyname(_ex), gethostbyaddr, getnameinfo and getfqdn in :mod:`socket` with
    the versions of `ferrovent.resolver`, which never block the loop."""
    resolver = _import("ferrovent.resolver")
    _patch_module("socket", resolver.__dns__, resolver)


def patch_ssl(_warnings: list[str] | None = None) -> None:
    """Replaces :class:`ssl.SSLContext`, ``SSLSocket`` and the wrapping functions with cooperative ones.

    Patch before :mod:`ssl` is imported: if it already was, modules that copied ``SSLContext`` out of it
    (``from ssl import SSLContext``) or subclassed it keep the original, and a MonkeyPatchWarning names them.
    """
    first_time = not is_module_patched("ssl")
    was_imported = "ssl" in sys.modules and hasattr(sys.modules["ssl"], "SSLContext")
    _patch_module("ssl")
    messages = []
    if first_time and was_imported:
        stale = _stale_references(get_original("ssl", "SSLContext"))
        if stale:
            messages.append(
                "ssl was imported before it was monkey-patched; these still use the original, blocking SSLContext "
                f"and will not be cooperative: {', '.join(stale)}. Call monkey.patch_all() before other imports."
            )
    if _warnings is None:
        _warn(messages)
    else:
        _warnings.extend(messages)


def _stale_references(original: type) -> list[str]:
    """Modules (other than ssl and ferrovent's) holding ``original`` in their globals, and its subclasses."""
    import gc

    found = []
    for referrer in gc.get_referrers(original):
        if isinstance(referrer, dict) and isinstance(referrer.get("__name__"), str):
            name = referrer["__name__"]
            if name == "ssl" or name == "ferrovent" or name.startswith("ferrovent."):
                continue
            if any(value is original for value in referrer.values()):
                found.append(f"module {name} ({referrer.get('__file__', '<unknown>')})")
        elif isinstance(referrer, type) and original in referrer.__bases__:
            if not referrer.__module__.startswith("ferrovent."):
                found.append(f"subclass {referrer.__module__}.{referrer.__qualname__}")
    return sorted(found)


def patch_select(aggressive: bool = True) -> None:
    """Replaces :func:`select.select` and :func:`select.poll` with cooperative ones.

    ``aggressive`` (default true) also removes ``epoll``, ``kqueue``, ``kevent`` and ``devpoll``, which would
    block the loop, so libraries fall back to select/poll.
    """
    _, select_module = _patch_module("select")
    if aggressive:
        for name in _BLOCKING_SELECT:
            _remove_item(select_module, name)


def patch_selectors(aggressive: bool = True) -> None:
    """Replaces the selector classes of :mod:`selectors` (``DefaultSelector`` included) with ferrovent's, which
    block only the calling greenlet, and points the stdlib's SelectSelector and PollSelector at the cooperative
    select/poll. ``aggressive`` (default true) also removes any of EpollSelector, KqueueSelector and
    DevpollSelector that ferrovent has no cooperative version of, since it would block the loop (gevent removes
    them all; ferrovent's own EpollSelector, the default on Linux, stays, so ``DefaultSelector`` is always a class
    the module still has)."""
    cooperative_selectors, selectors_module = _patch_module("selectors")
    cooperative = _import("ferrovent.select")
    # SelectSelector keeps ``select.select`` as a class attribute: a builtin if selectors was imported first (it
    # would block), a plain function if later (it would bind as a method). A staticmethod is right either way.
    select_selector = selectors_module.SelectSelector
    if select_selector.__dict__.get("_select") in (get_original("select", "select"), cooperative.select):
        select_selector._select = staticmethod(cooperative.select)
    poll_selector = getattr(selectors_module, "PollSelector", None)
    if poll_selector is not None and hasattr(poll_selector, "_selector_cls"):
        poll_selector._selector_cls = cooperative.poll
    if aggressive:
        for name in _BLOCKING_SELECTORS:
            if name not in cooperative_selectors.__implements__:
                _remove_item(selectors_module, name)


def patch_thread(
    threading: bool = True,
    _threading_local: bool = True,
    Event: bool = True,
    logging: bool = True,
    existing_locks: bool = True,
    _warnings: list[str] | None = None,
) -> None:
    """Makes threads greenlets: :mod:`_thread`'s functions and locks become ferrovent's, and with ``threading``
    (default true) the stdlib's :mod:`threading` runs on them (see ``ferrovent.threading``).

    ``Event`` makes ``threading.Event`` ferrovent's Event; ``logging`` gives the logging module's lock and its
    handlers' locks to greenlets; ``existing_locks`` hands the locks the patching thread already holds (its import
    locks) to the current greenlet; ``_threading_local`` also replaces ``_threading_local.local``. Patch on the main
    thread: elsewhere a MonkeyPatchWarning says the main thread stays native.
    """
    threading_module = _import("threading")  # first: it copies names out of _thread when it is imported
    green_threading = _import("ferrovent.threading")
    _patch_module("_thread", source=_import("ferrovent.thread"))
    messages = []
    if threading:
        messages = green_threading._patch_threading(
            threading_module, _patch_item, Event=Event, logging=logging, existing_locks=existing_locks
        )
    if _threading_local:
        _patch_module("_threading_local", ["local"], _import("ferrovent.local"))
    if _warnings is None:
        _warn(messages)
    else:
        _warnings.extend(messages)


def patch_queue() -> None:
    """Replaces :class:`queue.Queue`, ``SimpleQueue``, ``LifoQueue`` and ``PriorityQueue`` with ferrovent's."""
    _patch_module("queue", _QUEUE_CLASSES)


def patch_subprocess() -> None:
    """Replaces :class:`subprocess.Popen` and the functions built on it with cooperative ones."""
    _patch_module("subprocess")


def patch_signal() -> None:
    """Replaces :func:`signal.signal` and :func:`signal.getsignal`: a handler may block (it runs in a greenlet)."""
    _patch_module("signal")


def patch_all(
    socket: bool = True,
    dns: bool = True,
    time: bool = True,
    select: bool = True,
    thread: bool = True,
    os: bool = True,
    ssl: bool = True,
    subprocess: bool = True,
    sys: bool = False,
    aggressive: bool = True,
    Event: bool = True,
    builtins: bool = True,
    signal: bool = True,
    queue: bool = True,
    contextvars: bool = True,
    **kwargs: Any,
) -> bool | None:
    """Does all the patching, in gevent's order: os, time, thread (with ``Event``), socket (and dns), select and
    selectors, ssl, subprocess, signal, queue.

    ``sys``, ``builtins`` and ``contextvars`` do nothing on Python 3, as in gevent. Other keyword arguments are
    accepted and ignored.

    Calling it again only adds patches (the union of every true argument) and warns if the arguments differ.
    Returns True when it patched something, None when there was nothing new to do.
    """
    settings = {
        "socket": socket,
        "dns": dns,
        "time": time,
        "select": select,
        "thread": thread,
        "os": os,
        "ssl": ssl,
        "subprocess": subprocess,
        "sys": sys,
        "aggressive": aggressive,
        "Event": Event,
        "builtins": builtins,
        "signal": signal,
        "queue": queue,
        "contextvars": contextvars,
    }
    messages = []
    if _patch_all_settings and settings != _patch_all_settings:
        messages.append("Patching more than once will result in the union of all True parameters being patched")
    union = {key: value or _patch_all_settings.get(key, False) for key, value in settings.items()}
    if union == _patch_all_settings:
        _warn(messages)
        return None
    _patch_all_settings.update(union)
    if union["os"]:
        patch_os()
    if union["time"]:
        patch_time()
    if union["thread"]:
        patch_thread(Event=union["Event"], _warnings=messages)
    if union["socket"]:
        patch_socket(dns=union["dns"], aggressive=union["aggressive"])
    if union["select"]:
        patch_select(aggressive=union["aggressive"])
        patch_selectors(aggressive=union["aggressive"])
    if union["ssl"]:
        patch_ssl(_warnings=messages)
    if union["subprocess"]:
        patch_subprocess()
    if union["signal"]:
        patch_signal()
    if union["queue"]:
        patch_queue()
    _warn(messages)
    _gevent_alias.register_monkey()
    _gevent_alias.warn_about_stock_gevent()
    return True


# -- python -m ferrovent.monkey ---------------------------------------------------------------------------

_USAGE = """usage: python -m ferrovent.monkey [--no-MODULE | --MODULE]... [--module] TARGET [ARG]...

Monkey-patches the standard library (patch_all()), then runs TARGET as __main__ with argv [TARGET, ARG...]:
a script path, or with --module a module name. --no-MODULE leaves MODULE unpatched; --MODULE patches only the
modules named that way. MODULE is one of: {modules}."""
_MODULE_OPTIONS = ("socket", "dns", "time", "select", "thread", "os", "ssl", "subprocess", "signal", "queue")


def main(argv: list[str] | None = None) -> None:
    """Patches, then runs a script or module as ``__main__`` (what ``python -m ferrovent.monkey`` does)."""
    import runpy

    args = list(sys.argv[1:] if argv is None else argv)
    chosen: dict[str, bool] = {}
    run_module = False
    while args and args[0].startswith("--"):
        option = args.pop(0)[2:]
        if option == "module":
            run_module = True
        elif option.startswith("no-") and option[3:] in _MODULE_OPTIONS:
            chosen[option[3:]] = False
        elif option in _MODULE_OPTIONS:
            chosen[option] = True
        else:
            sys.exit(_USAGE.format(modules=", ".join(_MODULE_OPTIONS)) + f"\n\nunknown option --{option}")
    if not args:
        sys.exit(_USAGE.format(modules=", ".join(_MODULE_OPTIONS)))
    if any(chosen.values()):  # --MODULE given: only those
        chosen = {name: chosen.get(name, False) for name in _MODULE_OPTIONS}
    patch_all(**chosen)
    sys.argv[:] = args
    if run_module:
        runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    else:
        import os.path

        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))  # as `python script.py` would have it
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    # Run as a script this file is ``__main__``: make it ``ferrovent.monkey`` too, or the first
    # ``import ferrovent.monkey`` would load a second copy with its own (empty) record of what was patched.
    import ferrovent

    sys.modules["ferrovent.monkey"] = ferrovent.monkey = sys.modules[__name__]
    main()

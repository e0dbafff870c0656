"""Make the standard library cooperative, in place: ``from ferrovent import monkey; monkey.patch_all()``.

Each ``patch_<module>`` replaces, inside the stdlib module itself, the names listed in the ``__implements__`` of
the ferrovent module standing in for it (``ferrovent._patcher.MAPPING``) by ferrovent's cooperative versions, so
code that already did ``import socket`` uses them too. Patch first thing in the main module, on the main thread,
before other imports: a module that did ``from ssl import SSLContext`` earlier keeps the original. The originals
stay reachable with `get_original`; `saved` holds them, by module and name.

Patching emits the events of `ferrovent.events` (gevent's, in gevent's order) to its subscribers and to the plugins
registered under gevent's entry-point names (``gevent.plugins.monkey.did_patch_builtins``, ...); a subscriber can
veto a module (or all of `patch_all`) by raising ``DoNotPatch``. `patch_module` patches any module the same way.

Run a script patched, with its own argv: ``python -m ferrovent.monkey [--no-<module>|--<module>]... script.py args``
(or ``--module pkg.mod args``; ``python -m gevent.monkey`` under the gevent alias).

This module imports nothing at the top beyond ``sys`` and the import-free table: it must be importable before
anything is patched.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from typing import Any, Callable

from ferrovent import _gevent_alias
from ferrovent._patcher import SOURCE_OF

__all__ = [
    "MonkeyPatchWarning",
    "get_original",
    "is_module_patched",
    "is_object_patched",
    "main",
    "patch_all",
    "patch_builtins",
    "patch_dns",
    "patch_module",
    "patch_os",
    "patch_queue",
    "patch_select",
    "patch_selectors",
    "patch_signal",
    "patch_socket",
    "patch_ssl",
    "patch_subprocess",
    "patch_sys",
    "patch_thread",
    "patch_time",
]


class MonkeyPatchWarning(RuntimeWarning):
    """Warns about patching done too late or inconsistently (the same class as gevent's)."""


#: stdlib module name -> {attribute name: the object it held before the first patch}. patch_all also records its
#: arguments here, under ``_PATCH_ALL_SETTINGS``, as gevent does.
saved: dict[str, dict[str, Any]] = {}
# The same dict, for the queries and the recording of originals: rebinding ``monkey.saved`` (as gevent's tests do to
# make patch_all start afresh) must not lose the originals ferrovent's modules fetch with get_original.
_originals_by_module = saved
_PATCH_ALL_SETTINGS = "_gevent_saved_patch_all_module_settings"
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
    return mod_name in _originals_by_module


def is_object_patched(mod_name: str, item_name: str) -> bool:
    """True once ``mod_name.item_name`` (e.g. ``'socket'``, ``'create_connection'``) was replaced."""
    return item_name in _originals_by_module.get(mod_name, ())


def is_anything_patched() -> bool:
    """True once this process patched anything (gevent's undocumented helper, used by test harnesses)."""
    return bool(_originals_by_module)


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
    originals = _originals_by_module.get(mod_name, {})
    module = None
    found = []
    for item in items:
        if item in originals:
            found.append(originals[item])
            continue
        if module is None:
            module = _import(mod_name)
        found.append(getattr(module, item))
    return found


# -- the mechanics ----------------------------------------------------------------------------------------


def _import(name: str):
    __import__(name)
    return sys.modules[name]


def patch_item(module, name: str, new: Any) -> None:
    """Sets ``module.name`` to ``new``, recording the original for `get_original` (for plugins, as in gevent)."""
    old = getattr(module, name, _MISSING)
    if old is not _MISSING:
        _originals_by_module.setdefault(module.__name__, {}).setdefault(name, old)
    setattr(module, name, new)


def remove_item(module, name: str) -> None:
    """Deletes ``module.name`` if present, recording the original for `get_original` (for plugins, as in gevent)."""
    old = getattr(module, name, _MISSING)
    if old is _MISSING:
        return
    _originals_by_module.setdefault(module.__name__, {}).setdefault(name, old)
    delattr(module, name)


def _notify(event) -> None:
    from ferrovent import events

    events.notify_and_call_entry_points(event)


def _call_source_hook(source, when: str, target, items, warnings_out: list[str] | None) -> None:
    """Calls ``source._gevent_<when>_monkey_patch(target, items, warn)`` if the source module defines it."""
    hook = getattr(source, f"_gevent_{when}_monkey_patch", None)
    if hook is not None:
        hook(target, items, lambda message: _queue_warning(message, warnings_out))


def patch_module(
    target_module: types.ModuleType,
    source_module: types.ModuleType,
    items: Iterable[str] | None = None,
    _warnings: list[str] | None = None,
    _replace: Callable[[types.ModuleType, types.ModuleType, Iterable[str]], object] | None = None,
    _did_event: bool = True,
) -> bool:
    """Replaces the attributes ``items`` of ``target_module`` by those of the same names in ``source_module``.

    ``items`` defaults to ``source_module.__implements__`` (an AttributeError if it has none). Before copying,
    ``source_module._gevent_will_monkey_patch(target_module, items, warn)`` is called if defined, then a
    ``ferrovent.events.GeventWillPatchModuleEvent`` is emitted: either may raise ``DoNotPatch``, and nothing is
    patched. After copying come ``_gevent_did_monkey_patch`` and a ``GeventDidPatchModuleEvent``. The originals
    are recorded (`get_original`). Returns True if it patched, False if vetoed.
    """
    from ferrovent import events

    if items is None:
        items = getattr(source_module, "__implements__", None)
        if items is None:
            raise AttributeError(f"Module {source_module!r} has a bad or missing value for __implements__")
    try:
        _call_source_hook(source_module, "will", target_module, items, _warnings)
        _notify(events.GeventWillPatchModuleEvent(target_module.__name__, source_module, target_module, items))
    except events.DoNotPatch:
        return False
    if _replace is None:
        for item in items:
            patch_item(target_module, item, getattr(source_module, item))
    else:
        _replace(source_module, target_module, items)
    _call_source_hook(source_module, "did", target_module, items, _warnings)
    if _did_event:
        _notify(events.GeventDidPatchModuleEvent(target_module.__name__, source_module, target_module))
    return True


def _patch_module(
    name: str, items=None, after: Callable[[Any, Any], None] | None = None, _warnings: list[str] | None = None
):
    """Patches the stdlib module ``name`` from the ferrovent module standing in for it (`_patcher.MAPPING`).

    Imports ferrovent's module before the target, so ferrovent's own imports see the originals. ``after(source,
    target)`` does the extra work that belongs to this patch, before the did-patch event. Returns ``(source,
    target)``, or None when a subscriber vetoed it.
    """
    source = _import(SOURCE_OF[name])
    target = _import(name)

    def replace(source, target, items):
        for item in items:
            patch_item(target, item, getattr(source, item))
        if after is not None:
            after(source, target)

    if not patch_module(target, source, items, _warnings=_warnings, _replace=replace):
        return None
    return source, target


def _queue_warning(message: str, warnings_out: list[str] | None) -> None:
    """Queues ``message`` for the end of patch_all, or issues it now when patching one module on its own."""
    if warnings_out is None:
        # Frames: _process_warnings, here, the patch function, its DoNotPatch wrapper, then the caller.
        _process_warnings([message], stacklevel=5)
    else:
        warnings_out.append(message)


def _process_warnings(messages: list[str], stacklevel: int = 3) -> None:
    """Issues the queued warnings as the caller of the public patch function (stacklevel 3).

    gevent's name: test harnesses replace it to collect the warnings patch_all issues.
    """
    if messages:
        import warnings

        for message in messages:
            warnings.warn(message, MonkeyPatchWarning, stacklevel=stacklevel)


def _vetoable(patch: Callable[..., Any]) -> Callable[..., Any]:
    """A patch function that returns False when a subscriber raises DoNotPatch (as gevent's do)."""
    import functools

    @functools.wraps(patch)
    def patch_unless_vetoed(*args, **kwargs):
        from ferrovent.events import DoNotPatch

        try:
            return patch(*args, **kwargs)
        except DoNotPatch:
            return False

    return patch_unless_vetoed


# -- the patches ------------------------------------------------------------------------------------------


@_vetoable
def patch_os() -> None:
    """Replaces the names of ``os`` listed in ``ferrovent.os.__implements__``: ``close`` (wakes the fd's
    waiters), ``fork`` (`ferrovent.fork`), ``forkpty`` and ``waitpid`` (parks only the calling greenlet)."""
    _patch_module("os")


@_vetoable
def patch_time() -> None:
    """Replaces ``time.sleep`` with the cooperative sleep."""
    _patch_module("time")


@_vetoable
def patch_socket(dns: bool = True, aggressive: bool = True) -> None:
    """Replaces the socket class and functions of ``socket`` with cooperative ones.

    ``dns`` (default true) also replaces the name-resolution functions (see `patch_dns`). ``aggressive`` is
    accepted for gevent compatibility; on Python 3 there is nothing more for it to remove.
    """
    from ferrovent.resolver import __dns__

    items = _import("ferrovent.socket").__implements__
    _patch_module("socket", items if dns else [name for name in items if name not in __dns__])


@_vetoable
def patch_dns() -> None:
    """Replaces getaddrinfo, gethostbyname(_ex), gethostbyaddr, getnameinfo and getfqdn in ``socket`` with
    the versions of `ferrovent.resolver`, which never block the loop."""
    from ferrovent.resolver import __dns__

    _patch_module("socket", list(__dns__))


@_vetoable
def patch_ssl(_warnings: list[str] | None = None) -> None:
    """Replaces ``ssl.SSLContext``, ``SSLSocket`` and the wrapping functions with cooperative ones.

    Patch before ``ssl`` is imported: if it already was, modules that copied ``SSLContext`` out of it
    (``from ssl import SSLContext``) or subclassed it keep the original, and a MonkeyPatchWarning names them.
    """
    first_time = not is_module_patched("ssl")
    was_imported = "ssl" in sys.modules and hasattr(sys.modules["ssl"], "SSLContext")
    if _patch_module("ssl", _warnings=_warnings) is None or not (first_time and was_imported):
        return
    modules, subclasses = _stale_references(get_original("ssl", "SSLContext"))
    if modules or subclasses:
        message = (
            "ssl was imported before it was monkey-patched: what took the original, blocking SSLContext keeps it "
            "and will not be cooperative. Call monkey.patch_all() before other imports."
        )
        if modules:
            message += f" Modules that had direct imports (NOT patched): {', '.join(modules)}."
        if subclasses:
            message += f" Subclasses (NOT patched): {', '.join(subclasses)}."
        _queue_warning(message, _warnings)


def _stale_references(original: type) -> tuple[list[str], list[str]]:
    """Modules (other than ssl and ferrovent's) holding ``original`` in their globals; its subclasses."""
    import gc

    modules, subclasses = [], []
    for referrer in gc.get_referrers(original):
        if isinstance(referrer, dict) and isinstance(referrer.get("__name__"), str):
            name = referrer["__name__"]
            if name == "ssl" or name == "ferrovent" or name.startswith("ferrovent."):
                continue
            if any(value is original for value in referrer.values()):
                modules.append(f"{name} ({referrer.get('__file__', '<unknown>')})")
        elif isinstance(referrer, type) and original in referrer.__bases__:
            if not referrer.__module__.startswith("ferrovent."):
                subclasses.append(f"{referrer.__module__}.{referrer.__qualname__}")
    return sorted(modules), sorted(subclasses)


@_vetoable
def patch_select(aggressive: bool = True) -> None:
    """Replaces ``select.select`` and ``select.poll`` with cooperative ones.

    ``aggressive`` (default true) also removes ``epoll``, ``kqueue``, ``kevent`` and ``devpoll``, which would
    block the loop, so libraries fall back to select/poll.
    """

    def remove_blocking(source, select_module):
        if aggressive:
            for name in _BLOCKING_SELECT:
                remove_item(select_module, name)

    _patch_module("select", after=remove_blocking)


@_vetoable
def patch_selectors(aggressive: bool = True) -> None:
    """Replaces the selector classes of ``selectors`` (``DefaultSelector`` included) with ferrovent's, which
    block only the calling greenlet, and points the stdlib's SelectSelector and PollSelector at the cooperative
    select/poll. ``aggressive`` (default true) also removes any of EpollSelector, KqueueSelector and
    DevpollSelector that ferrovent has no cooperative version of, since it would block the loop (gevent removes
    them all; ferrovent's own EpollSelector, the default on Linux, stays, so ``DefaultSelector`` is always a class
    the module still has)."""

    def adjust(cooperative_selectors, selectors_module):
        cooperative = _import("ferrovent.select")
        # SelectSelector keeps ``select.select`` as a class attribute: a builtin if selectors was imported first
        # (it would block), a plain function if later (it would bind as a method). A staticmethod is right either
        # way.
        select_selector = selectors_module.SelectSelector
        if select_selector.__dict__.get("_select") in (get_original("select", "select"), cooperative.select):
            select_selector._select = staticmethod(cooperative.select)
        poll_selector = getattr(selectors_module, "PollSelector", None)
        if poll_selector is not None and hasattr(poll_selector, "_selector_cls"):
            poll_selector._selector_cls = cooperative.poll
        if aggressive:
            for name in _BLOCKING_SELECTORS:
                if name not in cooperative_selectors.__implements__:
                    remove_item(selectors_module, name)

    _patch_module("selectors", after=adjust)


@_vetoable
def patch_thread(
    threading: bool = True,
    _threading_local: bool = True,
    Event: bool = True,
    logging: bool = True,
    existing_locks: bool = True,
    _warnings: list[str] | None = None,
) -> None:
    """Makes threads greenlets: ``_thread``'s functions and locks become ferrovent's, and with ``threading``
    (default true) the stdlib's ``threading`` runs on them (see ``ferrovent.threading``).

    ``Event`` makes ``threading.Event`` ferrovent's Event; ``logging`` gives the logging module's lock and its
    handlers' locks to greenlets; ``existing_locks`` hands the locks the patching thread already holds (its import
    locks) to the current greenlet; ``_threading_local`` also replaces ``_threading_local.local``. Patch on the main
    thread: elsewhere a MonkeyPatchWarning says the main thread stays native.
    """
    from ferrovent import events

    threading_module = _import("threading")  # first: it copies names out of _thread when it is imported
    green_threading = _import("ferrovent.threading")
    thread_module, green_thread = _import("_thread"), _import(SOURCE_OF["_thread"])
    # As gevent: the will-patch events of _thread and threading, the patching (and _threading_local's, which has
    # no events), then both did-patch events.
    if not patch_module(thread_module, green_thread, _warnings=_warnings, _did_event=False):
        return
    messages: list[str] = []

    def patch_threading(source, target, items):
        messages.extend(
            source._patch_threading(target, patch_item, Event=Event, logging=logging, existing_locks=existing_locks)
        )

    threading_patched = threading and patch_module(
        threading_module, green_threading, _warnings=_warnings, _replace=patch_threading, _did_event=False
    )
    if _threading_local:
        patch_item(_import("_threading_local"), "local", _import(SOURCE_OF["_threading_local"]).local)
    for message in messages:
        _queue_warning(message, _warnings)
    _notify(events.GeventDidPatchModuleEvent(thread_module.__name__, green_thread, thread_module))
    if threading_patched:
        _notify(events.GeventDidPatchModuleEvent(threading_module.__name__, green_threading, threading_module))


@_vetoable
def patch_queue() -> None:
    """Replaces ``queue.Queue``, ``SimpleQueue``, ``LifoQueue`` and ``PriorityQueue`` with ferrovent's."""
    _patch_module("queue", list(_QUEUE_CLASSES))


@_vetoable
def patch_subprocess() -> None:
    """Replaces ``subprocess.Popen`` and the functions built on it with cooperative ones."""
    _patch_module("subprocess")


@_vetoable
def patch_signal() -> None:
    """Replaces ``signal.signal`` and ``signal.getsignal``: a handler may block (it runs in a greenlet)."""
    _patch_module("signal")


@_vetoable
def patch_sys(stdin: bool = True, stdout: bool = True, stderr: bool = True) -> None:
    """Does nothing, as in gevent on Python 3 (making sys.std* cooperative hangs the interpreter at exit)."""


@_vetoable
def patch_builtins() -> None:
    """Does nothing, as in gevent on Python 3: imports are already safe with greenlets."""


@_vetoable
def patch_contextvars() -> None:
    """Does nothing, as in gevent on Python 3: greenlet switches context variables itself."""


def _settings_to_apply(settings: dict[str, bool], warnings_out: list[str]) -> dict[str, bool]:
    """The arguments of this patch_all call not yet applied: new ones, and ones turned from false to true.

    Records them (in ``saved``, as gevent does) and queues a warning when the arguments differ from last time.
    """
    applied = saved.setdefault(_PATCH_ALL_SETTINGS, {})
    if applied and applied != settings:
        warnings_out.append("Patching more than once will result in the union of all True parameters being patched")
    to_apply = {}
    for name, value in settings.items():
        if name not in applied or (value and not applied[name]):
            to_apply[name] = applied[name] = value
    return to_apply


def _warn_signal_without_os(event, warnings_out: list[str]) -> None:
    if event.will_patch_module("signal") and not event.will_patch_module("os"):
        warnings_out.append(
            "Patching signal but not os will result in SIGCHLD handlers installed after this not being called and "
            "os.waitpid may not function correctly if gevent.subprocess is used. This may raise an error in the "
            "future."
        )


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
    """Does all the patching, in gevent's order: os, thread (with ``Event``), time, socket (and dns), select and
    selectors, ssl, subprocess, signal, queue.

    ``sys``, ``builtins`` and ``contextvars`` do nothing on Python 3, as in gevent. Other keyword arguments are
    handed to the events' subscribers (``patch_all_kwargs``); prefix them with your library's name.

    Events, in order: GeventWillPatchAllEvent (a DoNotPatch from a subscriber cancels everything), each module's
    will/did events, GeventDidPatchBuiltinModulesEvent, GeventDidPatchAllEvent (see `ferrovent.events`).

    Calling it again only adds patches (the union of every true argument) and warns if the arguments differ.
    Returns True when it patched, False when a subscriber vetoed it, None when there was nothing new to do.
    """
    from ferrovent import events

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
    messages: list[str] = []
    to_apply = _settings_to_apply(settings, messages)
    if not to_apply:
        _process_warnings(messages)
        return None
    will_patch_all = events.GeventWillPatchAllEvent(to_apply, kwargs)
    try:
        _notify(will_patch_all)
    except events.DoNotPatch:
        return False
    _warn_signal_without_os(will_patch_all, messages)
    # gevent's order: thread before time (patching threading still sleeps for real), select before selectors.
    if os:
        patch_os()
    if thread:
        patch_thread(Event=Event, _warnings=messages)
    if time:
        patch_time()
    if sys:
        patch_sys()
    if socket:
        patch_socket(dns=dns, aggressive=aggressive)
    if select:
        patch_select(aggressive=aggressive)
        patch_selectors(aggressive=aggressive)
    if ssl:
        patch_ssl(_warnings=messages)
    if subprocess:
        patch_subprocess()
    if builtins:
        patch_builtins()
    if signal:
        patch_signal()
    if queue:
        patch_queue()
    if contextvars:
        patch_contextvars()
    _notify(events.GeventDidPatchBuiltinModulesEvent(to_apply, kwargs))
    _notify(events.GeventDidPatchAllEvent(to_apply, kwargs))
    _process_warnings(messages)
    _gevent_alias.register_monkey()
    _gevent_alias.warn_about_stock_gevent()
    return True


# -- python -m ferrovent.monkey ---------------------------------------------------------------------------

_USAGE = """usage: python -m ferrovent.monkey [--verbose] [--no-MODULE | --MODULE]... [--module] TARGET [ARG]...

Monkey-patches the standard library (patch_all()), then runs TARGET as __main__ with argv [TARGET, ARG...]:
a script path (or a directory or zip file with a __main__.py), or with --module a module name. --no-MODULE leaves
MODULE unpatched; --MODULE patches only the modules named that way. --verbose first prints what it will do.
MODULE is one of: {modules}. --aggressive, --Event and their --no- forms set those patch_all arguments."""
_MODULE_OPTIONS = (
    "socket",
    "dns",
    "time",
    "select",
    "thread",
    "os",
    "ssl",
    "subprocess",
    "sys",
    "builtins",
    "signal",
    "queue",
    "contextvars",
)
_OTHER_OPTIONS = ("aggressive", "Event")


def main(argv: list[str] | None = None) -> Any:
    """Patches, then runs a script or module as ``__main__`` (what ``python -m ferrovent.monkey`` does).

    Without a target it prints the usage and returns.
    """
    import runpy

    args = list(sys.argv[1:] if argv is None else argv)
    usage = _USAGE.format(modules=", ".join(_MODULE_OPTIONS))
    chosen: dict[str, bool] = {}
    run_module = False
    verbose = False
    while args and args[0].startswith("--"):
        option = args.pop(0)[2:]
        if option == "module":
            run_module = True
        elif option == "verbose":
            verbose = True
        elif option.startswith("no-") and option[3:] in _MODULE_OPTIONS + _OTHER_OPTIONS:
            chosen[option[3:]] = False
        elif option in _OTHER_OPTIONS:
            chosen[option] = True
        elif option in _MODULE_OPTIONS:
            chosen[option] = True
            for module in _MODULE_OPTIONS:  # naming a module patches only the modules named
                chosen.setdefault(module, False)
        else:
            sys.exit(f"{usage}\n\nCannot patch {option!r}")
    if verbose:
        _print_plan(chosen)
    if not args:
        print(usage)
        return None
    sys.argv[:] = args
    patch_all(**chosen)
    if run_module:
        return runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    import os.path

    if os.path.isfile(args[0]):
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))  # as `python script.py` would have it
    return runpy.run_path(args[0], run_name="__main__")


def _print_plan(chosen: dict[str, bool]) -> None:
    import os
    import pprint

    print(f"ferrovent.monkey.patch_all({', '.join(f'{name}={value}' for name, value in chosen.items())})")
    print(f"sys.version={' '.join(sys.version.split())}")
    print(f"sys.path={pprint.pformat(sys.path)}")
    print(f"sys.modules={pprint.pformat(sorted(sys.modules))}")
    print(f"cwd={os.getcwd()}")


if __name__ == "__main__":
    # Run as a script this file is ``__main__``, a second copy of the module: hand over to the real
    # ``ferrovent.monkey`` (imported now if need be), which alone records what is patched.
    import ferrovent.monkey

    ferrovent.monkey.main()

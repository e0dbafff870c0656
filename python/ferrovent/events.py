"""Publish/subscribe: ferrovent announces what it does (monkey-patching, monitoring) as event objects.

A subscriber is any callable taking one argument, the event; append it to `subscribers`. `notify` hands an event to
every subscriber in order. When ``zope.event`` is installed these are its very ``subscribers`` list and
``notify`` (as in gevent), so subscribers registered through zope.event, zope.component or gevent's API all see the
same events; without it ferrovent keeps a list of its own with the same behaviour.

Each event has an interface (``I...``) and an implementation. With ``zope.interface`` installed they are real
zope interfaces (``verifyObject`` and ``providedBy`` work); without it they are plain classes with the same names,
attributes and ``providedBy``, so code importing them still runs. ferrovent does not require either package.

Events that have an ``ENTRY_POINT_NAME`` are also delivered, after the subscribers, to the plugins registered
under that entry-point group (``gevent.plugins.monkey.did_patch_builtins`` and the others below): that is how a
package patches itself when ``monkey.patch_all()`` runs. The plugin names are gevent's, so plugins written for
gevent run under ferrovent too.

Monkey-patching emits, in order: `GeventWillPatchAllEvent`; for each module a `GeventWillPatchModuleEvent` and a
`GeventDidPatchModuleEvent`; `GeventDidPatchBuiltinModulesEvent`; `GeventDidPatchAllEvent`. A subscriber to a
will-patch event may raise `DoNotPatch` to skip that module (or, for the will-patch-all event, everything).
"""

from __future__ import annotations

import sys
from typing import Any, Callable

__all__ = [
    "subscribers",
    "IEventLoopBlocked",
    "EventLoopBlocked",
    "IMemoryUsageThresholdExceeded",
    "MemoryUsageThresholdExceeded",
    "IMemoryUsageUnderThreshold",
    "MemoryUsageUnderThreshold",
    "IPeriodicMonitorThread",
    "IPeriodicMonitorThreadStartedEvent",
    "PeriodicMonitorThreadStartedEvent",
    "IGeventPatchEvent",
    "GeventPatchEvent",
    "IGeventWillPatchEvent",
    "DoNotPatch",
    "GeventWillPatchEvent",
    "IGeventDidPatchEvent",
    "IGeventWillPatchModuleEvent",
    "GeventWillPatchModuleEvent",
    "IGeventDidPatchModuleEvent",
    "GeventDidPatchModuleEvent",
    "IGeventWillPatchAllEvent",
    "GeventWillPatchAllEvent",
    "IGeventDidPatchBuiltinModulesEvent",
    "GeventDidPatchBuiltinModulesEvent",
    "IGeventDidPatchAllEvent",
    "GeventDidPatchAllEvent",
]

# -- the subscriber list ------------------------------------------------------------------------------------

try:
    from zope.event import notify, subscribers
except ImportError:
    subscribers: list[Callable[[Any], Any]] = []

    def notify(event: Any) -> None:
        """Calls every subscriber with ``event``, in the order they were added."""
        for subscriber in subscribers:
            subscriber(event)


# -- interfaces: zope.interface's when installed ------------------------------------------------------------

try:
    from zope.interface import Attribute, Interface, implementer
except ImportError:

    class Attribute:
        """The documentation of an attribute an interface promises."""

        def __init__(self, doc: str) -> None:
            self.__doc__ = doc

    class Interface:
        """Base of the interfaces below when zope.interface is missing: a named contract, checked by providedBy."""

        @classmethod
        def providedBy(cls, obj: Any) -> bool:
            return any(issubclass(declared, cls) for declared in getattr(obj, "__implemented_interfaces__", ()))

        @classmethod
        def implementedBy(cls, klass: type) -> bool:
            return any(issubclass(declared, cls) for declared in getattr(klass, "__implemented_interfaces__", ()))

    def implementer(*interfaces: type) -> Callable[[type], type]:
        """Records that the decorated class implements ``interfaces`` (and those its bases implement)."""

        def declare(klass: type) -> type:
            inherited = getattr(klass, "__implemented_interfaces__", ())
            klass.__implemented_interfaces__ = (*interfaces, *inherited)
            return klass

        return declare


# -- delivery to plugins ------------------------------------------------------------------------------------

# The installed entry points, read once per sys.path (reading them scans every distribution, a few ms, and
# patch_all emits some twenty events).
_entry_points_cache: tuple[tuple[str, ...], Any] | None = None


def _entry_points(group: str) -> list[Any]:
    """The plugins of ``group``, less stock gevent's own: they are gevent internals (its warning about patching
    signal without os) that ferrovent does itself, and loading them would import stock gevent beside ferrovent."""
    global _entry_points_cache
    from importlib import metadata

    path = tuple(sys.path)
    if _entry_points_cache is None or _entry_points_cache[0] != path:
        _entry_points_cache = (path, metadata.entry_points())
    installed = _entry_points_cache[1]
    # CPython 3.9's entry_points() is a dict of groups; 3.10 added select().
    found = installed.select(group=group) if hasattr(installed, "select") else installed.get(group, ())
    return [entry_point for entry_point in found if not _is_stock_gevents(entry_point)]


def _is_stock_gevents(entry_point: Any) -> bool:
    dist = getattr(entry_point, "dist", None)  # CPython 3.10+; before, the module path tells
    if dist is not None:
        return dist.name.lower() == "gevent"
    return entry_point.value.partition(":")[0].split(".")[0] == "gevent"


def notify_and_call_entry_points(event: Any) -> None:
    """`notify` the subscribers, then call each plugin registered under ``event.ENTRY_POINT_NAME`` with the event.

    A `DoNotPatch` (or any exception) from a subscriber or plugin propagates to the caller.
    """
    notify(event)
    for entry_point in _entry_points(event.ENTRY_POINT_NAME):
        entry_point.load()(event)


# -- monitoring ---------------------------------------------------------------------------------------------


class IPeriodicMonitorThread(Interface):
    """A hub's monitoring thread, which calls functions periodically (gevent's contract)."""

    def add_monitoring_function(function, period):  # noqa: N805 (an interface method has no self)
        """Calls ``function(hub)`` about every ``period`` seconds in the monitoring thread; a ``period`` of None
        removes it. It must not use the cooperative API."""


class IPeriodicMonitorThreadStartedEvent(Interface):
    """Emitted when a hub starts its monitoring thread: the moment to add monitoring functions."""

    monitor = Attribute("The IPeriodicMonitorThread that was started.")


@implementer(IPeriodicMonitorThreadStartedEvent)
class PeriodicMonitorThreadStartedEvent:
    """The event a hub emits when its monitoring thread starts."""

    ENTRY_POINT_NAME = "gevent.plugins.hub.periodic_monitor_thread_started"

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor


class IEventLoopBlocked(Interface):
    """Emitted (in the monitoring thread) when the event loop has not run for too long."""

    greenlet = Attribute("The greenlet that seemed to be blocking the loop.")
    blocking_time = Attribute("About how long, in seconds, the loop has been blocked.")
    info = Attribute("Lines of text describing the block; subscribers may change the list.")
    hub = Attribute("The hub that was blocked, or None.")


@implementer(IEventLoopBlocked)
class EventLoopBlocked:
    """The event loop did not run for too long: notified once per block by the monitoring thread.

    ``greenlet`` is the greenlet that was running (blocking the loop), ``blocking_time`` the threshold it passed
    (``config.max_blocking_time``, seconds), ``info`` the report lines (its stack among them) and ``hub`` the hub
    whose loop was blocked. See ``IEventLoopBlocked``; the monitor's differences from gevent's: docs/differences.md,
    "The monitoring thread".
    """

    def __init__(self, greenlet: Any, blocking_time: float, info: list[str], *, hub: Any = None) -> None:
        self.greenlet = greenlet
        self.blocking_time = blocking_time
        self.info = info
        self.hub = hub


class IMemoryUsageThresholdExceeded(Interface):
    """Emitted (in the monitoring thread) while memory use grows above the configured maximum."""

    mem_usage = Attribute("The process's memory use now, in bytes.")
    max_allowed = Attribute("The configured maximum, in bytes.")
    memory_info = Attribute("The memory statistics psutil reported.")


class _MemoryEvent:
    def __init__(self, mem_usage: int, max_allowed: int, memory_info: Any) -> None:
        self.mem_usage = mem_usage
        self.max_allowed = max_allowed
        self.memory_info = memory_info

    def __repr__(self) -> str:
        return f"<{type(self).__name__} used={self.mem_usage} max={self.max_allowed} details={self.memory_info!r}>"


@implementer(IMemoryUsageThresholdExceeded)
class MemoryUsageThresholdExceeded(_MemoryEvent):
    """Memory use is above ``config.max_memory_usage``: ``mem_usage`` and ``max_allowed`` in bytes, ``memory_info``
    as psutil reported it (see ``IMemoryUsageThresholdExceeded``)."""


class IMemoryUsageUnderThreshold(Interface):
    """Emitted (in the monitoring thread) once memory use falls back under the maximum after exceeding it."""

    mem_usage = Attribute("The process's memory use now, in bytes.")
    max_allowed = Attribute("The configured maximum, in bytes.")
    max_memory_usage = Attribute("The memory use reported by the previous IMemoryUsageThresholdExceeded.")
    memory_info = Attribute("The memory statistics psutil reported.")


@implementer(IMemoryUsageUnderThreshold)
class MemoryUsageUnderThreshold(_MemoryEvent):
    """Memory use is back under ``config.max_memory_usage`` after exceeding it; ``max_memory_usage`` is the use
    the previous ``MemoryUsageThresholdExceeded`` reported (see ``IMemoryUsageUnderThreshold``)."""

    def __init__(self, mem_usage: int, max_allowed: int, memory_info: Any, max_usage: int) -> None:
        super().__init__(mem_usage, max_allowed, memory_info)
        self.max_memory_usage = max_usage


# -- monkey-patching ----------------------------------------------------------------------------------------


class IGeventPatchEvent(Interface):
    """The base of every monkey-patching event."""

    source = Attribute("What the patches come from (a module).")
    target = Attribute("What gets patched (a module).")


@implementer(IGeventPatchEvent)
class GeventPatchEvent:
    """A monkey-patching event about ``source`` and ``target``."""

    def __init__(self, source: Any, target: Any) -> None:
        self.source = source
        self.target = target

    def __repr__(self) -> str:
        return f"<{type(self).__name__} source={self.source!r} target={self.target!r} at {id(self):x}>"


class IGeventWillPatchEvent(IGeventPatchEvent):
    """Emitted before something is patched; a subscriber raising DoNotPatch prevents it."""


class DoNotPatch(BaseException):
    """Raised by a will-patch subscriber to leave that item unpatched."""


@implementer(IGeventWillPatchEvent)
class GeventWillPatchEvent(GeventPatchEvent):
    """Something is about to be patched (``source`` replaces ``target``); a subscriber may raise ``DoNotPatch``."""


class IGeventDidPatchEvent(IGeventPatchEvent):
    """Emitted after something was patched."""


@implementer(IGeventDidPatchEvent)
class GeventDidPatchEvent(GeventPatchEvent):
    """Something was patched."""


class IGeventWillPatchModuleEvent(IGeventWillPatchEvent):
    """Emitted before one module is patched; ``source`` and ``target`` are modules."""

    module_name = Attribute("The name of the module to patch (target.__name__).")
    target_item_names = Attribute("The names of the items to replace; may be changed in place, with care.")


@implementer(IGeventWillPatchModuleEvent)
class GeventWillPatchModuleEvent(GeventWillPatchEvent):
    """The module ``module_name`` is about to be patched: ``target_item_names`` of ``target`` replaced by those of
    ``source``; a subscriber may raise ``DoNotPatch`` to leave the module as it is."""

    ENTRY_POINT_NAME = "gevent.plugins.monkey.will_patch_module"

    def __init__(self, module_name: str, source: Any, target: Any, items: list[str]) -> None:
        super().__init__(source, target)
        self.module_name = module_name
        self.target_item_names = items


class IGeventDidPatchModuleEvent(IGeventDidPatchEvent):
    """Emitted after one module was patched."""

    module_name = Attribute("The name of the patched module (target.__name__).")


@implementer(IGeventDidPatchModuleEvent)
class GeventDidPatchModuleEvent(GeventDidPatchEvent):
    """The module ``module_name`` (``target``) was patched from ``source``."""

    ENTRY_POINT_NAME = "gevent.plugins.monkey.did_patch_module"

    def __init__(self, module_name: str, source: Any, target: Any) -> None:
        super().__init__(source, target)
        self.module_name = module_name


class IGeventWillPatchAllEvent(IGeventWillPatchEvent):
    """Emitted when ``patch_all()`` begins; DoNotPatch from a subscriber cancels the whole patching.

    Then come the will/did events of each module, IGeventDidPatchBuiltinModulesEvent (the moment to patch
    third-party libraries) and IGeventDidPatchAllEvent. ``source`` and ``target`` mean nothing here.
    """

    patch_all_arguments = Attribute("A copy of the module arguments given to patch_all.")
    patch_all_kwargs = Attribute("A copy of the extra keyword arguments given to patch_all.")

    def will_patch_module(module_name):  # noqa: N805 (an interface method has no self)
        """Whether patch_all will patch the module ``module_name``."""


class _PatchAllEvent:
    """What the three patch_all events share: patch_all's arguments, handed out as copies."""

    def __init__(self, patch_all_arguments: dict[str, Any], patch_all_kwargs: dict[str, Any]) -> None:
        super().__init__(None, None)
        self._patch_all_arguments = patch_all_arguments
        self._patch_all_kwargs = patch_all_kwargs

    @property
    def patch_all_arguments(self) -> dict[str, Any]:
        """A copy of the module switches ``patch_all`` was called with (``{"socket": True, ...}``)."""
        return dict(self._patch_all_arguments)

    @property
    def patch_all_kwargs(self) -> dict[str, Any]:
        """A copy of the other keyword arguments ``patch_all`` was called with."""
        return dict(self._patch_all_kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._patch_all_arguments!r} at {id(self):x}>"


@implementer(IGeventWillPatchAllEvent)
class GeventWillPatchAllEvent(_PatchAllEvent, GeventWillPatchEvent):
    """``patch_all`` is about to patch; a subscriber may raise ``DoNotPatch`` to cancel the whole patching, and
    plugins registered under ``ENTRY_POINT_NAME`` are notified too."""

    ENTRY_POINT_NAME = "gevent.plugins.monkey.will_patch_all"

    def will_patch_module(self, module_name: str) -> Any:
        """Whether ``patch_all`` will patch the module ``module_name`` (its switch, as given; None if unknown)."""
        return self._patch_all_arguments.get(module_name)


class IGeventDidPatchBuiltinModulesEvent(IGeventDidPatchEvent):
    """Emitted once patch_all has patched the standard library: subscribers patch third-party libraries here."""

    patch_all_arguments = Attribute("A copy of the module arguments given to patch_all.")
    patch_all_kwargs = Attribute("A copy of the extra keyword arguments given to patch_all.")


@implementer(IGeventDidPatchBuiltinModulesEvent)
class GeventDidPatchBuiltinModulesEvent(_PatchAllEvent, GeventDidPatchEvent):
    """``patch_all`` has patched the standard library: the moment to patch third-party libraries."""

    ENTRY_POINT_NAME = "gevent.plugins.monkey.did_patch_builtins"


class IGeventDidPatchAllEvent(IGeventDidPatchEvent):
    """Emitted last by patch_all, after the standard library and the subscribers' own patches."""


@implementer(IGeventDidPatchAllEvent)
class GeventDidPatchAllEvent(_PatchAllEvent, GeventDidPatchEvent):
    """``patch_all`` is done (every module and plugin patched)."""

    ENTRY_POINT_NAME = "gevent.plugins.monkey.did_patch_all"

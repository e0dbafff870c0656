"""ferrovent's settings: gevent's ``gevent.config`` (``from ferrovent import config``), read from code or from
the environment variables gevent documents (``GEVENT_RESOLVER``, ``GEVENT_THREADPOOL``, ...).

``config.NAME`` reads a setting: the value set in code (``config.NAME = value`` or ``config.set(NAME, value)``),
else the environment variable's, else the default; it is read once and then kept. Change settings before the
parts of ferrovent that use them start (before the first DNS lookup for ``resolver``, before the hub's thread
pool exists for ``threadpool``).

Every setting gevent documents exists, validated as gevent validates it. What each does on ferrovent:

- honoured: ``monitor_thread`` and its thresholds (``max_blocking_time``, ``print_blocking_reports``,
  ``memory_monitor_period``, ``max_memory_usage``: see `ferrovent._monitor`), ``resolver`` (``'thread'``, the
  default: lookups in the hub's thread pool; ``'block'``: lookups in the calling thread, blocking the loop) and
  ``threadpool`` (the class of the hub's pool). An import path beginning ``gevent.`` means ferrovent's module of
  that name, even without the gevent alias.
- refused when set, or when read if the environment asks for it: what names a piece of gevent ferrovent has no
  counterpart of. With a ValueError: ``loop`` / ``GEVENT_LOOP`` other than ferrovent's own (libev and libuv are
  gevent's C loops; ferrovent's is Rust) and ``libev_backend`` / ``GEVENT_BACKEND``. With an ImportError saying
  why: ``resolver`` ``'ares'`` and ``'dnspython'`` (skipped in a list of candidates, as gevent skips one that does
  not import).
- kept but without effect, their feature being absent or not configurable: ``threadpool_idle_task_timeout``,
  ``format_context``, ``fileobject``, ``disable_watch_children``, ``trace_malloc``, ``track_greenlet_tree`` and
  the c-ares/dnspython options (``ares_*``, ``resolver_nameservers``, ``resolver_timeout``). docs/differences.md
  lists them.

``python -m ferrovent._config`` prints every setting with its environment variable.
"""

from __future__ import annotations

import importlib
import os
import textwrap
from typing import Any

__all__ = ["config"]

#: Every setting class, in definition order.
ALL_SETTINGS: list[type[Setting]] = []


def validate_invalid(value: Any) -> Any:
    """Refuses every value (the validator of a setting that defines none)."""
    raise ValueError(f"Not a valid value: {value!r}")


def validate_bool(value: Any) -> bool:
    """A boolean; in the environment ``1``, ``true``, ``on``, ``yes`` or ``0``, ``false``, ``off``, ``no``
    (any case), an empty value being false."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "on", "yes"):
            return True
        if word in ("0", "false", "off", "no", ""):
            return False
        raise ValueError(f"Invalid boolean string: {value!r}")
    return bool(value)


def validate_anything(value: Any) -> Any:
    return value


class Setting:
    """One setting: its ``name``, its ``environment_key`` (default ``GEVENT_<NAME>``), its ``default``, and how a
    value is converted from a string (``_convert``) and checked (``validate``). Subclasses register themselves."""

    name: str = ""
    environment_key: str = ""
    default: Any = None
    document = True
    desc = ""
    validate = staticmethod(validate_invalid)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("abstract", False):
            return
        if "name" not in cls.__dict__:
            cls.name = cls.__name__.lower()
        if "environment_key" not in cls.__dict__:
            cls.environment_key = "GEVENT_" + cls.name.upper()
        cls.__doc__ = cls.desc = (
            textwrap.dedent(cls.desc).strip()
            + f"\n\nThe default is {cls.default!r}; the environment variable ``{cls.environment_key}`` sets it."
        )
        ALL_SETTINGS.append(cls)

    def _convert(self, value: Any) -> Any:
        """A string from the environment (or code) is a comma-separated list."""
        return value.split(",") if isinstance(value, str) else value

    def _default(self) -> Any:
        return self._convert(os.environ.get(self.environment_key, self.default))

    def get(self) -> Any:
        """The value set in code, else the environment's, else the default: computed once, then kept."""
        if "value" not in self.__dict__:
            self.value = self.validate(self._default())
        return self.value

    def set(self, value: Any) -> None:
        self.value = self.validate(self._convert(value))


def make_settings() -> dict[str, Setting]:
    """A fresh instance of every setting, by name."""
    return {kind.name: kind() for kind in ALL_SETTINGS}


class Config:
    """The settings, as attributes: ``config.resolver``, ``config.resolver = 'block'``, ``config.set(name, v)``."""

    def __init__(self) -> None:
        self.settings = make_settings()

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings", {})
        if name not in settings:
            raise AttributeError(f"No configuration setting for: {name!r}")
        return settings[name].get()

    def __setattr__(self, name: str, value: Any) -> None:
        if name != "settings" and name in self.settings:
            self.set(name, value)
        else:
            super().__setattr__(name, value)

    def set(self, name: str, value: Any) -> None:
        if name not in self.settings:
            raise AttributeError(f"No configuration setting for: {name!r}")
        self.settings[name].set(value)

    def __dir__(self) -> list[str]:
        return list(self.settings)

    def print_help(self) -> None:
        for name, setting in self.settings.items():
            print(name)
            print(textwrap.indent(setting.desc, "    "))
            print()


class ImportableSetting:
    """A setting whose value is an object named by an import path (``package.module.name``) or a short name of
    ``shortname_map``; a list means candidates in order of preference, the first importable one wins. Code may
    give the object itself. Short names in ``refused`` name gevent features ferrovent lacks: skipped like a
    candidate that does not import, and reported if no candidate is left."""

    shortname_map: dict[str, str] = {}
    refused: dict[str, str] = {}

    def _import_one_of(self, candidates: list[Any]) -> Any:
        if not candidates:
            raise ImportError("Cannot import from empty list")
        refusals = []
        last_error: ImportError | None = None
        for candidate in candidates:
            if isinstance(candidate, str) and candidate in self.refused:
                refusals.append(f"{candidate!r}: {self.refused[candidate]}")
                continue
            try:
                return self._import_one(self.shortname_map.get(candidate, candidate))
            except ImportError as exc:
                last_error = exc
        if refusals:
            setting = getattr(self, "name", "this")
            raise ValueError(f"No usable value for the {setting} setting on ferrovent: " + "; ".join(refusals))
        assert last_error is not None
        raise last_error

    def _import_one(self, path: Any) -> Any:
        if not isinstance(path, str):
            return path
        if path.startswith("gevent."):  # gevent's documented paths: ferrovent's modules, never stock gevent's
            path = "ferrovent." + path[len("gevent.") :]
        if "." not in path or "/" in path:
            raise ImportError(
                f"Cannot import {path!r}. Required format: [package.]module.class. "
                f"Or choose from {list(self.shortname_map)!r}"
            )
        module_name, item = path.rsplit(".", 1)
        module = importlib.import_module(module_name)
        try:
            return getattr(module, item)
        except AttributeError:
            raise ImportError(f"Cannot import {item!r} from {module!r}") from None

    def validate(self, value: Any) -> Any:
        if isinstance(value, type):
            return self._check(value)
        return self._check(self._import_one_of(list(value)))

    def _check(self, value: Any) -> Any:
        """What the setting accepts once imported (everything, unless a setting says otherwise)."""
        return value

    def get_options(self) -> dict[str, Any]:
        """Each short name and what it imports to (or the ImportError it raises, or says why it is refused)."""
        options: dict[str, Any] = {name: ImportError(reason) for name, reason in self.refused.items()}
        for name, path in self.shortname_map.items():
            try:
                options[name] = self._import_one(path)
            except ImportError as exc:
                options[name] = exc
        return options


class BoolSettingMixin:
    validate = staticmethod(validate_bool)
    _convert = staticmethod(validate_anything)  # a string stays whole: validate_bool reads it


class IntSettingMixin:
    validate = staticmethod(validate_anything)

    def _convert(self, value: Any) -> Any:
        return int(value) if value else None


class _PositiveValueMixin:
    def validate(self, value: Any) -> Any:
        if value is not None and value <= 0:
            raise ValueError("Must be positive")
        return value


class FloatSettingMixin(_PositiveValueMixin):
    def _convert(self, value: Any) -> Any:
        return float(value) if value else None


class ByteCountSettingMixin(_PositiveValueMixin):
    """A number of bytes; in the environment it may end in ``kb``, ``mb`` or ``gb``."""

    _UNITS = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}

    def _convert(self, value: Any) -> Any:
        if not value or not isinstance(value, str):
            return value
        value = value.strip().lower()
        multiple = self._UNITS.get(value[-2:])
        return int(value[:-2]) * multiple if multiple else int(value)


# -- the settings -------------------------------------------------------------------------------------------


class Resolver(ImportableSetting, Setting):
    desc = """\
    Which resolver ferrovent's name lookups (socket.getaddrinfo, ...) use: 'thread' (the system's resolver in
    the hub's thread pool) or 'block' (the system's resolver in the calling thread, which blocks the loop).
    gevent's 'ares' and 'dnspython' do not exist on ferrovent: they fail to import, like a missing candidate.
    """
    default = ["thread", "dnspython", "ares", "block"]
    shortname_map = {
        "thread": "ferrovent.resolver.thread.Resolver",
        "block": "ferrovent.resolver.blocking.Resolver",
        "ares": "ferrovent.resolver.ares.Resolver",
        "dnspython": "ferrovent.resolver.dnspython.Resolver",
    }

    def _check(self, value: Any) -> Any:
        from ferrovent.resolver import blocking, thread

        if value not in (thread.Resolver, blocking.Resolver):
            raise ValueError(
                f"ferrovent's name lookups cannot go through {value!r}: choose 'thread' "
                "(ferrovent.resolver.thread.Resolver) or 'block' (ferrovent.resolver.blocking.Resolver)"
            )
        return value


class Threadpool(ImportableSetting, Setting):
    desc = """\
    The class of the hub's thread pool (called as ``cls(size, hub)``), used for DNS and ``hub.threadpool``.
    """
    default = "ferrovent.threadpool.ThreadPool"


class ThreadpoolIdleTaskTimeout(FloatSettingMixin, Setting):
    name = "threadpool_idle_task_timeout"
    desc = """\
    How long, in seconds, an idle thread of the hub's pool waits for work before exiting in gevent. Kept but
    without effect: ferrovent's pool threads stay until the pool is killed.
    """
    default = 5.0


class Loop(ImportableSetting, Setting):
    desc = """\
    The event loop class. ferrovent has one loop, its own (Rust, on mio); gevent's libev and libuv loops
    ('libev-cext', 'libev-cffi', 'libuv-cffi', 'libuv') are refused.
    """
    default = ["ferrovent"]
    shortname_map = {"ferrovent": "ferrovent.hub.Loop"}
    refused = {
        name: "gevent's C event loops do not exist on ferrovent, whose loop is its own (Rust, on mio)"
        for name in ("libev-cext", "libev-cffi", "libuv-cffi", "libuv")
    }

    def _check(self, value: Any) -> Any:
        from ferrovent._core import Loop as CoreLoop

        if not (isinstance(value, type) and issubclass(value, CoreLoop)):
            raise ValueError(f"ferrovent cannot run the loop {value!r}: its loop is ferrovent.hub.Loop")
        return value


class FormatContext(ImportableSetting, Setting):
    name = "format_context"
    desc = """\
    The function gevent's run reports format a greenlet's spawn-tree locals with. Kept but without effect:
    ferrovent records no spawning tree.
    """
    default = "pprint.saferepr"


class LibevBackend(Setting):
    name = "libev_backend"
    environment_key = "GEVENT_BACKEND"
    desc = """\
    libev's polling backend in gevent. Refused on ferrovent (any value but None): its loop polls with the
    system's best mechanism (epoll on Linux) through mio, and has no backend to choose.
    """

    @staticmethod
    def validate(value: Any) -> Any:
        if value is not None:
            raise ValueError(f"GEVENT_BACKEND / libev_backend={value!r}: ferrovent has no libev backend to choose")
        return value


class FileObject(ImportableSetting, Setting):
    environment_key = "GEVENT_FILE"
    desc = """\
    The kind of FileObject gevent's ``FileObject`` is. Kept but without effect on ferrovent's ``FileObject``.
    """
    default = ["posix", "thread"]
    shortname_map = {
        "thread": "ferrovent.fileobject.FileObjectThread",
        "posix": "ferrovent.fileobject.FileObjectPosix",
        "block": "ferrovent.fileobject.FileObjectBlock",
    }


class WatchChildren(BoolSettingMixin, Setting):
    name = "disable_watch_children"
    environment_key = "GEVENT_NOWAITPID"
    desc = """\
    In gevent, whether *not* to watch child processes with the loop. Kept but without effect.
    """
    default = False


class TraceMalloc(IntSettingMixin, Setting):
    name = "trace_malloc"
    environment_key = "PYTHONTRACEMALLOC"
    desc = """\
    Python's own tracemalloc switch, read for gevent's FFI debugging. Without effect on ferrovent.
    """
    default = False


class TrackGreenletTree(BoolSettingMixin, Setting):
    name = "track_greenlet_tree"
    desc = """\
    Whether greenlets record who spawned them. Kept but without effect: ferrovent records no spawning tree.
    """
    default = True


class MonitorThread(BoolSettingMixin, Setting):
    name = "monitor_thread"
    environment_key = "GEVENT_MONITOR_THREAD_ENABLE"
    desc = """\
    Whether each hub, when it starts, starts a thread that reports a blocked loop (``max_blocking_time``) and,
    for the main thread's hub, memory use above ``max_memory_usage`` (ferrovent._monitor).
    """
    default = False


class MaxBlockingTime(FloatSettingMixin, Setting):
    name = "max_blocking_time"
    desc = """\
    With the monitoring thread, how long (seconds) the loop may go without polling, while greenlets run, before
    it is reported; also the period of that check.
    """
    default = 0.1


class PrintBlockingReports(BoolSettingMixin, Setting):
    name = "print_blocking_reports"
    environment_key = "GEVENT_MONITOR_PRINT_BLOCKING_REPORTS"
    desc = """\
    With the monitoring thread, whether a blocked loop is reported on the hub's exception stream (the
    EventLoopBlocked event is notified either way).
    """
    default = True


class MonitorMemoryPeriod(FloatSettingMixin, Setting):
    name = "memory_monitor_period"
    environment_key = "GEVENT_MONITOR_MEMORY_PERIOD"
    desc = """\
    With the monitoring thread, seconds between memory checks (at least 2; psutil must be installed).
    """
    default = 5


class MonitorMemoryMaxUsage(ByteCountSettingMixin, Setting):
    name = "max_memory_usage"
    environment_key = "GEVENT_MONITOR_MEMORY_MAX"
    desc = """\
    With the monitoring thread, the memory use (bytes) above which MemoryUsageThresholdExceeded is notified
    (and MemoryUsageUnderThreshold once back under it); unset, memory is not checked.
    """
    default = None


class _AresSetting(Setting):
    """An option of gevent's c-ares resolver: kept as given, without effect (ferrovent has no c-ares)."""

    abstract = True
    document = False
    desc = "An option of gevent's c-ares resolver, kept as given; without effect (ferrovent has no c-ares)."
    validate = staticmethod(validate_anything)
    _convert = staticmethod(validate_anything)


class AresFlags(_AresSetting):
    name = "ares_flags"
    environment_key = "GEVENTARES_FLAGS"


class AresTimeout(_AresSetting):
    name = "ares_timeout"
    environment_key = "GEVENTARES_TIMEOUT"


class AresTries(_AresSetting):
    name = "ares_tries"
    environment_key = "GEVENTARES_TRIES"


class AresNdots(_AresSetting):
    name = "ares_ndots"
    environment_key = "GEVENTARES_NDOTS"


class AresUDPPort(_AresSetting):
    name = "ares_udp_port"
    environment_key = "GEVENTARES_UDP_PORT"


class AresTCPPort(_AresSetting):
    name = "ares_tcp_port"
    environment_key = "GEVENTARES_TCP_PORT"


class AresServers(_AresSetting):
    name = "ares_servers"
    environment_key = "GEVENTARES_SERVERS"


class ResolverNameservers(Setting):
    name = "resolver_nameservers"
    desc = """\
    Name servers for gevent's c-ares and dnspython resolvers. Without effect: ferrovent uses the system's.
    """
    validate = staticmethod(validate_anything)


class ResolverTimeout(FloatSettingMixin, Setting):
    name = "resolver_timeout"
    desc = """\
    Total time for queries of gevent's c-ares and dnspython resolvers. Without effect on ferrovent.
    """


config = Config()

if __name__ == "__main__":
    config.print_help()

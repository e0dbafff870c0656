"""The private pieces of gevent that gevent's test harness (``gevent.testing``) needs and ferrovent lacks.

gevent's tests run against ferrovent with the harness itself stock, loaded from the installed gevent wheel. The
harness reaches into a few private corners of gevent; each adapter here supplies exactly the names the harness uses,
only when ferrovent has no module of that name, and never a piece of the API the tests exercise:

- ``gevent._compat`` (``sysinfo``, ``testcase``, ``timing``, ``util``): platform flags, ``perf_counter``,
  ``get_clock_info``, ``get_this_psutil_process``. Test files import three more of its helpers, which are test
  utilities and not gevent API: ``reraise`` (test__socket, hence test__ssl), ``NativeStrIO`` (test__util,
  test__hub) and ``thread_mod_name`` (test___monitor, test__core_timer).
- ``gevent._util`` (``testcase``, ``testrunner``): the ``Lazy`` and ``LazyOnClass`` descriptors.
- ``gevent._config`` (``util``): ``validate_bool``.
- ``gevent._hub_local`` (``errorhandler``, ``testcase``): ``get_hub_if_exists`` and ``get_hub_class``, the class
  of the hub the harness installed (its ``SYSTEM_ERROR`` is how the harness makes greenlet errors fail a test).
- ``gevent._greenlet_primitives``: ``get_reachable_greenlets`` (every greenlet the garbage collector tracks), which
  test__hub_join counts to check that a thread's hub, once joined and destroyed, leaves no greenlet behind.

These stay importable for the whole run: they are private modules, so a test that imports another name from them
fails as it would on any gevent-compatible library without gevent's internals. Two more adapters exist only while
the harness package ``gevent.testing`` itself executes, since the names are public and tests must not see them:

- ``gevent.hub.set_default_hub_class``: the harness installs its ``QuietHub`` (which hides the tracebacks of
  ``ExpectedException``). ferrovent has no hub-class hook, so the adapter makes the calling thread's hub, if it has
  none yet, an instance of that class (other threads get ferrovent's own ``Hub``). ``QuietHub`` calls the hub's
  private ``_normalize_exception``; if ferrovent's ``Hub`` lacks it, the harness class gets it.
- ``gevent.core``, if ferrovent has none: the harness reads ``gevent.core.loop.__module__`` to tell libuv from libev
  and ``gevent.core.callback`` for its leak checker. The stand-in names neither backend.

For diagnosis only, never for the figure, ``FERROVENT_GEVENT_SUITE_PREVIEW=events`` (the runner's ``--preview``)
stands in for a missing public module, to see what fails behind it: ``gevent.events`` as zope.event's
``subscribers`` and ``notify`` (gevent's harness saves and restores the subscribers around every test).
"""

from __future__ import annotations

import gc
import importlib.abc
import importlib.machinery
import importlib.util
import io
import os
import sys
import time
import types

_PRIVATE_MODULES = (
    "gevent._compat",
    "gevent._util",
    "gevent._config",
    "gevent._hub_local",
    "gevent._greenlet_primitives",
)
_PREVIEW_MODULES = {"events": "gevent.events"}


class _HarnessState:
    """The hub class the harness asked for; None until it does."""

    default_hub_class = None


def _get_hub_class():
    import ferrovent.hub

    return _HarnessState.default_hub_class or ferrovent.hub.Hub


def _get_this_psutil_process():
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process()


def _get_reachable_greenlets() -> list:
    from greenlet import greenlet

    return [obj for obj in gc.get_objects() if isinstance(obj, greenlet)]


def _reraise(type_, value, tb=None):
    raise value.with_traceback(tb)


def _validate_bool(value) -> bool:
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "on", "yes"):
            return True
        if word in ("", "0", "false", "off", "no"):
            return False
        raise ValueError(f"Invalid boolean string: {value!r}")
    return bool(value)


class _Lazy:
    """Computes an attribute once per instance, then stores it in the instance."""

    def __init__(self, compute):
        self.compute = compute
        self.__doc__ = compute.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = self.compute(instance)
        instance.__dict__[self.name] = value
        return value


class _LazyOnClass:
    """Computes an attribute once, on first access through an instance, then stores it on the class."""

    def __init__(self, compute):
        self.compute = compute

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner):
        if instance is None:
            return self
        value = self.compute(instance)
        setattr(owner, self.name, value)
        return value


def _private_module(name: str) -> types.ModuleType:
    import ferrovent.hub

    purpose = "diagnosis-only stand-in" if name in _PREVIEW_MODULES.values() else "adapter: what gevent.testing needs"
    module = types.ModuleType(name, f"ferrovent gevent-suite {purpose}")
    if name == "gevent._compat":
        module.PYPY = hasattr(sys, "pypy_version_info")
        module.WIN = sys.platform.startswith("win")
        module.LINUX = sys.platform.startswith("linux")
        module.OSX = sys.platform == "darwin"
        # Decided from the environment as stock gevent does, so both sides skip the same tests.
        module.PURE_PYTHON = bool(os.environ.get("PURE_PYTHON") or os.environ.get("GEVENT_PURE_PYTHON"))
        module.perf_counter = time.perf_counter
        module.get_clock_info = time.get_clock_info
        module.get_this_psutil_process = _get_this_psutil_process
        module.reraise = _reraise
        module.NativeStrIO = io.StringIO
        module.thread_mod_name = "_thread"
    elif name == "gevent._util":
        module.Lazy = _Lazy
        module.LazyOnClass = _LazyOnClass
    elif name == "gevent._config":
        module.validate_bool = _validate_bool
    elif name == "gevent._hub_local":
        module.get_hub_if_exists = ferrovent.hub.get_hub_if_exists
        module.get_hub_class = _get_hub_class
    elif name == "gevent._greenlet_primitives":
        module.get_reachable_greenlets = _get_reachable_greenlets
    elif name == "gevent.events":
        import zope.event

        module.subscribers = zope.event.subscribers
        module.notify = zope.event.notify
    return module


def _previewed_modules() -> set[str]:
    asked = os.environ.get("FERROVENT_GEVENT_SUITE_PREVIEW", "").split(",")
    return {_PREVIEW_MODULES[key] for key in asked if key in _PREVIEW_MODULES}


def _normalize_exception(self, type, value, tb):
    if (type, value, tb) == (None, None, None):
        type, value, tb = sys.exc_info()
    return type, value, tb


def _set_default_hub_class(hub_class) -> None:
    import ferrovent.hub

    if not hasattr(hub_class, "_normalize_exception"):
        hub_class._normalize_exception = _normalize_exception
    _HarnessState.default_hub_class = hub_class
    if ferrovent.hub.get_hub_if_exists() is None:
        ferrovent.hub.set_hub(hub_class())


class _CoreStandIn:
    """Neither libev's nor libuv's loop: what ``gevent.testing.sysinfo`` sees while the harness loads."""


def _core_stand_in() -> types.ModuleType:
    module = types.ModuleType("gevent.core", "ferrovent gevent-suite adapter: present only while gevent.testing loads")
    module.loop = _CoreStandIn
    module.callback = _CoreStandIn
    return module


class _WhileHarnessLoads:
    """The adapters that exist only while the ``gevent.testing`` package executes."""

    def __init__(self) -> None:
        self.removals = []

    def __enter__(self):
        import ferrovent.hub

        gevent = sys.modules["gevent"]
        if not hasattr(ferrovent.hub, "set_default_hub_class"):
            ferrovent.hub.set_default_hub_class = _set_default_hub_class
            self.removals.append(lambda: delattr(ferrovent.hub, "set_default_hub_class"))
        if importlib.util.find_spec("ferrovent.core") is None and "gevent.core" not in sys.modules:
            sys.modules["gevent.core"] = gevent.core = _core_stand_in()
            self.removals.append(lambda: sys.modules.pop("gevent.core", None))
            self.removals.append(lambda: gevent.__dict__.pop("core", None))
        return self

    def __exit__(self, *exc_info) -> None:
        for remove in self.removals:
            remove()


class _HarnessLoader(importlib.abc.Loader):
    """Runs stock ``gevent/testing/__init__.py`` with the load-time adapters in place."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _WhileHarnessLoads():
            self.loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _PrivateModuleLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return _private_module(spec.name)

    def exec_module(self, module) -> None:
        sys.modules["gevent"].__dict__[module.__name__.rpartition(".")[2]] = module


class HarnessAdapterFinder(importlib.abc.MetaPathFinder):
    """Ahead of ferrovent's gevent alias: answers for the stand-in modules, and wraps the harness's loader."""

    def find_spec(self, fullname: str, path=None, target=None):
        from ferrovent import _gevent_alias

        if fullname == "gevent.testing":
            spec = _gevent_alias.find_spec(fullname, path, target)
            if spec is not None:
                spec.loader = _HarnessLoader(spec.loader)
            return spec
        standing_in = fullname in _PRIVATE_MODULES or fullname in _previewed_modules()
        if standing_in and _gevent_alias.find_spec(fullname, path, target) is None:
            return importlib.machinery.ModuleSpec(fullname, _PrivateModuleLoader())
        return None


def install() -> None:
    """ferrovent as gevent in this process, with the harness adapters ahead of the alias."""
    import ferrovent

    ferrovent.install_as_gevent()
    if not any(isinstance(finder, HarnessAdapterFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, HarnessAdapterFinder())

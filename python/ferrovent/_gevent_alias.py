"""ferrovent under the name ``gevent``, for libraries that import gevent by name.

``install_as_gevent()`` puts an import finder first on ``sys.meta_path``. From then on ``import gevent.X`` gives
the module ``ferrovent.X`` itself (one module object under two names, so state such as the hub is shared), also
when stock gevent is installed. Only the top-level ``gevent`` is a module of its own: it forwards every attribute
to ``ferrovent`` but states, as ``__version__`` and ``version_info``, the gevent release whose API ferrovent
implements, since libraries check that (gunicorn's gevent worker, sentry-sdk). gevent's own test harness and tests
(``gevent.testing``, ``gevent.tests``) are not part of the API: when stock gevent is installed they are loaded from
it, and run against ferrovent.

Modules already imported under a ``gevent`` name before the alias is installed cannot be replaced; installing it
then raises, since the program would run two hubs.

Without the alias, ``monkey.patch_all()`` still enters its module as ``gevent.monkey`` in ``sys.modules`` (unless
stock gevent is imported): libraries such as psycopg 3 look there to learn whether the stdlib is cooperative.

``FERROVENT_AS_GEVENT=1`` installs the alias from interpreter start-up (the wheel puts ``ferrovent-as-gevent.pth``
in site-packages, which loads ``_ferrovent_startup``: the first ``import gevent`` installs it), for programs whose
entry point imports gevent before any user code runs; child processes inherit the variable.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
import warnings

__all__ = [
    "ENVIRONMENT_SWITCH",
    "GEVENT_API_VERSION",
    "GEVENT_API_VERSION_INFO",
    "GeventAliasFinder",
    "find_spec",
    "install_as_gevent",
    "install_from_environment",
    "installed",
    "warn_about_stock_gevent",
]

# The gevent release whose public API ferrovent implements and is tested against.
GEVENT_API_VERSION = "26.9.0"
GEVENT_API_VERSION_INFO = (26, 9, 0, "final", 0)

ENVIRONMENT_SWITCH = "FERROVENT_AS_GEVENT"

# Packages of stock gevent that belong to its test suite, not its API: loaded from stock gevent when present.
_FROM_STOCK_GEVENT = ("gevent.testing", "gevent.tests")


def _stock_gevent_locations() -> list[str] | None:
    """Where stock gevent's package is installed, found without importing it (and without our finder)."""
    spec = importlib.machinery.PathFinder.find_spec("gevent")
    return list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else None


class _GeventPackage(types.ModuleType):
    """The top-level ``gevent``: ferrovent's names, gevent's version."""

    def __getattr__(self, name: str):
        ferrovent = sys.modules["ferrovent"]
        try:
            return getattr(ferrovent, name)
        except AttributeError:
            raise AttributeError(f"module 'gevent' (ferrovent) has no attribute {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(sys.modules["ferrovent"])))


class _AliasLoader(importlib.abc.Loader):
    """Hands out an already imported module (``ferrovent.X`` for ``gevent.X``), or the top-level package."""

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module
        self.own_spec = getattr(module, "__spec__", None)

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        # Already executed; the import system gave it the alias's spec: give back its own (reload, pickling).
        if self.own_spec is not None:
            module.__spec__ = self.own_spec

    def get_code(self, fullname: str):
        """The module's own code, for runpy (``python -m gevent.monkey`` runs ferrovent/monkey.py as __main__)."""
        loader = getattr(self.own_spec, "loader", None)
        get_code = getattr(loader, "get_code", None)
        return get_code(self.own_spec.name) if get_code is not None else None


class GeventAliasFinder(importlib.abc.MetaPathFinder):
    """``gevent`` and ``gevent.X`` resolved to ferrovent's modules."""

    def __init__(self) -> None:
        self.package = self._make_package()

    @staticmethod
    def _make_package() -> types.ModuleType:
        import ferrovent

        package = _GeventPackage("gevent", ferrovent.__doc__)
        # C code reads the module's dict directly, past __getattr__ (uWSGI's gevent plugin looks up spawn, sleep,
        # get_hub, getcurrent and signal_handler there): the public names are in it from the start.
        package.__dict__.update((name, getattr(ferrovent, name)) for name in ferrovent.__all__)
        package.__version__ = GEVENT_API_VERSION
        package.version_info = GEVENT_API_VERSION_INFO
        package.__path__ = []  # a package: submodules are found by this finder, or in stock gevent's test packages
        package.__file__ = ferrovent.__file__
        package.__ferrovent__ = True
        return package

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname == "gevent":
            return importlib.util.spec_from_loader("gevent", _AliasLoader(self.package), is_package=True)
        if not fullname.startswith("gevent."):
            return None
        if fullname in _FROM_STOCK_GEVENT:
            locations = _stock_gevent_locations()
            return importlib.machinery.PathFinder.find_spec(fullname, locations) if locations else None
        if fullname.startswith(tuple(package + "." for package in _FROM_STOCK_GEVENT)):
            return None  # inside stock gevent's test packages: the ordinary finders, on their __path__
        target_name = "ferrovent." + fullname[len("gevent.") :]
        if importlib.util.find_spec(target_name) is None:
            return None  # ModuleNotFoundError for gevent.X, as for ferrovent.X
        module = importlib.import_module(target_name)
        is_package = hasattr(module, "__path__")
        return importlib.util.spec_from_loader(fullname, _AliasLoader(module), is_package=is_package)


def _is_ferrovents(module) -> bool:
    return getattr(module, "__ferrovent__", False) or getattr(module, "__name__", "").startswith("ferrovent.")


def _foreign_gevent_modules() -> list[str]:
    """Names under ``gevent`` already imported from somewhere other than this alias (or `register_monkey`)."""
    if _is_ferrovents(sys.modules.get("gevent")):
        return []
    return sorted(
        name
        for name, module in sys.modules.items()
        if (name == "gevent" or name.startswith("gevent.")) and not _is_ferrovents(module)
    )


def _installed_finder() -> GeventAliasFinder | None:
    return next((finder for finder in sys.meta_path if isinstance(finder, GeventAliasFinder)), None)


def installed() -> bool:
    """Whether ``import gevent`` gives ferrovent in this process."""
    return _installed_finder() is not None


def find_spec(fullname: str, path=None, target=None):
    """The installed alias's answer for ``fullname`` (None when the alias is not installed)."""
    finder = _installed_finder()
    return finder.find_spec(fullname, path, target) if finder else None


def install_as_gevent() -> None:
    """Makes ``import gevent`` and every ``gevent.X`` give ferrovent's modules from now on. Idempotent.

    Raises RuntimeError if stock gevent was already imported in this process: its hub would run beside ours.
    """
    if installed():
        return
    foreign = _foreign_gevent_modules()
    if foreign:
        raise RuntimeError(
            "stock gevent is already imported in this process "
            f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); call ferrovent.install_as_gevent() "
            f"before anything imports gevent, or set {ENVIRONMENT_SWITCH}=1 in the environment"
        )
    sys.meta_path.insert(0, GeventAliasFinder())


def install_from_environment() -> None:
    """Installs the alias if the environment asks for it (called at start-up by ferrovent-as-gevent.pth)."""
    if os.environ.get(ENVIRONMENT_SWITCH, "") in ("", "0"):
        return
    try:
        install_as_gevent()
    except Exception as exc:  # start-up must go on: say why ferrovent is not gevent in this process
        message = f"{ENVIRONMENT_SWITCH} is set but ferrovent could not be installed as gevent: {exc}"
        warnings.warn(message, RuntimeWarning, stacklevel=1)


class _StockGeventWatcher(importlib.abc.MetaPathFinder):
    """Warns once if stock gevent gets imported later; finds nothing itself."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname == "gevent" and not installed():
            sys.meta_path.remove(self)
            _warn_stock_gevent(["gevent"])
            if _is_ferrovents(sys.modules.get("gevent.monkey")):
                return _stock_gevent_with_its_monkey()
        return None


def _stock_gevent_with_its_monkey():
    """Stock gevent's spec, loading its own ``gevent.monkey`` in place of `register_monkey`'s entry: the statement
    ``import gevent.monkey`` looked that entry up before importing gevent, so the attribute must be there after."""
    stock = importlib.machinery.PathFinder.find_spec("gevent")
    if stock is None:
        return None  # no stock gevent: the entry stays, for libraries that ask later
    del sys.modules["gevent.monkey"]
    locations = stock.submodule_search_locations
    loader = _StockLoaderThenMonkey(stock)
    return importlib.util.spec_from_file_location(
        "gevent", stock.origin, loader=loader, submodule_search_locations=locations
    )


class _StockLoaderThenMonkey(importlib.abc.Loader):
    def __init__(self, stock_spec) -> None:
        self.stock_spec = stock_spec

    def create_module(self, spec):
        return self.stock_spec.loader.create_module(self.stock_spec)

    def exec_module(self, module) -> None:
        module.__spec__, module.__loader__ = self.stock_spec, self.stock_spec.loader
        self.stock_spec.loader.exec_module(module)
        importlib.import_module("gevent.monkey")


def _warn_stock_gevent(names: list[str]) -> None:
    warnings.warn(
        f"stock gevent ({', '.join(names[:3])}) is imported beside ferrovent: code that waits in gevent's hub blocks "
        f"every ferrovent greenlet meanwhile. Call ferrovent.install_as_gevent() first, or set {ENVIRONMENT_SWITCH}=1, "
        "so that gevent means ferrovent.",
        RuntimeWarning,
        stacklevel=4,
    )


def register_monkey() -> None:
    """After patching: ``sys.modules["gevent.monkey"]`` is ferrovent's monkey, unless stock gevent is imported.

    Libraries look there, without importing gevent, to learn whether the stdlib was made cooperative: psycopg 3
    then waits through the patched ``select`` instead of blocking the whole loop in its C wait function. The
    answer is true: ferrovent's ``is_module_patched`` reports ferrovent's own patches. It is also the module
    ``import gevent.monkey`` gives once ferrovent is installed as gevent.
    """
    if "gevent.monkey" in sys.modules or _foreign_gevent_modules():
        return
    sys.modules["gevent.monkey"] = sys.modules["ferrovent.monkey"]


def warn_about_stock_gevent() -> None:
    """After patching: warns now if stock gevent is imported beside ferrovent, or later if it gets imported."""
    if installed():
        return
    foreign = _foreign_gevent_modules()
    if foreign:
        _warn_stock_gevent(foreign)
    elif not any(isinstance(finder, _StockGeventWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _StockGeventWatcher())

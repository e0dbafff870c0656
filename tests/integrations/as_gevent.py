"""Runs a program with ferrovent installed as ``gevent`` and stock gevent out of reach, for the real-library tests.

``python -m tests.integrations.as_gevent MODULE ARGS...`` installs the alias, puts a
blocker right behind it on ``sys.meta_path`` (any ``gevent`` name the alias does not answer fails instead of falling
through to stock gevent, which is installed as a test dependency), then runs the program as ``__main__``. Forked
children (gunicorn's workers) inherit both. `proof` is what the program reports back to the test.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import runpy
import sys

import ferrovent


class StockGeventBlocker(importlib.abc.MetaPathFinder):
    """Refuses every ``gevent`` name that reaches it: the alias in front of it answers all of ferrovent's."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname == "gevent" or fullname.startswith("gevent."):
            raise ModuleNotFoundError(f"stock gevent is blocked in this test process: {fullname}", name=fullname)
        return None


def block_stock_gevent() -> None:
    """Right behind the alias (or ``FERROVENT_AS_GEVENT``'s start-up hook), in front of the path finders."""
    sys.meta_path.insert(1, StockGeventBlocker())


def install() -> None:
    ferrovent.install_as_gevent()
    block_stock_gevent()


@functools.cache
def _stock_gevent_directories() -> tuple[str, ...]:
    spec = importlib.machinery.PathFinder.find_spec("gevent")
    locations = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    return tuple({path for location in locations for path in (location, os.path.realpath(location))})


def proof() -> str:
    """``"ferrovent"`` when ``gevent`` is ferrovent and no module of stock gevent is loaded; else what is wrong."""
    import gevent

    if not getattr(gevent, "__ferrovent__", False):
        return f"gevent is not ferrovent: {gevent!r}"
    stock = tuple(directory + os.sep for directory in _stock_gevent_directories())
    loaded = [
        name
        for name, module in list(sys.modules.items())
        if stock and (getattr(module, "__file__", None) or "").startswith(stock)
    ]
    return f"stock gevent modules loaded: {loaded}" if loaded else "ferrovent"


if __name__ == "__main__":
    install()
    sys.argv[:] = sys.argv[1:]
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)

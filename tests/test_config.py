"""ferrovent.config (gevent.config): settings from code and from GEVENT_* variables, honoured or refused."""

from __future__ import annotations

import pytest
from ferrovent import _config, config

from tests.child import run_child


def test_defaults_and_attribute_access():
    from ferrovent.hub import Loop
    from ferrovent.resolver.thread import Resolver as ThreadResolver
    from ferrovent.threadpool import ThreadPool

    fresh = _config.Config()
    assert fresh.resolver is ThreadResolver
    assert fresh.threadpool is ThreadPool
    assert fresh.loop is Loop
    assert (fresh.max_blocking_time, fresh.monitor_thread, fresh.track_greenlet_tree) == (0.1, False, True)
    assert sorted(dir(config)) == sorted(config.settings)
    with pytest.raises(AttributeError, match="No configuration setting"):
        _ = config.no_such_setting
    with pytest.raises(AttributeError):
        config.set("no such setting", 1)


def test_set_in_code_by_short_name_path_or_object():
    from ferrovent.resolver.blocking import Resolver as BlockingResolver

    fresh = _config.Config()
    fresh.resolver = "block"
    assert fresh.resolver is BlockingResolver
    fresh.set("resolver", "gevent.resolver.blocking.Resolver")  # gevent's paths mean ferrovent's modules
    assert fresh.resolver is BlockingResolver
    fresh.resolver = BlockingResolver
    assert fresh.resolver is BlockingResolver


def test_environment(monkeypatch):
    from ferrovent.resolver.blocking import Resolver as BlockingResolver

    monkeypatch.setenv("GEVENT_RESOLVER", "nosuch.module.Resolver,ares,block")  # first usable wins
    monkeypatch.setenv("GEVENT_MONITOR_MEMORY_MAX", "2mb")
    monkeypatch.setenv("GEVENT_MAX_BLOCKING_TIME", "0.5")
    monkeypatch.setenv("GEVENT_TRACK_GREENLET_TREE", "off")
    fresh = _config.Config()
    assert fresh.resolver is BlockingResolver
    assert fresh.max_memory_usage == 2 * 1024 * 1024
    assert fresh.max_blocking_time == 0.5
    assert fresh.track_greenlet_tree is False
    monkeypatch.setenv("GEVENT_RESOLVER", "thread")
    assert fresh.resolver is BlockingResolver  # read once, then kept


@pytest.mark.parametrize(
    "variable, value, setting, message",
    [
        ("GEVENT_LOOP", "libev-cext", "loop", "loop is its own"),
        ("GEVENT_LOOP", "libuv", "loop", "loop is its own"),
        ("GEVENT_BACKEND", "select", "libev_backend", "no libev backend"),
    ],
)
def test_values_that_mean_nothing_on_ferrovent_are_refused(monkeypatch, variable, value, setting, message):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=message):
        getattr(_config.Config(), setting)
    with pytest.raises(ValueError, match=message):
        _config.Config().set(setting, value)


@pytest.mark.parametrize("value, message", [("ares", "no c-ares resolver"), ("dnspython", "no dnspython resolver")])
def test_gevents_other_resolvers_do_not_import(monkeypatch, value, message):
    monkeypatch.setenv("GEVENT_RESOLVER", value)
    with pytest.raises(ImportError, match=message):
        _ = _config.Config().resolver
    with pytest.raises(ImportError, match=message):
        _config.Config().set("resolver", value)


def test_invalid_values():
    fresh = _config.Config()
    with pytest.raises(ValueError, match="Invalid boolean"):
        fresh.track_greenlet_tree = "maybe"
    with pytest.raises(ValueError, match="positive"):
        fresh.max_blocking_time = -1
    with pytest.raises(ImportError, match="Cannot import"):
        fresh.threadpool = "no_dots"


RESOLVER_AND_POOL = """
import sys
from ferrovent import config, monkey
from ferrovent.threadpool import ThreadPool

jobs = []

class CountingPool(ThreadPool):
    def spawn(self, func, *args, **kwargs):
        jobs.append(func.__name__)
        return super().spawn(func, *args, **kwargs)

config.threadpool = CountingPool
config.resolver = sys.argv[1]
monkey.patch_all()
import socket
socket.getfqdn("127.0.0.1")
print(jobs)
"""


def test_resolver_and_threadpool_settings_are_honoured():
    # 'thread': the lookup runs in the hub's pool, of the configured class; 'block': in the calling thread.
    assert run_child(RESOLVER_AND_POOL, "thread").stdout == "['_fqdn']\n"
    assert run_child(RESOLVER_AND_POOL, "block").stdout == "[]\n"


def test_gevent_config_is_ferrovents_under_the_alias():
    out = run_child(
        """
        import ferrovent
        ferrovent.install_as_gevent()
        import gevent
        from gevent import config
        from gevent import _config
        print(gevent.config is ferrovent.config is config is _config.config)
        """
    ).stdout
    assert out == "True\n"

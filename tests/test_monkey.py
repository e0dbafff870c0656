"""ferrovent.monkey: patch_all and the patch_* functions, get_original, the queries, python -m ferrovent.monkey."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.child import ROOT, run_child

CHILD = """
import importlib, sys
monkey = importlib.import_module(sys.argv[1] + ".monkey")
monkey.patch_socket()
import socket
a, b = socket.socketpair()
a.sendall(b"ping")
print(b.recv(4).decode())
"""


@pytest.mark.timeout(30)
def test_patch_socket_runs(impl_name):
    # In a subprocess: patching this test process's socket module would leak into every later test.
    proc = subprocess.run([sys.executable, "-c", CHILD, impl_name], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ping\n"
    assert proc.stderr == ""


# -- ferrovent.monkey itself, each test in a fresh interpreter (patching is process-wide) ----------------------

PATCHED_NAMES = """
import json, select, selectors, socket, ssl, time, warnings
from ferrovent import monkey
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    first = monkey.patch_all()
import ferrovent.resolver, ferrovent.select, ferrovent.selectors, ferrovent.socket, ferrovent.ssl, ferrovent.time

def state():
    return {
        "socket": socket.socket is ferrovent.socket.socket,
        "dns": socket.getaddrinfo is ferrovent.resolver.getaddrinfo and socket.getfqdn is ferrovent.resolver.getfqdn,
        "original socket": monkey.get_original("socket", "socket") is monkey.get_original("_socket", "socket")
        or monkey.get_original("socket", "socket").__module__ == "socket",
        "time": time.sleep is ferrovent.time.sleep,
        "select": select.select is ferrovent.select.select and not hasattr(select, "epoll"),
        "original epoll": monkey.get_original("select", "epoll") is not None,
        "selectors": selectors.DefaultSelector is ferrovent.selectors.DefaultSelector
        and selectors.DefaultSelector is ferrovent.selectors.GeventSelector
        and getattr(selectors, "EpollSelector", None) is getattr(ferrovent.selectors, "EpollSelector", None),
        "ssl": ssl.SSLContext is ferrovent.ssl.SSLContext,
        "queries": monkey.is_module_patched("socket") and monkey.is_object_patched("socket", "socket")
        and not monkey.is_object_patched("socket", "no_such_name") and monkey.is_module_patched("threading"),
    }

before = state()
original = monkey.get_original("socket", "socket")
again = [monkey.patch_all(), monkey.patch_socket(), monkey.patch_ssl(), monkey.patch_select(), monkey.patch_time()]
print(json.dumps({
    "first": first,
    "again": again,
    "state": before,
    "unchanged": state() == before and monkey.get_original("socket", "socket") is original,
    "warnings": [str(w.message) for w in caught],
}))
"""


def test_patch_all_patches_in_place_and_again_changes_nothing():
    report = json.loads(run_child(PATCHED_NAMES).stdout)
    assert report["first"] is True
    assert report["again"] == [None] * 5  # nothing new to do; the originals are still the first ones
    assert report["state"] == {name: True for name in report["state"]}, report["state"]
    assert report["unchanged"]
    assert report["warnings"] == []  # patched before anything imported ssl: nothing to warn about


def test_patched_modules_cooperate():
    proc = run_child(
        """
        from ferrovent import monkey; monkey.patch_all()
        import selectors, socket, time
        import ferrovent

        start = time.monotonic()
        ferrovent.joinall([ferrovent.spawn(time.sleep, 0.2) for _ in range(5)])
        slept = time.monotonic() - start

        def wait_with(selector_class):
            a, b = socket.socketpair()
            with selector_class() as selector:
                selector.register(a, selectors.EVENT_READ)
                writer = ferrovent.spawn_later(0.05, b.send, b"x")  # runs only if select() lets the loop run
                events = selector.select(timeout=5)
            writer.join()
            return [key.fileobj is a for key, _ in events]

        print(slept < 0.4, wait_with(selectors.DefaultSelector), wait_with(selectors.SelectSelector))
        """
    )
    assert proc.stdout == "True [True] [True]\n"


def test_patching_again_with_other_arguments_adds_and_warns():
    proc = run_child(
        """
        import select, ssl, warnings
        from ferrovent import monkey
        assert monkey.patch_all(ssl=False, select=False) is True
        print(monkey.is_module_patched("ssl"), monkey.is_module_patched("select"), hasattr(select, "epoll"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            print(monkey.patch_all())
        print(monkey.is_module_patched("ssl"), monkey.is_module_patched("select"), hasattr(select, "epoll"))
        print([(w.category.__name__, "union" in str(w.message)) for w in caught])
        """
    )
    assert proc.stdout.splitlines() == [
        "False False True",
        "True",
        "True True False",
        "[('MonkeyPatchWarning', True)]",
    ]


def test_patch_select_without_aggressive_keeps_epoll():
    proc = run_child(
        """
        import select
        from ferrovent import monkey
        import ferrovent.select
        monkey.patch_select(aggressive=False)
        print(select.select is ferrovent.select.select, hasattr(select, "epoll"))
        """
    )
    assert proc.stdout == "True True\n"


def test_patch_socket_without_dns_keeps_the_resolver():
    proc = run_child(
        """
        import socket
        from ferrovent import monkey
        import ferrovent.socket
        original = socket.getaddrinfo
        monkey.patch_socket(dns=False)
        print(socket.socket is ferrovent.socket.socket, socket.getaddrinfo is original,
              monkey.is_object_patched("socket", "getaddrinfo"))
        monkey.patch_dns()
        print(socket.getaddrinfo is ferrovent.socket.getaddrinfo,
              monkey.get_original("socket", "getaddrinfo") is original)
        """
    )
    assert proc.stdout.splitlines() == ["True True False", "True True"]


def test_every_patch_all_keyword_is_accepted_and_threading_keeps_its_classes():
    proc = run_child(
        """
        import threading
        from ferrovent import monkey
        print(monkey.patch_all(thread=True, Event=True, subprocess=True, signal=True, queue=True, sys=True,
                               builtins=True, contextvars=True, plugin_option=True))
        print(monkey.is_module_patched("threading"), threading.Thread.__module__)
        """
    )
    assert proc.stdout.splitlines() == ["True", "True threading"]


STALE_SSL = """
import ssl, warnings
from ssl import SSLContext  # a direct reference that patching cannot reach

class Mine(ssl.SSLContext):
    pass

from ferrovent import monkey
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    monkey.patch_all()
    monkey.patch_ssl()  # a second time: no second warning
for w in caught:
    print(w.category.__name__, issubclass(w.category, RuntimeWarning), w.filename)
    print(w.message)
"""


def test_patching_ssl_late_names_the_stale_references():
    lines = run_child(STALE_SSL).stdout.splitlines()
    assert len(lines) == 2, lines
    assert lines[0] == "MonkeyPatchWarning True <string>"  # attributed to the caller of patch_all
    assert "Modules that had direct imports (NOT patched): __main__" in lines[1]  # gevent's wording
    assert "Subclasses (NOT patched): __main__.Mine" in lines[1]


def test_ssl_imported_early_without_stale_references_does_not_warn():
    proc = run_child(
        """
        import ssl, warnings
        from ferrovent import monkey
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monkey.patch_all()
        print(ssl.SSLContext.__module__, [str(w.message) for w in caught])
        """
    )
    assert proc.stdout == "ferrovent.ssl []\n"


def test_get_original():
    proc = run_child(
        """
        import os, socket
        from ferrovent import monkey
        original = socket.socket
        monkey.patch_socket()
        print(monkey.get_original("socket", "socket") is original)
        found = monkey.get_original(("no_such_module_anywhere", "socket"), ["socket", "AF_INET"])
        print(found == [original, socket.AF_INET])
        print(monkey.get_original("os", "getcwd") is os.getcwd)  # never patched: the current object
        try:
            monkey.get_original("no_such_module_anywhere", "x")
        except ImportError:
            print("ImportError")
        """
    )
    assert proc.stdout.splitlines() == ["True", "True", "True", "ImportError"]


SCRIPT = """
import json, os, socket, ssl, sys
from ferrovent import monkey
print(json.dumps({
    "name": __name__,
    "argv": sys.argv,
    "path0": sys.path[0],
    "socket": monkey.is_module_patched("socket"),
    "ssl": monkey.is_module_patched("ssl"),
    "one module": sys.modules["ferrovent.monkey"] is monkey,
    "original kept": monkey.get_original("socket", "socket") is not socket.socket,
}))
"""


def test_python_m_ferrovent_monkey_runs_a_patched_script(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "ferrovent.monkey", "--no-ssl", str(script), "a", "--b"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "name": "__main__",
        "argv": [str(script), "a", "--b"],
        "path0": str(tmp_path),
        "socket": True,
        "ssl": False,
        "one module": True,
        "original kept": True,
    }


def test_python_m_ferrovent_monkey_runs_a_module(tmp_path):
    (tmp_path / "patched_mod.py").write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "-m", "ferrovent.monkey", "--socket", "--module", "patched_mod", "x"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["name"] == "__main__" and report["argv"][1:] == ["x"]
    assert report["socket"] and not report["ssl"] and report["one module"]


def test_python_m_ferrovent_monkey_without_a_target_prints_usage():
    # As gevent's: the usage on stdout, and a successful exit; an unknown option is an error.
    proc = subprocess.run([sys.executable, "-m", "ferrovent.monkey"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: python -m ferrovent.monkey")
    proc = subprocess.run(
        [sys.executable, "-m", "ferrovent.monkey", "--no-such-module", "x.py"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Cannot patch 'no-such-module'" in proc.stderr

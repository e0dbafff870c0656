"""ferrovent.events (gevent.events) and the events monkey-patching emits: subscribers, their order, DoNotPatch,
entry-point plugins, and the interfaces with and without zope.interface. Each patching test runs in a fresh
interpreter (patching is process-wide)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.child import ROOT, run_child

EVENT_ORDER = """
import importlib, json, sys
events = importlib.import_module(sys.argv[1] + ".events")
monkey = importlib.import_module(sys.argv[1] + ".monkey")
seen = []
events.subscribers.append(lambda event: seen.append([type(event).__name__, getattr(event, "module_name", "")]))
result = monkey.patch_all(mylib_option=42)
print(json.dumps({"result": result, "seen": seen}))
"""


def _event_order(impl_name: str) -> dict:
    return json.loads(run_child(EVENT_ORDER, impl_name).stdout.splitlines()[-1])


@pytest.mark.timeout(60)
def test_patch_all_emits_the_events_in_gevents_order():
    ferrovent, gevent = _event_order("ferrovent"), _event_order("gevent")
    assert ferrovent["result"] is True and gevent["result"] is True
    # gevent names _thread's did-patch event "thread"; its documentation says module_name is target.__name__.
    gevent_seen = [[kind, "_thread" if name == "thread" else name] for kind, name in gevent["seen"]]
    assert ferrovent["seen"] == gevent_seen
    assert ferrovent["seen"][0] == ["GeventWillPatchAllEvent", ""]
    assert ferrovent["seen"][-2:] == [["GeventDidPatchBuiltinModulesEvent", ""], ["GeventDidPatchAllEvent", ""]]
    patched = [name for kind, name in ferrovent["seen"] if kind == "GeventDidPatchModuleEvent"]
    assert patched[:3] == ["os", "_thread", "threading"] and "socket" in patched and "ssl" in patched


def test_subscriber_vetoes_one_module_or_everything():
    out = run_child(
        """
        from ferrovent import events, monkey
        def no_ssl(event):
            if isinstance(event, events.GeventWillPatchModuleEvent) and event.module_name == "ssl":
                raise events.DoNotPatch
        events.subscribers.append(no_ssl)
        print(monkey.patch_all(), monkey.is_module_patched("ssl"), monkey.is_module_patched("socket"))
        monkey.patch_ssl()  # a direct call is vetoed too
        print(monkey.is_module_patched("ssl"))
        """
    ).stdout.split("\n")
    assert out[0] == "True False True"
    assert out[1] == "False"
    out = run_child(
        """
        from ferrovent import events, monkey
        seen = []
        def nothing(event):
            seen.append(type(event).__name__)
            if isinstance(event, events.GeventWillPatchAllEvent):
                assert event.will_patch_module("socket") and event.patch_all_kwargs == {"mine": 1}
                raise events.DoNotPatch
        events.subscribers.append(nothing)
        print(monkey.patch_all(mine=1), monkey.is_module_patched("socket"), seen)
        """
    ).stdout
    assert out == "False False ['GeventWillPatchAllEvent']\n"


def test_subscribers_are_zope_events_when_installed():
    zope_event = pytest.importorskip("zope.event")
    from ferrovent import events

    assert events.subscribers is zope_event.subscribers
    seen = []
    events.subscribers.append(seen.append)
    try:
        zope_event.notify("hello")
    finally:
        events.subscribers.remove(seen.append)
    assert seen == ["hello"]


def test_events_implement_their_interfaces():
    verify = pytest.importorskip("zope.interface.verify")
    from ferrovent import events

    verify.verifyObject(events.IMemoryUsageUnderThreshold, events.MemoryUsageUnderThreshold(1, 2, None, 3))
    verify.verifyObject(events.IEventLoopBlocked, events.EventLoopBlocked(None, 0.5, ["line"]))
    verify.verifyObject(events.IGeventWillPatchAllEvent, events.GeventWillPatchAllEvent({"os": True}, {}))
    assert events.IGeventWillPatchEvent.providedBy(events.GeventWillPatchModuleEvent("os", None, None, []))
    assert repr(events.MemoryUsageThresholdExceeded(10, 5, "info")).startswith("<MemoryUsageThresholdExceeded used=10")


def test_events_work_without_zope():
    out = run_child(
        """
        import sys
        for name in ("zope", "zope.event", "zope.interface"):
            sys.modules[name] = None  # as if not installed
        from ferrovent import events, monkey
        seen = []
        events.subscribers.append(seen.append)
        monkey.patch_all()
        will_all = seen[0]
        print(type(will_all).__name__, events.IGeventWillPatchAllEvent.providedBy(will_all),
              events.IGeventDidPatchEvent.providedBy(will_all), events.IGeventPatchEvent.providedBy(seen[-1]))
        print(events.IEventLoopBlocked.implementedBy(events.EventLoopBlocked), events.IEventLoopBlocked.__doc__)
        """
    ).stdout.splitlines()
    assert out[0] == "GeventWillPatchAllEvent True False True"
    assert out[1].startswith("True Emitted (in the monitoring thread)")


PLUGIN = """
from ferrovent import events

calls = []

def after_builtins(event):
    import socket
    calls.append((type(event).__name__, event.patch_all_kwargs, "ferrovent" in repr(socket.socket)))
"""


def test_entry_point_plugins_run_and_stock_gevents_own_are_skipped(tmp_path):
    # A distribution registering a plugin under gevent's entry-point name, as psycogreen-style packages do.
    (tmp_path / "myplugin.py").write_text(PLUGIN)
    dist_info = tmp_path / "myplugin-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        "[gevent.plugins.monkey.did_patch_builtins]\nmine = myplugin:after_builtins\n"
    )
    out = run_child(
        """
        import sys
        sys.path.insert(0, sys.argv[1])
        from ferrovent import monkey
        monkey.patch_all(mylib=True)
        import myplugin
        # stock gevent's own plugin (gevent.monkey:_subscribe_signal_os) would have imported stock gevent.
        print(myplugin.calls, "gevent" in sys.modules)
        """,
        str(tmp_path),
    ).stdout
    assert out == "[('GeventDidPatchBuiltinModulesEvent', {'mylib': True}, True)] False\n"


def test_patch_module_and_saved():
    out = run_child(
        """
        import types, warnings
        from ferrovent import events, monkey
        target = types.ModuleType("target")
        target.f = "old f"
        source = types.ModuleType("source")
        source.__implements__ = ["f"]
        source.f = "new f"
        seen = []
        events.subscribers.append(lambda e: seen.append((type(e).__name__, e.module_name)))
        print(monkey.is_anything_patched(), monkey.patch_module(target, source), target.f)
        print(monkey.get_original("target", "f"), monkey.is_object_patched("target", "f"), monkey.saved["target"])
        print(seen)
        try:
            monkey.patch_module(target, types.ModuleType("bare"))
        except AttributeError as exc:
            print("AttributeError", "__implements__" in str(exc))
        print(monkey.patch_sys(), monkey.patch_builtins())
        monkey.remove_item(target, "f")  # the plugin helpers gevent exposes
        monkey.patch_item(target, "g", 1)
        print(hasattr(target, "f"), monkey.get_original("target", "f"), target.g)
        print(monkey.is_object_patched("target", "g"))
        """
    ).stdout.splitlines()
    assert out[0] == "False True new f"
    assert out[1] == "old f True {'f': 'old f'}"
    assert out[2] == "[('GeventWillPatchModuleEvent', 'target'), ('GeventDidPatchModuleEvent', 'target')]"
    assert out[3] == "AttributeError True"
    assert out[4] == "None None"
    assert out[5:] == ["False old f 1", "False"]  # g did not exist before: nothing original to record


def test_patch_all_records_its_arguments_in_saved():
    out = run_child(
        """
        from ferrovent import monkey
        monkey.patch_all(ssl=False)
        print(monkey.saved["_gevent_saved_patch_all_module_settings"]["ssl"], monkey.is_module_patched("ssl"))
        print(monkey.patch_all(ssl=False), monkey.patch_all(), monkey.is_module_patched("ssl"))
        """
    ).stdout.splitlines()
    assert out == ["False False", "None True True"]


@pytest.mark.timeout(60)
def test_python_m_gevent_monkey_under_the_alias(tmp_path):
    # A sitecustomize installing the alias stands in for FERROVENT_AS_GEVENT=1 (whose .pth only a wheel installs).
    (tmp_path / "sitecustomize.py").write_text("import ferrovent\nferrovent.install_as_gevent()\n")
    script = tmp_path / "script.py"
    script.write_text("import socket, sys\nprint(socket.socket.__module__, sys.argv[1:], __name__)\n")
    proc = subprocess.run(
        [sys.executable, "-m", "gevent.monkey", "--no-ssl", str(script), "arg"],
        cwd=ROOT,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ferrovent.socket ['arg'] __main__\n"

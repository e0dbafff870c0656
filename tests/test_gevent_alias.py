"""ferrovent installed as ``gevent``: ``install_as_gevent()`` and the ``FERROVENT_AS_GEVENT`` start-up switch.

Each scenario runs in a fresh interpreter: the alias changes how a whole process imports.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import ferrovent
import pytest

pytestmark = pytest.mark.timeout(60)


def run_python(code: str, env_switch: str | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "FERROVENT_AS_GEVENT"}
    if env_switch is not None:
        env["FERROVENT_AS_GEVENT"] = env_switch
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=50, env=env
    )


def assert_ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_gevent_modules_are_ferrovents_own_modules():
    out = assert_ok(
        run_python(
            """
            import ferrovent
            ferrovent.install_as_gevent()
            import gevent, gevent.socket, gevent.monkey, gevent.pool, gevent.pywsgi
            from gevent.event import Event
            import ferrovent.socket, ferrovent.monkey, ferrovent.pool, ferrovent.pywsgi, ferrovent.event
            assert gevent.socket is ferrovent.socket and gevent.monkey is ferrovent.monkey
            assert gevent.pool is ferrovent.pool and gevent.pywsgi is ferrovent.pywsgi
            assert Event is ferrovent.event.Event
            assert gevent.spawn is ferrovent.spawn and gevent.Greenlet is ferrovent.Greenlet
            assert gevent.get_hub() is ferrovent.get_hub()  # one hub, whichever name reaches it
            assert ferrovent.monkey.__spec__.name == "ferrovent.monkey"
            done = []
            gevent.joinall([gevent.spawn(done.append, n) for n in range(3)])
            print(done, gevent.__version__, gevent.version_info[:3], ferrovent.__version__)
            """
        )
    )
    assert out.split() == ["[0,", "1,", "2]", "26.9.0", "(26,", "9,", "0)", ferrovent.__version__]


def test_the_gevent_modules_dict_holds_the_public_names():
    # uWSGI's gevent plugin reads gevent.__dict__ from C, where a module __getattr__ does not answer.
    out = assert_ok(
        run_python(
            """
            import ferrovent
            ferrovent.install_as_gevent()
            import gevent
            names = ("spawn", "sleep", "get_hub", "getcurrent", "signal_handler", "version_info")
            in_dict = all(vars(gevent)[name] is getattr(gevent, name) for name in names)
            print(in_dict, vars(gevent)["spawn"] is ferrovent.spawn)
            """
        )
    )
    assert out.split() == ["True", "True"]


def test_a_gevent_module_ferrovent_lacks_is_not_found():
    out = assert_ok(
        run_python(
            """
            import ferrovent
            ferrovent.install_as_gevent()
            try:
                import gevent.no_such_module
            except ModuleNotFoundError as exc:
                print(exc.name)
            """
        )
    )
    assert out.strip() == "gevent.no_such_module"


def test_installing_after_stock_gevent_was_imported_refuses():
    done = run_python(
        """
        import gevent
        import ferrovent
        ferrovent.install_as_gevent()
        """
    )
    assert done.returncode != 0
    assert "stock gevent is already imported" in done.stderr


def test_patch_all_warns_when_stock_gevent_is_or_gets_imported():
    for order in ("import gevent\nmonkey.patch_all()", "monkey.patch_all()\nimport gevent"):
        out = assert_ok(
            run_python(
                "import warnings\nwarnings.simplefilter('always')\nfrom ferrovent import monkey\n" + order + "\n"
                "print(gevent.__file__)"
            )
        )
        assert "site-packages" in out or "dist-packages" in out
    done = run_python("from ferrovent import monkey\nmonkey.patch_all()\nimport gevent")
    assert "stock gevent" in done.stderr and "FERROVENT_AS_GEVENT=1" in done.stderr


def _startup_hook_installed() -> bool:
    return any((Path(folder) / "ferrovent-as-gevent.pth").exists() for folder in site.getsitepackages())


needs_startup_hook = pytest.mark.skipif(
    not _startup_hook_installed(),
    reason="ferrovent-as-gevent.pth is installed by the wheel (pip install .), not by an editable install",
)


@needs_startup_hook
def test_the_environment_switch_makes_gevent_ferrovent_from_start_up_and_in_children():
    code = """
        import subprocess, sys
        import gevent  # the entry point's first import, before any user code
        import gevent.monkey
        assert gevent.__ferrovent__ and gevent.monkey.__name__ == "ferrovent.monkey"
        child = subprocess.run([sys.executable, "-c", "import gevent; print(gevent.__ferrovent__)"],
                               capture_output=True, text=True, check=True)
        print(gevent.__version__, child.stdout.strip())
        """
    assert assert_ok(run_python(code, env_switch="1")).split() == ["26.9.0", "True"]


@needs_startup_hook
def test_without_the_switch_gevent_is_stock_gevent():
    out = assert_ok(run_python("import gevent; print(hasattr(gevent, '__ferrovent__'))", env_switch="0"))
    assert out.strip() == "False"


def test_patch_all_answers_libraries_that_ask_gevent_monkey_without_importing_gevent():
    # psycopg 3 picks its wait function this way: a blocking C wait unless gevent's monkey says select is patched.
    out = assert_ok(
        run_python(
            """
            import sys
            from ferrovent import monkey
            monkey.patch_all()
            asked = sys.modules["gevent.monkey"]
            print(asked is monkey, asked.is_module_patched("select"), "gevent" in sys.modules)
            import ferrovent
            ferrovent.install_as_gevent()  # still allowed: nothing of stock gevent is imported
            import gevent.monkey
            print(gevent.monkey is monkey, gevent.__ferrovent__)
            """
        )
    )
    assert out.split() == ["True", "True", "False", "True", "True"]


def test_stock_gevent_imported_after_patch_all_keeps_its_own_monkey():
    for order in ("import gevent.monkey\nmonkey.patch_all()", "monkey.patch_all()\nimport gevent.monkey"):
        code = "import warnings\nwarnings.simplefilter('ignore')\nfrom ferrovent import monkey\n" + order + "\n"
        out = assert_ok(
            run_python(code + "import sys\nprint(sys.modules['gevent.monkey'].__name__, gevent.monkey.__name__)")
        )
        assert out.split() == ["gevent.monkey", "gevent.monkey"]

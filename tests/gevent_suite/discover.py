"""Which of gevent's test files to run, found as gevent's own testrunner finds them, from the installed wheel.

gevent's testrunner (``gevent/testing/testrunner.py``) globs ``test_*.py`` in ``gevent/tests`` (less
``test_support.py``), drops the files its ``known_failures.py`` ignores on this platform, runs a few files alone
after the others (``RUN_ALONE``) and gives some a timeout of their own (``TEST_FILE_OPTIONS``, default 100 s). The
same rules apply here. The configuration is read in a stock-gevent subprocess, so this process never imports gevent.
"""

from __future__ import annotations

import importlib.machinery
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 100.0  # seconds per file: gevent's testrunner default

# Files gevent's testrunner treats specially, which have nothing to run from a wheel.
NOT_IN_WHEEL = {
    "test___monkey_patching.py": "runs CPython's own test suite monkey-patched, from a gevent source checkout "
    "(src/greentest); the wheel has no copy, so gevent's testrunner finds nothing to run either",
}

_READ_CONFIG = """
import json, sys
config = {}
with open(sys.argv[1]) as source:
    exec(compile(source.read(), sys.argv[1], "exec"), config)
print(json.dumps({key: config[key] for key in ("IGNORED_TESTS", "RUN_ALONE", "TEST_FILE_OPTIONS", "FAILING_TESTS")}))
"""


@dataclass(frozen=True)
class SuiteFile:
    name: str  # "test__event.py"
    timeout: float
    run_alone: bool

    @property
    def module(self) -> str:
        return "gevent.tests." + self.name[: -len(".py")]


def stock_tests_dir() -> Path | None:
    """Stock gevent's ``gevent/tests``, found without importing gevent (nor going through ferrovent's alias)."""
    spec = importlib.machinery.PathFinder.find_spec("gevent")
    if spec is None or not spec.submodule_search_locations:
        return None
    tests = Path(list(spec.submodule_search_locations)[0]) / "tests"
    return tests if (tests / "known_failures.py").is_file() else None


def known_failures(tests_dir: Path, env: dict[str, str]) -> dict:
    """gevent's ``known_failures.py`` evaluated for this platform and environment (it imports stock gevent)."""
    proc = subprocess.run(
        [sys.executable, "-c", _READ_CONFIG, str(tests_dir / "known_failures.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)


def suite_files(tests_dir: Path, config: dict, selected: list[str] | None = None) -> list[SuiteFile]:
    """The files to run, sorted; ``selected`` names files (``test__event``, ``test__event.py``) to run only those."""
    found = {path.name for path in tests_dir.glob("test_*.py")} - {"test_support.py"} - set(NOT_IN_WHEEL)
    found -= set(config["IGNORED_TESTS"])
    if selected:
        wanted = {name if name.endswith(".py") else name + ".py" for name in selected}
        unknown = wanted - found
        if unknown:
            raise SystemExit(f"not among the test files to run: {', '.join(sorted(unknown))}")
        found = wanted
    options = config["TEST_FILE_OPTIONS"]
    return [
        SuiteFile(
            name=name,
            timeout=float(options.get(name, {}).get("timeout", DEFAULT_TIMEOUT)),
            run_alone=name in config["RUN_ALONE"],
        )
        for name in sorted(found)
    ]

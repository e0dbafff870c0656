"""gevent's own tests that pass on ferrovent go on passing (the ratchet in expectations.json).

Each file listed there runs as the runner runs it (its own process, ferrovent installed as gevent, gevent's harness
stock); every test recorded as passing must still pass. Comparing with stock gevent is the runner's job
(``python -m tests.gevent_suite.runner``), too slow for every CI run. When ferrovent gains tests, the failure message
here says so; regenerate the file as expectations.py describes.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import pytest

from tests.gevent_suite import expectations
from tests.gevent_suite.discover import SuiteFile, stock_tests_dir
from tests.gevent_suite.report import cause
from tests.gevent_suite.runner import run_file, side_environment

FILE_TIMEOUT = 60.0  # seconds: every file kept ran in a few seconds when the ratchet was written

TESTS_DIR = stock_tests_dir()
EXPECTED = expectations.load()
pytestmark = pytest.mark.skipif(TESTS_DIR is None, reason="gevent's tests are not installed (pip install gevent)")


def test_expectations_match_installed_gevent():
    from importlib.metadata import version

    installed = version("gevent")
    assert installed == EXPECTED["gevent"], (
        f"expectations.json was recorded with gevent {EXPECTED['gevent']}, gevent {installed} is installed: test "
        "names may differ. Run the runner on this gevent and rewrite it (tests/gevent_suite/expectations.py)."
    )


@pytest.mark.timeout(2 * FILE_TIMEOUT + 30)  # a second run after a lost time limit, below
@pytest.mark.parametrize("name", sorted(EXPECTED["files"]))
def test_still_passing_on_ferrovent(name):
    expected = set(EXPECTED["files"][name]["passing"])
    run = _run(name)
    lost = sorted(expected - run.passing())
    if lost and all(_timed_out(run, test) for test in lost):
        # gevent's harness gives some tests a second or two (16 interpreters started in test__monkey_fork_atomic):
        # on a loaded machine that alone can fail them, on stock gevent too. Only such losses get a second run.
        run = _run(name)
        lost = sorted(expected - run.passing())
    details = "\n".join(f"  {test}: {cause(run, test)}" for test in lost[:20])
    assert not lost, f"{len(lost)} of {len(expected)} tests no longer pass ({run.status()}):\n{details}"
    gained = run.passing() - expected
    if gained:
        warnings.warn(
            f"{name}: {len(gained)} more tests pass than expectations.json lists; regenerate it", stacklevel=1
        )


def _run(name: str):
    env = side_environment("ferrovent", TESTS_DIR)
    with tempfile.TemporaryDirectory(prefix="gevent-suite-") as workdir:
        return run_file(SuiteFile(name, FILE_TIMEOUT, run_alone=False), "ferrovent", env, Path(workdir))


def _timed_out(run, test: str) -> bool:
    """Whether ``test`` was lost to a time limit (the harness's per-test timeout or the file's)."""
    text = cause(run, test)
    return "TestTimeout" in text or "timed out" in text

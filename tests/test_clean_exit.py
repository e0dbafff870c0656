"""A program patched with ``monkey.patch_all()`` exits quietly: status 0, nothing on stderr.

Each program (``clean_exit_scenarios.py``) runs in a fresh interpreter, on ferrovent and on stock gevent (through
the compat runner's alias), except where gevent cannot run it. The noise this guards against came from locks used
during interpreter finalization, when greenlet no longer answers ``getcurrent()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.compat.runner import run_script

SCRIPT = Path(__file__).with_name("clean_exit_scenarios.py")

pytestmark = pytest.mark.timeout(60)

BOTH = {
    "handler_collected_at_exit": ["logged"],
    "forked_child_exits_normally": ["child status 0"],
    "forked_child_falls_off_the_end": ["child status 0"],
    "threads_used_locks": ["threads done 3"],
    "thread_pool_used_locks": ["jobs done 3"],
    "logging_at_exit_with_a_thread_still_waiting": ["greenlet 0", "greenlet 1", "at exit"],
}


def assert_quiet_exit(impl: str, name: str, expected: list[str]) -> None:
    proc = run_script(impl, SCRIPT, name)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert proc.stdout.splitlines() == expected


@pytest.mark.parametrize("name", list(BOTH))
def test_exits_quietly(name, impl_name):
    if impl_name == "gevent" and sys.version_info < (3, 11) and name != "logging_at_exit_with_a_thread_still_waiting":
        # Stock gevent is the reference only where it is quiet itself: before CPython 3.11, logging's handler
        # clean-up at exit reaches gevent's get_ident, which raises "greenlet is being finalized".
        pytest.skip("stock gevent prints at exit on CPython < 3.11")
    assert_quiet_exit(impl_name, name, BOTH[name])


def test_exits_quietly_after_a_real_thread_used_locks():
    assert_quiet_exit("ferrovent", "real_thread_used_locks", ["real thread joined"])


def test_every_scenario_is_run():
    from tests.clean_exit_scenarios import SCENARIOS

    assert set(SCENARIOS) == {*BOTH, "real_thread_used_locks"}

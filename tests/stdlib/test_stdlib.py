"""CPython's own tests after ferrovent's patch_all(): none may fail there that passes after gevent's.

gevent is the oracle and runs live: each module runs on ferrovent, then the tests that failed there run on gevent, each
time in a process of its own (see runner.py); one after the other, since a few tests bind fixed ports. It takes minutes,
so it is not part of ``pytest tests``: run it with ``make stdlib`` (``python -m pytest tests/stdlib -m stdlib``). A
failure lists the tests that fail only on ferrovent, with the end of each traceback and the log holding the full output.
"""

from __future__ import annotations

import functools
import time

import pytest

from tests.stdlib import runner

pytestmark = pytest.mark.stdlib

# All the modules together get at most this long (they take about 5 minutes): past it, each remaining module fails
# at once instead of running, so a regression that makes every module hang cannot hold CI for hours.
SESSION_BUDGET = 20 * 60.0
_session_deadline: list[float] = []


@functools.cache
def _disabled() -> dict:
    return runner.disabled_tests()


@pytest.mark.timeout(2 * runner.MODULE_TIMEOUT + 120)
@pytest.mark.parametrize("module", runner.available_modules())
def test_nothing_fails_after_ferrovent_patch_all_that_passes_after_gevent(module, tmp_path):
    if not _session_deadline:
        _session_deadline.append(time.monotonic() + SESSION_BUDGET)
    budget = min(runner.MODULE_TIMEOUT, _session_deadline[0] - time.monotonic())
    assert budget > 0, f"the stdlib suite's {SESSION_BUDGET:.0f} s are spent: {module} was not run"
    ferrovent, _gevent, regressions = runner.ferrovent_regressions(module, tmp_path, _disabled(), budget)
    assert ferrovent.status in ("ok", "skipped"), (
        f"ferrovent's run of {module}: {ferrovent.status}; see {ferrovent.log}"
    )
    assert regressions == [], runner.describe_failures(ferrovent, regressions)

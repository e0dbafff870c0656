"""Every scenario in scenarios.py, run on stock gevent and on ferrovent, each in a fresh process.

Both halves must produce the expected trace (so the test cannot pass when both are broken the same way), the
ferrovent half must also equal gevent's actual trace, and the hub must report exactly the expected errors.
Run only the oracle half with ``pytest tests/compat -k gevent``.
"""

from __future__ import annotations

import re

import pytest

from tests.compat.runner import gevent_result, run_scenario
from tests.compat.scenarios import SCENARIOS


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name, impl_name):
    expected = SCENARIOS[name]
    result = run_scenario(impl_name, name)
    assert result.trace == expected.expected, result.stderr
    assert result.reports == list(expected.reports), result.stderr
    if not expected.reports:
        assert result.stderr == ""
    if impl_name != "gevent":
        oracle = gevent_result(name)
        assert result.trace == oracle.trace
        assert result.reports == oracle.reports


@pytest.mark.timeout(60)
def test_failing_greenlet_report_format(impl_name):
    stderr = run_scenario(impl_name, "failing_greenlet_is_reported_and_others_go_on").stderr
    # gevent prefixes the context line with a timestamp; the rest of the line is fixed.
    context = re.compile(r"^(?:\S+ )?<Greenlet at 0x[0-9a-f]+: f\(5\)> failed with ValueError$", re.MULTILINE)
    assert len(context.findall(stderr)) == 1, stderr
    assert stderr.count("Traceback (most recent call last):") == 1, stderr
    assert re.search(r"line \d+, in f\n", stderr), stderr
    assert "ValueError: bad 5" in stderr
    assert stderr.index("Traceback") < stderr.index("ValueError: bad 5") < stderr.index("failed with ValueError")

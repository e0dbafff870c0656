"""The runner's reading of a report: the list of every test passing on stock gevent and not on ferrovent."""

from __future__ import annotations

from tests.gevent_suite import report
from tests.gevent_suite.outcomes import FileRun, Outcome

FAILURE = "Traceback (most recent call last):\n  File \"t.py\", line 3, in test\nKeyError: 'libev-cext'\n"


def _run(side: str, file: str, outcomes: dict[str, str], completed: bool = True) -> FileRun:
    detail = {"fail": FAILURE, "error": FAILURE, "skip": "needs libev", "pass": ""}
    return FileRun(
        file,
        side,
        0,
        1.0,
        True,
        completed,
        {test: Outcome(kind, detail[kind]) for test, kind in outcomes.items()},
    )


def test_failing_list_names_every_lost_test_by_file_with_its_cause(capsys):
    results = {
        "gevent": {
            "test__a.py": _run("gevent", "test__a.py", {"T.test_kept": "pass", "T.test_lost": "pass"}),
            "test__b.py": _run("gevent", "test__b.py", {"T.test_skipped": "pass", "T.test_absent": "pass"}),
            "test__c.py": _run("gevent", "test__c.py", {"T.test_both_fail": "fail"}),
        },
        "ferrovent": {
            "test__a.py": _run("ferrovent", "test__a.py", {"T.test_kept": "pass", "T.test_lost": "error"}),
            "test__b.py": _run("ferrovent", "test__b.py", {"T.test_skipped": "skip"}),
            "test__c.py": _run("ferrovent", "test__c.py", {"T.test_both_fail": "fail"}),
        },
    }
    report.print_failing_list(report.build(results, {}, 1.0, {}))
    assert capsys.readouterr().out.splitlines() == [
        "3 tests pass on stock gevent and not on ferrovent, in 2 files",
        "",
        "test__a (1)",
        "  T.test_lost: KeyError: 'libev-cext'",
        "",
        "test__b (2)",
        "  T.test_absent: [absent] the file made no such test on ferrovent (it makes tests from what it finds)",
        "  T.test_skipped: [skip] needs libev",
    ]

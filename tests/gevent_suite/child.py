"""Runs one of gevent's test modules as ``__main__`` and records each test's outcome, one JSON line per event.

    python child.py RESULTS_PATH gevent.tests.test__event

This is what ``python -m gevent.tests.test__event`` does (gevent's own testrunner runs each file that way), plus a
unittest result class that appends to RESULTS_PATH as each test starts and ends, so a file that hangs or crashes
still leaves the outcomes of the tests before it. Which gevent the module gets is decided before this runs: stock
gevent, or ferrovent through ``startup/sitecustomize.py`` on the ferrovent side. Lines carry the pid, since a test
that forks may leave a child running the same result object.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import unittest

DETAIL_LIMIT = 4000  # characters of traceback kept per failing test (the end, where the exception is)


def _append(path: str, **event) -> None:
    # Opened per event: a test that closes file descriptors wholesale must not take the record with it.
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"pid": os.getpid(), **event}) + "\n")


def recording_result_class(path: str) -> type:
    """A TextTestResult that also appends every outcome to ``path``."""

    class RecordingResult(unittest.TextTestResult):
        def _record(self, test, outcome: str, err=None, reason: str = "") -> None:
            event = {"event": "outcome", "id": test.id(), "outcome": outcome}
            if err is not None:
                event["detail"] = self._exc_info_to_string(err, test)[-DETAIL_LIMIT:]
            if reason:
                event["detail"] = reason
            _append(path, **event)

        def startTestRun(self):
            _append(path, event="run-start")
            super().startTestRun()

        def stopTestRun(self):
            super().stopTestRun()
            _append(path, event="run-end")

        def startTest(self, test):
            _append(path, event="start", id=test.id())
            super().startTest(test)

        def addSuccess(self, test):
            super().addSuccess(test)
            self._record(test, "pass")

        def addFailure(self, test, err):
            super().addFailure(test, err)
            self._record(test, "fail", err)

        def addError(self, test, err):
            super().addError(test, err)
            self._record(test, "error", err)

        def addSkip(self, test, reason):
            super().addSkip(test, reason)
            self._record(test, "skip", reason=str(reason))

        def addExpectedFailure(self, test, err):
            super().addExpectedFailure(test, err)
            self._record(test, "xfail")

        def addUnexpectedSuccess(self, test):
            super().addUnexpectedSuccess(test)
            self._record(test, "xpass")

        def addSubTest(self, test, subtest, err):
            super().addSubTest(test, subtest, err)
            if err is not None:
                outcome = "fail" if issubclass(err[0], test.failureException) else "error"
                self._record(test, outcome, err)

    return RecordingResult


def main() -> None:
    results_path, module_name = sys.argv[1], sys.argv[2]
    del sys.argv[1:]  # the module sees a command line of its own name only, as under ``python -m``
    sys.path[0] = ""  # as under ``python -m``: the working directory, not this file's directory
    if os.environ.get("FERROVENT_GEVENT_SUITE") == "ferrovent":
        from ferrovent import _gevent_alias

        assert _gevent_alias.installed(), "ferrovent side, but startup/sitecustomize.py did not install ferrovent"
    unittest.TextTestRunner.resultclass = recording_result_class(results_path)
    _append(results_path, event="process", module=module_name)
    runpy.run_module(module_name, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

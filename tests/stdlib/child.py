"""One CPython test module, run after one library's ``patch_all()``, in this fresh process.

    python -m tests.stdlib.child LIB MODULE SPEC_JSON PROGRESS_PATH

LIB is ``ferrovent`` or ``gevent``. SPEC_JSON names the tests to skip as disabled (gevent's list, computed by the
runner), the ids already recorded by an earlier attempt, optionally the only ids to run, the resources the tests may use
and the per-test time limit. Each test's outcome is appended to PROGRESS_PATH as one JSON line when it starts and when
it ends, so the runner learns which test hung when it has to kill the process. Patching comes first, before anything
else is imported, as a patched program would do it.
"""

import sys

if __name__ == "__main__":
    _LIB = sys.argv[1]
    if _LIB == "gevent":
        from gevent import monkey
    else:
        from ferrovent import monkey
    monkey.patch_all()

import contextlib  # noqa: E402  (after patching, on purpose)
import faulthandler  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import unittest  # noqa: E402

# How much of a failure's traceback the progress file keeps.
_TRACEBACK_LINES = 40


def _adjust_harness(resources: list) -> None:
    """Makes ``test.support`` work under green threads, the same way for both libraries (as gevent's own runner
    does): its thread accounting reads ``_thread._count()``, which greenlet threads never change, and a freshly
    imported module copy would escape the patches."""
    from test import support

    support.verbose = 0
    support.use_resources = list(resources)
    support.print_warning = lambda msg: None

    def threading_setup():
        return (1, ())

    def threading_cleanup(*_original):
        return None

    @contextlib.contextmanager
    def wait_threads_exit(timeout=None):
        yield

    def import_fresh_module(name, *_args, **_kwargs):
        return importlib.import_module(name)

    helpers = [support]
    for helper in ("threading_helper", "import_helper"):
        with contextlib.suppress(ImportError):
            helpers.append(importlib.import_module("test.support." + helper))
    for helper in helpers:
        for name, replacement in (
            ("threading_setup", threading_setup),
            ("threading_cleanup", threading_cleanup),
            ("wait_threads_exit", wait_threads_exit),
            ("import_fresh_module", import_fresh_module),
        ):
            if hasattr(helper, name):
                setattr(helper, name, replacement)


def _short_id(test) -> str:
    """``test_socket.Case.test_x`` for a test, or the description unittest gives a failed fixture."""
    described = test.id()
    return described[len("test.") :] if described.startswith("test.") else described


class _Recorder(unittest.TestResult):
    """Appends each test's start and outcome to the progress file, and arms the per-test time limit."""

    def __init__(self, progress, per_test_timeout: float) -> None:
        super().__init__()
        self._progress = progress
        self._per_test_timeout = per_test_timeout
        self._started = None
        self._subtest_failure: dict = {}

    def _write(self, **record) -> None:
        self._progress.write(json.dumps(record) + "\n")
        self._progress.flush()

    def _outcome(self, test, outcome: str, err=None) -> None:
        detail = ""
        if err is not None:
            lines = "".join(traceback.format_exception(*err)).splitlines()
            detail = "\n".join(lines[-_TRACEBACK_LINES:])
        # A failed class or module fixture is reported without a startTest: it has no duration of its own.
        seconds = 0.0 if self._started is None else round(time.monotonic() - self._started, 3)
        self._write(id=_short_id(test), outcome=outcome, seconds=seconds, detail=detail)

    def startTest(self, test) -> None:
        super().startTest(test)
        self._started = time.monotonic()
        self._subtest_failure.pop(test.id(), None)
        # Dumps every thread's stack to stderr and exits if this test outlives the limit: the runner sees the
        # "start" without an outcome and records the test as hung.
        faulthandler.dump_traceback_later(self._per_test_timeout, exit=True)
        self._write(start=_short_id(test))

    def stopTest(self, test) -> None:
        faulthandler.cancel_dump_traceback_later()
        self._started = None
        super().stopTest(test)

    def addSuccess(self, test) -> None:
        super().addSuccess(test)
        failed = self._subtest_failure.pop(test.id(), None)
        if failed is None:
            self._outcome(test, "pass")
        else:
            self._outcome(test, "fail", failed)

    def addFailure(self, test, err) -> None:
        super().addFailure(test, err)
        self._outcome(test, "fail", err)

    def addError(self, test, err) -> None:
        super().addError(test, err)
        self._outcome(test, "error", err)

    def addSkip(self, test, reason) -> None:
        super().addSkip(test, reason)
        self._outcome(test, "skip")

    def addExpectedFailure(self, test, err) -> None:
        super().addExpectedFailure(test, err)
        self._outcome(test, "xfail")

    def addUnexpectedSuccess(self, test) -> None:
        super().addUnexpectedSuccess(test)
        self._outcome(test, "unexpected-success")

    def addSubTest(self, test, subtest, err) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._subtest_failure.setdefault(test.id(), err)


def _tests_of(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _tests_of(item)
        else:
            yield item


def _select(suite, disabled: dict, done: set, only: "set | None" = None) -> unittest.TestSuite:
    """The suite without the tests already recorded and without disabled classes; disabled tests become skips.
    ``only``, when given, keeps just the tests with those ids.

    gevent's list disables a test by its method name in the module (whatever class defines it) and a whole class
    by its name (the class is then not collected at all); both sides apply it the same way.
    """
    methods = set(disabled["methods"])
    classes = set(disabled["classes"])
    kept = unittest.TestSuite()
    for test in _tests_of(suite):
        if _short_id(test) in done or (only is not None and _short_id(test) not in only):
            continue
        if type(test).__name__ in classes:
            continue
        method = getattr(test, "_testMethodName", None)
        if method in methods:
            reason = "disabled by gevent's patched_tests_setup"
            setattr(test, method, unittest.skip(reason)(getattr(test, method)))
        kept.addTest(test)
    return kept


def main(lib: str, module: str, spec_path: str, progress_path: str) -> None:
    with open(spec_path) as f:
        spec = json.load(f)
    _adjust_harness(spec["resources"])
    with open(progress_path, "a") as progress:
        recorder = _Recorder(progress, spec["per_test_timeout"])
        try:
            tests = importlib.import_module("test." + module)
        except unittest.SkipTest as skipped:  # e.g. ResourceDenied at import: the whole module is skipped
            recorder._write(finished=lib, skipped=str(skipped))
            os._exit(0)
        loader = unittest.TestLoader()
        suite = loader.loadTestsFromModule(tests)
        for error in loader.errors:
            print(error, file=sys.stderr)
        only = spec.get("only")
        suite = _select(suite, spec["disabled"], set(spec["done"]), None if only is None else set(only))
        suite.run(recorder)
        recorder._write(finished=lib)
    sys.stdout.flush()
    sys.stderr.flush()
    # Leftover non-daemon threads (greenlets under patching) must not keep a finished module's process alive.
    os._exit(0)


if __name__ == "__main__":
    main(*sys.argv[1:])

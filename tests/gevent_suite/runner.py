"""gevent's own test suite, from the installed gevent wheel, run on stock gevent and on ferrovent installed as gevent.

    python -m tests.gevent_suite.runner                       # every file, both sides, -j1
    python -m tests.gevent_suite.runner test__event test__queue --json out.json
    python -m tests.gevent_suite.runner --side ferrovent --stock-report baseline.json   # compare with a saved run
    python -m tests.gevent_suite.runner --summarize out.json  # the causes of what fails, biggest first
    python -m tests.gevent_suite.runner --failing-list out.json   # every test lost on ferrovent, by file
    python -m tests.gevent_suite.runner --write-expectations run1.json run2.json      # CI's ratchet

Each test file runs in a process of its own (``child.py``: ``python -m gevent.tests.X`` with a result class that
records every test's outcome), with a per-file timeout, once with stock gevent and once with ferrovent as
``gevent``. On the ferrovent side ``startup/`` goes first on PYTHONPATH: its sitecustomize installs ferrovent as
gevent in that process and every Python process it starts, with the few adapters gevent's harness needs
(``startup/ferrovent_harness_adapters.py`` lists each one). The environment is the one gevent's own testrunner
sets (warnings, faulthandler, dev mode), except that tests needing the external network are off unless
``--use all`` is given. The figure that counts: tests passing on ferrovent among those passing on stock gevent.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from tests.gevent_suite import expectations, report
from tests.gevent_suite.discover import DEFAULT_TIMEOUT, SuiteFile, known_failures, stock_tests_dir, suite_files
from tests.gevent_suite.outcomes import FileRun, read_record
from tests.suite_cli import add_report_options, progress_printer, read_report, run_report_command, save_report

HERE = Path(__file__).resolve().parent
CHILD = HERE / "child.py"
STARTUP = HERE / "startup"
SIDES = ("gevent", "ferrovent")
DEFAULT_RESOURCES = "-network"  # gevent's resource syntax: everything but tests that reach the internet

# gevent's testrunner sets these when the environment has not (its _setup_environ): warnings on, with the noise
# of a few third-party modules ignored.
_TESTRUNNER_WARNINGS = (
    "default,default::DeprecationWarning,default::ResourceWarning,ignore:::site:,ignore:::pkgutil:,"
    "ignore:::importlib._bootstrap:,ignore:::importlib._bootstrap_external:,"
    "ignore:::pkg_resources._vendor.pyparsing:,ignore:::dns.namedict:,ignore:::dns.hash:,ignore:::dns.zone:,"
    "ignore:::coverage.core:"
)
_OUTPUT_KEPT = 20_000  # bytes of a file's output kept, from the end (where import errors and summaries are)
# Variables of ours that must not leak from the calling environment into a side that did not ask for them.
_OUR_VARIABLES = ("FERROVENT_AS_GEVENT", "FERROVENT_GEVENT_SUITE", "FERROVENT_GEVENT_SUITE_PREVIEW")


def side_environment(side: str, tests_dir: Path, resources: str = DEFAULT_RESOURCES, preview=()) -> dict[str, str]:
    """The environment a test file runs in on ``side``."""
    env = {key: value for key, value in os.environ.items() if key not in _OUR_VARIABLES}
    env.pop("PYTHONSAFEPATH", None)  # gevent's testrunner drops it too: some tests rely on the script's directory
    if not env.get("PYTHONWARNINGS"):
        env["PYTHONWARNINGS"] = _TESTRUNNER_WARNINGS
    env.setdefault("PYTHONFAULTHANDLER", "true")
    env.setdefault("PYTHONDEVMODE", "1")
    env.setdefault("GEVENTTEST_QUIET", "True")
    env["GEVENTTEST_USE_RESOURCES"] = resources
    paths = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    paths.append(str(tests_dir))  # gevent's testrunner appends the tests' directory, for their helper modules
    if side == "ferrovent":
        paths.insert(0, str(STARTUP))
        env["FERROVENT_GEVENT_SUITE"] = "ferrovent"
        if preview:
            env["FERROVENT_GEVENT_SUITE_PREVIEW"] = ",".join(preview)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _kill_group(proc: subprocess.Popen) -> None:
    """Ends the process group the test file's process leads (the test and whatever it started)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_file(
    test: SuiteFile, side: str, env: dict[str, str], workdir: Path, timeout: float | None = None, child: Path = CHILD
) -> FileRun:
    """Runs one test file on one side in a fresh process (its own process group), bounded by its timeout.
    ``child``: the script that runs the module and records its outcomes (tests/asyncio_suite has its own)."""
    scratch = workdir / side / test.name[: -len(".py")]
    scratch.mkdir(parents=True, exist_ok=True)
    record, output = scratch / "outcomes.jsonl", scratch / "output.txt"
    command = [sys.executable, "-u", str(child), str(record), test.module]
    started = time.monotonic()
    # Output goes to a file, not a pipe: a process the test leaves behind cannot keep us waiting for its end.
    with open(output, "wb") as sink:
        proc = subprocess.Popen(
            command,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        exit_code = proc.wait(timeout=timeout or test.timeout)
    except subprocess.TimeoutExpired:
        exit_code = None
    finally:
        _kill_group(proc)  # on a timeout, the test itself; always, whatever it left behind
        proc.wait()
    seconds = time.monotonic() - started
    text = output.read_bytes()[-_OUTPUT_KEPT:].decode("utf-8", "replace")
    return read_record(record, test.name, side, exit_code, seconds, text)


def run_suite(
    files: list[SuiteFile],
    sides: tuple[str, ...],
    envs: dict[str, dict[str, str]],
    jobs: int = 1,
    timeout: float | None = None,
    progress=None,
) -> dict[str, dict[str, FileRun]]:
    """Runs every file on every side in ``sides``: {side: {file: FileRun}}. Files marked run-alone run last, alone."""
    results: dict[str, dict[str, FileRun]] = {side: {} for side in sides}
    with tempfile.TemporaryDirectory(prefix="gevent-suite-") as workdir:

        def run_both(test: SuiteFile) -> None:
            for side in sides:
                run = run_file(test, side, envs[side], Path(workdir), timeout)
                results[side][test.name] = run
                if progress:
                    progress(run)

        together = [test for test in files if not test.run_alone]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(run_both, together))
        for test in files:
            if test.run_alone:
                run_both(test)
    return results


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="test files to run (test__event or test__event.py); default all")
    parser.add_argument("--side", choices=("both", *SIDES), default="both")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="files run at once (default 1)")
    parser.add_argument("--timeout", type=float, help=f"seconds per file (default: gevent's, {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--use", default=DEFAULT_RESOURCES, help="gevent's test resources (default %(default)s)")
    parser.add_argument("--stock-report", type=Path, help="take the stock-gevent side from this earlier --json report")
    parser.add_argument(
        "--preview",
        action="append",
        default=[],
        choices=("events",),
        help="diagnosis only, never for the figure: stand in for a missing ferrovent module, to see what fails "
        "behind it (events: gevent.events as zope.event's subscribers and notify)",
    )
    parser.add_argument("--summarize", type=Path, help="print the causes of failure in this --json report, and stop")
    parser.add_argument("--top", type=int, default=40, help="causes to print with --summarize (default 40)")
    add_report_options(parser)
    parser.add_argument(
        "--budget",
        type=float,
        default=expectations.DEFAULT_BUDGET,
        help="with --write-expectations: seconds of ferrovent runs CI may spend (default %(default)s)",
    )
    return parser.parse_args(argv)


def _write_expectations(reports: list[dict], budget: float) -> None:
    written = expectations.write(expectations.PATH, reports, budget)
    count = sum(len(entry["passing"]) for entry in written["files"].values())
    print(f"{expectations.PATH}: {count} tests in {len(written['files'])} files, ~{written['seconds']}s")


def main(argv=None) -> int:
    args = _parse_args(argv)
    if args.summarize:
        report.print_causes(read_report(args.summarize), args.top)
        return 0
    if run_report_command(args, report.print_failing_list, partial(_write_expectations, budget=args.budget)):
        return 0
    tests_dir = stock_tests_dir()
    if tests_dir is None:
        print("gevent's tests are not installed (pip install gevent)", file=sys.stderr)
        return 2
    sides = SIDES if args.side == "both" else (args.side,)
    if args.stock_report:
        sides = tuple(side for side in sides if side != "gevent")
    envs = {side: side_environment(side, tests_dir, args.use, args.preview) for side in SIDES}
    config = known_failures(tests_dir, envs["gevent"])
    files = suite_files(tests_dir, config, args.files)
    print(f"{len(files)} files from {tests_dir}, sides: {', '.join(sides)}, -j{args.jobs}", flush=True)
    started = time.monotonic()
    results = run_suite(files, sides, envs, args.jobs, args.timeout, progress_printer(file_width=45))
    if args.stock_report:
        saved = report.load_side(read_report(args.stock_report), "gevent")
        results["gevent"] = {test.name: saved[test.name] for test in files if test.name in saved}
    data = report.build(results, config, time.monotonic() - started, vars(args))
    report.print_report(data)
    save_report(data, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

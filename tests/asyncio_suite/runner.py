"""CPython's own asyncio tests (``test.test_asyncio`` of the running interpreter) on the default loop and on
ferrovent's, compared, the way uvloop is validated.

    python -m tests.asyncio_suite.runner -j2                       # every file, both sides
    python -m tests.asyncio_suite.runner test_tasks test_streams   # some files
    python -m tests.asyncio_suite.runner -j2 --check --json out.json   # CI: fail if a test in expectations.json fails
    python -m tests.asyncio_suite.runner --failing-list out.json   # every test lost on ferrovent, with its cause
    python -m tests.asyncio_suite.runner --write-expectations run1.json run2.json   # the ratchet

Each test file runs in a process of its own (``child.py``, through gevent_suite's ``run_file``), with a per-file
timeout, once as it is (side ``default``) and once with ferrovent's loop as asyncio's default (side ``ferrovent``).
The figure: tests passing on ferrovent among those passing on the default loop. Many tests build a loop class of
their own (the test utilities' ``TestLoop``, ``asyncio.SelectorEventLoop(...)``) and never touch ferrovent's, so
the report also says how many tests made a ferrovent loop, and the figure among those alone. With ``--stand-in``
that class makes ferrovent loops too (the selector the test passes is closed unused), which puts the transport,
socket, sendfile and server tests on ferrovent's loop; CI runs that way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.gevent_suite.discover import SuiteFile
from tests.gevent_suite.report import cause, load_side
from tests.gevent_suite.runner import run_file
from tests.suite_cli import add_report_options, progress_printer, run_report_command, save_report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHILD = HERE / "child.py"
EXPECTATIONS = HERE / "expectations.json"
SIDES = ("default", "ferrovent")
FILE_TIMEOUT = 300.0  # seconds per file: the slowest (test_events, test_tasks) take well under a minute alone


@dataclass(frozen=True)
class AsyncioFile(SuiteFile):
    @property
    def module(self) -> str:
        return "test.test_asyncio." + self.name[: -len(".py")]


def suite_files(names=(), timeout: float = FILE_TIMEOUT) -> list[AsyncioFile]:
    """The interpreter's test_asyncio files (``test_*.py``), or those named."""
    import test.test_asyncio

    found = sorted(path.name for path in Path(test.test_asyncio.__file__).parent.glob("test_*.py"))
    if names:
        wanted = {name if name.endswith(".py") else name + ".py" for name in names}
        found = [name for name in found if name in wanted]
    return [AsyncioFile(name, timeout, run_alone=False) for name in found]


def side_environment(side: str, stand_in: bool = False) -> dict[str, str]:
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("FERROVENT_ASYNCIO_SUITE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    env.setdefault("PYTHONFAULTHANDLER", "true")
    if side == "ferrovent":
        env["FERROVENT_ASYNCIO_SUITE"] = "ferrovent"
        if stand_in:
            env["FERROVENT_ASYNCIO_SUITE_STAND_IN"] = "1"
    return env


def _ferrovent_loop_tests(record: Path) -> list[str]:
    """The tests of a ferrovent-side record during which a ferrovent loop was made."""
    tests = set()
    if record.exists():
        for line in record.read_text(encoding="utf-8").splitlines():
            event = json.loads(line) if line.endswith("}") else {}
            if event.get("event") == "ferrovent-loop":
                tests.add(event["id"].replace("__main__.", ""))
    return sorted(tests)


def run_suite(files: list[AsyncioFile], jobs: int, progress=None, stand_in: bool = False) -> dict:
    """{file: {"default": FileRun json, "ferrovent": FileRun json, "ferrovent_loop_tests": [...]}}."""
    results: dict[str, dict] = {}
    envs = {side: side_environment(side, stand_in) for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="asyncio-suite-") as workdir:

        def run_both(test: AsyncioFile) -> None:
            entry = results.setdefault(test.name, {})
            for side in SIDES:
                run = run_file(test, side, envs[side], Path(workdir), child=CHILD)
                entry[side] = run.to_json()
                if progress:
                    progress(run)
            entry["ferrovent_loop_tests"] = _ferrovent_loop_tests(
                Path(workdir) / "ferrovent" / test.name[: -len(".py")] / "outcomes.jsonl"
            )

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(run_both, files))
    return dict(sorted(results.items()))


def totals(files: dict) -> dict:
    data = {"files": files}
    default, ferro = load_side(data, "default"), load_side(data, "ferrovent")
    result = {"files": len(files), "passing_on_default": 0, "passing_on_both": 0, "passing_only_on_ferrovent": 0}
    result.update(tests_on_ferrovent_loop=0, on_loop_passing_on_default=0, on_loop_passing_on_both=0)
    for name, entry in files.items():
        base, ours = default[name].passing(), ferro[name].passing()
        on_loop = set(entry["ferrovent_loop_tests"])
        result["passing_on_default"] += len(base)
        result["passing_on_both"] += len(base & ours)
        result["passing_only_on_ferrovent"] += len(ours - base)
        result["tests_on_ferrovent_loop"] += len(on_loop)
        result["on_loop_passing_on_default"] += len(base & on_loop)
        result["on_loop_passing_on_both"] += len(base & ours & on_loop)
    for prefix in ("", "on_loop_"):
        stock = result[f"{prefix}passing_on_default"]
        result[f"{prefix}percent"] = round(100.0 * result[f"{prefix}passing_on_both"] / stock, 1) if stock else None
    return result


def lost_tests(data: dict):
    """(file, test, cause, on a ferrovent loop) for every test passing on the default loop and not on ferrovent."""
    default, ferro = load_side(data, "default"), load_side(data, "ferrovent")
    for name, entry in data["files"].items():
        on_loop = set(entry["ferrovent_loop_tests"])
        for test in sorted(default[name].passing() - ferro[name].passing()):
            yield name, test, cause(ferro[name], test), test in on_loop


def print_report(data: dict) -> None:
    default, ferro = load_side(data, "default"), load_side(data, "ferrovent")
    header = f"{'file':28} {'default p/f/e/s':>16} {'ferrovent p/f/e/s':>18} {'kept':>9} {'on loop':>8}  status"
    print("\n" + header + "\n" + "-" * len(header))
    for name, entry in data["files"].items():
        cells = [
            "/".join(str(run.count(k)) for k in ("pass", "fail", "error", "skip"))
            for run in (default[name], ferro[name])
        ]
        kept = f"{len(default[name].passing() & ferro[name].passing())}/{len(default[name].passing())}"
        print(
            f"{name:28} {cells[0]:>16} {cells[1]:>18} {kept:>9} {len(entry['ferrovent_loop_tests']):>8}  "
            f"{ferro[name].status()}"
        )
    t = data["totals"]
    print(
        f"passing on ferrovent / passing on the default loop: {t['passing_on_both']}/{t['passing_on_default']} = "
        f"{t['percent']}% ({t['passing_only_on_ferrovent']} more pass only on ferrovent)\n"
        f"tests that ran on a ferrovent loop: {t['tests_on_ferrovent_loop']}; among those passing on the default "
        f"loop: {t['on_loop_passing_on_both']}/{t['on_loop_passing_on_default']} = {t['on_loop_percent']}%\n"
        f"wall time: {data['meta']['wall_seconds']}s"
    )


def print_failing_list(data: dict) -> None:
    lost = list(lost_tests(data))
    print(f"{len(lost)} tests pass on the default loop and not on ferrovent")
    for name, test, why, on_loop in lost:
        print(f"  {name[:-3]}:{test}{'' if on_loop else ' (no ferrovent loop)'}: {why}")


def write_expectations(reports: list[dict]) -> dict:
    """The ratchet: per file, the tests passing on ferrovent in every report given (a flaky pass stays out)."""
    files = {}
    for name in reports[0]["files"]:
        runs = [load_side(data, "ferrovent").get(name) for data in reports]
        if all(run is not None and not run.timed_out for run in runs):
            passing = set.intersection(*(run.passing() for run in runs))
            if passing:
                files[name] = sorted(passing)
    data = {
        "about": "CPython test_asyncio tests passing on ferrovent's loop that must go on passing (runner --check)",
        "python": reports[0]["meta"]["python"],
        "files": files,
    }
    EXPECTATIONS.write_text(json.dumps(data, indent=1) + "\n")
    return data


def check(data: dict) -> list[str]:
    """Tests expectations.json lists, for the files that ran, that did not pass on ferrovent."""
    expected = json.loads(EXPECTATIONS.read_text())
    if expected["python"].rsplit(".", 1)[0] != data["meta"]["python"].rsplit(".", 1)[0]:
        print(f"expectations.json is for Python {expected['python']}: not checked on {data['meta']['python']}")
        return []
    ferro = load_side(data, "ferrovent")
    lost = []
    for name, tests in expected["files"].items():
        if name in ferro:
            lost += [
                f"{name[:-3]}:{test}: {cause(ferro[name], test)}" for test in sorted(set(tests) - ferro[name].passing())
            ]
    return lost


def _parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", help="test files to run (test_tasks or test_tasks.py); default all")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="files run at once (default 1)")
    parser.add_argument("--timeout", type=float, default=FILE_TIMEOUT, help="seconds per file (default %(default)s)")
    parser.add_argument(
        "--stand-in",
        action="store_true",
        help="ferrovent side: asyncio.SelectorEventLoop(selector) makes a ferrovent loop too (more tests on it)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a test expectations.json lists fails")
    add_report_options(parser)
    return parser.parse_args(argv)


def _write_expectations(reports: list[dict]) -> None:
    written = write_expectations(reports)
    print(f"{EXPECTATIONS}: {sum(map(len, written['files'].values()))} tests in {len(written['files'])} files")


def main(argv=None) -> int:
    args = _parse_args(argv)
    if run_report_command(args, print_failing_list, _write_expectations):
        return 0
    files = suite_files(args.files, args.timeout)
    print(
        f"{len(files)} test_asyncio files of Python {sys.version.split()[0]}, sides: default, ferrovent, -j{args.jobs}",
        flush=True,
    )
    started = time.monotonic()
    results = run_suite(files, args.jobs, progress_printer(file_width=30), args.stand_in)
    data = {
        "meta": {
            "python": sys.version.split()[0],
            "wall_seconds": round(time.monotonic() - started, 1),
            "stand_in": args.stand_in,
        },
        "files": results,
    }
    data["totals"] = totals(results)
    print_report(data)
    save_report(data, args.json)
    if args.check:
        lost = check(data)
        for line in lost:
            print("REGRESSION", line)
        return 1 if lost else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

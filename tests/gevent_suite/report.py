"""The comparison of the two sides: per-file counts, the headline figure, and the causes of what fails on ferrovent.

The figure is the number of tests passing on ferrovent among those passing on stock gevent, over the number
passing on stock gevent. A test lost on ferrovent gets a cause: the exception it ended with, or, if it never ran,
why not (the file stopped at import, timed out, or a class fixture failed).
"""

from __future__ import annotations

import platform
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from tests.gevent_suite.outcomes import WHOLE_FILE, FileRun, exception_line


def load_side(data: dict, side: str) -> dict[str, FileRun]:
    """{file: FileRun} of one side of a report written by ``build``."""
    return {name: FileRun.from_json(dict(sides[side])) for name, sides in data["files"].items() if side in sides}


def _gevent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gevent")
    except PackageNotFoundError:
        return "not installed"


def build(results: dict[str, dict[str, FileRun]], config: dict, seconds: float, options: dict) -> dict:
    """The JSON report: every outcome of every file on each side, and the totals."""
    files: dict[str, dict] = defaultdict(dict)
    for side, runs in results.items():
        for name, run in runs.items():
            files[name][side] = run.to_json()
    data = {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "gevent": _gevent_version(),
            "wall_seconds": round(seconds, 1),
            "options": {key: str(value) if isinstance(value, Path) else value for key, value in options.items()},
            "known_failures": config,
        },
        "files": dict(sorted(files.items())),
    }
    data["totals"] = totals(data)
    return data


def _side_totals(runs: list[FileRun]) -> dict:
    return {
        "files": len(runs),
        "tests": sum(len(run.outcomes) for run in runs),
        **{kind: sum(run.count(kind) for run in runs) for kind in ("pass", "fail", "error", "skip", "incomplete")},
        "xfail_xpass": sum(run.count("xfail", "xpass") for run in runs),
        "timeouts": sum(run.timed_out for run in runs),
        "seconds": round(sum(run.seconds for run in runs), 1),
    }


def totals(data: dict) -> dict:
    stock, ferro = load_side(data, "gevent"), load_side(data, "ferrovent")
    result = {side: _side_totals(list(runs.values())) for side, runs in (("gevent", stock), ("ferrovent", ferro))}
    both = [name for name in stock if name in ferro]
    stock_pass = sum(len(stock[name].passing()) for name in both)
    kept = sum(len(stock[name].passing() & ferro[name].passing()) for name in both)
    gained = sum(len(ferro[name].passing() - stock[name].passing()) for name in both)
    result["compared_files"] = len(both)
    result["passing_on_stock"] = stock_pass
    result["passing_on_both"] = kept
    result["passing_only_on_ferrovent"] = gained
    result["percent"] = round(100.0 * kept / stock_pass, 1) if stock_pass else None
    return result


def _fixture_error(run: FileRun, test: str) -> str | None:
    """The error of a class or module fixture that kept ``test`` from running, if there was one."""
    test_class = test.split(".", 1)[0]
    for name, outcome in run.outcomes.items():
        if outcome.outcome in ("error", "fail") and name.startswith(("setUpModule", f"setUpClass ({test_class})")):
            return exception_line(outcome.detail)
    return None


def cause(run: FileRun, test: str) -> str:
    """Why ``test``, passing on stock gevent, does not pass in ferrovent's ``run``."""
    outcome = run.outcomes.get(test)
    if outcome is None:
        fixture = _fixture_error(run, test)
        if fixture:
            return f"[fixture] {fixture}"
        if run.timed_out:
            return "[not run] the file timed out before this test"
        if not run.ran_unittest:
            return f"[import] {exception_line(run.output_tail)}"
        if run.completed:
            return "[absent] the file made no such test on ferrovent (it makes tests from what it finds)"
        return f"[not run] the process ended ({run.status()}) before this test"
    if outcome.outcome == "incomplete":
        return f"[hang] {'timed out' if run.timed_out else 'the process died'} in this test"
    if outcome.outcome == "skip":
        return f"[skip] {outcome.detail[:200]}"
    if test == WHOLE_FILE:
        return f"[script] {exception_line(outcome.detail)}"
    return exception_line(outcome.detail)


def lost_tests(data: dict):
    """(file, test, cause) for every test passing on stock gevent and not on ferrovent."""
    stock, ferro = load_side(data, "gevent"), load_side(data, "ferrovent")
    for name in sorted(set(stock) & set(ferro)):
        for test in sorted(stock[name].passing() - ferro[name].passing()):
            yield name, test, cause(ferro[name], test)


def print_report(data: dict) -> None:
    stock, ferro = load_side(data, "gevent"), load_side(data, "ferrovent")
    header = f"{'file':42} {'stock p/f/e/s':>15} {'ferrovent p/f/e/s':>19} {'kept':>9}  ferrovent status"
    print("\n" + header + "\n" + "-" * len(header))
    for name in data["files"]:
        cells = []
        for runs in (stock, ferro):
            run = runs.get(name)
            cells.append("/".join(str(run.count(kind)) for kind in ("pass", "fail", "error", "skip")) if run else "-")
        kept = ""
        if name in stock and name in ferro:
            kept = f"{len(stock[name].passing() & ferro[name].passing())}/{len(stock[name].passing())}"
        status = ferro[name].status() if name in ferro else ""
        print(f"{name:42} {cells[0]:>15} {cells[1]:>19} {kept:>9}  {status}")
    result = data["totals"]
    for side in ("gevent", "ferrovent"):
        side_totals = result[side]
        if side_totals["files"]:
            print(
                f"{side:9}: {side_totals['files']} files, {side_totals['tests']} tests: {side_totals['pass']} pass, "
                f"{side_totals['fail']} fail, {side_totals['error']} error, {side_totals['skip']} skip, "
                f"{side_totals['incomplete']} incomplete, {side_totals['timeouts']} files timed out; "
                f"{side_totals['seconds']:.0f}s"
            )
    if result["percent"] is not None:
        print(
            f"passing on ferrovent / passing on stock gevent: {result['passing_on_both']}/{result['passing_on_stock']}"
            f" = {result['percent']}% ({result['passing_only_on_ferrovent']} more pass only on ferrovent)"
        )


def print_failing_list(data: dict) -> None:
    """Every test passing on stock gevent and not on ferrovent, grouped by file, each with its cause."""
    by_file: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, test, why in lost_tests(data):
        by_file[name].append((test, why))
    result = data["totals"]
    lost = result["passing_on_stock"] - result["passing_on_both"]
    print(f"{lost} tests pass on stock gevent and not on ferrovent, in {len(by_file)} files")
    for name, tests in by_file.items():
        print(f"\n{name[:-3]} ({len(tests)})")
        for test, why in tests:
            print(f"  {test}: {why}")


def print_causes(data: dict, top: int = 40) -> None:
    """The causes of the tests lost on ferrovent, biggest first, with the files and a few tests for each."""
    by_cause: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for name, test, why in lost_tests(data):
        by_cause[why].append((name, test))
    ranked = sorted(by_cause.items(), key=lambda item: (-len(item[1]), item[0]))
    lost = sum(len(tests) for tests in by_cause.values())
    print(f"{lost} tests pass on stock gevent and not on ferrovent; {len(ranked)} distinct causes\n")
    for why, tests in ranked[:top]:
        files = Counter(name for name, _ in tests)
        spread = ", ".join(f"{name[:-3]} {count}" for name, count in files.most_common(6))
        more = f" +{len(files) - 6} files" if len(files) > 6 else ""
        print(f"{len(tests):5}  {why}\n       {spread}{more}\n       e.g. {tests[0][0][:-3]}:{tests[0][1]}")

"""CPython's own test modules after ``patch_all()``: ferrovent's against stock gevent's, module by module.

    python -m tests.stdlib.runner [--lib ferrovent|gevent|both] [--jobs N] [--json PATH] [MODULE ...]

Each module runs in its own process per library (`tests.stdlib.child`), with gevent's list of tests disabled under
monkey-patching (``gevent.testing.patched_tests_setup``, imported from the installed gevent, in a process of its
own) applied the same way to both libraries. A test that outlives ``PER_TEST_TIMEOUT`` is recorded as hung and the
module resumes after it; a module that outlives its whole budget is killed and reported as timed out, so nothing
can hang the run. The table printed at the end gives, per module, the outcome counts on each side, the time, and
the tests that fail only on ferrovent (the regressions) or only on gevent.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBS = ("ferrovent", "gevent")

# The stdlib test modules whose subject monkey-patching replaces or that drive patched modules (sockets, TLS,
# threads, subprocesses, signals) through servers and clients on 127.0.0.1. test_timeout is left out: all of it
# needs the outside network.
MODULES = (
    "test_socket",
    "test_ssl",
    "test_select",
    "test_selectors",
    "test_poll",
    "test_queue",
    "test_threading",
    "test_thread",
    "test_threading_local",
    "test_threadsignals",
    "test_subprocess",
    "test_signal",
    "test_os",
    "test_time",
    "test_socketserver",
    "test_httplib",
    "test_httpservers",
    "test_urllib",
    "test_urllib2",
    "test_urllib2_localnet",
    "test_ftplib",
    "test_smtplib",
    "test_poplib",
    "test_imaplib",
    "test_xmlrpc",
    "test_wsgiref",
    "test_context",
    "test_sched",
    "test_fork1",
    "test_wait3",
    "test_wait4",
    "test_asyncore",
    "test_asynchat",
    "test_smtpd",
    "test_telnetlib",
)
# Modules later Pythons removed: the last version that has each.
_LAST_VERSION = {"test_asyncore": (3, 11), "test_asynchat": (3, 11), "test_smtpd": (3, 11), "test_telnetlib": (3, 12)}
# Modules that ask for the "network" resource although they only talk to 127.0.0.1.
_LOCAL_NETWORK = frozenset({"test_socketserver"})

# The resources tests may use: everything local. "network" and "urlfetch" reach outside 127.0.0.1; "cpu",
# "largefile" and the like only make the run longer without touching what patching changes.
RESOURCES = ("subprocess", "decimal")
# A single test running longer than this is recorded as hung (the slowest passing test takes under 5 s).
PER_TEST_TIMEOUT = 30.0
# A whole module, resumptions after hangs included, gets at most this long (test_socket, the longest, takes about
# 90 s on each side).
MODULE_TIMEOUT = 300.0
# After this many hangs or crashes in one module, its remaining tests are not run.
MAX_RESUMES = 8

FAILED = frozenset({"fail", "error", "hang", "crash", "unexpected-success"})
PASSED = frozenset({"pass", "xfail"})


def available_modules() -> list[str]:
    """The names in MODULES that this Python still has."""
    return [name for name in MODULES if sys.version_info[:2] <= _LAST_VERSION.get(name, sys.version_info[:2])]


def resources_for(module: str) -> list[str]:
    return [*RESOURCES, "network"] if module in _LOCAL_NETWORK else list(RESOURCES)


def disabled_tests() -> dict[str, dict[str, list[str]]]:
    """gevent's disabled tests by module: ``{"test_socket": {"methods": [...], "classes": [...]}}``.

    Read in a process of its own: importing gevent's test support imports gevent's hub, which has no business in
    the process that runs ferrovent's side (or in pytest's).
    """
    code = (
        "import json\n"
        "from gevent.testing.patched_tests_setup import disabled_tests\n"
        "print(json.dumps(sorted(set(disabled_tests))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    by_module: dict[str, dict[str, set]] = {}
    for name in json.loads(out.stdout.strip().splitlines()[-1]):
        module, _, rest = name.partition(".")
        entry = by_module.setdefault(module, {"methods": set(), "classes": set()})
        if "." in rest:
            entry["methods"].add(rest.rsplit(".", 1)[1])
        else:
            entry["classes"].add(rest)
    return {module: {kind: sorted(names) for kind, names in entry.items()} for module, entry in by_module.items()}


def disabled_in(disabled: dict, module: str) -> dict[str, list[str]]:
    """``module``'s entry of what `disabled_tests` returns; none disabled for a module gevent does not list."""
    return disabled.get(module, {"methods": [], "classes": []})


@dataclass
class ModuleRun:
    """One module's run on one library."""

    lib: str
    module: str
    outcomes: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    # "ok"; "skipped" (the module raised SkipTest on import); "timeout" (the module budget ran out); "crash" (the
    # process died outside any test, e.g. on import)
    status: str = "ok"
    seconds: float = 0.0
    log: str = ""

    def counts(self) -> Counter:
        return Counter(self.outcomes.values())

    @property
    def failed(self) -> set[str]:
        return {test for test, outcome in self.outcomes.items() if outcome in FAILED}

    @property
    def passed(self) -> set[str]:
        return {test for test, outcome in self.outcomes.items() if outcome in PASSED}


def _read_progress(path: Path, run: ModuleRun) -> tuple[str | None, bool]:
    """Folds the child's progress lines into ``run``; returns the test started but not ended, and whether the
    child reached the end of the module."""
    current = None
    finished = False
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break  # the child died mid-write
            record = json.loads(line)
            if "start" in record:
                current = record["start"]
            elif "finished" in record:
                finished = True
                if "skipped" in record:
                    run.status = "skipped"
                    run.details[run.module] = record["skipped"]
            else:
                run.outcomes[record["id"]] = record["outcome"]
                if record["detail"]:
                    run.details[record["id"]] = record["detail"]
                if record["id"] == current:
                    current = None
    return current, finished


def _kill_group(proc: subprocess.Popen) -> None:
    """Kills the child and whatever it started (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_module(
    lib: str,
    module: str,
    disabled: dict,
    workdir: Path,
    per_test_timeout: float = PER_TEST_TIMEOUT,
    module_timeout: float = MODULE_TIMEOUT,
    only: list[str] | None = None,
) -> ModuleRun:
    """Runs ``module`` after ``lib``'s patch_all, resuming after each hung or crashed test; ``only``: just the
    tests with these ids."""
    run = ModuleRun(lib, module)
    workdir.mkdir(parents=True, exist_ok=True)
    progress = workdir / "progress.jsonl"
    spec_path = workdir / "spec.json"
    log_path = workdir / "output.log"
    run.log = str(log_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    for _attempt in range(MAX_RESUMES + 1):
        spec = {
            "disabled": disabled,
            "done": sorted(run.outcomes),
            "resources": resources_for(module),
            "per_test_timeout": per_test_timeout,
            **({} if only is None else {"only": sorted(only)}),
        }
        spec_path.write_text(json.dumps(spec))
        with open(log_path, "ab") as log:
            # cwd: a scratch folder, since CPython's tests write their temporary files in the current directory.
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.stdlib.child", lib, module, str(spec_path), str(progress)],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            remaining = module_timeout - (time.monotonic() - started)
            try:
                proc.wait(timeout=max(remaining, 0))
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                current, _ = _read_progress(progress, run) if progress.exists() else (None, False)
                if current is not None:
                    run.outcomes[current] = "hang"
                run.status = "timeout"
                break
        _kill_group(proc)  # a finished module's stray children
        current, finished = _read_progress(progress, run) if progress.exists() else (None, False)
        if finished:
            break
        if current is None:
            run.status = "crash"
            break
        run.outcomes[current] = "hang" if proc.returncode == 1 else "crash"
    else:
        run.status = "crash"
    run.seconds = round(time.monotonic() - started, 1)
    return run


@dataclass
class Comparison:
    """One module on both libraries."""

    module: str
    runs: dict[str, ModuleRun]

    @property
    def ferrovent_only(self) -> list[str]:
        """Tests that fail after ferrovent's patch_all and pass after gevent's."""
        return sorted(self.runs["ferrovent"].failed & self.runs["gevent"].passed)

    @property
    def gevent_only(self) -> list[str]:
        """Tests that fail after gevent's patch_all and pass after ferrovent's."""
        return sorted(self.runs["gevent"].failed & self.runs["ferrovent"].passed)


def ferrovent_regressions(
    module: str, workdir: Path, disabled: dict, module_timeout: float = MODULE_TIMEOUT
) -> tuple[ModuleRun, ModuleRun | None, list[str]]:
    """``module`` on ferrovent, then, only if some of its tests fail there, just those tests on gevent: returns both
    runs (gevent's is None when it was not needed) and the tests that fail on ferrovent only.

    The comparison needs gevent's outcome of ferrovent's failures and nothing else, which halves the time of a run
    where gevent would pass or fail the module's other tests alike.
    """
    entry = disabled_in(disabled, module)
    started = time.monotonic()
    ferrovent = run_module("ferrovent", module, entry, workdir / "ferrovent", module_timeout=module_timeout)
    if not ferrovent.failed:
        return ferrovent, None, []
    remaining = max(module_timeout - (time.monotonic() - started), 1.0)
    gevent = run_module(
        "gevent", module, entry, workdir / "gevent", module_timeout=remaining, only=sorted(ferrovent.failed)
    )
    return ferrovent, gevent, Comparison(module, {"ferrovent": ferrovent, "gevent": gevent}).ferrovent_only


def run_modules(
    modules: list[str], libs=LIBS, jobs: int = 2, workdir: Path | None = None, disabled: dict | None = None, **limits
) -> dict[str, dict[str, ModuleRun]]:
    """Runs every (module, library) pair, ``jobs`` at a time; returns ``{module: {lib: ModuleRun}}``.

    Every module runs on the first library before any runs on the next, so that with a few jobs the two sides of
    one module rarely run at the same time (some tests bind fixed ports or paths, and would fail on the other side
    for it). ``disabled``: what `disabled_tests` returns (read now if not given).
    """
    disabled = disabled_tests() if disabled is None else disabled
    workdir = Path(workdir or tempfile.mkdtemp(prefix="ferrovent-stdlib-"))
    pairs = [(module, lib) for lib in libs for module in modules]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {
            pair: pool.submit(
                run_module,
                pair[1],
                pair[0],
                disabled_in(disabled, pair[0]),
                workdir / f"{pair[0]}-{pair[1]}",
                **limits,
            )
            for pair in pairs
        }
        results: dict[str, dict[str, ModuleRun]] = {module: {} for module in modules}
        for (module, lib), future in futures.items():
            results[module][lib] = future.result()
    return results


def describe_failures(run: ModuleRun, tests: list[str], lines: int = 15) -> str:
    """The tests' outcomes with the end of each traceback, and where the run's full output is."""
    parts = [f"{len(tests)} test(s) of {run.module} fail after {run.lib}'s patch_all only; full output: {run.log}"]
    for test in tests:
        detail = "\n".join(run.details.get(test, "").splitlines()[-lines:])
        parts.append(f"--- {test}: {run.outcomes[test]}\n{detail}")
    return "\n".join(parts)


def format_table(results: dict[str, dict[str, ModuleRun]]) -> str:
    """Per module and library: tests, pass/fail/error/skip/hang counts, status and seconds; then the differences."""
    lines = [
        f"{'module':24} {'lib':9} {'tests':>5} {'pass':>5} {'fail':>4} {'err':>4} {'skip':>4} {'hang':>4} "
        f"{'status':8} {'secs':>6} {'only-here':>9}"
    ]
    differences = []
    for module, runs in results.items():
        both = len(runs) == 2
        comparison = Comparison(module, runs) if both else None
        for lib, run in runs.items():
            c = run.counts()
            only = ""
            if comparison is not None:
                only = str(len(comparison.ferrovent_only if lib == "ferrovent" else comparison.gevent_only))
            lines.append(
                f"{module:24} {lib:9} {len(run.outcomes):5} {c['pass'] + c['xfail']:5} "
                f"{c['fail'] + c['unexpected-success']:4} {c['error']:4} {c['skip']:4} {c['hang'] + c['crash']:4} "
                f"{run.status:8} {run.seconds:6.1f} {only:>9}"
            )
        if comparison is not None:
            for test in comparison.ferrovent_only:
                differences.append(f"FERROVENT-ONLY {test}: {runs['ferrovent'].outcomes[test]}")
            for test in comparison.gevent_only:
                differences.append(f"gevent-only    {test}: {runs['gevent'].outcomes[test]}")
    totals = {lib: sum(runs[lib].seconds for runs in results.values() if lib in runs) for lib in LIBS}
    lines.append("total seconds: " + ", ".join(f"{lib} {secs:.0f}" for lib, secs in totals.items() if secs))
    return "\n".join(lines + differences)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help="test modules (default: all in MODULES this Python has)")
    parser.add_argument("--lib", choices=(*LIBS, "both"), default="both")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="where logs and progress files go (default: a new temp dir)")
    parser.add_argument("--json", type=Path, help="also write every test's outcome here")
    parser.add_argument("--per-test-timeout", type=float, default=PER_TEST_TIMEOUT)
    parser.add_argument("--module-timeout", type=float, default=MODULE_TIMEOUT)
    args = parser.parse_args(argv)
    libs = LIBS if args.lib == "both" else (args.lib,)
    results = run_modules(
        args.modules or available_modules(),
        libs,
        jobs=args.jobs,
        workdir=args.workdir,
        per_test_timeout=args.per_test_timeout,
        module_timeout=args.module_timeout,
    )
    print(format_table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    module: {lib: {**vars(run), "outcomes": run.outcomes} for lib, run in runs.items()}
                    for module, runs in results.items()
                },
                indent=1,
            )
        )
    regressions = sum(len(Comparison(m, runs).ferrovent_only) for m, runs in results.items() if len(runs) == 2)
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())

"""One test file's run on one side (stock gevent or ferrovent): its per-test outcomes, read from child.py's record.

Outcomes are unittest's: pass, fail, error, skip, xfail (expected failure), xpass (unexpected success), plus
``incomplete`` for a test that started and never ended (the file hung or crashed in it). A file that never started
a unittest run (a plain script, or a module that failed at import) has one pseudo-test, ``<file>``, that passed if
the process exited 0.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field

WHOLE_FILE = "<file>"
PASSING = ("pass",)
# When one test reports several outcomes (failing subtests, then its own end), the worst one counts.
_SEVERITY = {"error": 6, "fail": 5, "incomplete": 4, "xpass": 3, "pass": 2, "xfail": 1, "skip": 0}
# Blanked in an exception line so that equal causes group together: addresses, numbers, the file an ImportError names.
_VARYING = (
    (re.compile(r"0x[0-9a-fA-F]+"), "0x?"),
    (re.compile(r"(?<![\w.])-?\d+(\.\d+)?(e[-+]?\d+)?(?!\w)"), "N"),
    (re.compile(r" \((/|[A-Za-z]:\\)[^)]*\)"), ""),
)


@dataclass
class Outcome:
    outcome: str
    detail: str = ""


@dataclass
class FileRun:
    file: str
    side: str  # "gevent" or "ferrovent"
    exit_code: int | None  # None: killed after the timeout
    seconds: float
    ran_unittest: bool
    completed: bool = False  # the unittest run reached its end
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    output_tail: str = ""  # the end of the process's stdout and stderr

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None

    def count(self, *kinds: str) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome.outcome in kinds)

    def passing(self) -> set[str]:
        return {test for test, outcome in self.outcomes.items() if outcome.outcome in PASSING}

    def status(self) -> str:
        if self.timed_out:
            return f"timeout ({self.seconds:.0f}s)"
        if self.exit_code < 0:
            return f"killed by signal {-self.exit_code}"
        if not self.ran_unittest and self.exit_code != 0:
            return f"exit {self.exit_code} before any test ran"
        return "ok" if self.exit_code == 0 else f"exit {self.exit_code}"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> FileRun:
        outcomes = {test: Outcome(**outcome) for test, outcome in data.pop("outcomes").items()}
        return cls(outcomes=outcomes, **data)


def _test_name(test_id: str) -> str:
    """``__main__.TestX.test_y`` -> ``TestX.test_y``; class and module fixtures keep their unittest names."""
    return test_id.replace("__main__.", "")


def read_record(path, file: str, side: str, exit_code: int | None, seconds: float, output: str) -> FileRun:
    """The FileRun for one child.py record (a JSON line per event), its exit code and its output."""
    events = []
    try:
        with open(path, encoding="utf-8") as record:
            events = [json.loads(line) for line in record if line.endswith("\n")]
    except FileNotFoundError:
        pass
    main_pid = next((event["pid"] for event in events if event["event"] == "process"), None)
    events = [event for event in events if event["pid"] == main_pid]  # not a forked child's
    run = FileRun(file, side, exit_code, round(seconds, 2), False, output_tail=output[-6000:])
    for event in events:
        kind = event["event"]
        if kind == "run-start":
            run.ran_unittest = True
        elif kind == "run-end":
            run.completed = True
        elif kind == "start":
            run.outcomes.setdefault(_test_name(event["id"]), Outcome("incomplete", "started, never ended"))
        elif kind == "outcome":
            name = _test_name(event["id"])
            new = Outcome(event["outcome"], event.get("detail", ""))
            old = run.outcomes.get(name)
            if old is None or old.outcome == "incomplete" or _SEVERITY[new.outcome] > _SEVERITY[old.outcome]:
                run.outcomes[name] = new
    if not run.ran_unittest:
        passed = exit_code == 0
        run.outcomes[WHOLE_FILE] = Outcome("pass" if passed else "fail", "" if passed else output[-3000:])
    return run


_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')


def _block_exception(block: list[str]) -> str:
    """The exception line of one traceback block, with where it was raised if it is a bare assertion."""
    at = next((index for index, line in enumerate(block) if not line.startswith((" ", "\t"))), None)
    line = (block[at] if at is not None else block[-1] if block else "").strip()
    for pattern, blank in _VARYING:
        line = pattern.sub(blank, line)
    frames = _FRAME.findall("\n".join(block[:at]))
    if line.startswith("AssertionError") and frames:  # the message alone says too little: where it was asserted
        path, function = frames[-1]
        line = line[:200] + f" @ {path.replace(os.sep, '/').rsplit('/', 1)[-1]}:{function}"
    return line


def exception_line(text: str) -> str:
    """The exception a traceback ends with (and the one it was handling, if chained), varying parts blanked."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    headers = [index for index, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    if not headers:
        return _block_exception(lines)[:300]
    line = _block_exception(lines[headers[-1] + 1 :])
    if len(headers) > 1:
        line += f" (while handling {_block_exception(lines[headers[0] + 1 : headers[1]])})"
    return line[:300]

"""The ratchet CI checks: gevent tests that pass on ferrovent, per file, which must go on passing.

``expectations.json`` is written from one or more runner reports (``runner --write-expectations``): a test is
expected if it passed on ferrovent in every report given (so a test that passes only sometimes stays out), and a
file is kept if it has expected tests, is not one gevent itself lists as failing or flaky, and its ferrovent run
was cheap, cheapest first, within a time budget, so the check stays a small part of CI. Regenerate it when
ferrovent gains tests (the check warns when more pass than it lists).
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.gevent_suite.report import load_side

PATH = Path(__file__).resolve().parent / "expectations.json"
DEFAULT_BUDGET = 60.0  # seconds of ferrovent-side runs, summed over the files kept


def stable_passes(reports: list[dict]) -> dict[str, tuple[set[str], float]]:
    """{file: (tests passing on ferrovent in every report, the slowest run's seconds)}."""
    sides = [load_side(data, "ferrovent") for data in reports]
    result = {}
    for name in set.intersection(*(set(side) for side in sides)):
        runs = [side[name] for side in sides]
        if any(run.timed_out for run in runs):
            continue
        passing = set.intersection(*(run.passing() for run in runs))
        if passing:
            result[name] = (passing, max(run.seconds for run in runs))
    return result


def build(reports: list[dict], budget: float = DEFAULT_BUDGET) -> dict:
    if any(data["meta"]["options"].get("preview") for data in reports):
        raise SystemExit("a report made with --preview stands in for missing modules: it cannot set expectations")
    # Files gevent itself lists as failing or flaky on this platform stay out of a check that must not flake.
    flaky = {entry.split()[-1] for data in reports for entry in data["meta"]["known_failures"]["FAILING_TESTS"]}
    files, spent = {}, 0.0
    candidates = {name: entry for name, entry in stable_passes(reports).items() if name not in flaky}
    for name, (passing, seconds) in sorted(candidates.items(), key=lambda item: (item[1][1], item[0])):
        if spent + seconds > budget:
            break
        spent += seconds
        files[name] = {"seconds": seconds, "passing": sorted(passing)}
    return {
        "about": "gevent tests passing on ferrovent that must go on passing; see tests/gevent_suite/expectations.py",
        "gevent": reports[0]["meta"]["gevent"],
        "seconds": round(spent, 1),
        "files": dict(sorted(files.items())),
    }


def write(path: Path, reports: list[dict], budget: float = DEFAULT_BUDGET) -> dict:
    data = build(reports, budget)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return data


def load(path: Path = PATH) -> dict:
    return json.loads(path.read_text())

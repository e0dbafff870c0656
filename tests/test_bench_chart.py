"""benches/chart.py: the picture benches/run.py writes is valid SVG with one bar per bench, on a log scale."""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

BENCHES_DIR = Path(__file__).resolve().parents[1] / "benches"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def benches_modules():
    sys.path.insert(0, str(BENCHES_DIR))
    try:
        import chart
        import report
        import scenarios

        yield chart, report, scenarios
    finally:
        sys.path.remove(str(BENCHES_DIR))


def _bars(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("class") == "bar"]


def test_one_bar_per_compared_bench(benches_modules, tmp_path: Path) -> None:
    chart, report, scenarios = benches_modules
    benches = list(scenarios.BENCHES.values())
    samples: dict[tuple[str, str], list[float]] = {}
    for index, bench in enumerate(benches):
        ferrovent_better = 1.5 + index  # every bench a different ratio, all in ferrovent's favour
        worse, better = 100.0, 100.0 * ferrovent_better
        samples[(bench.name, "ferrovent")] = [better if bench.higher_is_better else 100.0]
        samples[(bench.name, "gevent")] = [worse if bench.higher_is_better else 100.0 * ferrovent_better]
        samples[(bench.name, "greenlet")] = [1.0]
    ratios = report.ratios(benches, samples)
    compared = [bench.name for bench in benches if not bench.reference]
    assert [name for name, _ in ratios] == compared

    path = tmp_path / "results.svg"
    header = [("CPU", "Test <CPU> & co, 2 cores"), ("Python", "CPython 3.x")]
    chart.write(path, "ratios", header, ratios, ["a shared dev machine"])
    text = path.read_text()
    bars = _bars(text)
    assert [bar.get("data-bench") for bar in bars] == compared
    for bar, (_, ratio) in zip(bars, ratios):
        assert float(bar.get("data-ratio")) == pytest.approx(ratio, rel=1e-3)
    assert "Test &lt;CPU&gt; &amp; co, 2 cores" in text


def test_bars_are_on_a_log_scale_around_one(benches_modules) -> None:
    chart, _, _ = benches_modules
    bars = _bars(
        chart.render("t", [], [("ten", 10.0), ("hundredth", 0.01), ("three", math.sqrt(10)), ("none", None)], [])
    )
    assert [bar.get("data-bench") for bar in bars] == ["ten", "hundredth", "three"]  # no figure, no bar
    widths = {bar.get("data-bench"): float(bar.get("width")) for bar in bars}
    assert widths["hundredth"] == pytest.approx(2 * widths["ten"], abs=0.2)
    assert widths["three"] == pytest.approx(widths["ten"] / 2, abs=0.2)
    ten, hundredth = bars[0], bars[1]
    assert float(hundredth.get("x")) + float(hundredth.get("width")) == pytest.approx(float(ten.get("x")), abs=0.2)
    assert ten.get("fill") != hundredth.get("fill")  # better and worse look different

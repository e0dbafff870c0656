"""Turn benchmark samples into the results table, as plain text or markdown."""

from __future__ import annotations

import statistics
import textwrap

from scenarios import Bench

COLUMNS = ("ferrovent", "gevent")
HEADINGS = ("bench", "metric", *COLUMNS, "ratio [1]", "rounds")
NOTES = (
    "Medians over rounds; every measurement ran in a fresh process, the implementations interleaved.",
    "[1] ratio > 1 means ferrovent is better: ferrovent/gevent for higher-is-better metrics, gevent/ferrovent for "
    "lower-is-better ones.",
)
Samples = dict[tuple[str, str], list[float]]


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(bench: Bench, ferrovent: float | None, gevent: float | None) -> float | None:
    """How many times better ferrovent did than gevent, or None when a figure is missing or zero."""
    if ferrovent is None or gevent is None:
        return None
    better, worse = (ferrovent, gevent) if bench.higher_is_better else (gevent, ferrovent)
    return better / worse if worse > 0 else None


def _medians(bench: Bench, samples: Samples) -> tuple[float | None, float | None]:
    """ferrovent's and gevent's median for `bench` (None where it has no samples)."""
    runs = [samples.get((bench.name, impl), []) for impl in COLUMNS]
    ferrovent, gevent = (statistics.median(values) if values else None for values in runs)
    return ferrovent, gevent


def ratios(benches: list[Bench], samples: Samples) -> list[tuple[str, float | None]]:
    """(bench, ratio) for every bench that compares the two (reference benches do not)."""
    return [(bench.name, _ratio(bench, *_medians(bench, samples))) for bench in benches if not bench.reference]


def _rounds(counts: dict[str, int]) -> str:
    if len(set(counts.values())) == 1:
        return str(next(iter(counts.values())))
    return " / ".join(f"{impl} {count}" for impl, count in counts.items())


def rows(
    benches: list[Bench], samples: Samples, impls: list[str], reference_impl: str, load_client: str
) -> list[tuple[str, ...]]:
    """One table row per bench, cells as strings in HEADINGS order; `impls` are the implementations that ran, and
    `load_client` names the load generator of the benches that use one."""
    table = []
    for bench in benches:
        metric = f"{bench.unit} ({'higher' if bench.higher_is_better else 'lower'} is better)"
        if bench.uses_load_client:
            metric += f", load by {load_client}"
        if bench.reference:
            runs = samples.get((bench.name, reference_impl), [])
            reference = statistics.median(runs) if runs else None
            cell = _number(reference) if reference is not None else "n/a"
            table.append((bench.name, metric, cell, cell, _reference_ratio(bench, reference, samples), str(len(runs))))
            continue
        ferrovent, gevent = _medians(bench, samples)
        cells = [_number(median) if median is not None else "n/a" for median in (ferrovent, gevent)]
        counts = {impl: len(samples.get((bench.name, impl), [])) for impl in COLUMNS if impl in impls}
        ratio = _ratio(bench, ferrovent, gevent)
        ratio_cell = f"{ratio:.2f}x" if ratio is not None else "n/a"
        table.append((bench.name, metric, *cells, ratio_cell, _rounds(counts)))
    return table


def _reference_ratio(bench: Bench, reference: float | None, samples: Samples) -> str:
    """A reference row's ratio cell: ferrovent's figure of `bench.versus` against the reference, if it ran."""
    if bench.versus is None:
        return "reference"
    runs = samples.get((bench.versus, "ferrovent"), [])
    ratio = _ratio(bench, statistics.median(runs) if runs else None, reference)
    return f"{ratio:.2f}x" if ratio is not None else "n/a"


def notes(benches: list[Bench]) -> list[str]:
    return [*NOTES, *(bench.note for bench in benches if bench.note)]


def render_text(header: list[tuple[str, str]], table: list[tuple[str, ...]], footnotes: list[str]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(HEADINGS, *table)]

    def line(cells: tuple[str, ...]) -> str:
        aligned = [
            cell.ljust(width) if i < 2 else cell.rjust(width) for i, (cell, width) in enumerate(zip(cells, widths))
        ]
        return "  ".join(aligned).rstrip()

    label_width = max(len(label) for label, _ in header)
    out = [f"{label.ljust(label_width)}  {value}" for label, value in header]
    out += ["", line(HEADINGS), line(tuple("-" * width for width in widths))]
    out += [line(cells) for cells in table]
    out += ["", *(textwrap.fill(note, width=100, subsequent_indent="    ") for note in footnotes)]
    return "\n".join(out) + "\n"


def render_markdown(header: list[tuple[str, str]], table: list[tuple[str, ...]], footnotes: list[str]) -> str:
    header_lines = [f"- **{label}**: {value}" for label, value in header]
    table_lines = ["| " + " | ".join(HEADINGS) + " |", "|" + "|".join([":---"] * 2 + ["---:"] * 4) + "|"]
    table_lines += ["| " + " | ".join(cells) + " |" for cells in table]
    return "\n\n".join(["\n".join(header_lines), "\n".join(table_lines), *footnotes]) + "\n"

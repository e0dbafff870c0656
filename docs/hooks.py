"""mkdocs hook of the documentation site (mkdocs.yml lists it under ``hooks:``).

The benchmark files live beside the benchmarks, in ``benches/``, where ``run.py`` writes them: the site takes them
from there at build time, so there is never a copy in ``docs/`` that could go stale.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

_REPOSITORY = Path(__file__).resolve().parent.parent

# Site path -> the repository's file it is built from.
BENCH_FILES = {
    "benchmarks/reference.md": "benches/README.md",
    "benchmarks/results.md": "benches/RESULTS.md",
    "benchmarks/results.svg": "benches/results.svg",
}


def on_files(files, config):
    for site_path, source in BENCH_FILES.items():
        files.append(File.generated(config, site_path, abs_src_path=str(_REPOSITORY / source)))
    return files

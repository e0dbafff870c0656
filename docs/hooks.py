"""mkdocs hooks of the documentation site (mkdocs.yml lists this file under ``hooks:``).

- The benchmark files live beside the benchmarks, in ``benches/``, where ``run.py`` writes them: the site takes
  them from there at build time (never a copy in ``docs/`` that could go stale).
- ferrovent's docstrings use a few reStructuredText roles (``:func:`x```); Markdown has none, and mkdocstrings
  renders them as the role's name followed by the code. The name is dropped, the code kept.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

_REPOSITORY = Path(__file__).resolve().parent.parent

# Site path -> file of the repository it is built from.
BENCH_FILES = {
    "benchmarks/reference.md": "benches/README.md",
    "benchmarks/results.md": "benches/RESULTS.md",
    "benchmarks/results.svg": "benches/results.svg",
}

_ROLE = re.compile(r":(?:func|meth|class|mod|attr|data|exc|obj):(?=<code>)")


def on_files(files, config):
    for site_path, source in BENCH_FILES.items():
        files.append(File.generated(config, site_path, abs_src_path=str(_REPOSITORY / source)))
    return files


def on_page_content(html, page, config, files):
    return _ROLE.sub("", html)

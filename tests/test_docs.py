"""The documentation site (docs/, mkdocs.yml) as a reader meets it: every public module has its API page, and every
Python example on a page runs as printed (and prints what the page shows after it, where it shows output).

The site itself is built by CI with ``mkdocs build --strict``; these checks need no mkdocs.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import ferrovent
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
# The package the tests run (the source tree's, or the installed wheel's in .ci/matrix): the same modules.
PACKAGE = Path(ferrovent.__file__).parent
MKDOCS_YML = (ROOT / "mkdocs.yml").read_text()

# A fenced block, and the Markdown before it (where a skip marker would be).
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.S | re.M)
# An example a test cannot run says why, in a comment the reader does not see, right above its fence.
SKIP = re.compile(r"<!-- docs-test: skip \([^)]+\) -->")
SKIP_ABOVE = re.compile(SKIP.pattern + r"\s*\Z")
EXAMPLE_TIMEOUT = 30


# Private modules whose names are public (the loop's API, ``ferrovent.config``, the monitoring thread): their pages.
PRIVATE_MODULES_DOCUMENTED = {"_core": "loop", "_config": "config", "_monitor": "monitor"}


def public_modules() -> list[tuple[str, str]]:
    """(module, its API page's name) for each module and package of ferrovent whose name does not start with an
    underscore, and for the private modules above."""
    names = {path.stem for path in PACKAGE.glob("*.py")} | {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    public = [(name, name) for name in names if not name.startswith("_")]
    return sorted(public + list(PRIVATE_MODULES_DOCUMENTED.items()))


def python_examples() -> list[tuple[str, str, str | None]]:
    """(page:line, code, the output shown right after it or None) for each ```python block not marked to skip."""
    examples = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text()
        blocks = list(FENCE.finditer(text))
        for index, block in enumerate(blocks):
            if block["lang"] != "python" or SKIP_ABOVE.search(text[: block.start()]):
                continue
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            shown = None
            if following and following["lang"] == "text" and not text[block.end() : following.start()].strip():
                shown = following["body"]
            where = f"{page.name}:{text.count(chr(10), 0, block.start()) + 1}"
            examples.append((where, block["body"], shown))
    return examples


def addresses_numbered(output: str) -> str:
    """The output with each distinct ``0x...`` address replaced by its rank of first appearance."""
    ranks: dict[str, str] = {}
    return re.sub(r"0x[0-9a-f]+", lambda match: ranks.setdefault(match[0], f"<address {len(ranks) + 1}>"), output)


@pytest.mark.parametrize("module, page_name", public_modules())
def test_every_public_module_has_an_api_page_in_the_navigation(module, page_name):
    page = DOCS / "api" / f"{page_name}.md"
    assert page.is_file(), f"add {page.relative_to(ROOT)} with the line '::: ferrovent.{module}'"
    assert f"::: ferrovent.{module}" in page.read_text()
    assert f"api/{page_name}.md" in MKDOCS_YML, f"list api/{page_name}.md under 'API reference' in mkdocs.yml's nav"


def test_every_api_page_documents_a_module_that_exists():
    documented = {f"{page_name}.md" for _, page_name in public_modules()} | {"ferrovent.md"}
    assert sorted(page.name for page in (DOCS / "api").glob("*.md")) == sorted(documented)


def test_the_site_has_examples_to_run():
    assert len(python_examples()) >= 5


@pytest.mark.parametrize("where, code, shown", python_examples(), ids=[where for where, _, _ in python_examples()])
def test_python_example_runs_as_printed(where, code, shown, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT
    )
    assert done.returncode == 0, f"{where} failed:\n{done.stderr}"
    if shown is not None:
        assert addresses_numbered(done.stdout) == addresses_numbered(shown), f"{where} prints something else"


def test_every_skip_marker_gives_a_reason_and_stands_above_an_example():
    for page in DOCS.glob("*.md"):
        text = page.read_text()
        for marker in re.finditer(r"<!-- docs-test:.*?-->", text):
            assert SKIP.fullmatch(marker[0]), f"{page.name}: {marker[0]} (write: <!-- docs-test: skip (why) -->)"
            assert text[marker.end() :].lstrip().startswith("```python"), f"{page.name}: {marker[0]} skips nothing"

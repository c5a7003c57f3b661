"""Every "§" and defect reference in the repository resolves to a heading of the book's Reference part.

Code and parameter files cite the reference pages as ``algorithms §4.2`` (a bare ``§4.2`` means the algorithms
page), ``peers §3.3``, ``architecture §6`` and ``defect D7`` (or a bare ``D7``). Each page gives its numbered
headings a MyST label (``(algorithms-4-2)=``) directly above the heading ``### 4.2 ...``, so chapters can link them
with ``{ref}``.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "book" / "reference"
PAGES = ("algorithms", "defects", "peers", "architecture")
LABEL = re.compile(r"^\((?P<label>[a-z]+-[0-9a-z-]+)\)=\n\n?(?P<hashes>#+) (?P<title>.+)$", re.M)
ANY_LABEL = re.compile(r"^\([a-z]+-[0-9a-z-]+\)=$", re.M)
SECTION = re.compile(r"(?:\b(?P<page>algorithms|peers|architecture) )?§ ?(?P<number>\d+(?:\.\d+)*)")
DEFECT = re.compile(r"\bD(?P<number>[1-9]\d?)\b")
CITING = ("*.py", "*.yaml", "*.md", "*.toml", "*.csv", "Makefile")


def headings(page: str) -> dict[str, str]:
    """``{label: heading title}`` of a reference page, checking that each label sits on its heading."""
    text = (REFERENCE / f"{page}.md").read_text(encoding="utf-8")
    found = {m["label"]: m["title"] for m in LABEL.finditer(text)}
    assert len(found) == len(ANY_LABEL.findall(text)), f"{page}: a label does not sit on its heading"
    return found


def numbers(page: str) -> set[str]:
    """The section numbers (``4.2``) or defect ids (``D7``) a page defines, each as its label says."""
    out = set()
    for label, title in headings(page).items():
        key = title.split()[0].rstrip(".:")
        expected = label.split("-", 1)[1].replace("-", ".")
        assert key.lower() == expected, f"{page}: label ({label})= sits on heading {title!r}"
        out.add(key)
    return out


def citing_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", *CITING], cwd=ROOT, capture_output=True, text=True, check=True)
    return [
        ROOT / f
        for f in tracked.stdout.split()
        if not f.startswith("book/reference/") and (ROOT / f).is_file() and not (ROOT / f).is_symlink()
    ]


def test_every_page_numbers_its_headings():
    assert {"1", "4.2", "16.8", "17"} <= numbers("algorithms")
    assert numbers("defects") == {f"D{i}" for i in range(1, 25)}
    assert {"1", "2.2", "3.3", "5.6", "7"} <= numbers("peers")
    assert {"1", "4", "6"} <= numbers("architecture")


def test_every_citation_resolves():
    defined = {page: numbers(page) for page in PAGES}
    files = citing_files()
    assert len(files) > 50, "the scan found the repository's files"
    broken = []
    cited = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        for m in SECTION.finditer(text):
            cited += 1
            page = m["page"] or "algorithms"
            if m["number"] not in defined[page]:
                broken.append(f"{path.relative_to(ROOT)}: {m[0]!r} ({page} has no section {m['number']})")
        for m in DEFECT.finditer(text):
            cited += 1
            if f"D{m['number']}" not in defined["defects"]:
                broken.append(f"{path.relative_to(ROOT)}: {m[0]!r} (no such defect)")
    assert cited > 50
    assert not broken, "\n".join(broken)


def test_nothing_cites_files_outside_the_repository():
    outside = re.compile(r"\b(ALGORITHMS|PEERS|DESIGN|BOOK_TOOLING)\.md\b")
    hits = [str(p.relative_to(ROOT)) for p in citing_files() if outside.search(p.read_text(encoding="utf-8"))]
    assert not hits, hits


@pytest.mark.parametrize(
    ("text", "page", "number"),
    [("algorithms §4.2", "algorithms", "4.2"), ("(§16.8)", None, "16.8"), ("peers §3.3", "peers", "3.3")],
)
def test_citation_pattern(text, page, number):
    m = SECTION.search(text)
    assert m is not None and (m["page"], m["number"]) == (page, number)

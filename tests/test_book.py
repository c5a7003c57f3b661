"""The book tooling (``tools.book_build``): offline JS, cached papermill runs, strict HTML builds.

Throwaway notebooks and books in ``tmp_path`` exercise the machinery in seconds; one slow test builds the
real book on the ``smoke`` profile. Tests that start a kernel or jupyter-book carry the ``book`` marker.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from tools import book_build
from tools.book_build import (
    RESULT_PAGES,
    BookBuildError,
    NotebookExecutionError,
    build_book,
    build_html,
    execute_notebooks,
    fetch_widget_js,
    input_stamp,
    notebooks_in_toc,
)

ROOT = Path(__file__).resolve().parents[1]
WIDGET_FILES = ("require.js", "config.js", "embed-amd.js")
PARAMETERS = 'profile: str = "tiny"  # parameter profile\n'


def _write_notebook(path: Path, *cells: tuple[str, str]) -> Path:
    """A notebook of ``(kind, source)`` cells; kind ``parameters`` is a code cell with that tag."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source in cells:
        if kind == "markdown":
            notebook.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            cell = nbformat.v4.new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            notebook.cells.append(cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def _throwaway_root(tmp_path: Path, name: str, *cells: tuple[str, str]) -> Path:
    """A repository-like folder: one notebook, a ``smoke`` profile, a library file."""
    _write_notebook(tmp_path / "notebooks" / f"{name}.ipynb", *cells)
    (tmp_path / "params" / "smoke").mkdir(parents=True)
    (tmp_path / "params" / "smoke" / "eval.yaml").write_text("eps: 4\n")
    (tmp_path / "robseg_lib").mkdir()
    (tmp_path / "robseg_lib" / "module.py").write_text("X = 1\n")
    return tmp_path


def _stdout(notebook: Path) -> str:
    cells = nbformat.read(notebook, as_version=4).cells
    return "".join(o.get("text", "") for c in cells for o in c.get("outputs", []) if o.output_type == "stream")


def _toc_pages(entry) -> list[str]:
    """Every ``root``/``file`` of a toc, without suffix."""
    if isinstance(entry, list):
        return [page for item in entry for page in _toc_pages(item)]
    if not isinstance(entry, dict):
        return []
    pages = [str(Path(entry[key]).with_suffix("")) for key in ("root", "file") if key in entry]
    return pages + [page for key in ("parts", "chapters", "sections") for page in _toc_pages(entry.get(key))]


# --------------------------------------------------------------------------------------------------
# Pure units (no kernel, no network)


def test_notebooks_in_toc_takes_generated_files_in_order(tmp_path: Path):
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: intro\nparts:\n"
        "  - caption: A\n    chapters:\n      - file: _generated/b\n        sections:\n"
        "          - file: _generated/a.ipynb\n          - file: notes\n"
        "  - caption: B\n    chapters:\n      - file: _generated/b\n      - file: other/_generated/c\n"
    )
    assert notebooks_in_toc(toc) == ["b", "a"]


def test_input_stamp_tracks_notebook_library_and_profile(tmp_path: Path):
    root = _throwaway_root(tmp_path, "nb", ("parameters", PARAMETERS))
    notebook = root / "notebooks" / "nb.ipynb"
    (root / "params" / "tiny").mkdir()
    stamp = input_stamp(notebook, "smoke", root)
    assert input_stamp(notebook, "smoke", root) == stamp
    assert input_stamp(notebook, "tiny", root) != stamp

    (root / "params" / "tiny" / "eval.yaml").write_text("eps: 8\n")  # another profile: irrelevant
    (root / "robseg_lib" / "__pycache__").mkdir()
    (root / "robseg_lib" / "__pycache__" / "module.pyc").write_bytes(b"\0")
    assert input_stamp(notebook, "smoke", root) == stamp

    for path, text in [
        (root / "params" / "smoke" / "eval.yaml", "eps: 8\n"),
        (root / "robseg_lib" / "module.py", "X = 2\n"),
        (root / "robseg_lib" / "paper_data" / "table.csv", "a,b\n"),
    ]:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        assert input_stamp(notebook, "smoke", root) != stamp, path
        stamp = input_stamp(notebook, "smoke", root)


def test_input_stamp_of_result_pages_tracks_the_results(tmp_path: Path):
    root = _throwaway_root(tmp_path, "nb", ("parameters", PARAMETERS))
    chapter = root / "notebooks" / "nb.ipynb"
    page = root / "notebooks" / f"{RESULT_PAGES[0]}.ipynb"
    page.write_bytes(chapter.read_bytes())
    results = tmp_path / "results"
    stamps = {nb: input_stamp(nb, "smoke", root, results) for nb in (chapter, page)}
    for path in (results / "tiny" / "x.json", results / "smoke" / "sea" / "m" / "summary.json"):
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    assert input_stamp(chapter, "smoke", root, results) == stamps[chapter]
    assert input_stamp(page, "smoke", root, results) != stamps[page]  # a new smoke result
    stamp = input_stamp(page, "smoke", root, results)
    (results / "tiny" / "x.json").write_text("{1}")  # another profile's results: irrelevant
    assert input_stamp(page, "smoke", root, results) == stamp
    (results / "benchmarks").mkdir()
    (results / "benchmarks" / "bench_x.json").write_text("{}")
    assert input_stamp(page, "smoke", root, results) != stamp
    assert input_stamp(chapter, "smoke", root, results) == stamps[chapter]


def test_missing_npm_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BookBuildError, match="npm not found on PATH"):
        fetch_widget_js(tmp_path / "_static", cache_dir=tmp_path / "cache")


def test_unknown_profile_is_a_clear_error(tmp_path: Path):
    root = _throwaway_root(tmp_path, "nb", ("parameters", PARAMETERS))
    with pytest.raises(BookBuildError, match=r"unknown profile 'nope'.*known: \['smoke'\]"):
        execute_notebooks("nope", ["nb"], root=root)
    with pytest.raises(BookBuildError, match="notebook.*not found"):
        execute_notebooks("smoke", ["absent"], root=root)


def test_cli_options_and_failure_status(capsys: pytest.CaptureFixture[str]):
    parser = book_build.build_parser()
    args = parser.parse_args(["--profile", "smoke", "--only", "a", "b", "--force", "--no-html"])
    assert (args.profile, args.only, args.force, args.no_html, args.timeout) == ("smoke", ["a", "b"], True, True, None)
    defaults = parser.parse_args([])
    assert (defaults.profile, defaults.only, defaults.force, defaults.no_html) == ("tiny", None, False, False)

    assert book_build.main(["--profile", "no-such-profile", "--no-html"]) == 1
    assert "unknown profile 'no-such-profile'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# Kernel runs, npm and jupyter-book


@pytest.mark.book
def test_stamp_cache_reruns_only_when_inputs_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = _throwaway_root(tmp_path, "tiny_nb", ("parameters", PARAMETERS), ("code", "print('ran', profile)"))
    out = tmp_path / "out"
    zoo_runs = []
    monkeypatch.setattr(book_build, "_train_zoo", lambda profile, root: zoo_runs.append(profile))

    def run() -> bool:
        (result,) = execute_notebooks("smoke", ["tiny_nb"], out_dir=out, root=root, timeout=60, train_zoo=True)
        assert result.output == out / "tiny_nb.ipynb" and "ran smoke" in _stdout(result.output)
        return result.executed

    assert run()
    assert (out / ".stamps" / "tiny_nb.json").is_file()
    assert zoo_runs == ["smoke"], "the zoo is trained before a notebook runs"
    assert not run(), "nothing changed: the cached output must be reused"
    assert zoo_runs == ["smoke"], "no notebook runs, so the zoo is not even checked"
    (root / "params" / "smoke" / "eval.yaml").write_text("eps: 8\n")
    assert run(), "a changed params file must re-execute the notebook"
    (out / "tiny_nb.ipynb").unlink()
    assert run(), "a missing output must re-execute the notebook"


@pytest.mark.book
def test_failing_notebook_names_itself_and_keeps_the_traceback(tmp_path: Path):
    root = _throwaway_root(
        tmp_path,
        "broken",
        ("parameters", PARAMETERS),
        ("code", "def inner():\n    raise ValueError('boom-1234')\n\ninner()"),
    )
    out = tmp_path / "out"
    with pytest.raises(NotebookExecutionError) as info:
        execute_notebooks("smoke", ["broken"], out_dir=out, root=root, timeout=60)
    message = str(info.value)
    assert "'broken'" in message and "ValueError: boom-1234" in message and "inner()" in message
    failed = out / ".failed" / "broken.ipynb"
    assert f"kept at {failed}" in message and failed.is_file()
    assert not (out / "broken.ipynb").exists() and not (out / ".stamps" / "broken.json").exists()


@pytest.mark.book
def test_cell_timeout_fails_the_notebook(tmp_path: Path):
    root = _throwaway_root(tmp_path, "hangs", ("parameters", PARAMETERS), ("code", "import time\ntime.sleep(60)"))
    with pytest.raises(NotebookExecutionError, match=r"(?s)'hangs'.*imeout"):
        execute_notebooks("smoke", ["hangs"], out_dir=tmp_path / "out", root=root, timeout=2)


@pytest.mark.book
def test_widget_js_is_complete_and_reused_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first = fetch_widget_js(tmp_path / "a" / "_static")  # the shared npm cache: at most one npm call
    embed = (first / "embed-amd.js").read_text()
    fonts = set(re.findall(r"\b[0-9a-f]{20}\.(?:woff2|woff|ttf|eot|svg)\b", embed))
    assert fonts and all((first / name).is_file() for name in (*WIDGET_FILES, *fonts))
    assert "require.config" in (first / "config.js").read_text()
    assert "requirejs" in (first / "require.js").read_text()[:3000].lower()

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # from here on npm would fail
    stamp = (first / "embed-amd.js").stat().st_mtime_ns
    assert fetch_widget_js(tmp_path / "a" / "_static") == first
    assert (first / "embed-amd.js").stat().st_mtime_ns == stamp, "a complete folder must be left alone"
    second = fetch_widget_js(tmp_path / "b" / "_static")  # new book copy: from the cached tarballs
    assert sorted(p.name for p in second.iterdir()) == sorted(p.name for p in first.iterdir())


@pytest.mark.book
def test_corrupt_cached_tarball_is_fetched_again(tmp_path: Path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for tarball in (ROOT / "cache" / "npm").glob("*.tgz"):  # reuse the shared cache: only requirejs is packed
        shutil.copy(tarball, cache)
    (cache / "requirejs-2.3.8.tgz").write_bytes(b"not a tarball")
    widgets = fetch_widget_js(tmp_path / "_static", cache_dir=cache)
    assert (widgets / "require.js").is_file()
    assert book_build._integrity(cache / "requirejs-2.3.8.tgz") == book_build._REQUIREJS.integrity


@pytest.mark.book
def test_build_html_fails_with_the_warnings(tmp_path: Path):
    book = tmp_path / "book"
    book.mkdir()
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (book / "intro.md").write_text("# Intro\n\nSee {doc}`no-such-page`.\n")
    with pytest.raises(BookBuildError, match=r"(?s)jupyter-book build failed.*WARNING.*no-such-page"):
        build_html(book, ROOT / "_config.yml", tmp_path)


DEMO_CELLS = (
    ("markdown", "# Demo chapter\n\nA formula: $\\varepsilon = 4/255$.\n\n## A section"),
    ("parameters", PARAMETERS),
    (
        "code",
        "import os, sys\nprint('prefix', sys.prefix)\nprint('env', os.environ.get('MPLBACKEND'), "
        "os.environ.get('TQDM_DISABLE'))",
    ),
    (
        "code",
        "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(2, 2))\nax.plot([0, 1], [1, 0])\nplt.show()",
    ),
    (
        "code",
        "import ipywidgets as widgets\nslider = widgets.IntSlider(min=0, max=1)\n"
        "stack = widgets.Stack([widgets.HTML('a'), widgets.HTML('b')], selected_index=0)\n"
        "widgets.jslink((slider, 'value'), (stack, 'selected_index'))\nwidgets.VBox([slider, stack])",
    ),
)


@pytest.mark.book
def test_throwaway_book_builds_warning_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The real ``_config.yml`` with a figure, a widget and math: strict build, offline assets."""
    monkeypatch.setenv("MPLBACKEND", "Agg")  # must not reach the kernel: figures would vanish
    root = _throwaway_root(tmp_path, "demo", *DEMO_CELLS)
    book = root / "book"
    book.mkdir()
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: _generated/demo\n")
    (book / "intro.md").write_text("# Throwaway book\n\nInline math $x^2$.\n")
    shutil.copy(ROOT / "_config.yml", root / "_config.yml")

    index = build_book("smoke", root=root, book_dir=book, config=root / "_config.yml", output_dir=root, train_zoo=False)

    html = index.parent
    assert index == root / "_build" / "html" / "index.html" and index.is_file()
    assert f"prefix {sys.prefix}" in _stdout(book / "_generated" / "demo.ipynb"), "kernel is not this venv"
    backend, tqdm = re.search(r"env (\S+) (\S+)", _stdout(book / "_generated" / "demo.ipynb")).groups()
    assert backend != "Agg" and tqdm == "1", (backend, tqdm)
    assert os.environ["MPLBACKEND"] == "Agg", "the caller's environment must be restored"

    page = (html / "_generated" / "demo.html").read_text()
    assert "application/vnd.jupyter.widget-state+json" in page
    assert re.search(r'<img[^>]+src="[^"]*_images/[^"]+\.png"', page), "the matplotlib figure is missing"
    scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', page)
    widget_scripts = [s.split("?")[0].removeprefix("../_static/") for s in scripts if "widgets/" in s]
    assert widget_scripts == [f"widgets/{name}" for name in WIDGET_FILES]
    assert [s for s in scripts if "mathjax" in s] == [s for s in scripts if "tex-mml-chtml.js" in s], scripts
    assert len([s for s in scripts if "mathjax" in s]) == 1
    for name in WIDGET_FILES:
        assert (html / "_static" / "widgets" / name).is_file()
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    for path in html.rglob("*.html"):
        remote = re.findall(r'<(?:script|link)[^>]+(?:src|href)="(https?://[^"]+)"', path.read_text())
        assert not remote, f"{path.name} loads {remote}: the book must work offline"


@pytest.mark.book
@pytest.mark.slow
def test_smoke_book_builds(smoke_book: Path):
    """The real book on the ``smoke`` profile, from a clean build folder, with ``-W``.

    Chapters already executed by tests/test_notebooks_run.py in this session are reused (input stamps).
    """
    book, folder = smoke_book, smoke_book.parent
    index = build_book(
        "smoke", book_dir=book, config=folder / "_config.yml", output_dir=folder, timeout=300, benchmarks=False
    )

    html = index.parent
    pages = _toc_pages(yaml.safe_load((book / "_toc.yml").read_text()))
    assert "intro" in pages and all(f"_generated/{n}" in pages for n in notebooks_in_toc(book / "_toc.yml"))
    for page in pages:
        assert (html / f"{page}.html").is_file(), page
    for name in WIDGET_FILES:
        assert (html / "_static" / "widgets" / name).is_file()

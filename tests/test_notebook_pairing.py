"""Each notebook is a clean, papermill-ready jupytext pair: ``notebooks/<name>.ipynb`` + ``<name>.py``.

The ``.ipynb`` is what users and ``make book`` run, the ``.py`` is what reviewers read: they must hold the
same cells, the ``.ipynb`` no outputs, and exactly one ``parameters`` cell whose first parameter is
``profile: str = "tiny"`` (every parameter typed and commented, so ``papermill --help-notebook`` explains
it, and typed as papermill parses: ``Optional[int]``, not ``int | None``). The title/heading checks mirror
warnings that would fail the strict book build.
"""

from __future__ import annotations

import ast
import io
import itertools
import re
import tokenize
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SCRIPTS = sorted(NOTEBOOK_DIR.glob("*.py"))


def _cells(path: Path) -> list[tuple[str, str, list[str]]]:
    notebook = jupytext.read(path)
    return [(c.cell_type, c.source.strip(), sorted(c.metadata.get("tags", []))) for c in notebook.cells]


def _headings(notebook) -> list[int]:
    """Levels of the markdown headings, in order (lines inside code fences skipped)."""
    levels = []
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        fenced = False
        for line in cell.source.splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            elif not fenced and (match := re.match(r"(#{1,6})\s+\S", line)):
                levels.append(len(match.group(1)))
    return levels


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_script_has_a_notebook(script: Path):
    assert script.with_suffix(".ipynb").is_file(), f"{script.name} has no .ipynb twin (jupytext --sync)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
class TestNotebook:
    def test_has_py_twin_with_same_cells(self, path: Path):
        script = path.with_suffix(".py")
        assert script.is_file(), f"{path.name} has no .py twin (jupytext --sync {path.name})"
        assert _cells(path) == _cells(script), f"{path.name} and {script.name} differ: jupytext --sync"

    def test_is_paired_in_percent_format(self, path: Path):
        formats = jupytext.read(path).metadata.get("jupytext", {}).get("formats", "")
        assert set(formats.split(",")) == {"ipynb", "py:percent"}, f"jupytext formats: {formats!r}"

    def test_has_no_outputs(self, path: Path):
        notebook = jupytext.read(path)
        dirty = [
            i
            for i, c in enumerate(notebook.cells)
            if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
        ]
        assert not dirty, f"cells {dirty} of {path.name} hold outputs or execution counts"

    def test_has_python3_kernelspec(self, path: Path):
        kernelspec = jupytext.read(path).metadata.get("kernelspec", {})
        assert kernelspec.get("name") == "python3", f"kernelspec: {kernelspec}"
        assert kernelspec.get("language") == "python"

    def test_starts_with_one_title_and_no_skipped_heading_level(self, path: Path):
        notebook = jupytext.read(path)
        first = notebook.cells[0]
        assert first.cell_type == "markdown" and re.match(r"# \S", first.source), "first cell: # Title"
        levels = _headings(notebook)
        assert levels.count(1) == 1, f"{levels.count(1)} H1 headings; the title must be the only one"
        jumps = [(a, b) for a, b in itertools.pairwise(levels) if b > a + 1]
        assert not jumps, f"heading levels skip: {jumps}"

    def test_parameters_cell(self, path: Path):
        cells = [c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, f"{len(cells)} cells tagged 'parameters'"
        source = cells[0].source
        statements = ast.parse(source).body
        # The one statement besides the parameters: the typing import their annotations need.
        if statements and isinstance(statements[0], ast.ImportFrom) and statements[0].module == "typing":
            statements = statements[1:]
        assert statements, "empty parameters cell"
        untyped = [ast.unparse(s) for s in statements if not isinstance(s, ast.AnnAssign)]
        assert not untyped, f"parameters without a type annotation: {untyped}"
        first = statements[0]
        assert isinstance(first.target, ast.Name) and first.target.id == "profile", "first parameter: profile"
        assert ast.unparse(first.annotation) == "str" and ast.literal_eval(first.value) == "tiny"
        commented = {
            t.start[0] for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type == tokenize.COMMENT
        }
        bare = [ast.unparse(s.target) for s in statements if s.end_lineno not in commented]
        assert not bare, f"parameters without a comment on their line: {bare}"

    def test_papermill_sees_every_parameter(self, path: Path):
        """``papermill -p NAME`` of a parameter it cannot infer logs "Passed unknown parameter" (it reads
        ``Optional[int]`` annotations, not ``int | None``), which would greet users of the main job."""
        import papermill

        (cell,) = [c for c in jupytext.read(path).cells if "parameters" in c.metadata.get("tags", [])]
        names = [s.target.id for s in ast.parse(cell.source).body if isinstance(s, ast.AnnAssign)]
        inferred = [p["name"] for p in papermill.inspect_notebook(str(path)).values()]
        assert inferred == names, f"papermill infers {inferred}, the parameters cell sets {names}"

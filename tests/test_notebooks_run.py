"""Every notebook of the book runs on the ``smoke`` profile, with no error and nothing on stderr.

Stderr counts as a failure because the book build turns any stderr left in an executed notebook into a
warning, and warnings fail the strict build. Runs go through ``book_build.execute_notebooks`` (the same
kernel, environment and working directory as ``make book``) into a temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tools.book_build import execute_notebooks, notebooks_in_toc

ROOT = Path(__file__).resolve().parents[1]
CELL_TIMEOUT_S = 300  # per cell: a hung notebook fails instead of eating the CI budget

pytestmark = pytest.mark.notebooks


@pytest.mark.parametrize("name", notebooks_in_toc(ROOT / "book" / "_toc.yml"))
def test_notebook_runs_clean_on_smoke(name: str, smoke_book: Path):
    (run,) = execute_notebooks("smoke", [name], out_dir=smoke_book / "_generated", timeout=CELL_TIMEOUT_S)
    notebook = nbformat.read(run.output, as_version=4)
    problems = []
    for index, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                problems.append(f"cell {index}: {output.ename}: {output.evalue}")
            elif output.output_type == "stream" and output.name == "stderr":
                problems.append(f"cell {index} wrote to stderr: {output.text.strip()[:500]}")
    assert not problems, f"{name} (smoke):\n" + "\n".join(problems)

"""The benchmark scripts (``benchmarks/``) and the book build step that runs them.

Each script's ``main`` runs in-process at the smallest sizes (seconds) and must write a JSON record that
:func:`robseg_lib.book.claims.benchmark_table` accepts, where the claims look for it. No timing is asserted: the
speed targets are what the scripts measure, not what a test on a busy machine could. The book step is
tested with its runner replaced (no real benchmark runs) and with throwaway scripts.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from robseg_lib.book import claims
from robseg_lib.params import load_params
from tools import book_build
from tools.book_build import BookBuildError, run_benchmarks

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--batch", "2", "--size", "32", "--repeats", "2", "--no-pin-malloc"]  # no process-wide mallopt here


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[str], ModuleType]]:
    """Import a benchmark script as a module; results under ``tmp_path``; torch's thread count restored after."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path / "results"))
    threads = torch.get_num_threads()
    yield importlib.import_module
    torch.set_num_threads(threads)


def _check_record(path: Path, name: str, n_results: int) -> dict:
    record = json.loads(path.read_text())
    assert record["benchmark"] == name
    assert {"date", "machine", "options", "results"} <= set(record)
    assert record["machine"]["cpu_count"] >= 1 and record["machine"]["torch"] == torch.__version__
    assert len(record["results"]) == n_results
    assert all(isinstance(result["setting"], str) and result["setting"] for result in record["results"])
    return record


def test_apgd_overhead_record(script: Callable[[str], ModuleType], tmp_path: Path):
    module = script("bench_apgd_overhead")
    path = module.main(["--iters", "1", *SMALL, "--out", str(tmp_path / "apgd.json")])

    assert path == tmp_path / "apgd.json"
    record = _check_record(path, "bench_apgd_overhead", 1)
    (result,) = record["results"]
    ps = load_params("tiny")
    assert result["model"] == ps.model(ps.default_model()).arch and (result["batch"], result["size"]) == (2, 32)
    assert len(result["ratios"]) == 2 and result["bare_forward_backward_ms"] > 0 and result["apgd_iteration_ms"] > 0
    assert record["options"]["clock"] == "cpu" and record["options"]["malloc_pinned"] is False
    table = claims.benchmark_table({"bench_apgd_overhead": record})
    assert len(table) == 1 and (table["ratio"] > 0).all() and (table["target"] == 1.10).all()


def test_apgd_overhead_settings_follow_the_tiny_profile(script: Callable[[str], ModuleType]):
    ps = load_params("tiny")
    settings = script("bench_apgd_overhead").named_settings()
    tiny, paper = settings["tiny"], settings["convnext-t"]
    assert tiny.model == ps.model(ps.default_model()).arch
    assert (tiny.batch, tiny.size, tiny.num_classes) == (ps.eval.batch_size, ps.data.image_size, ps.data.num_classes)
    assert (paper.model, paper.batch, paper.size) == ("upernet_convnext_t_cvst", 2, 128)


def test_at_overhead_record_lands_where_the_claims_look(script: Callable[[str], ModuleType]):
    path = script("bench_at_overhead").main(["--steps", "1", "2", *SMALL])

    assert path == claims.benchmark_path(load_params("smoke"), "bench_at_overhead")
    record = _check_record(path, "bench_at_overhead", 2)
    assert [result["steps"] for result in record["results"]] == [1, 2]
    assert all(r["at_iteration_ms"] > 0 and r["clean_iterations_ms"] > 0 for r in record["results"])
    table = claims.benchmark_table(claims.collect_evidence(load_params("smoke")).benchmarks)
    assert list(table["benchmark"]) == ["bench_at_overhead"] * 2
    assert (table["ratio"] > 0).all() and (table["target"] == 1.05).all()


def test_models_record_has_sizes_and_no_target(script: Callable[[str], ModuleType], tmp_path: Path):
    argv = ["--models", "tiny_upernet_convnext", "--batch", "2", "--size", "32", "--repeats", "1", "--threads", "1"]
    path = script("bench_models").main([*argv, "--out", str(tmp_path / "models.json")])

    (result,) = _check_record(path, "bench_models", 1)["results"]
    assert result["model"] == "tiny_upernet_convnext" and result["params_m"] > 0
    assert result["train_min_ms"] > 0 and result["eval_min_ms"] > 0
    assert "ratio" not in result and "target" not in result
    sizes = claims.model_step_times(json.loads(path.read_text()))
    assert list(sizes.index) == ["tiny_upernet_convnext"] and sizes.loc["tiny_upernet_convnext", "params (M)"] > 0


def _record(*results: dict[str, object]) -> dict[str, object]:
    return {"date": "2026-01-01", "machine": {"cpu_count": 2}, "options": {"clock": "cpu"}, "results": list(results)}


def test_benchmark_summary_lists_verdicts_and_benchmarks_not_run():
    records = {"bench_apgd_overhead": _record({"setting": "a", "ratio": 1.2, "target": 1.1})}
    summary = claims.benchmark_summary({**records, "bench_models": _record({"setting": "m", "params_m": 1.0})})
    assert summary.loc[("bench_apgd_overhead", "a"), "met"] == "not met"
    assert summary.loc[("bench_at_overhead", "-"), "met"] == "not run"
    assert len(summary) == len(claims.BENCHMARK_TARGETS)  # bench_models has no target: not a cost ratio
    passing = {"bench_apgd_overhead": _record({"setting": "a", "ratio": 1.05, "target": 1.1})}
    assert claims.benchmark_summary(passing).loc[("bench_apgd_overhead", "a"), "met"] == "met"


def test_benchmark_machines_one_column_per_record():
    machines = claims.benchmark_machines({"x": _record(), "y": {**_record(), "options": {}}})
    assert list(machines.columns) == ["x", "y"]
    assert machines.loc["clock", "x"] == "cpu" and machines.loc["clock", "y"] == "-"
    assert machines.loc["cpu_count", "y"] == 2


# --------------------------------------------------------------------------------------------------
# The book build step


def _scripts_root(tmp_path: Path, *names: str) -> Path:
    """A repository-like folder whose ``benchmarks/`` holds empty scripts and a helper module."""
    (tmp_path / "benchmarks").mkdir(parents=True)
    (tmp_path / "benchmarks" / "_bench_common.py").write_text("")
    for name in names:
        (tmp_path / "benchmarks" / f"{name}.py").write_text("")
    return tmp_path


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Replace the benchmark runner by one that writes a minimal record; returns the list of scripts it ran."""
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path / "results"))
    ran: list[str] = []

    def run(script: Path, out: Path, root: Path) -> None:
        ran.append(script.stem)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"results": [{"setting": "s", "ratio": 1.0, "target": 1.1}]}))

    monkeypatch.setattr(book_build, "_run_benchmark", run)
    return ran


def test_run_benchmarks_runs_missing_ones_and_all_when_forced(tmp_path: Path, fake_runner: list[str]):
    root = _scripts_root(tmp_path / "repo", "bench_a", "bench_b")
    kept = claims.benchmark_path(load_params("tiny"), "bench_a")
    kept.parent.mkdir(parents=True)
    kept.write_text("{}")

    assert run_benchmarks(root=root) == ["bench_b"] and fake_runner == ["bench_b"]
    assert kept.read_text() == "{}", "an existing file is kept"
    assert run_benchmarks(root=root) == []
    assert run_benchmarks(True, root=root) == ["bench_a", "bench_b"]
    assert json.loads(kept.read_text())["results"][0]["ratio"] == 1.0


def test_book_runs_benchmarks_before_notebooks(monkeypatch: pytest.MonkeyPatch):
    calls = []
    monkeypatch.setattr(book_build, "run_benchmarks", lambda force: calls.append(("benchmarks", force)))
    monkeypatch.setattr(book_build, "execute_notebooks", lambda *a, **k: calls.append(("notebooks", k["force"])))

    assert book_build.main(["--profile", "smoke", "--no-html"]) == 0
    assert book_build.main(["--profile", "smoke", "--no-html", "--rerun-benchmarks"]) == 0
    assert calls == [("benchmarks", False), ("notebooks", False), ("benchmarks", True), ("notebooks", False)]


def test_build_book_runs_benchmarks_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    root = tmp_path
    (root / "params" / "smoke").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "book" / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    calls = []
    for step in ("fetch_widget_js", "fetch_mathjax", "build_html"):
        monkeypatch.setattr(book_build, step, lambda *a, step=step, **k: calls.append(step) or root / "index.html")
    monkeypatch.setattr(book_build, "run_benchmarks", lambda force, root: calls.append(f"benchmarks {force}") or [])
    monkeypatch.setattr(book_build, "execute_notebooks", lambda *a, **k: calls.append("notebooks") or [])

    book_build.build_book("smoke", root=root, rerun_benchmarks=True)
    assert calls == ["fetch_widget_js", "fetch_mathjax", "benchmarks True", "notebooks", "build_html"]


def test_benchmark_runner_runs_the_script_and_reports_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The real runner, on throwaway scripts: one writes its ``--out``, one fails, one writes nothing."""
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path / "results"))
    root = _scripts_root(tmp_path / "repo")
    writes = (
        "import pathlib, sys\nout = pathlib.Path(sys.argv[2])\nout.parent.mkdir(parents=True)\nout.write_text('{}')\n"
    )
    (root / "benchmarks" / "bench_ok.py").write_text(writes)
    assert run_benchmarks(root=root) == ["bench_ok"]
    assert json.loads(claims.benchmark_path(load_params("tiny"), "bench_ok").read_text()) == {}

    (root / "benchmarks" / "bench_fails.py").write_text("import sys\nsys.exit('boom: no model')\n")
    with pytest.raises(BookBuildError, match=r"bench_fails\.py failed \(exit 1\)[\s\S]*boom: no model"):
        run_benchmarks(root=root)
    (root / "benchmarks" / "bench_fails.py").write_text("print('measured, but forgot to write')\n")
    with pytest.raises(BookBuildError, match=r"bench_fails\.py wrote no .*bench_fails\.json[\s\S]*forgot to write"):
        run_benchmarks(root=root)

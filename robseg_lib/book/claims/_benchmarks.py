"""The benchmark files under ``results/benchmarks/``: their paths, tables and verdict-ready summaries."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from robseg_lib.book.claims._types import _EPS, BENCHMARK_TARGETS
from robseg_lib.params import ParamSet
from robseg_lib.paths import profile_results_root


def benchmark_path(params: ParamSet, name: str) -> Path:
    """``results/benchmarks/<name>.json`` (beside the profiles' results folders)."""
    return profile_results_root(params.profile).parent / "benchmarks" / f"{name}.json"


def load_benchmarks(params: ParamSet, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored JSON records of the named benchmarks (:func:`benchmark_path`); those not run are left out."""
    paths = {name: benchmark_path(params, name) for name in names}
    return {name: json.loads(path.read_text()) for name, path in paths.items() if path.is_file()}


def benchmark_timings(record: Mapping[str, Any]) -> pd.DataFrame:
    """The ``*_ms`` entries of one benchmark record, one row per setting (index ``setting``), rounded to 0.1 ms."""
    rows = []
    for item in record["results"]:
        times = {key.removesuffix("_ms").replace("_", " "): value for key, value in item.items() if key.endswith("_ms")}
        rows.append({"setting": item["setting"], **times})
    return pd.DataFrame(rows).set_index("setting").round(1)


def benchmark_table(benchmarks: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per measured setting of the benchmark files: ``benchmark, setting, ratio, target, met``.

    A file holds ``{"results": [{"setting": str, "ratio": float, "target": float}, ...], ...}``; a missing target
    fails loudly rather than passing silently.
    """
    rows = []
    for name, record in benchmarks.items():
        for item in record.get("results", []):
            if "target" not in item or "ratio" not in item:
                raise ValueError(f"benchmark {name}: every result needs 'ratio' and 'target', got {item}")
            rows.append(
                {
                    "benchmark": name,
                    "setting": str(item.get("setting", "")),
                    "ratio": float(item["ratio"]),
                    "target": float(item["target"]),
                    "met": float(item["ratio"]) <= float(item["target"]) + _EPS,
                }
            )
    return pd.DataFrame(rows, columns=["benchmark", "setting", "ratio", "target", "met"])


def benchmark_summary(records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The cost ratios of the performance page, indexed by ``(benchmark, setting)``: claim, ratio, target and
    ``met`` / ``not met``, with one ``not run`` row for each benchmark of :data:`BENCHMARK_TARGETS` without a record.
    """
    measured = benchmark_table({name: records[name] for name in BENCHMARK_TARGETS if name in records})
    rows = [
        {
            "benchmark": r.benchmark,
            "setting": r.setting,
            "claim": BENCHMARK_TARGETS[r.benchmark],
            "ratio": round(r.ratio, 3),
            "target": r.target,
            "met": "met" if r.met else "not met",
        }
        for r in measured.itertuples()
    ]
    rows += [
        {"benchmark": name, "setting": "-", "claim": claim, "ratio": "-", "target": "-", "met": "not run"}
        for name, claim in BENCHMARK_TARGETS.items()
        if name not in records
    ]
    return pd.DataFrame(rows).set_index(["benchmark", "setting"])


def benchmark_machines(records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Where and how each benchmark ran (date, machine facts, clock, malloc pinning): one column per record."""
    machines = {
        name: {
            "date": record["date"],
            **record["machine"],
            "clock": record["options"].get("clock", "-"),
            "malloc pinned": record["options"].get("malloc_pinned", "-"),
        }
        for name, record in records.items()
    }
    return pd.DataFrame(machines).fillna("-")


def model_step_times(record: Mapping[str, Any]) -> pd.DataFrame:
    """Parameters (M) and training-step / evaluation-forward times (ms) per model of a ``bench_models`` record."""
    columns = {
        "params_m": "params (M)",
        "train_median_ms": "train step, median",
        "train_min_ms": "train step, min",
        "eval_median_ms": "eval forward, median",
        "eval_min_ms": "eval forward, min",
    }
    frame = pd.DataFrame(record["results"]).set_index("model")[list(columns)]
    return frame.rename(columns=columns).round(2)

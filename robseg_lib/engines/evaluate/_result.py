"""The result of a finished evaluation, re-read from its run folder."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from robseg_lib._io import atomic_json_dump
from robseg_lib.attacks import SEAResult
from robseg_lib.engines.evaluate._run_state import _SUMMARY_FILE, _batch_path, _batch_range, _read_batch, _read_run
from robseg_lib.metrics import SegStats

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class EvaluationResult:
    """SEA's numbers over a finished run, with the per-image statistics behind them (fractions in [0, 1]).

    Attributes:
        out_dir: the run's folder.
        run: the contents of its ``run.json``.
        sea: clean, per-attack and worst-case numbers (:class:`robseg_lib.attacks.SEAResult`); per-attack and
            worst-case accuracies are means over images of the per-image accuracy.
    """

    out_dir: Path
    run: dict[str, Any]
    sea: SEAResult

    @property
    def attacks(self) -> tuple[str, ...]:
        """Attack names, in the order the per-image choice indices refer to."""
        return self.sea.attacks

    @property
    def n_images(self) -> int:
        return self.sea.clean_stats.num_images

    @property
    def clean_acc(self) -> float:
        return self.sea.clean_acc

    @property
    def clean_miou(self) -> float:
        return self.sea.clean_miou

    @property
    def per_attack(self) -> dict[str, tuple[float, float]]:
        """``{attack: (acc, miou)}``, acc the mean over images of the per-image accuracy."""
        return self.sea.per_attack

    @property
    def worst_acc(self) -> float:
        """Mean over images of the lowest per-image accuracy over the attacks (SEA's aAcc)."""
        return self.sea.worst_acc

    @property
    def worst_miou(self) -> float:
        """Greedy worst-case mIoU over one attack per image (SEA's mIoU)."""
        return self.sea.worst_miou

    def worst_stats(self, metric: str = "miou") -> SegStats:
        """Per-image statistics of the worst-case selection: ``"miou"`` (greedy) or ``"acc"`` (per image)."""
        if metric not in ("miou", "acc"):
            raise ValueError(f"metric must be 'miou' or 'acc', got {metric!r}")
        choice = self.sea.miou_choice if metric == "miou" else self.sea.acc_choice
        stats = [self.sea.attack_stats[name] for name in self.attacks]
        rows = torch.arange(self.n_images)

        def pick(field: str) -> torch.Tensor:
            return torch.stack([getattr(s, field) for s in stats])[choice, rows]

        return SegStats(pick("intersection"), pick("union"), pick("label_count"))

    def head(self, n: int) -> EvaluationResult:
        """The result on the first ``n`` images only (worst cases recomputed on them); ``run`` records ``head_of``."""
        first = range(n)
        sea = SEAResult.from_stats(
            self.sea.clean_stats.select(first),
            {name: stats.select(first) for name, stats in self.sea.attack_stats.items()},
            seed=self.run["seed"],
        )
        return EvaluationResult(self.out_dir, {**self.run, "n_images": n, "head_of": self.n_images}, sea)

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: per-image-mean and pooled accuracies (D23), mIoUs, and the per-image choices."""

        def numbers(stats: SegStats, acc: float, miou: float) -> dict[str, float]:
            return {"acc": acc, "acc_pooled": stats.pooled_accuracy(), "miou": miou}

        s = self.sea
        return {
            "n_images": self.n_images,
            "attacks": list(self.attacks),
            "clean": numbers(s.clean_stats, s.clean_acc, s.clean_miou),
            "per_attack": {name: numbers(s.attack_stats[name], *s.per_attack[name]) for name in self.attacks},
            "worst_case": {
                "acc": s.worst_acc,
                "acc_pooled": self.worst_stats("acc").pooled_accuracy(),
                "miou": s.worst_miou,
            },
            "worst_acc_attack": s.acc_choice.tolist(),
            "worst_miou_attack": s.miou_choice.tolist(),
            "greedy_seed": s.seed,
        }

    def table(self, percent: bool = True) -> pd.DataFrame:
        """One row per setting (clean, each attack, worst case); columns acc, acc_pooled, miou."""
        import pandas as pd

        summary = self.summary()
        rows = {"clean": summary["clean"], **summary["per_attack"], "worst case": summary["worst_case"]}
        frame = pd.DataFrame.from_dict(rows, orient="index")[["acc", "acc_pooled", "miou"]]
        return frame * 100 if percent else frame

    def class_iou_table(self, class_names: Sequence[str] | None = None, percent: bool = True) -> pd.DataFrame:
        """Pooled IoU per class: clean, each attack, and the greedy worst-case selection (NaN: class absent)."""
        import pandas as pd

        columns = {"clean": self.sea.clean_stats, **self.sea.attack_stats, "worst case": self.worst_stats("miou")}
        names = class_names if class_names is not None else self.run.get("data", {}).get("class_names")
        num_classes = self.sea.clean_stats.num_classes
        if names is None:
            names = [str(c) for c in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"class_names has {len(names)} entries for {num_classes} classes")
        frame = pd.DataFrame({k: s.class_iou().numpy() for k, s in columns.items()}, index=list(names))
        frame.index.name = "class"
        return frame * 100 if percent else frame


def _collect(out_dir: Path) -> tuple[dict[str, Any], SegStats, dict[str, SegStats]]:
    run = _read_run(out_dir)
    n, b, k = run["n_images"], run["batch_size"], run["num_classes"]
    n_batches = math.ceil(n / b)
    missing = [i for i in range(n_batches) if not _batch_path(out_dir, i).exists()]
    if missing:
        raise RuntimeError(
            f"the run in {out_dir} is unfinished: {len(missing)} of {n_batches} batches missing (first: {missing[0]}); "
            "rerun the same evaluation to resume it"
        )
    clean_parts: list[SegStats] = []
    attack_parts: dict[str, list[SegStats]] = {}
    for i in range(n_batches):
        record = _read_batch(_batch_path(out_dir, i), *_batch_range(i, b, n), k)
        if i == 0:
            attack_parts = {name: [] for name in record["attacks"]}
        if list(record["attacks"]) != list(attack_parts):
            raise RuntimeError(f"batch {i} holds attacks {list(record['attacks'])}, batch 0 holds {list(attack_parts)}")
        clean_parts.append(record["clean"])
        for name, stats in record["attacks"].items():
            attack_parts[name].append(stats)
    return run, SegStats.cat(clean_parts), {name: SegStats.cat(p) for name, p in attack_parts.items()}


def load_results(out_dir: str | Path) -> EvaluationResult:
    """Re-read a finished run: concatenate its batches in batch order and recompute SEA's numbers.

    Raises:
        FileNotFoundError: not an evaluation folder.
        RuntimeError: batches are missing (the run is unfinished) or unreadable.
    """
    out_dir = Path(out_dir)
    run, clean, attacks = _collect(out_dir)
    return EvaluationResult(out_dir=out_dir, run=run, sea=SEAResult.from_stats(clean, attacks, seed=run["seed"]))


def aggregate(out_dir: str | Path) -> EvaluationResult:
    """:func:`load_results`, then write ``summary.json`` atomically."""
    result = load_results(out_dir)
    atomic_json_dump(result.summary(), result.out_dir / _SUMMARY_FILE)
    return result

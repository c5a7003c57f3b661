"""Is the default profile in the paper's regime? Five criteria, measured on the profile and set beside the paper.

A tiny profile only says something about the paper's claims if its models relate to each other as the paper's
do. Five criteria (fixed before any claim was looked at) say what that means; each row of :func:`regime_table`
gives our measured value, the target and the paper's counterpart:

1. **class balance**: background at most 60 % of the labelled validation pixels, so that pixel accuracy is not
   the background share;
2. **a robust "ImageNet"**: the robust backbone's held-out clean accuracy is within 10 % of its clean twin's,
   and its accuracy at 4/255 at least 2/3 of its own clean accuracy (paper, Table 5, ConvNeXt-T + ConvStem:
   72.7 % clean and 49.5 % at 4/255 against 80.9 % for the clean twin);
3. **budget E is a converged short schedule**: the clean model trained for E is within 2 points of clean mIoU
   of the one trained for 6E (paper, Table 3: 2-step AT from the clean backbone reaches 77.4 % after 50 epochs
   and 76.3 % after 300);
4. **robust models segment**: the main model (5-step PIR-AT, budget E) reaches at least 85 % of the clean
   model's clean mIoU (paper, PASCAL-VOC: 75.2 % against 77.2 %);
5. criteria 3 and 4 for the Segmenter too.

Clean mIoU is measured here on the whole validation set, so that the ratios do not depend on an evaluation
subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from robseg_lib.book import paper
from robseg_lib.book.training_curves import _profile_budget, training_logs
from robseg_lib.data import dataset_from_params
from robseg_lib.data.class_counts import class_pixel_counts
from robseg_lib.engines import zoo
from robseg_lib.engines.train import evaluate_segmentation
from robseg_lib.params import ParamSet

__all__ = [
    "BACKGROUND_MAX",
    "CLEAN_GAP_MAX",
    "OWN_RATIO_MIN",
    "ROBUST_RATIO_MIN",
    "TWIN_RATIO_MIN",
    "Family",
    "Report",
    "backbone_accuracies",
    "backbone_table",
    "background_share",
    "clean_mious",
    "convergence_figure",
    "families",
    "paper_values",
    "regime_table",
    "report",
]

BACKGROUND_MAX = 60.0
"""Criterion 1: the largest background share (% of labelled validation pixels)."""
TWIN_RATIO_MIN = 0.9
"""Criterion 2: robust backbone clean accuracy over its clean twin's, at least."""
OWN_RATIO_MIN = 2 / 3
"""Criterion 2: robust backbone accuracy at 4/255 over its own clean accuracy, at least."""
CLEAN_GAP_MAX = 2.0
"""Criterion 3: clean mIoU points the budget-E clean model may lag behind the 6E one."""
ROBUST_RATIO_MIN = 0.85
"""Criterion 4: the main robust model's clean mIoU over the clean model's, at least."""


@dataclass(frozen=True)
class Family:
    """The models of one architecture that the criteria compare.

    Attributes:
        label: how the architecture reads in the table ("UPerNet", "Segmenter").
        arch: the registered architecture (its backbone is the one pre-trained).
        clean_e: clean training for budget E.
        clean_long: clean training for the longest clean budget (6E).
        robust: 5-step PIR-AT for budget E (for UPerNet, the profile's ``eval.model``).
    """

    label: str
    arch: str
    clean_e: str
    clean_long: str
    robust: str


def families(params: ParamSet) -> list[Family]:
    """The architectures of a profile with a clean model at E, a longer clean model and a 5-step PIR-AT model at E.

    The main model (``eval.model``) is the robust model of its own architecture. Profiles of released models only
    (paper scale) have none: only criterion 1 applies to them.
    """
    budget = params.train.epochs if params.train is not None else None
    main = params.eval.model
    found = []
    for arch in dict.fromkeys(mp.arch for mp in params.models.values()):
        names = [n for n, mp in params.models.items() if mp.arch == arch]
        epochs = {n: params.train_for(n).epochs for n in names}
        clean = [n for n in names if params.model(n).regime == "clean"]
        clean_e = [n for n in clean if epochs[n] == budget]
        clean_long = sorted((n for n in clean if budget is not None and epochs[n] > budget), key=epochs.__getitem__)
        robust = [
            n
            for n in names
            if params.model(n).regime == "pir-at" and params.train_for(n).attack_steps == 5 and epochs[n] == budget
        ]
        if main in robust:
            robust = [main]
        if clean_e and clean_long and robust:
            label = "Segmenter" if "segmenter" in arch else "UPerNet"
            found.append(Family(label, arch, clean_e[0], clean_long[-1], robust[0]))
    return found


def background_share(params: ParamSet) -> float:
    """Background's (class 0's) share (%) of the labelled validation pixels."""
    val = dataset_from_params(params.data, "val")
    counts = class_pixel_counts(val, params.data.num_classes, params.data.ignore_index).double()
    return float(100 * counts[0] / counts.sum())


def _backbone_metrics(params: ParamSet, arch: str, kind: str, root: str | Path | None) -> dict[str, float]:
    path = zoo.get_backbone_file(params, arch, kind, progress=False, root=root)
    return zoo.backbone_info(path)["metrics"]


def backbone_accuracies(params: ParamSet, arch: str, root: str | Path | None = None) -> dict[str, float]:
    """Held-out accuracies (%) of the cached clean and robust backbones of ``arch`` (pre-trained if missing).

    Returns:
        ``clean_twin``: the clean backbone's clean accuracy; ``robust_clean`` and ``robust_4``: the robust
        backbone's clean accuracy and its accuracy under PGD-10 at 4/255.
    """
    clean = _backbone_metrics(params, arch, "clean", root)
    robust = _backbone_metrics(params, arch, "robust", root)
    return {
        "clean_twin": 100 * clean["clean_acc"],
        "robust_clean": 100 * robust["clean_acc"],
        "robust_4": 100 * robust["robust_acc_4"],
    }


def backbone_table(params: ParamSet, archs: Sequence[str], root: str | Path | None = None) -> pd.DataFrame:
    """The pre-trained backbones: held-out clean accuracy, accuracy at 4/255 (%) and pre-training time (s)."""
    rows = []
    for arch in archs:
        for kind in ("clean", "robust"):
            m = _backbone_metrics(params, arch, kind, root)
            rows.append(
                {
                    "architecture": arch,
                    "backbone": kind,
                    "clean acc": round(100 * m["clean_acc"], 1),
                    "acc at 4/255": round(100 * m["robust_acc_4"], 1),
                    "pre-training (s)": round(m["wall_time_s"]),
                }
            )
    columns = ["architecture", "backbone", "clean acc", "acc at 4/255", "pre-training (s)"]
    return pd.DataFrame(rows, columns=columns).set_index(["architecture", "backbone"])


def clean_mious(
    params: ParamSet, names: Sequence[str], *, device: str = "cpu", root: str | Path | None = None
) -> dict[str, float]:
    """Clean mIoU (%) of zoo models on the whole validation set (models trained if missing)."""
    val = dataset_from_params(params.data, "val")
    out = {}
    for name in names:
        model = zoo.get_model(params, name, device=device, progress=False, root=root)
        stats = evaluate_segmentation(
            model, val, params.data.num_classes, params.data.ignore_index, params.eval.batch_size, device
        )
        out[name] = 100 * stats["val_miou"]
    return out


_PAPER_BACKBONES = {"UPerNet": "ConvNeXt-T + ConvStem", "Segmenter": "ViT-S"}


def paper_values(label: str = "UPerNet") -> dict[str, float | None]:
    """The paper's counterparts of the criteria for architecture ``label``, read from its tables.

    Backbones: Table 5 (ConvNeXt-T + ConvStem for UPerNet, ViT-S for Segmenter). Convergence and the robust/clean
    ratio: PASCAL-VOC UPerNet + ConvNeXt-T (Tables 1 and 3); the paper has no clean Segmenter nor two Segmenter
    budgets, so these are ``None`` for it.
    """
    t5 = paper.table("table5_backbones")
    t5 = t5[(t5["architecture"] == label) & (t5["backbone"] == _PAPER_BACKBONES[label])]
    robust = t5[t5["robust"] == "yes"].iloc[0]
    values: dict[str, float | None] = {
        "clean_twin": float(t5.loc[t5["robust"] == "no", "imagenet_clean_acc"].iloc[0]),
        "robust_clean": float(robust["imagenet_clean_acc"]),
        "robust_4": float(robust["imagenet_robust_acc_4_255"]),
        "e_miou": None,
        "long_miou": None,
        "robust_miou": None,
        "clean_miou": None,
    }
    if label != "UPerNet":
        return values
    t3 = paper.table("table3_at_vs_pirat")
    t3 = t3[(t3["dataset"] == "PascalVOC") & (t3["eps_255"] == 0)]

    def t3_miou(training: str, steps: int, epochs: int) -> float:
        row = t3[(t3["training"] == training) & (t3["train_attack_steps"] == steps) & (t3["epochs"] == epochs)]
        return float(row["miou"].iloc[0])

    t1 = paper.table("table1_attacks")
    clean = float(t1.loc[(t1["dataset"] == "PascalVOC") & (t1["training"] == "clean"), "clean_miou"].iloc[0])
    return values | {
        "e_miou": t3_miou("AT", 2, 50),
        "long_miou": t3_miou("AT", 2, 300),
        "robust_miou": t3_miou("PIR-AT", 5, 50),
        "clean_miou": clean,
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def regime_table(
    background: float,
    backbones: dict[str, dict[str, float]],
    mious: dict[str, float],
    fams: Sequence[Family],
    paper_numbers: dict[str, dict[str, float | None]] | None = None,
) -> pd.DataFrame:
    """One row per criterion (and architecture): ours, the target, the paper's value, and whether ours meets it.

    Args:
        background: :func:`background_share`.
        backbones: :func:`backbone_accuracies` per architecture (``Family.arch``).
        mious: :func:`clean_mious` of every model the families name.
        fams: :func:`families`.
        paper_numbers: :func:`paper_values` per family label (read from the paper's tables when ``None``).
    """
    rows = [
        _row("1. class balance", "all", "background share of labelled val pixels (%)", background,
             f"<= {BACKGROUND_MAX:.0f}", None, background <= BACKGROUND_MAX),
    ]  # fmt: skip
    for fam in fams:
        p = paper_values(fam.label) if paper_numbers is None else paper_numbers[fam.label]
        long_minus_e = None if p["long_miou"] is None or p["e_miou"] is None else p["long_miou"] - p["e_miou"]
        robust_over_clean = _ratio(p["robust_miou"], p["clean_miou"])
        bb = backbones[fam.arch]
        twin = bb["robust_clean"] / bb["clean_twin"]
        own = bb["robust_4"] / bb["robust_clean"]
        gap = mious[fam.clean_long] - mious[fam.clean_e]
        ratio = mious[fam.robust] / mious[fam.clean_long]
        rows += [
            _row("2. robust backbone", fam.label,
                 f"robust backbone clean acc / clean twin's ({bb['robust_clean']:.1f} / {bb['clean_twin']:.1f})",
                 twin, f">= {TWIN_RATIO_MIN:.2f}", _ratio(p["robust_clean"], p["clean_twin"]), twin >= TWIN_RATIO_MIN),
            _row("2. robust backbone", fam.label,
                 f"robust backbone acc at 4/255 / its clean acc ({bb['robust_4']:.1f} / {bb['robust_clean']:.1f})",
                 own, f">= {OWN_RATIO_MIN:.2f}", _ratio(p["robust_4"], p["robust_clean"]), own >= OWN_RATIO_MIN),
            _row("3. E converged", fam.label,
                 f"clean mIoU at 6E - at E ({mious[fam.clean_long]:.1f} - {mious[fam.clean_e]:.1f})",
                 gap, f"<= {CLEAN_GAP_MAX:.0f}", long_minus_e, gap <= CLEAN_GAP_MAX),
            _row("4. robust models segment", fam.label,
                 f"{fam.robust} clean mIoU / clean model's ({mious[fam.robust]:.1f} / {mious[fam.clean_long]:.1f})",
                 ratio, f">= {ROBUST_RATIO_MIN:.2f}", robust_over_clean, ratio >= ROBUST_RATIO_MIN),
        ]  # fmt: skip
    return pd.DataFrame(rows).set_index(["criterion", "architecture"])


def _row(
    criterion: str, arch: str, what: str, ours: float, target: str, paper_value: float | None, met: bool
) -> dict[str, object]:
    return {
        "criterion": criterion,
        "architecture": arch,
        "measure": what,
        "ours": round(ours, 1 if criterion.startswith("1.") else 3),
        "target": target,
        "paper": None if paper_value is None else round(paper_value, 3),
        "met": "yes" if met else "no",
    }


def convergence_figure(logs: pd.DataFrame, fams: Sequence[Family], mious: dict[str, float], budget: int) -> Figure:
    """Clean validation mIoU of each family's clean models during training (criterion 3's curve).

    Lines: the training logs of the clean models at E and 6E (validation on the logs' few images, in %); markers:
    both models' final clean mIoU on the whole validation set (:func:`clean_mious`), at their last epoch.

    Args:
        logs: :func:`robseg_lib.book.training_curves.training_logs` of the clean models.
        fams: :func:`families`.
        mious: :func:`clean_mious` of those models.
        budget: the profile's budget E in epochs (a vertical line).
    """
    fig, axes = plt.subplots(1, len(fams), figsize=(5 * len(fams), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], fams, strict=True):
        for name, colour in ((fam.clean_long, "tab:gray"), (fam.clean_e, "tab:blue")):
            log = logs[logs["model"] == name]
            ax.plot(log["epoch"], log["val_miou"], "-", color=colour, label=f"{name} (training log)")
            ax.plot(log["epoch"].max(), mious[name], "o", color=colour, label=f"{name}: {mious[name]:.1f} (all val)")
        ax.axvline(budget, color="k", ls=":", lw=0.8)
        ax.set_title(f"{fam.label}: clean training, E = {budget} epochs")
        ax.set_xlabel("epoch")
        ax.set_ylabel("clean val. mIoU (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Report:
    """The regime criteria of one profile, measured (:func:`report`).

    Attributes:
        params: the profile.
        families: the compared models per architecture (:func:`families`; empty for released-model profiles).
        table: :func:`regime_table`.
        backbones: :func:`backbone_table` of the families' architectures.
        mious: :func:`clean_mious` of the families' models.
    """

    params: ParamSet
    families: list[Family]
    table: pd.DataFrame
    backbones: pd.DataFrame
    mious: dict[str, float]

    @property
    def met(self) -> int:
        """How many rows of the table meet their target."""
        return int((self.table["met"] == "yes").sum())

    def figure(self) -> Figure | None:
        """:func:`convergence_figure` of the clean models (``None`` without families)."""
        if not self.families:
            return None
        names = [n for f in self.families for n in (f.clean_e, f.clean_long)]
        logs = training_logs(self.params, names)
        return convergence_figure(logs, self.families, self.mious, _profile_budget(self.params))


def report(params: ParamSet, *, device: str = "cpu", root: str | Path | None = None) -> Report:
    """Measure every regime criterion of a profile (zoo models and backbones trained if missing)."""
    fams = families(params)
    backbones = {f.arch: backbone_accuracies(params, f.arch, root) for f in fams}
    mious = clean_mious(
        params, [n for f in fams for n in (f.clean_e, f.clean_long, f.robust)], device=device, root=root
    )
    table = regime_table(background_share(params), backbones, mious, fams)
    return Report(params, fams, table, backbone_table(params, [f.arch for f in fams], root), mious)

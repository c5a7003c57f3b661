"""Turning results into the book's tables and examples: ours beside the paper's, and single-image examples."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import torch
from torch import nn

from robseg_lib.attacks import apgd
from robseg_lib.attacks.apgd import attack_mode
from robseg_lib.book import paper
from robseg_lib.metrics import compute_stats

if TYPE_CHECKING:
    from robseg_lib.data import LabelledDataset

__all__ = ["AdversarialExample", "adversarial_example", "paper_main_model", "paper_rows", "sea_table"]

# How our attack names read in the paper's tables.
PAPER_ATTACK_NAMES: dict[str, str] = {
    "mce-bal": "MCE-Bal",
    "mce": "MCE",
    "js": "JS",
    "segpgd": "SegPGD",
    "cospgd": "CosPGD",
    "cospgd-sigmoid": "CosPGD",
    "worst case": "SEA",
    "clean": "none",
}


def paper_rows(table: str, **filters: object) -> pd.DataFrame:
    """Rows of a stored paper table matching every ``column=value`` filter (the paper's numbers, in %)."""
    frame = paper.table(table)
    for column, value in filters.items():
        if column not in frame.columns:
            raise ValueError(f"paper table {table!r} has no column {column!r}; columns: {', '.join(frame.columns)}")
        frame = frame[frame[column] == value]
    return frame.reset_index(drop=True)


def paper_main_model(eps: int) -> pd.DataFrame:
    """The paper's main model (UPerNet + ConvNeXt-T, 5-step PIR-AT, 50 epochs, PASCAL-VOC) at radius ``eps`` /255.

    Clean numbers from Table 2, SEA and its components from Table 6 (empty where the paper has no such radius).
    """
    model = {"dataset": "PascalVOC", "architecture": "UPerNet", "backbone": "ConvNeXt-T", "training": "PIR-AT"}
    clean = paper_rows("table2_robust_models", **model, train_attack_steps=5, epochs=50, eps_255=0)
    attacks = paper_rows("table6_sea_components", **model, train_attack_steps=5, epochs=50, eps_255=eps)
    return pd.concat([clean, attacks], ignore_index=True)[["attack", "eps_255", "acc", "miou"]]


def sea_table(ours: pd.DataFrame, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our SEA table (rows clean / attacks / worst case, columns in %) beside the paper's numbers.

    Args:
        ours: :meth:`robseg_lib.engines.evaluate.EvaluationResult.table` (percentages).
        reference: paper rows with columns ``attack``, ``acc``, ``miou`` (e.g. from :func:`paper_rows`);
            clean rows have ``attack == "none"``.

    Returns:
        Columns ``Acc``, ``mIoU`` (ours) and, with a reference, ``paper Acc``, ``paper mIoU``; rounded to 1 decimal.
    """
    out = pd.DataFrame({"Acc": ours["acc"], "mIoU": ours["miou"]})
    out.index = [PAPER_ATTACK_NAMES.get(i, i) if i != "clean" else "clean" for i in out.index]
    if reference is not None and len(reference):
        ref = reference.assign(attack=reference["attack"].replace({"none": "clean"})).set_index("attack")
        out["paper Acc"] = ref["acc"].reindex(out.index)
        out["paper mIoU"] = ref["miou"].reindex(out.index)
    out.index.name = "attack"
    return out.astype(float).round(1)


@dataclass(frozen=True)
class AdversarialExample:
    """One image attacked once: inputs, predictions and pixel accuracies (fractions)."""

    image: torch.Tensor
    label: torch.Tensor
    adversarial: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    clean_acc: float
    adv_acc: float
    eps: float
    loss: str


def adversarial_example(
    model: nn.Module,
    dataset: LabelledDataset,
    index: int,
    eps: float,
    loss: str = "mce",
    n_iter: int = 100,
    num_classes: int | None = None,
    ignore_index: int = 255,
    seed: int = 0,
    class_weights: torch.Tensor | None = None,
) -> AdversarialExample:
    """Attack one image of ``dataset`` with red-eps APGD and return everything a figure needs.

    Args:
        model: segmentation model (its device is used).
        dataset: items ``(image, label)``.
        index: which image.
        eps: radius in [0, 1] units.
        loss: APGD loss (see :mod:`robseg_lib.attacks.losses`).
        n_iter: attack iterations.
        num_classes: K (default: ``dataset.num_classes``).
        ignore_index: label of unlabelled pixels.
        seed: seed of the random start.
        class_weights: weights of ``mce-bal``.
    """
    device = next(model.parameters()).device
    x, y = dataset[index][:2]
    x, y = x.unsqueeze(0).to(device), y.unsqueeze(0).to(device)
    k = num_classes if num_classes is not None else dataset.num_classes
    x_adv = apgd(
        model, x, y, eps, loss=loss, n_iter=n_iter, ignore_index=ignore_index, class_weights=class_weights, seed=seed
    )
    with torch.no_grad(), attack_mode(model):
        clean_pred, adv_pred = model(torch.cat([x, x_adv])).argmax(1)
    accs: Mapping[str, float] = {
        name: float(compute_stats(p.unsqueeze(0), y, k, ignore_index).image_accuracy()[0])
        for name, p in (("clean", clean_pred), ("adv", adv_pred))
    }
    return AdversarialExample(
        image=x[0].cpu(),
        label=y[0].cpu(),
        adversarial=x_adv[0].cpu(),
        clean_pred=clean_pred.cpu(),
        adv_pred=adv_pred.cpu(),
        clean_acc=accs["clean"],
        adv_acc=accs["adv"],
        eps=eps,
        loss=loss,
    )

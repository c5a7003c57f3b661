"""Segmentation metrics from per-image statistics.

Every metric of the paper (pooled mIoU, average pixel accuracy, SEA's worst cases) is derived from
per-image, per-class counts, so that memory stays O(images x classes) and results of different attacks
can be combined after the fact without storing prediction maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from robseg_lib._io import atomic_torch_save

__all__ = [
    "SegStats",
    "compute_stats",
    "greedy_worst_case_miou",
    "worst_case_accuracy",
]


@dataclass(frozen=True)
class SegStats:
    """Per-image, per-class pixel counts over labelled pixels only.

    Attributes:
        intersection: (N, K) int64, pixels with prediction == label == c.
        union: (N, K) int64, pixels with label == c or prediction == c, minus the intersection.
        label_count: (N, K) int64, pixels labelled c.
    """

    intersection: torch.Tensor
    union: torch.Tensor
    label_count: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {self.intersection.shape, self.union.shape, self.label_count.shape}
        if len(shapes) != 1 or self.intersection.dim() != 2:
            raise ValueError(f"SegStats fields must share one (N, K) shape, got {sorted(map(tuple, shapes))}")

    @property
    def num_images(self) -> int:
        return self.intersection.shape[0]

    @property
    def num_classes(self) -> int:
        return self.intersection.shape[1]

    @property
    def correct(self) -> torch.Tensor:
        """(N,) correctly classified labelled pixels per image."""
        return self.intersection.sum(1)

    @property
    def labelled(self) -> torch.Tensor:
        """(N,) labelled (non-ignore) pixels per image."""
        return self.label_count.sum(1)

    def image_accuracy(self) -> torch.Tensor:
        """(N,) float64 accuracy per image; an image without labelled pixels counts as 1 (nothing to get wrong)."""
        labelled = self.labelled
        acc = self.correct.double() / labelled.clamp(min=1).double()
        return torch.where(labelled > 0, acc, torch.ones_like(acc))

    def mean_accuracy(self) -> float:
        """Average over images of the per-image pixel accuracy (the paper's aAcc for SEA's worst case)."""
        return float(self.image_accuracy().mean()) if self.num_images else float("nan")

    def pooled_accuracy(self) -> float:
        """Correct over labelled pixels of the whole set (what the authors' release prints per attack)."""
        return float(self.correct.sum() / self.labelled.sum().clamp(min=1))

    def class_iou(self) -> torch.Tensor:
        """(K,) pooled IoU per class; NaN for classes with zero union (absent from labels and predictions)."""
        inter, union = self.intersection.sum(0).double(), self.union.sum(0).double()
        return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))

    def miou(self) -> float:
        """Pooled mIoU: mean over classes with non-zero union of dataset-level intersection / union."""
        return _miou_from_totals(self.intersection.sum(0), self.union.sum(0))

    def image_miou(self) -> torch.Tensor:
        """(N,) per-image mIoU (classes with non-zero union in that image); an extra column, not the paper's."""
        present = self.union > 0
        iou = self.intersection.double() / self.union.clamp(min=1).double()
        return (iou * present).sum(1) / present.sum(1).clamp(min=1)

    def select(self, index: torch.Tensor | Sequence[int]) -> SegStats:
        """The statistics of a subset of images, in the given order."""
        index = torch.as_tensor(index, dtype=torch.long)
        return SegStats(self.intersection[index], self.union[index], self.label_count[index])

    @staticmethod
    def cat(parts: Sequence[SegStats]) -> SegStats:
        """Concatenate statistics of consecutive batches."""
        if not parts:
            raise ValueError("SegStats.cat needs at least one part")
        return SegStats(
            torch.cat([p.intersection for p in parts]),
            torch.cat([p.union for p in parts]),
            torch.cat([p.label_count for p in parts]),
        )

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {"intersection": self.intersection, "union": self.union, "label_count": self.label_count}

    @classmethod
    def from_dict(cls, d: dict[str, torch.Tensor]) -> SegStats:
        return cls(d["intersection"], d["union"], d["label_count"])

    def save(self, path: str | Path) -> None:
        """Write atomically (temporary file, then rename): a crash never leaves a half-written file."""
        atomic_torch_save(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> SegStats:
        return cls.from_dict(torch.load(path, weights_only=True))


def compute_stats(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> SegStats:
    """Per-image counts from predicted and true label maps.

    Args:
        pred: (N, H, W) integer predictions (argmax of the logits).
        target: (N, H, W) integer labels; ``ignore_index`` marks unlabelled pixels, which count nowhere
            (in particular a prediction on an ignored pixel is no false positive).
        num_classes: K.
        ignore_index: label value of unlabelled pixels.

    Returns:
        The per-image statistics.
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred and target must both be (N, H, W), got {tuple(pred.shape)} and {tuple(target.shape)}")
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bad.any():
        raise ValueError(
            f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}; "
            f"found {sorted(set(target[bad].unique().tolist()))[:10]}"
        )
    n = pred.shape[0]
    pred = pred.long().reshape(n, -1)
    target = target.long().reshape(n, -1)
    valid = valid.reshape(n, -1)
    offset = torch.arange(n, device=pred.device).unsqueeze(1) * num_classes
    size = n * num_classes

    def count(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.bincount((values + offset)[mask], minlength=size).reshape(n, num_classes)

    label_count = count(target, valid)
    pred_count = count(pred.clamp(0, num_classes - 1), valid)
    intersection = count(target, valid & (pred == target))
    union = label_count + pred_count - intersection
    return SegStats(intersection.cpu(), union.cpu(), label_count.cpu())


def _miou_from_totals(intersection: torch.Tensor, union: torch.Tensor) -> float:
    present = union > 0
    if not present.any():
        return float("nan")
    return float((intersection[present].double() / union[present].double()).mean())


def worst_case_accuracy(per_attack: Sequence[SegStats]) -> tuple[float, torch.Tensor]:
    """SEA's worst-case average pixel accuracy: per image the minimum accuracy over attacks.

    Returns:
        The mean over images of the per-image minimum, and (N,) the index of the attack attaining it.
    """
    _check_aligned(per_attack)
    acc = torch.stack([s.image_accuracy() for s in per_attack])  # (A, N)
    worst, which = acc.min(0)
    return float(worst.mean()), which


def greedy_worst_case_miou(
    per_attack: Sequence[SegStats],
    seed: int = 0,
    max_rounds: int = 1000,
    tol: float = 1e-6,
    init: int | None = None,
) -> tuple[float, torch.Tensor]:
    """SEA's worst-case mIoU: a greedy search over one attack per image (paper Sec. 3.6).

    Starts from the attack with the lowest pooled mIoU (or ``init``), then repeatedly visits the images
    in a seeded random order and swaps in, per image, the alternative attack that lowers the pooled mIoU
    most, if it lowers it at all. Stops when a round improves by at most ``tol``. The result is never
    above the lowest single-attack mIoU.

    Args:
        per_attack: statistics of each attack over the same images, in the same order.
        seed: seed of the image-order shuffle.
        max_rounds: upper bound on rounds (the release uses 1000).
        tol: stop once a round improves the mIoU by at most this much.
        init: index of the starting attack; default: the one with the lowest mIoU.

    Returns:
        The worst-case mIoU and (N,) the attack chosen for each image.
    """
    _check_aligned(per_attack)
    inter = torch.stack([s.intersection for s in per_attack]).double()  # (A, N, K)
    union = torch.stack([s.union for s in per_attack]).double()
    n_attacks, n_images, _ = inter.shape
    if init is None:
        init = min(range(n_attacks), key=lambda a: per_attack[a].miou())
    choice = torch.full((n_images,), init, dtype=torch.long)
    images = torch.arange(n_images)
    tot_i = inter[choice, images].sum(0)
    tot_u = union[choice, images].sum(0)
    current = _miou_from_totals(tot_i, tot_u)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(max_rounds):
        start = current
        for i in torch.randperm(n_images, generator=gen).tolist():
            own = int(choice[i])
            # Totals with image i's counts replaced by each attack's: (A, K).
            cand_i = tot_i - inter[own, i] + inter[:, i]
            cand_u = tot_u - union[own, i] + union[:, i]
            present = cand_u > 0
            values = (cand_i / cand_u.clamp(min=1)).where(present, torch.zeros_like(cand_i)).sum(1)
            values = values / present.sum(1).clamp(min=1)
            values[own] = float("inf")
            best = int(values.argmin())
            if values[best] < current:
                choice[i] = best
                tot_i, tot_u = cand_i[best], cand_u[best]
                current = float(values[best])
        if start - current <= tol:
            break
    return current, choice


def _check_aligned(per_attack: Sequence[SegStats]) -> None:
    if not per_attack:
        raise ValueError("need the statistics of at least one attack")
    shape = per_attack[0].intersection.shape
    if any(s.intersection.shape != shape for s in per_attack):
        raise ValueError("all attacks must be evaluated on the same images (same (N, K) statistics)")

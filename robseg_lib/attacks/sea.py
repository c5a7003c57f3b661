"""SEA, the Segmentation Ensemble Attack (algorithms §6).

Three 300-iteration APGD runs with progressive radius reduction, on the MCE-Bal, MCE and JS losses (in
the release's order), each from its own random start. The ensemble's worst cases are computed per image
from the stored statistics: average pixel accuracy takes, per image, the lowest accuracy over the attacks;
mIoU is minimised by a greedy search over one attack per image (:mod:`robseg_lib.metrics`).

Random starts are seeded per (seed, batch index, attack index) with :func:`batch_seed`, so a resumed or
sharded run that calls :func:`sea_batch` batch by batch reproduces the numbers of :func:`sea`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robseg_lib._progress import progress_bar
from robseg_lib.attacks.apgd import apgd, attack_mode
from robseg_lib.attacks.losses import check_loss_name, class_weights_from_counts, label_counts
from robseg_lib.metrics import SegStats, compute_stats, greedy_worst_case_miou, worst_case_accuracy

__all__ = ["SEA_LOSSES", "SEAResult", "batch_seed", "clean_stats", "sea", "sea_batch", "split_batch"]

SEA_LOSSES: tuple[str, ...] = ("mce-bal", "mce", "js")
"""SEA's losses, in the order of the authors' release."""


def batch_seed(seed: int, batch_index: int, attack_index: int) -> int:
    """Seed of the random start of one attack on one batch, derived deterministically from the three ints.

    Uses NumPy's ``SeedSequence`` (a documented, platform-independent hash), so shards and resumed runs
    reproduce the seeds of an uninterrupted run.
    """
    for name, value in (("seed", seed), ("batch_index", batch_index), ("attack_index", attack_index)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    state = np.random.SeedSequence([int(seed), int(batch_index), int(attack_index)]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def _model_device(model: nn.Module) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with attack_mode(model):
        return model(x).argmax(1)


def clean_stats(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, ignore_index: int = 255
) -> SegStats:
    """Per-image statistics of the model's predictions on unperturbed images."""
    return compute_stats(_predict(model, x), y.to(x.device), num_classes, ignore_index)


def sea_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    num_classes: int,
    n_iter: int = 300,
    losses: Sequence[str] = SEA_LOSSES,
    ignore_index: int = 255,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    seed: int = 0,
    batch_index: int = 0,
) -> dict[str, SegStats]:
    """Run SEA's attacks on one batch and return the per-image statistics of their final adversarial images.

    Args:
        model: segmentation model (eval mode and frozen parameters during the attack, restored after).
        x: (N, C, H, W) images in [0, 1].
        y: (N, H, W) labels; ``ignore_index`` marks unlabelled pixels.
        eps: ℓ∞ radius in [0, 1] units.
        num_classes: K.
        n_iter: iterations per attack (split 3:3:4 by the radius reduction).
        losses: the attacks' losses, by default SEA's (``mce-bal``, ``mce``, ``js``).
        ignore_index: label value of unlabelled pixels.
        class_weights: (K,) weights of ``mce-bal``. Pass data-set-level weights (training-split counts via
            :func:`~robseg_lib.attacks.losses.class_weights_from_counts`, or the released lists); ``None``
            falls back to the inverse pixel frequencies of this batch, which makes results depend on the
            batch composition.
        seed: base seed; the attack at position a of ``losses`` uses ``batch_seed(seed, batch_index, a)``.
        batch_index: index of this batch in the data set (for the seed derivation).

    Returns:
        ``{loss: SegStats}`` with the statistics of ``model(x_adv).argmax(1)`` for each attack.
    """
    for name in losses:
        check_loss_name(name)
    if len(set(losses)) != len(losses):
        raise ValueError(f"losses must be distinct, got {list(losses)}")
    y = y.to(x.device)
    out = {}
    for a, name in enumerate(losses):
        x_adv = apgd(
            model,
            x,
            y,
            eps,
            loss=name,
            n_iter=n_iter,
            radius_reduction=True,
            ignore_index=ignore_index,
            class_weights=class_weights,
            seed=batch_seed(seed, batch_index, a),
            early_stop=True,
        )
        out[name] = compute_stats(_predict(model, x_adv), y, num_classes, ignore_index)
    return out


@dataclass(frozen=True)
class SEAResult:
    """SEA's result over a data set; every accuracy and mIoU is a fraction in [0, 1].

    Attributes:
        per_attack: ``{loss: (acc, miou)}`` of each attack alone; acc is the mean over images of the
            per-image accuracy (the definition of the worst case; ``attack_stats[loss].pooled_accuracy()``
            gives the pooled value printed by the release).
        worst_acc: mean over images of the lowest per-image accuracy over the attacks.
        worst_miou: greedy worst-case mIoU over one attack per image.
        clean_acc: mean per-image accuracy without attack.
        clean_miou: pooled mIoU without attack.
        clean_stats: per-image statistics without attack.
        attack_stats: ``{loss: SegStats}`` per-image statistics of each attack.
        acc_choice: (N,) index (into ``attacks``) of the attack giving each image's lowest accuracy.
        miou_choice: (N,) index of the attack selected for each image by the greedy mIoU search.
        seed: seed of the greedy search's shuffles.
    """

    per_attack: dict[str, tuple[float, float]]
    worst_acc: float
    worst_miou: float
    clean_acc: float
    clean_miou: float
    clean_stats: SegStats
    attack_stats: dict[str, SegStats]
    acc_choice: torch.Tensor
    miou_choice: torch.Tensor
    seed: int

    @property
    def attacks(self) -> tuple[str, ...]:
        """Attack names in the order the choice indices refer to."""
        return tuple(self.attack_stats)

    @classmethod
    def from_stats(cls, clean_stats: SegStats, per_attack_stats: Mapping[str, SegStats], seed: int = 0) -> SEAResult:
        """Combine clean and per-attack per-image statistics (same images, same order) into SEA's numbers."""
        stats = dict(per_attack_stats)
        if not stats:
            raise ValueError("need the statistics of at least one attack")
        if any(s.intersection.shape != clean_stats.intersection.shape for s in stats.values()):
            raise ValueError("clean and attack statistics must cover the same images and classes")
        worst_acc, acc_choice = worst_case_accuracy(list(stats.values()))
        worst_miou, miou_choice = greedy_worst_case_miou(list(stats.values()), seed=seed)
        return cls(
            per_attack={name: (s.mean_accuracy(), s.miou()) for name, s in stats.items()},
            worst_acc=worst_acc,
            worst_miou=worst_miou,
            clean_acc=clean_stats.mean_accuracy(),
            clean_miou=clean_stats.miou(),
            clean_stats=clean_stats,
            attack_stats=stats,
            acc_choice=acc_choice,
            miou_choice=miou_choice,
            seed=seed,
        )

    def summary(self) -> dict[str, float]:
        """Flat ``{name: value}`` of the headline numbers (fractions), e.g. for JSON or a table row."""
        out = {
            "clean_acc": self.clean_acc,
            "clean_miou": self.clean_miou,
            "sea_acc": self.worst_acc,
            "sea_miou": self.worst_miou,
        }
        for name, (acc, miou) in self.per_attack.items():
            out[f"{name}_acc"], out[f"{name}_miou"] = acc, miou
        return out


def split_batch(batch: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of a data-loader batch: ``(x, y, ...)`` or a mapping with ``image`` and ``label``."""
    if isinstance(batch, Mapping):
        return batch["image"], batch["label"]
    if isinstance(batch, Sequence) and len(batch) >= 2:
        return batch[0], batch[1]
    raise TypeError("a batch must be (images, labels, ...) or a mapping with 'image' and 'label' keys")


def sea(
    model: nn.Module,
    loader: Iterable[object],
    eps: float,
    num_classes: int,
    n_iter: int = 300,
    ignore_index: int = 255,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    seed: int = 0,
    progress: bool = True,
    losses: Sequence[str] = SEA_LOSSES,
) -> SEAResult:
    """Evaluate a model with SEA over a data loader.

    Args:
        model: segmentation model; batches are moved to its device.
        loader: re-iterable batches ``(x, y, ...)`` or mappings with ``image`` and ``label``.
        eps: ℓ∞ radius in [0, 1] units.
        num_classes: K.
        n_iter: iterations per attack.
        ignore_index: label value of unlabelled pixels.
        class_weights: (K,) weights of ``mce-bal``. The paper uses inverse pixel frequencies of the
            training split (pass them, or the released lists for VOC/ADE20K); ``None`` counts the labels of
            ``loader`` in a first pass, so that results do not depend on the batch composition.
        seed: base seed of the random starts (per batch and attack via :func:`batch_seed`) and of the
            greedy mIoU search.
        progress: show a tqdm progress bar.
        losses: the attacks' losses, by default SEA's.

    Returns:
        The SEA result over all images of the loader, in loader order.
    """
    device = _model_device(model)
    if class_weights is None and "mce-bal" in losses:
        if iter(loader) is loader:
            raise ValueError("loader is a one-shot iterator; pass class_weights or a re-iterable loader")
        counts = sum(
            (label_counts(split_batch(b)[1], num_classes, ignore_index) for b in loader),
            torch.zeros(num_classes, dtype=torch.int64),
        )
        class_weights = class_weights_from_counts(counts)
    clean_parts: list[SegStats] = []
    attack_parts: dict[str, list[SegStats]] = {name: [] for name in losses}
    total = len(loader) if isinstance(loader, Sized) else None
    bar = progress_bar(loader, total=total, enabled=progress, desc=f"SEA eps={eps * 255:g}/255", unit="batch")
    for b, batch in enumerate(bar):
        x, y = split_batch(batch)
        x, y = x.to(device), y.to(device)
        clean_parts.append(clean_stats(model, x, y, num_classes, ignore_index))
        stats = sea_batch(
            model,
            x,
            y,
            eps,
            num_classes,
            n_iter=n_iter,
            losses=losses,
            ignore_index=ignore_index,
            class_weights=class_weights,
            seed=seed,
            batch_index=b,
        )
        for name, s in stats.items():
            attack_parts[name].append(s)
    if not clean_parts:
        raise ValueError("the loader yielded no batches")
    per_attack = {name: SegStats.cat(parts) for name, parts in attack_parts.items()}
    return SEAResult.from_stats(SegStats.cat(clean_parts), per_attack, seed=seed)

"""Digit-classification pre-training of tiny backbones: the default profile's "ImageNet" (architecture §4).

At paper scale PIR-AT starts from an ℓ∞-robust ImageNet classifier and AT from a clean one. The tiny profile
mirrors this with classifiers on :class:`~robseg_lib.data.DigitCrops` (digit-or-background crops drawn like
pieces of the scenes, with the scenes' digit sizes) built by
:func:`robseg_lib.models.create_classifier`: ``kind="clean"`` trains on clean crops, ``kind="robust"`` runs
``clean_epochs`` clean warm-up epochs and then adversarial training (PGD with a uniform random start, step
2.5·ε/steps, model in eval mode while attacking). Training from scratch with a 2-step attack alone stayed at
chance in a calibration trial; the clean warm-up avoids that.

Held-out (never-seen digits) clean accuracy and PGD-10 robust accuracy at the training radius and at 4/255 are
measured after training and stored in the JSON beside the weights.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from robseg_lib import models
from robseg_lib._progress import progress_bar
from robseg_lib.data import DigitCrops
from robseg_lib.engines.train import lr_at, param_groups
from robseg_lib.params import BACKBONE_KINDS, PretrainParams, check_device

__all__ = [
    "PretrainResult",
    "classifier_pgd",
    "evaluate_classifier",
    "pretrain_backbone",
]

_EVAL_STEPS = 10


@dataclass(frozen=True)
class PretrainResult:
    """A pre-trained classifier and its held-out accuracies (fractions).

    Attributes:
        model: the classifier (eval mode); ``model.backbone`` is what segmentation models load.
        path: where the weights were saved (``None`` if not saved).
        metrics: ``clean_acc``, ``robust_acc`` (PGD-10 at ``eps``), ``robust_acc_4`` (PGD-10 at 4/255),
            ``eps`` (/255), ``wall_time_s``.
    """

    model: nn.Module
    path: Path | None
    metrics: dict[str, float]


def classifier_pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """ℓ∞ PGD on the classification CE from a uniform random start; returns the last iterate.

    The model is evaluated in eval mode and restored to its previous mode. ``step_size`` defaults to
    ``2.5 * eps / steps``.
    """
    if steps == 0 or eps == 0:
        return x
    step = 2.5 * eps / steps if step_size is None else step_size
    was_training = model.training
    model.eval()
    noise = torch.rand(x.shape, generator=generator).to(x.device)
    delta = ((2 * noise - 1) * eps + x).clamp(0, 1) - x
    try:
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(x + delta), y)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
            delta = (x + delta).clamp(0, 1) - x
    finally:
        model.train(was_training)
    return (x + delta).detach()


def evaluate_classifier(
    model: nn.Module,
    dataset: Any,
    eps: float = 0.0,
    steps: int = _EVAL_STEPS,
    batch_size: int = 250,
    device: str = "cpu",
) -> float:
    """Accuracy of ``model`` on ``dataset``, under PGD-``steps`` at ``eps`` when ``eps > 0`` (seeded start)."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(0)
    correct = 0
    try:
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x, y = x.to(device), y.to(device)
            if eps > 0:
                x = classifier_pgd(model, x, y, eps, steps, generator=generator)
            with torch.no_grad():
                correct += int((model(x).argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return correct / len(dataset)


def pretrain_backbone(
    params: PretrainParams,
    arch: str,
    kind: str,
    out_path: str | Path | None = None,
    *,
    digit_side: tuple[int, int],
    device: str = "cpu",
    progress: bool = True,
) -> PretrainResult:
    """Train a digit-or-background classifier on the backbone of segmentation architecture ``arch``.

    Args:
        params: the profile's ``pretrain`` section (its ``per_arch[arch]`` overrides are applied here).
        arch: a registered segmentation model name (``tiny_upernet_convnext``, ``tiny_segmenter_vit``).
        kind: ``"clean"`` or ``"robust"`` (adversarial training at ``params.eps`` after the clean warm-up).
        out_path: where to save the classifier (``models.save_checkpoint``; metrics in its JSON).
        digit_side: digit sides (pixels) in the crops, the scenes' (``scene_digit_sides(image_size)``).
        device: torch device.
        progress: show a tqdm bar over iterations.
    """
    if kind not in BACKBONE_KINDS:
        raise ValueError(f"unknown backbone kind {kind!r}; valid: {', '.join(BACKBONE_KINDS)}")
    device = check_device(device)
    params = params.for_arch(arch)
    t0 = time.perf_counter()
    torch.manual_seed(params.seed)
    model = models.create_classifier(arch, DigitCrops.num_classes).to(device)
    train_set = DigitCrops("train", params.train_size, params.crop_size, digit_side, params.seed)
    val_set = DigitCrops("val", params.val_size, params.crop_size, digit_side, params.seed)
    generator = torch.Generator().manual_seed(params.seed)
    loader = DataLoader(train_set, batch_size=params.batch_size, shuffle=True, drop_last=True, generator=generator)
    optimizer = torch.optim.AdamW(param_groups(model, params.weight_decay), lr=params.lr)
    per_epoch = len(loader)
    if per_epoch < 1:
        raise ValueError(f"{params.train_size} training crops give no full batch of {params.batch_size}")
    total = params.epochs * per_epoch
    eps = params.eps / 255
    iteration = 0
    model.train()
    with progress_bar(total=total, enabled=progress, desc=f"pretrain {kind} {arch}", unit="it") as bar:
        for epoch in range(params.epochs):
            adversarial = kind == "robust" and epoch >= params.clean_epochs
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                if adversarial:
                    x = classifier_pgd(model, x, y, eps, params.attack_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(iteration, params.lr, total, per_epoch, 1e-3, 1.0)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                iteration += 1
                bar.update()
                bar.set_postfix(epoch=epoch + 1, adv=adversarial, loss=f"{loss.item():.3f}", refresh=False)
    train_time = time.perf_counter() - t0
    model.eval()
    metrics = {
        "clean_acc": evaluate_classifier(model, val_set, device=device),
        "robust_acc": evaluate_classifier(model, val_set, eps, device=device),
        "robust_acc_4": evaluate_classifier(model, val_set, 4 / 255, device=device),
        "eps": params.eps,
        "wall_time_s": train_time,
    }
    path = None
    if out_path is not None:
        meta = {
            "arch": arch,
            "kind": kind,
            "pretrain": dataclasses.asdict(params),
            "digit_side": list(digit_side),
            "metrics": metrics,
            "eval": f"held-out DigitCrops ({params.val_size}), PGD-{_EVAL_STEPS} random start, step 2.5*eps/steps",
        }
        path = models.save_checkpoint(model, Path(out_path), meta)
    return PretrainResult(model, path, metrics)

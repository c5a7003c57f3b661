"""Evaluation sanity checks, after AutoAttack's flags (architecture §6).

An attack evaluation can be silently wrong: a model that is still in training mode or draws random
numbers makes every attack look weaker than it is; a model that returns probabilities or blocks its
gradients (masking) starves gradient-based attacks; a radius given on the wrong scale or data outside the
expected ranges evaluate a different threat model than the one reported. :func:`run_checks` looks for
these cases with two forward passes and one backward pass on a small batch and raises a
:class:`EvalCheckWarning` for each (or an :class:`EvalCheckError` with ``strict=True``).

Every flag has a short code and a documented reason (:data:`CHECKS`); ``book/sanity_checks.md`` carries
the same text, one entry per code.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CHECKS", "CheckFlag", "EvalCheckError", "EvalCheckWarning", "run_checks"]

CHECKS: dict[str, str] = {
    "eps-scale": (
        "Radii are fractions of the [0, 1] image range in the API (8/255 = 0.0314). A radius above 1 is "
        "almost certainly a count on the 0-255 scale passed as a float; it allows any image in the box, so "
        "every reported robust number would be meaningless."
    ),
    "eps-zero": (
        "A radius of exactly 0 allows no perturbation: the attack cannot change anything and the 'robust' "
        "numbers equal the clean ones. This usually means an integer division or a unit mistake upstream."
    ),
    "input-range": (
        "The threat model is an L-inf ball intersected with the image box [0, 1], and attacks clip to [0, 1]. "
        "Inputs outside [0, 1] (0-255 images, mean/std-normalised images) are clipped on the first step, so "
        "the attack evaluates different images than the clean ones, and the radius is on the wrong scale. "
        "Normalisation belongs inside the model."
    ),
    "label-range": (
        "Labels must be integer classes in [0, num_classes) or the ignore index. Other values (a second "
        "ignore value such as -1 or 254, or an off-by-one class map) are counted neither as correct nor as "
        "ignored consistently, which corrupts accuracies, IoUs and the attack losses."
    ),
    "train-mode": (
        "Attacks must run on the model in eval mode: in training mode dropout and stochastic depth draw "
        "random masks and BatchNorm normalises with batch statistics (so images of a batch interact and "
        "running statistics change). Robustness then depends on the batch and on chance, and attacks look "
        "weaker than they are. Call model.eval() before evaluating."
    ),
    "randomness": (
        "Two identical calls gave different outputs. Attacks against a randomised model follow noisy "
        "gradients and a single evaluation of the final point can be lucky; the robustness measured this "
        "way overestimates the true one unless randomness is handled explicitly (e.g. expectation over "
        "transformation). Remove the randomness (eval mode, no stochastic layers) for this evaluation."
    ),
    "probabilities": (
        "The outputs lie in [0, 1] and sum to 1 over classes: they look like probabilities, not logits. "
        "The attack losses apply a softmax themselves; a second softmax squashes the outputs and their "
        "gradients (a form of gradient masking), and the losses no longer mean what they should. Return "
        "the logits."
    ),
    "zero-gradient": (
        "The gradient of the cross-entropy with respect to the input is exactly zero for some image with "
        "labelled pixels (or the input gets no gradient at all). Gradient-based attacks cannot move such an "
        "image, so its robustness would be overestimated: typical causes are a detached or quantised input, "
        "saturated outputs, or other gradient masking."
    ),
    "nonfinite": (
        "The outputs or the input gradient contain NaN or infinite values. Attack steps then become NaN or "
        "meaningless and the iterates stay at their start; the evaluation would overestimate robustness. "
        "Look for divisions by zero, logs of zero or overflowing activations."
    ),
    "output-shape": (
        "model(x) must return logits of shape (N, K, H, W): one score per class at the input resolution. "
        "Another shape (a missing upsampling, an auxiliary output, a wrong number of classes) cannot be "
        "scored against the labels; the gradient and output checks are skipped."
    ),
}
"""Flag code -> documented reason (the same text as on ``book/sanity_checks.md``)."""


class EvalCheckWarning(UserWarning):
    """Warning raised by :func:`run_checks` for each flag."""


class EvalCheckError(RuntimeError):
    """Raised by :func:`run_checks` with ``strict=True`` when any check flags."""

    def __init__(self, flags: list[CheckFlag]) -> None:
        self.flags = flags
        super().__init__("evaluation sanity checks failed:\n" + "\n".join(f"  {f}" for f in flags))


@dataclass(frozen=True)
class CheckFlag:
    """One failed sanity check.

    Attributes:
        code: short identifier, a key of :data:`CHECKS`.
        message: what was found, with the offending values.
        reason: why it matters (the documented text of the flag).
    """

    code: str
    message: str
    reason: str

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


def _flag(code: str, message: str) -> CheckFlag:
    return CheckFlag(code, message, CHECKS[code])


@contextlib.contextmanager
def _isolated(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Leave no trace: restore the model's buffers (BatchNorm statistics in train mode) and the RNG state."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    devices = [torch.cuda.current_device() if device.index is None else device.index] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        with torch.no_grad():
            for buf, saved in buffers:
                buf.copy_(saved)


def _check_data(x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int, ignore_index: int) -> list[CheckFlag]:
    flags = []
    if eps > 1:
        flags.append(_flag("eps-scale", f"eps = {eps:g} > 1; did you mean eps = {eps:g}/255 = {eps / 255:.5f}?"))
    elif eps == 0:
        flags.append(_flag("eps-zero", "eps = 0: the attacks cannot perturb the images"))
    if not torch.isfinite(x).all():
        flags.append(_flag("input-range", "inputs contain NaN or infinite values"))
    elif x.numel() and (x.min() < 0 or x.max() > 1):
        flags.append(_flag("input-range", f"inputs span [{float(x.min()):.4g}, {float(x.max()):.4g}], expected [0, 1]"))
    if y.is_floating_point() or y.is_complex():
        flags.append(_flag("label-range", f"labels have dtype {y.dtype}; expected integer class indices"))
    else:
        bad = (y != ignore_index) & ((y < 0) | (y >= num_classes))
        if bad.any():
            values = torch.unique(y[bad])[:10].tolist()
            flags.append(
                _flag(
                    "label-range",
                    f"labels hold values {values} outside [0, {num_classes}) that are not the ignore index "
                    f"{ignore_index}",
                )
            )
    return flags


def _check_model(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, ignore_index: int
) -> list[CheckFlag]:
    flags = []
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        shown = ", ".join(training[:3]) + (f" and {len(training) - 3} more" if len(training) > 3 else "")
        flags.append(_flag("train-mode", f"modules in training mode: {shown}"))
    with torch.no_grad():
        first, second = model(x), model(x)
    if not isinstance(first, torch.Tensor):
        flags.append(_flag("output-shape", f"model(x) returned {type(first).__name__}, expected a logits tensor"))
        return flags
    expected = (x.shape[0], num_classes, *x.shape[2:])
    if tuple(first.shape) != expected:
        flags.append(_flag("output-shape", f"model(x) has shape {tuple(first.shape)}, expected {expected}"))
        return flags
    finite = bool(torch.isfinite(first).all())
    if not finite:
        flags.append(_flag("nonfinite", "the model outputs contain NaN or infinite values"))
    elif second.shape != first.shape or not torch.allclose(
        first, second, rtol=1e-5, atol=1e-5 * max(1.0, float(first.abs().max()))
    ):
        diff = float((first - second).abs().max()) if second.shape == first.shape else float("nan")
        flags.append(_flag("randomness", f"two identical forward passes differ (max abs difference {diff:.3g})"))
    if (
        finite
        and first.min() >= 0
        and first.max() <= 1
        and torch.allclose(first.sum(1), torch.ones_like(first[:, 0]), atol=1e-3)
    ):
        flags.append(_flag("probabilities", "outputs lie in [0, 1] and sum to 1 over classes"))
    flags.extend(_check_gradient(model, x, y, num_classes, ignore_index, finite))
    return flags


def _check_gradient(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, ignore_index: int, finite: bool
) -> list[CheckFlag]:
    if y.is_floating_point() or y.is_complex():
        return []
    target = y.long()
    target = torch.where((target >= 0) & (target < num_classes), target, torch.full_like(target, ignore_index))
    labelled = (target != ignore_index).flatten(1).any(1)
    if not labelled.any():
        return []
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), target, ignore_index=ignore_index, reduction="sum")
        grad = torch.autograd.grad(loss, x, allow_unused=True)[0] if loss.requires_grad else None
    if grad is None:
        return [_flag("zero-gradient", "the input receives no gradient (the graph does not reach x)")]
    if not torch.isfinite(grad).all():
        return [] if not finite else [_flag("nonfinite", "the input gradient contains NaN or infinite values")]
    zero = (grad.flatten(1).abs().amax(1) == 0) & labelled
    if zero.any():
        which = zero.nonzero().flatten()[:10].tolist()
        return [_flag("zero-gradient", f"the input gradient is exactly zero for image(s) {which} of the batch")]
    return []


def run_checks(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    num_classes: int,
    ignore_index: int = 255,
    strict: bool = False,
) -> list[CheckFlag]:
    """Run the evaluation sanity checks on one small batch.

    Costs three forward passes and one backward pass; pass a few images (the evaluator uses at most 8).
    The model is left as it was: its buffers and the random number generator state are restored.

    Args:
        model: the model as it will be attacked (``model(x)`` -> logits (N, K, H, W)).
        x: (N, C, H, W) images, expected in [0, 1].
        y: (N, H, W) integer labels.
        eps: the L-inf radius as a fraction of the [0, 1] range (8/255, not 8).
        num_classes: K.
        ignore_index: label of unlabelled pixels.
        strict: raise :class:`EvalCheckError` listing every flag instead of warning.

    Returns:
        The flags raised (empty if all checks pass). Each is also issued as an :class:`EvalCheckWarning`.

    Raises:
        ValueError: ``eps`` is negative or not finite; ``x``/``y`` do not have the conventional shapes.
        EvalCheckError: with ``strict=True``, if any check flags.
    """
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite non-negative number, got {eps!r}")
    if x.dim() != 4 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[1:]:
        raise ValueError(
            f"x must be (N, C, H, W) and y (N, H, W) with matching N, H, W; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    flags = _check_data(x, y, eps, num_classes, ignore_index)
    device = next(model.parameters(), x).device
    with _isolated(model, device):
        flags.extend(_check_model(model, x.to(device), y.to(device), num_classes, ignore_index))
    if strict and flags:
        raise EvalCheckError(flags)
    for flag in flags:
        warnings.warn(f"{flag}. Why it matters: {flag.reason}", EvalCheckWarning, stacklevel=2)
    return flags

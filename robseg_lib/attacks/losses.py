"""Per-pixel attack losses for semantic segmentation (algorithms §3) and their per-image reduction.

Every loss maps logits (N, K, H, W) and labels (N, H, W) to per-pixel values (N, H, W) that are 0 on
ignore pixels. The per-image reduction is the mean over all H·W pixels, ignore pixels contributing 0 but
counting in the denominator (§3.9); attacks differentiate the sum of the per-image values over the batch.

Masks (correct / incorrect pixel) are computed from the current logits and carry no gradient. Loss names:

========================  =======================================================================
``ce``                    cross-entropy −log p_y
``js``                    Jensen–Shannon divergence D_JS(p ‖ e_y), closed form, no mask (SEA component)
``mce``                   c·CE, c = 1[pixel currently correct] (SEA component, targets accuracy)
``mce-bal``               w_y·c·CE with class weights w (SEA component, targets mIoU)
``segpgd``                [(1−λ)c + λ(1−c)]·CE, λ = (t−1)/(2T) (SegPGD baseline)
``cospgd``                cos(softmax(u), e_y)·CE, weight detached (CosPGD, ICML version)
``cospgd-sigmoid``        cos(σ(u), e_y)·CE, weight detached (CosPGD as described in the SEA paper)
``mask-sph``              −c·u_y/‖u‖₂ (masked spherical loss of arXiv-v1 SEA)
========================  =======================================================================
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from functools import cached_property
from importlib import resources
from typing import Literal, TypedDict, Unpack, overload

import torch
import torch.nn.functional as F

__all__ = [
    "LOSSES",
    "TARGETED_LOSSES",
    "AttackObjective",
    "LabelTerms",
    "PixelLossOptions",
    "PixelTerms",
    "check_loss_name",
    "class_weights_from_counts",
    "image_loss",
    "label_counts",
    "pixel_loss",
    "reduce_per_image",
    "released_class_weights",
]

LOSSES: tuple[str, ...] = ("ce", "js", "mce", "mce-bal", "segpgd", "cospgd", "cospgd-sigmoid", "mask-sph")
"""Valid loss names."""

TARGETED_LOSSES: tuple[str, ...] = ("js", "ce")
"""Losses with a targeted form: the negative JS divergence (paper Fig. 1) or the negative CE to the target."""

_LOG2 = math.log(2.0)


def check_loss_name(name: str, allowed: Sequence[str] = LOSSES) -> str:
    """Return ``name`` if it is a valid loss name, else raise a ValueError listing the valid names."""
    if name not in allowed:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(allowed)}")
    return name


class LabelTerms:
    """Label-derived quantities (valid mask, gather index, pixel weights), computed once per attack.

    Args:
        labels: (N, H, W) integer labels; ``ignore_index`` marks unlabelled pixels.
        ignore_index: label value of unlabelled pixels.
    """

    def __init__(self, labels: torch.Tensor, ignore_index: int = 255) -> None:
        self.labels = labels.long()
        self.ignore_index = ignore_index
        self.valid = self.labels != ignore_index
        self.safe_labels = self.labels.masked_fill(~self.valid, 0)  # for gathers; always masked afterwards
        self.index = self.safe_labels.unsqueeze(1)
        self._as_dtype: dict[torch.dtype, torch.Tensor] = {}
        self._pixel_weights: tuple[torch.Tensor, torch.Tensor] | None = None

    @cached_property
    def n_valid(self) -> torch.Tensor:
        """(N,) number of labelled pixels per image."""
        return self.valid.flatten(1).sum(1)

    def valid_as(self, dtype: torch.dtype) -> torch.Tensor:
        """The valid mask as 0/1 values of ``dtype``."""
        if dtype not in self._as_dtype:
            self._as_dtype[dtype] = self.valid.to(dtype)
        return self._as_dtype[dtype]

    def pixel_weights(self, class_weights: torch.Tensor) -> torch.Tensor:
        """(N, H, W) weight of each pixel's class, 0 on ignore pixels (cached for the last weight vector)."""
        if self._pixel_weights is None or self._pixel_weights[0] is not class_weights:
            values = class_weights[self.safe_labels] * self.valid_as(class_weights.dtype)
            self._pixel_weights = (class_weights, values)
        return self._pixel_weights[1]


class PixelTerms:
    """Per-pixel quantities shared by all losses, each computed at most once per set of logits.

    One forward pass of an attack evaluates the attack loss, the tracking loss and the accuracy from the
    same logits; the cached properties make sure that, for instance, the cross-entropy is computed once.

    Args:
        logits: (N, K, H, W) logits (part of the autograd graph where a gradient is needed).
        labels: (N, H, W) integer labels, or their :class:`LabelTerms` (reused across iterations).
        ignore_index: label value of unlabelled pixels (taken from ``labels`` if it is a LabelTerms).
    """

    def __init__(self, logits: torch.Tensor, labels: torch.Tensor | LabelTerms, ignore_index: int = 255) -> None:
        if not isinstance(labels, LabelTerms):
            labels = LabelTerms(labels, ignore_index)
        if logits.dim() != 4 or logits.shape[:1] + logits.shape[2:] != labels.labels.shape:
            raise ValueError(
                f"logits must be (N, K, H, W) and labels (N, H, W) with matching N, H, W; "
                f"got {tuple(logits.shape)} and {tuple(labels.labels.shape)}"
            )
        self.logits = logits
        self.label_terms = labels
        self.labels = labels.labels
        self.ignore_index = labels.ignore_index
        self.valid = labels.valid
        self.safe_labels = labels.safe_labels

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    @property
    def valid_f(self) -> torch.Tensor:
        return self.label_terms.valid_as(self.logits.dtype)

    @cached_property
    def ce(self) -> torch.Tensor:
        """(N, H, W) cross-entropy, 0 on ignore pixels."""
        return F.cross_entropy(self.logits, self.labels, ignore_index=self.ignore_index, reduction="none")

    @cached_property
    def p_y(self) -> torch.Tensor:
        """(N, H, W) softmax probability of the label (1 on ignore pixels, where the CE is 0)."""
        return torch.exp(-self.ce)

    @cached_property
    def correct(self) -> torch.Tensor:
        """(N, H, W) bool, labelled pixels whose label has the largest logit (no gradient).

        Equal to ``argmax == label`` except at exact ties of the largest logits, which count as correct
        here. Compared with an argmax over classes this is several times cheaper on CPU, where the
        channel-wise argmax of (N, K, H, W) logits can cost a sizeable fraction of a forward pass.
        """
        logits = self.logits.detach()
        return (self.logit_y(logits) >= logits.amax(1)) & self.valid

    @cached_property
    def correct_f(self) -> torch.Tensor:
        return self.correct.to(self.logits.dtype)

    def logit_y(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """(N, H, W) entry of the label class in ``logits`` (default: the logits themselves)."""
        source = self.logits if logits is None else logits
        return source.gather(1, self.label_terms.index).squeeze(1)


# ---------------------------------------------------------------------------------------------------------
# Individual losses. Each takes the shared terms and returns (N, H, W), 0 on ignore pixels.


def _ce(t: PixelTerms, **_: object) -> torch.Tensor:
    return t.ce


def _js(t: PixelTerms, **_: object) -> torch.Tensor:
    # D_JS(p ‖ e_y) = ½·log(2/(1+p_y)) + ½·Σ_k p_k·log(2p_k/(δ_yk+p_k)). For k ≠ y each term is p_k·log 2
    # (0 where p_k = 0, the 0·log 0 = 0 convention), and Σ_{k≠y} p_k = 1 − p_y, which leaves
    #   log 2 − ½(1+p_y)·log(1+p_y) + ½·p_y·log p_y.
    # log p_y = −CE comes from log-softmax and is finite even where p_y underflows to 0, so p_y·log p_y and
    # its gradient are exactly 0 there: no NaN, unlike log(m) of an underflowed mixture (defect D7).
    p = t.p_y
    value = _LOG2 - 0.5 * (1.0 + p) * torch.log1p(p) - 0.5 * p * t.ce
    return value * t.valid_f


def _mce(t: PixelTerms, **_: object) -> torch.Tensor:
    return t.correct_f * t.ce


def _mce_bal(t: PixelTerms, *, class_weights: torch.Tensor | None = None, **_: object) -> torch.Tensor:
    return t.label_terms.pixel_weights(_resolve_weights(class_weights, t)) * t.correct_f * t.ce


def _segpgd(t: PixelTerms, *, iteration: int | None = None, n_iter: int | None = None, **_: object) -> torch.Tensor:
    if iteration is None or n_iter is None:
        raise ValueError("the segpgd loss needs iteration (t = 1, ..., T) and n_iter (T)")
    if iteration < 1 or n_iter < 1:
        raise ValueError(f"segpgd needs iteration >= 1 and n_iter >= 1, got {iteration} and {n_iter}")
    lam = (iteration - 1) / (2 * n_iter)
    wrong = t.valid_f - t.correct_f  # labelled and currently wrong
    return ((1.0 - lam) * t.correct_f + lam * wrong) * t.ce


def _cospgd(t: PixelTerms, **_: object) -> torch.Tensor:
    # Cached terms (CE, p_y) are computed outside no_grad: a later user may need their graph.
    p_y = t.p_y.detach()
    with torch.no_grad():
        weight = p_y / torch.softmax(t.logits.detach(), dim=1).norm(dim=1).clamp_min(1e-12)
    return weight * t.valid_f * t.ce


def _cospgd_sigmoid(t: PixelTerms, **_: object) -> torch.Tensor:
    with torch.no_grad():
        s = torch.sigmoid(t.logits.detach())
        weight = t.logit_y(s) / s.norm(dim=1).clamp_min(1e-12)
    return weight * t.valid_f * t.ce


def _mask_sph(t: PixelTerms, **_: object) -> torch.Tensor:
    return -t.correct_f * t.logit_y() / t.logits.norm(dim=1).clamp_min(1e-12)


_PIXEL_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "ce": _ce,
    "js": _js,
    "mce": _mce,
    "mce-bal": _mce_bal,
    "segpgd": _segpgd,
    "cospgd": _cospgd,
    "cospgd-sigmoid": _cospgd_sigmoid,
    "mask-sph": _mask_sph,
}


def _resolve_weights(class_weights: torch.Tensor | Sequence[float] | None, t: PixelTerms) -> torch.Tensor:
    if class_weights is None:
        # Fallback: inverse pixel frequencies of the labels at hand (see pixel_loss).
        counts = torch.bincount(t.labels[t.valid].long(), minlength=t.num_classes)
        class_weights = class_weights_from_counts(counts)
    weights = torch.as_tensor(class_weights, dtype=t.logits.dtype, device=t.logits.device)
    if weights.shape != (t.num_classes,):
        raise ValueError(f"class_weights must have one entry per class ({t.num_classes}), got {tuple(weights.shape)}")
    return weights


def _targeted_labels(labels: torch.Tensor, target: torch.Tensor | int, ignore_index: int) -> torch.Tensor:
    """Target map restricted to the labelled pixels of ``labels`` (ignore elsewhere)."""
    target = torch.as_tensor(target, device=labels.device, dtype=labels.dtype).expand_as(labels)
    valid = (labels != ignore_index) & (target != ignore_index)
    return torch.where(valid, target, torch.full_like(labels, ignore_index))


class PixelLossOptions(TypedDict, total=False):
    """Keyword options of :func:`pixel_loss`, forwarded by :func:`image_loss`."""

    ignore_index: int
    class_weights: torch.Tensor | Sequence[float] | None
    iteration: int | None
    n_iter: int | None
    target: torch.Tensor | int | None


def pixel_loss(
    name: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = 255,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    iteration: int | None = None,
    n_iter: int | None = None,
    target: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """Per-pixel attack loss (to be maximised), 0 on ignore pixels.

    Args:
        name: one of :data:`LOSSES`.
        logits: (N, K, H, W).
        labels: (N, H, W) integer labels, ``ignore_index`` for unlabelled pixels.
        ignore_index: label value of unlabelled pixels.
        class_weights: (K,) weights of ``mce-bal`` (only relative values matter inside APGD). Use
            :func:`class_weights_from_counts` on training-split counts (paper) or
            :func:`released_class_weights` (authors' release). ``None``: inverse pixel frequencies of
            ``labels`` themselves (the batch at hand), a fallback that makes results depend on the batch.
        iteration: ``segpgd`` only, the 1-based iteration t.
        n_iter: ``segpgd`` only, the number of iterations T.
        target: targeted mode, a (N, H, W) target map or one class for all pixels. Supported for ``js``
            (returns −D_JS(p ‖ e_target), paper Fig. 1) and ``ce`` (returns −CE to the target); pixels that
            are unlabelled in ``labels`` or ``target`` count as ignore.

    Returns:
        (N, H, W) per-pixel values.
    """
    check_loss_name(name)
    if target is not None:
        check_loss_name(name, TARGETED_LOSSES)
        terms = PixelTerms(logits, _targeted_labels(labels, target, ignore_index), ignore_index)
        return -_PIXEL_LOSSES[name](terms)
    terms = PixelTerms(logits, labels, ignore_index)
    return _PIXEL_LOSSES[name](terms, class_weights=class_weights, iteration=iteration, n_iter=n_iter)


def reduce_per_image(values: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N,): mean over all H·W pixels (ignore pixels hold 0 and count in the denominator)."""
    return values.flatten(1).mean(1)


def image_loss(
    name: str, logits: torch.Tensor, labels: torch.Tensor, **kwargs: Unpack[PixelLossOptions]
) -> torch.Tensor:
    """(N,) per-image loss: :func:`pixel_loss` reduced with :func:`reduce_per_image`."""
    return reduce_per_image(pixel_loss(name, logits, labels, **kwargs))


class AttackObjective:
    """What an attack evaluates at each forward pass: attack loss, tracking loss and progress score.

    All three come from the same logits and share their per-pixel terms (one cross-entropy, one argmax).

    Args:
        loss: the attack loss whose gradient drives the attack.
        labels: (N, H, W) labels.
        ignore_index: label value of unlabelled pixels.
        class_weights: weights of ``mce-bal``; ``None``: inverse pixel frequencies of ``labels``, computed
            once here.
        target: targeted mode (see :func:`pixel_loss`); the score then counts labelled pixels not yet
            predicted as the target.
        track_loss: loss whose per-image value is tracked (step-size control, best-loss point); ``None``
            means the attack loss itself.
        n_iter: T of the ``segpgd`` schedule.

    Calling the objective with logits returns ``(attack, track, score)``: the scalar to differentiate
    (sum over images of the per-image attack loss; ``None`` unless requested), (N,) detached per-image
    tracking losses and (N,) int64 scores, the number of labelled pixels still classified correctly
    (untargeted) or not yet as the target (targeted). Attacks minimise the score.
    """

    def __init__(
        self,
        loss: str,
        labels: torch.Tensor,
        *,
        ignore_index: int = 255,
        class_weights: torch.Tensor | Sequence[float] | None = None,
        target: torch.Tensor | int | None = None,
        track_loss: str | None = None,
        n_iter: int | None = None,
    ) -> None:
        check_loss_name(loss)
        track_loss = loss if track_loss is None else check_loss_name(track_loss)
        self.targeted = target is not None
        if target is not None:
            check_loss_name(loss, TARGETED_LOSSES)
            check_loss_name(track_loss, TARGETED_LOSSES)
            labels = _targeted_labels(labels, target, ignore_index)
        self.loss, self.track_loss = loss, track_loss
        self.label_terms = LabelTerms(labels, ignore_index)
        self.n_iter = n_iter
        self._needs_weights = "mce-bal" in (loss, track_loss)
        self._given_weights = class_weights
        self._weights: torch.Tensor | None = None

    def _kwargs(self, terms: PixelTerms, iteration: int | None) -> dict[str, object]:
        if self._needs_weights and self._weights is None:
            # Resolved once (fallback counts, dtype, device), not at every forward pass.
            self._weights = _resolve_weights(self._given_weights, terms)
        return {"class_weights": self._weights, "iteration": iteration, "n_iter": self.n_iter}

    @property
    def n_valid(self) -> torch.Tensor:
        """(N,) labelled pixels per image (targeted: labelled in both the labels and the target map)."""
        return self.label_terms.n_valid

    def _image_values(self, name: str, terms: PixelTerms, kwargs: dict[str, object]) -> torch.Tensor:
        values = reduce_per_image(_PIXEL_LOSSES[name](terms, **kwargs))
        return -values if self.targeted else values

    @overload
    def __call__(
        self, logits: torch.Tensor, iteration: int | None = None, *, need_attack: Literal[True] = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    @overload
    def __call__(
        self, logits: torch.Tensor, iteration: int | None = None, *, need_attack: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]: ...

    def __call__(
        self, logits: torch.Tensor, iteration: int | None = None, *, need_attack: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        terms = PixelTerms(logits, self.label_terms)
        kwargs = self._kwargs(terms, iteration)
        attack = None
        if need_attack or self.track_loss == self.loss:
            attack = self._image_values(self.loss, terms, kwargs)
        if attack is not None and self.track_loss == self.loss:
            track = attack.detach()
        else:
            # After the attack loss: terms it cached keep their graph; those cached here need none.
            with torch.no_grad():
                track = self._image_values(self.track_loss, terms, kwargs)
        if self.targeted:
            score = (terms.valid & ~terms.correct).flatten(1).sum(1)
        else:
            score = terms.correct.flatten(1).sum(1)
        total = attack.sum() if attack is not None and need_attack else None
        return total, track, score


# ---------------------------------------------------------------------------------------------------------
# MCE-Bal class weights (§3.4)


def class_weights_from_counts(counts: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Normalised inverse pixel frequencies: w_s = (1/N_s) / Σ_t (1/N_t); classes with N_s = 0 get 0.

    Args:
        counts: (K,) number of labelled pixels per class (on the training split for paper fidelity).

    Returns:
        (K,) float64 weights summing to 1 (all zeros if every count is zero).
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or (counts < 0).any():
        raise ValueError("counts must be a 1-D tensor of non-negative pixel counts")
    inv = torch.where(counts > 0, 1.0 / counts.clamp_min(1e-300), torch.zeros_like(counts))
    total = inv.sum()
    return inv / total if total > 0 else inv


def label_counts(labels: torch.Tensor, num_classes: int, ignore_index: int = 255) -> torch.Tensor:
    """(K,) int64 number of labelled pixels per class in a label tensor of any shape."""
    labels = labels.reshape(-1)
    labels = labels[labels != ignore_index].long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}")
    return torch.bincount(labels, minlength=num_classes).cpu()


_DATASET_NAMES = {"voc": "PascalVOC", "pascalvoc": "PascalVOC", "ade20k": "ADE20K", "ade": "ADE20K"}


def released_class_weights(dataset: str) -> torch.Tensor:
    """The MCE-Bal class weights hard-coded in the authors' release (VOC: 21 values, ADE20K: 151).

    Read from ``robseg_lib/paper_data/mcebal_class_weights.csv`` (column ``weight_released``).

    Args:
        dataset: ``"voc"`` or ``"ade20k"``.

    Returns:
        (K,) float64 weights in class-index order.
    """
    key = _DATASET_NAMES.get(dataset.lower())
    if key is None:
        raise ValueError(f"unknown dataset {dataset!r}; valid: 'voc', 'ade20k'")
    path = resources.files("robseg_lib") / "paper_data" / "mcebal_class_weights.csv"
    with resources.as_file(path) as csv_path, csv_path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["dataset"] == key]
    rows.sort(key=lambda r: int(r["class_index"]))
    if [int(r["class_index"]) for r in rows] != list(range(len(rows))):
        raise ValueError(f"class indices of {key} in mcebal_class_weights.csv are not 0..K-1")
    return torch.tensor([float(r["weight_released"]) for r in rows], dtype=torch.float64)

"""Our SegPGD and CosPGD per-pixel losses against the reference package ``cospgd`` (PyPI 0.1.3, MIT).

The package scales a pixel-wise cross-entropy: ``segpgd_scale`` sums it with SegPGD's weights over the batch and
divides by H·W (λ = iteration / (2·iterations), a 0-based iteration); ``cospgd_scale`` multiplies it by the
cosine similarity of softmax(predictions) and the one-hot label. Our ``cospgd-sigmoid`` (the variant the SEA paper
describes) is the same similarity with σ(u) in place of softmax(u): since the cosine similarity does not change
when a vector is scaled, softmax(log σ(u)) = σ(u) / Σσ(u) gives it through the package too.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robseg_lib.attacks.losses import pixel_loss

cospgd = pytest.importorskip("cospgd")
Attack = cospgd.attack_implementations.Attack

K, IGNORE = 5, 255


def _logits_and_labels(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = 4 * torch.randn(3, K, 6, 7, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, K, (3, 6, 7), generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < 0.2] = IGNORE
    labels[0, 0, :3] = logits[0, :, 0, :3].argmax(0)  # a few correctly classified pixels for sure
    return logits, labels


def _ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="none")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("t", "n_iter"), [(1, 10), (4, 10), (10, 10), (37, 100)])
def test_segpgd_equals_the_package(seed: int, t: int, n_iter: int):
    logits, labels = _logits_and_labels(seed)
    ours = pixel_loss("segpgd", logits, labels, ignore_index=IGNORE, iteration=t, n_iter=n_iter)
    theirs = Attack.segpgd_scale(logits, labels, _ce(logits, labels), iteration=t - 1, iterations=n_iter)
    assert ours.sum() / (labels.shape[-2] * labels.shape[-1]) == pytest.approx(float(theirs), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cospgd_equals_the_package(seed: int):
    logits, labels = _logits_and_labels(seed)
    ours = pixel_loss("cospgd", logits, labels, ignore_index=IGNORE)
    theirs = Attack.cospgd_scale(logits, labels, _ce(logits, labels), num_classes=K)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cospgd_sigmoid_equals_the_package_on_log_sigmoid(seed: int):
    logits, labels = _logits_and_labels(seed)
    ours = pixel_loss("cospgd-sigmoid", logits, labels, ignore_index=IGNORE)
    theirs = Attack.cospgd_scale(F.logsigmoid(logits), labels, _ce(logits, labels), num_classes=K)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(ours, pixel_loss("cospgd", logits, labels, ignore_index=IGNORE)), "variants differ"

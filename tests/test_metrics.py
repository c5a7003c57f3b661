"""Metrics against an independent computation (scikit-learn's confusion matrix)."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix

from robseg_lib.metrics import SegStats, compute_stats, greedy_worst_case_miou, worst_case_accuracy

K = 5
IGNORE = 255


def _random_maps(seed: int, n: int = 6, hw: int = 12, ignore_frac: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, K, (n, hw, hw), generator=g)
    target[torch.rand(n, hw, hw, generator=g) < ignore_frac] = IGNORE
    pred = torch.randint(0, K, (n, hw, hw), generator=g)
    return pred, target


def _reference(pred: torch.Tensor, target: torch.Tensor):
    valid = (target != IGNORE).numpy().ravel()
    cm = confusion_matrix(target.numpy().ravel()[valid], pred.numpy().ravel()[valid], labels=list(range(K)))
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    present = union > 0
    return cm, float((inter[present] / union[present]).mean()), inter.sum() / cm.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pooled_miou_and_accuracy_match_confusion_matrix(seed):
    pred, target = _random_maps(seed)
    stats = compute_stats(pred, target, K, IGNORE)
    cm, miou, acc = _reference(pred, target)
    assert stats.miou() == pytest.approx(miou, abs=1e-12)
    assert stats.pooled_accuracy() == pytest.approx(acc, abs=1e-6)
    np.testing.assert_array_equal(stats.label_count.sum(0).numpy(), cm.sum(1))


def test_per_image_accuracy_and_ignore_pixels_are_no_false_positives():
    target = torch.tensor([[[0, 1], [IGNORE, IGNORE]]])
    pred = torch.tensor([[[0, 0], [1, 1]]])  # predictions on ignored pixels must not count as class 1
    stats = compute_stats(pred, target, 2, IGNORE)
    assert stats.image_accuracy().tolist() == [0.5]
    assert stats.union[0].tolist() == [2, 1]  # class 0: pred 2 valid pixels; class 1: only its label pixel
    assert stats.miou() == pytest.approx((1 / 2 + 0 / 1) / 2)


def test_classes_without_union_are_excluded_and_absent_image_counts_as_correct():
    target = torch.full((1, 3, 3), IGNORE)
    target[0, 0, 0] = 2
    pred = torch.full((1, 3, 3), 2)
    stats = compute_stats(pred, target, 4, IGNORE)
    assert stats.miou() == 1.0  # only class 2 has a union
    empty = compute_stats(pred, torch.full((1, 3, 3), IGNORE), 4, IGNORE)
    assert empty.image_accuracy().tolist() == [1.0]
    assert torch.isnan(stats.class_iou()[0])


def test_bad_labels_and_shapes_are_rejected():
    with pytest.raises(ValueError, match="labels must lie in"):
        compute_stats(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 7), 4, IGNORE)
    with pytest.raises(ValueError, match="must both be"):
        compute_stats(torch.zeros(2, 2), torch.zeros(2, 2), 4, IGNORE)


def test_stats_cat_select_save_roundtrip(tmp_path):
    a = compute_stats(*_random_maps(0, n=3), K, IGNORE)
    b = compute_stats(*_random_maps(1, n=2), K, IGNORE)
    both = SegStats.cat([a, b])
    assert both.num_images == 5
    assert torch.equal(both.select([3, 4]).intersection, b.intersection)
    both.save(tmp_path / "s.pt")
    again = SegStats.load(tmp_path / "s.pt")
    assert torch.equal(again.union, both.union)
    assert list(tmp_path.iterdir()) == [tmp_path / "s.pt"]  # no temporary file left behind


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n_attacks=st.integers(1, 4))
def test_greedy_worst_case_never_above_best_single_attack(seed, n_attacks):
    target = _random_maps(seed * 10, n=8)[1]
    stats = [compute_stats(_random_maps(seed * 10 + a, n=8)[0], target, K, IGNORE) for a in range(n_attacks)]
    worst, choice = greedy_worst_case_miou(stats, seed=0)
    assert worst <= min(s.miou() for s in stats) + 1e-12
    # The reported value is the mIoU of the reported selection.
    chosen = SegStats(
        torch.stack([stats[c].intersection[i] for i, c in enumerate(choice.tolist())]),
        torch.stack([stats[c].union[i] for i, c in enumerate(choice.tolist())]),
        torch.stack([stats[c].label_count[i] for i, c in enumerate(choice.tolist())]),
    )
    assert chosen.miou() == pytest.approx(worst, abs=1e-12)


def test_greedy_is_seeded_and_repeatable():
    target = _random_maps(3, n=10)[1]
    stats = [compute_stats(_random_maps(a, n=10)[0], target, K, IGNORE) for a in range(3)]
    (m1, c1), (m2, c2) = greedy_worst_case_miou(stats, seed=5), greedy_worst_case_miou(stats, seed=5)
    assert m1 == m2
    assert torch.equal(c1, c2)


def test_worst_case_accuracy_is_per_image_minimum():
    target = _random_maps(0, n=7)[1]
    stats = [compute_stats(_random_maps(a, n=7)[0], target, K, IGNORE) for a in range(3)]
    worst, which = worst_case_accuracy(stats)
    per_image = torch.stack([s.image_accuracy() for s in stats])
    assert worst == pytest.approx(float(per_image.min(0).values.mean()))
    assert torch.equal(per_image[which, torch.arange(7)], per_image.min(0).values)
    assert worst <= min(s.mean_accuracy() for s in stats)


def test_misaligned_attacks_are_rejected():
    a = compute_stats(*_random_maps(0, n=3), K, IGNORE)
    b = compute_stats(*_random_maps(0, n=4), K, IGNORE)
    with pytest.raises(ValueError, match="same images"):
        greedy_worst_case_miou([a, b])

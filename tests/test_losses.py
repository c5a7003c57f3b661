"""Per-pixel attack losses against values computed by hand from the formulas of algorithms §3."""

from __future__ import annotations

import math

import pytest
import torch

from robseg_lib.attacks import losses as L

# Two labelled pixels, three classes. Pixel a: logits (2, 1, 0), label 0 (correctly classified).
# Pixel b: logits (0.5, 1.5, -1), label 0 (misclassified as class 1).
U_A, U_B = (2.0, 1.0, 0.0), (0.5, 1.5, -1.0)
Y_A, Y_B = 0, 0
WEIGHTS = (0.2, 0.5, 0.3)


def _logits(*pixels: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(pixels, dtype=torch.float64).T.reshape(1, len(pixels[0]), 1, len(pixels))


def _labels(*labels: int) -> torch.Tensor:
    return torch.tensor(labels).reshape(1, 1, len(labels))


def _softmax(u):
    z = sum(math.exp(v) for v in u)
    return [math.exp(v) / z for v in u]


def _ce(u, y):
    return -math.log(_softmax(u)[y])


def _js(u, y):
    p = _softmax(u)
    total = 0.5 * math.log(2 / (1 + p[y]))
    for k, pk in enumerate(p):
        total += 0.5 * pk * math.log(2 * pk / ((k == y) + pk))
    return total


def _cos(v, y):
    return v[y] / math.sqrt(sum(e * e for e in v))


def _sigmoid(u):
    return [1 / (1 + math.exp(-v)) for v in u]


def _expected(name: str) -> tuple[float, float]:
    ce_a, ce_b = _ce(U_A, Y_A), _ce(U_B, Y_B)
    c_a, c_b = 1.0, 0.0  # a is correct, b is not
    if name == "ce":
        return ce_a, ce_b
    if name == "js":
        return _js(U_A, Y_A), _js(U_B, Y_B)
    if name == "mce":
        return c_a * ce_a, c_b * ce_b
    if name == "mce-bal":
        return WEIGHTS[Y_A] * c_a * ce_a, WEIGHTS[Y_B] * c_b * ce_b
    if name == "segpgd":  # t = 3, T = 10 -> lambda = 2/20
        lam = 0.1
        return (1 - lam) * ce_a, lam * ce_b
    if name == "cospgd":
        return _cos(_softmax(U_A), Y_A) * ce_a, _cos(_softmax(U_B), Y_B) * ce_b
    if name == "cospgd-sigmoid":
        return _cos(_sigmoid(U_A), Y_A) * ce_a, _cos(_sigmoid(U_B), Y_B) * ce_b
    if name == "mask-sph":
        return -c_a * _cos(U_A, Y_A), -c_b * _cos(U_B, Y_B)
    raise AssertionError(name)


@pytest.mark.parametrize("name", L.LOSSES)
def test_pixel_loss_matches_hand_computation(name: str) -> None:
    values = L.pixel_loss(
        name,
        _logits(U_A, U_B),
        _labels(Y_A, Y_B),
        class_weights=torch.tensor(WEIGHTS, dtype=torch.float64),
        iteration=3,
        n_iter=10,
    )
    assert values.shape == (1, 1, 2)
    expected = _expected(name)
    assert values.flatten().tolist() == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", L.LOSSES)
def test_ignore_pixels_are_zero_and_count_in_the_mean(name: str) -> None:
    # A third pixel with the ignore label: it contributes 0, and the per-image mean divides by 3.
    logits = _logits(U_A, U_B, (0.3, -2.0, 4.0))
    labels = _labels(Y_A, Y_B, 255)
    kwargs = {"class_weights": torch.tensor(WEIGHTS, dtype=torch.float64), "iteration": 3, "n_iter": 10}
    values = L.pixel_loss(name, logits, labels, **kwargs)
    assert values[0, 0, 2] == 0
    per_image = L.image_loss(name, logits, labels, **kwargs)
    assert per_image.item() == pytest.approx(sum(_expected(name)) / 3, rel=1e-9, abs=1e-12)


def test_js_closed_form_limits() -> None:
    # p_y = 1 -> 0; p_y = 0 -> log 2.
    logits = _logits((60.0, 0.0), (0.0, 60.0))
    values = L.pixel_loss("js", logits, _labels(0, 0))
    assert values[0, 0, 0].item() == pytest.approx(0.0, abs=1e-12)
    assert values[0, 0, 1].item() == pytest.approx(math.log(2), rel=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_js_has_no_nan_with_underflowing_softmax(dtype: torch.dtype) -> None:
    # Logit gaps of 1000: softmax entries underflow to exactly 0 (defect D7 of the release gives NaN here).
    logits = torch.tensor([[0.0, 1000.0, -1000.0], [1000.0, 0.0, -1000.0]], dtype=dtype).T.reshape(1, 3, 1, 2)
    logits.requires_grad_(True)
    labels = _labels(0, 0)
    assert torch.softmax(logits.detach(), 1).eq(0).any()
    values = L.pixel_loss("js", logits, labels)
    assert torch.isfinite(values).all()
    assert values[0, 0, 0].item() == pytest.approx(math.log(2), rel=1e-6)  # confidently wrong
    assert values[0, 0, 1].item() == pytest.approx(0.0, abs=1e-6)  # confidently right
    (grad,) = torch.autograd.grad(values.sum(), logits)
    assert torch.isfinite(grad).all()
    # Targeted form (negative JS to a target one-hot) is finite too.
    targeted = L.pixel_loss("js", logits, labels, target=2)
    assert torch.isfinite(targeted).all()
    assert torch.isfinite(torch.autograd.grad(targeted.sum(), logits)[0]).all()


def test_js_gradient_matches_closed_form() -> None:
    # d l_JS / d u_t = 1/2 p_y log(p_y / (1 + p_y)) (delta_yt - p_t)  (algorithms §3.2)
    u = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    logits = u.reshape(1, 3, 1, 1).clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(L.pixel_loss("js", logits, _labels(1)).sum(), logits)
    p = _softmax(u.tolist())
    expected = [0.5 * p[1] * math.log(p[1] / (1 + p[1])) * ((t == 1) - p[t]) for t in range(3)]
    assert grad.flatten().tolist() == pytest.approx(expected, rel=1e-9)


def test_masks_and_cosine_weights_carry_no_gradient() -> None:
    # With detached masks / weights, d loss / d u = weight * (p - e_y), the CE gradient scaled.
    logits = _logits(U_A, U_B).requires_grad_(True)
    labels = _labels(Y_A, Y_B)
    p_a = _softmax(U_A)
    ce_grad_a = [p_a[k] - (k == Y_A) for k in range(3)]
    for name, weight in [
        ("mce", 1.0),
        ("mce-bal", WEIGHTS[Y_A]),
        ("cospgd", _cos(p_a, Y_A)),
        ("cospgd-sigmoid", _cos(_sigmoid(U_A), Y_A)),
        ("segpgd", 0.9),
    ]:
        values = L.pixel_loss(
            name, logits, labels, class_weights=torch.tensor(WEIGHTS, dtype=torch.float64), iteration=3, n_iter=10
        )
        (grad,) = torch.autograd.grad(values[0, 0, 0], logits)
        assert grad[0, :, 0, 0].tolist() == pytest.approx([weight * g for g in ce_grad_a], rel=1e-9), name


def test_mask_sph_normalisation_is_differentiated() -> None:
    # -u_y/||u||: gradient -(e_y/||u|| - u_y u/||u||^3), the normalisation is not detached (§3.7).
    logits = _logits(U_A, U_B).requires_grad_(True)
    (grad,) = torch.autograd.grad(L.pixel_loss("mask-sph", logits, _labels(Y_A, Y_B))[0, 0, 0], logits)
    norm = math.sqrt(sum(v * v for v in U_A))
    expected = [-((k == Y_A) / norm - U_A[Y_A] * U_A[k] / norm**3) for k in range(3)]
    assert grad[0, :, 0, 0].tolist() == pytest.approx(expected, rel=1e-9)


def test_segpgd_lambda_schedule() -> None:
    logits, labels = _logits(U_A, U_B), _labels(Y_A, Y_B)
    ce_a, ce_b = _ce(U_A, Y_A), _ce(U_B, Y_B)
    first = L.pixel_loss("segpgd", logits, labels, iteration=1, n_iter=300).flatten().tolist()
    assert first == pytest.approx([ce_a, 0.0])  # lambda(1) = 0: only correct pixels
    last = L.pixel_loss("segpgd", logits, labels, iteration=300, n_iter=300).flatten().tolist()
    lam = 299 / 600
    assert last == pytest.approx([(1 - lam) * ce_a, lam * ce_b])
    with pytest.raises(ValueError, match="iteration"):
        L.pixel_loss("segpgd", logits, labels)


def test_targeted_losses() -> None:
    logits, labels = _logits(U_A, U_B), _labels(Y_A, 255)
    values = L.pixel_loss("js", logits, labels, target=1).flatten().tolist()
    assert values == pytest.approx([-_js(U_A, 1), 0.0])  # pixel b is unlabelled
    target_map = torch.tensor([[[2, 1]]])
    values = L.pixel_loss("ce", logits, _labels(Y_A, Y_B), target=target_map).flatten().tolist()
    assert values == pytest.approx([-_ce(U_A, 2), -_ce(U_B, 1)])
    with pytest.raises(ValueError, match="valid names: js, ce"):
        L.pixel_loss("mce", logits, labels, target=1)


def test_unknown_loss_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown loss 'dlr'; valid names: ce, js, mce, mce-bal, segpgd"):
        L.pixel_loss("dlr", _logits(U_A), _labels(0))


def test_class_weights_from_counts() -> None:
    w = L.class_weights_from_counts([10, 0, 30])
    # inverse frequencies 1/10, -, 1/30 -> normalised: 0.75, 0, 0.25
    assert w.tolist() == pytest.approx([0.75, 0.0, 0.25])
    assert L.class_weights_from_counts([0, 0]).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError):
        L.class_weights_from_counts([1, -1])


def test_mce_bal_default_weights_from_batch_counts() -> None:
    # Without given weights, inverse pixel frequencies of the labels at hand: class 0 occurs twice here.
    logits = _logits(U_A, U_A, U_A)
    labels = _labels(0, 0, 1)  # the third pixel is misclassified: masked out
    values = L.pixel_loss("mce-bal", logits, labels).flatten().tolist()
    weight_0 = (1 / 2) / (1 / 2 + 1 / 1)
    assert values == pytest.approx([weight_0 * _ce(U_A, 0)] * 2 + [0.0])


def test_released_class_weights() -> None:
    voc = L.released_class_weights("voc")
    assert voc.shape == (21,)
    assert voc.sum().item() == pytest.approx(1.0, abs=2e-3)
    assert voc[0].item() == pytest.approx(0.0007) and voc[2].item() == pytest.approx(0.1394)
    assert voc[15].item() == pytest.approx(0.0089)  # person
    ade = L.released_class_weights("ADE20K")
    assert ade.shape == (151,)
    assert ade.sum().item() == pytest.approx(1.0, abs=2e-3)
    assert ade.argmin().item() == 0 and ade[0].item() == pytest.approx(2.5511e-5)
    assert ade.max().item() == pytest.approx(3.6659e-2) and ade.argmax().item() == 140
    with pytest.raises(ValueError, match="unknown dataset"):
        L.released_class_weights("cityscapes")


def test_wrong_weight_length_and_shapes_raise() -> None:
    with pytest.raises(ValueError, match="one entry per class"):
        L.pixel_loss("mce-bal", _logits(U_A), _labels(0), class_weights=torch.ones(4))
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        L.pixel_loss("ce", torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 3, dtype=torch.long))


def test_attack_objective_shares_one_forward() -> None:
    logits = _logits(U_A, U_B, (0.0, 0.0, 5.0))
    labels = _labels(Y_A, Y_B, 255)
    objective = L.AttackObjective("mce", labels, track_loss="ce")
    total, track, score = objective(logits.clone().requires_grad_(True))
    assert total.item() == pytest.approx(_ce(U_A, Y_A) / 3)
    assert track.tolist() == pytest.approx([(_ce(U_A, Y_A) + _ce(U_B, Y_B)) / 3])
    assert score.tolist() == [1]  # one labelled pixel correct
    assert objective.n_valid.tolist() == [2]
    targeted = L.AttackObjective("js", labels, target=1)
    _, track, score = targeted(logits)
    assert track.tolist() == pytest.approx([-(_js(U_A, 1) + _js(U_B, 1)) / 3])
    assert score.tolist() == [1]  # pixel a is not yet predicted as class 1, pixel b is

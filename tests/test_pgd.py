"""PGD baselines (SegPGD, CosPGD, CE-PGD) under the SEA-paper and the original protocol (algorithms §7)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robseg_lib.attacks import image_loss, pgd, sea_paper_step_size
from robseg_lib.attacks.apgd import box, make_generator, project, random_start

EPS = 8 / 255


def tiny_model(num_classes: int = 4, seed: int = 0) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 3, padding=1))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture
def setup():
    model = tiny_model()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 8, 8, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:, :2] = 255
    return model, x, y


@pytest.mark.parametrize(
    ("radius", "step"), [(0.25, 8e-4), (0.5, 9e-4), (1, 1e-3), (2, 2e-3), (4, 3e-3), (8, 5e-3), (12, 6e-3)]
)
def test_sea_paper_step_sizes(radius: float, step: float) -> None:
    assert sea_paper_step_size(radius / 255) == step


def test_unknown_radius_lists_the_table() -> None:
    with pytest.raises(ValueError, match=r"16/255.*0\.25/255, 0\.5/255, 1/255, 2/255, 4/255, 8/255, 12/255"):
        sea_paper_step_size(16 / 255)


@pytest.mark.parametrize("loss", ["segpgd", "cospgd", "cospgd-sigmoid", "ce"])
def test_pgd_bounds_and_progress(setup, loss: str) -> None:
    model, x, y = setup
    x_adv = pgd(model, x, y, EPS, loss=loss, n_iter=20)
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        ce_clean = image_loss("ce", model(x), y)
        ce_adv = image_loss("ce", model(x_adv), y)
    assert (ce_adv > ce_clean).all()


def test_keep_best_is_at_least_as_good_as_last_by_own_loss(setup) -> None:
    # Same seed, same trajectory: the best-loss iterate has at least the (own, here CE) loss of the last.
    model, x, y = setup
    best = pgd(model, x, y, EPS, loss="ce", n_iter=15, step_size=0.01, seed=4, keep="best")
    last = pgd(model, x, y, EPS, loss="ce", n_iter=15, step_size=0.01, seed=4, keep="last")
    start = project(random_start(x, EPS, make_generator(4)), *box(x, EPS))
    with torch.no_grad():
        f_best, f_last, f_start = (image_loss("ce", model(z), y) for z in (best, last, start))
    assert (f_best >= f_last).all() and (f_best >= f_start).all()


def test_zero_iterations_and_no_random_start(setup) -> None:
    model, x, y = setup
    assert torch.equal(pgd(model, x, y, EPS, n_iter=0, random_start=False), x)
    assert torch.equal(pgd(model, x, y, EPS, n_iter=0, random_start=False, keep="last"), x)
    start = project(random_start(x, EPS, make_generator(0)), *box(x, EPS))
    assert torch.equal(pgd(model, x, y, EPS, n_iter=0, keep="last"), start)


def test_seeds_and_errors(setup) -> None:
    model, x, y = setup
    a = pgd(model, x, y, EPS, n_iter=5, seed=1)
    assert torch.equal(a, pgd(model, x, y, EPS, n_iter=5, seed=1))
    assert not torch.equal(a, pgd(model, x, y, EPS, n_iter=5, seed=2))
    with pytest.raises(ValueError, match="no SEA-paper step size"):
        pgd(model, x, y, 3 / 255, n_iter=2)
    with pytest.raises(ValueError, match="keep"):
        pgd(model, x, y, EPS, n_iter=2, keep="first")
    with pytest.raises(ValueError, match="unknown loss"):
        pgd(model, x, y, EPS, loss="dag", n_iter=2)


def test_original_protocol_step_count(setup) -> None:
    # keep="last": N forward and N backward passes; keep="best": one extra forward for the last iterate.
    model, x, y = setup
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    pgd(model, x, y, EPS, n_iter=7, step_size=0.01, keep="last")
    assert len(calls) == 7
    calls.clear()
    pgd(model, x, y, EPS, n_iter=7, keep="best")
    assert len(calls) == 8
    handle.remove()

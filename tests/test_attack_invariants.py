"""Invariants of every attack and loss: adversarial images stay in the ε-ball and in [0, 1].

Hypothesis draws images (including pixels at exactly 0 and 1), radii, label maps with ignore pixels,
iteration counts and seeds; models are tiny conv nets, so the whole file runs in seconds.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from robseg_lib.attacks import LOSSES, apgd, pgd, sea_batch

K = 3
TOL = 1e-6
SETTINGS = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MODEL = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, K, 3, padding=1))
with torch.no_grad():
    _gen = torch.Generator().manual_seed(0)
    for _p in MODEL.parameters():
        _p.copy_(torch.randn(_p.shape, generator=_gen))


@st.composite
def problems(draw):
    n = draw(st.integers(1, 2))
    h = draw(st.integers(2, 5))
    w = draw(st.integers(2, 5))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, h, w, generator=gen)
    # Saturated pixels: exactly 0 or 1 (the [0, 1] clip and the ε-ball interact there).
    x = torch.where(torch.rand(x.shape, generator=gen) < 0.2, torch.round(x), x)
    y = torch.randint(0, K, (n, h, w), generator=gen)
    ignore = draw(st.sampled_from([0.0, 0.3, 1.0]))
    y[torch.rand(y.shape, generator=gen) < ignore] = 255
    eps = draw(st.sampled_from([0.0, 1 / 255, 8 / 255, 0.3]))
    return x, y, eps, seed


def assert_feasible(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> None:
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert torch.isfinite(x_adv).all()
    assert (x_adv - x).abs().max().item() <= eps + TOL
    assert x_adv.min().item() >= 0.0 and x_adv.max().item() <= 1.0


@SETTINGS
@given(problem=problems(), n_iter=st.integers(0, 5), radius_reduction=st.booleans(), restarts=st.integers(1, 2))
def test_apgd_every_loss_stays_feasible(problem, n_iter, radius_reduction, restarts) -> None:
    x, y, eps, seed = problem
    for loss in LOSSES:
        x_adv = apgd(
            MODEL,
            x,
            y,
            eps,
            loss=loss,
            n_iter=n_iter,
            radius_reduction=radius_reduction,
            n_restarts=restarts,
            seed=seed,
            class_weights=torch.tensor([0.2, 0.3, 0.5]),
        )
        assert_feasible(x_adv, x, eps)


@SETTINGS
@given(problem=problems(), n_iter=st.integers(0, 5), target=st.integers(0, K - 1), loss=st.sampled_from(["js", "ce"]))
def test_targeted_apgd_stays_feasible(problem, n_iter, target, loss) -> None:
    x, y, eps, seed = problem
    assert_feasible(apgd(MODEL, x, y, eps, loss=loss, n_iter=n_iter, seed=seed, target=target), x, eps)


@SETTINGS
@given(problem=problems(), n_iter=st.integers(0, 5), keep=st.sampled_from(["best", "last"]), start=st.booleans())
def test_pgd_every_loss_stays_feasible(problem, n_iter, keep, start) -> None:
    x, y, eps, seed = problem
    for loss in LOSSES:
        x_adv = pgd(
            MODEL, x, y, eps, loss=loss, n_iter=n_iter, step_size=0.01, seed=seed, keep=keep, random_start=start
        )
        assert_feasible(x_adv, x, eps)


@settings(max_examples=4, deadline=None)
@given(problem=problems())
def test_sea_batch_stats_are_consistent(problem) -> None:
    x, y, eps, seed = problem
    stats = sea_batch(MODEL, x, y, eps, K, n_iter=3, seed=seed, class_weights=torch.ones(K))
    labelled = (y != 255).flatten(1).sum(1)
    for s in stats.values():
        assert torch.equal(s.labelled, labelled)
        assert (s.intersection <= s.union).all()

"""PGD baselines: SegPGD, CosPGD and CE-PGD (algorithms §7, peers §1–2).

Two protocols exist under the same attack names, and both are offered:

- **SEA-paper protocol** (Table 1, ``keep="best"``, ``step_size=None``): 300 iterations, a fixed step size
  per radius (:data:`SEA_PAPER_STEP_SIZES`), per image the iterate with the highest loss.
- **Original protocol** of the SegPGD / CosPGD papers (``keep="last"``, e.g. ``step_size=0.01``): the
  last iterate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from robseg_lib.attacks.apgd import (
    attack_mode,
    box,
    check_attack_inputs,
    evaluate,
    make_generator,
    project,
)
from robseg_lib.attacks.apgd import random_start as _random_start
from robseg_lib.attacks.losses import AttackObjective

__all__ = ["SEA_PAPER_STEP_SIZES", "pgd", "sea_paper_step_size"]

SEA_PAPER_STEP_SIZES: dict[float, float] = {
    0.25: 8e-4,
    0.5: 9e-4,
    1.0: 1e-3,
    2.0: 2e-3,
    4.0: 3e-3,
    8.0: 5e-3,
    12.0: 6e-3,
}
"""Step size (in [0, 1] units) of the SEA paper's SegPGD/CosPGD runs, keyed by the radius in /255."""


def sea_paper_step_size(eps: float) -> float:
    """Step size of the SEA paper's baselines for radius ``eps`` (in [0, 1] units, e.g. 8/255)."""
    radius = eps * 255.0
    for r, step in SEA_PAPER_STEP_SIZES.items():
        if math.isclose(radius, r, rel_tol=1e-6, abs_tol=1e-9):
            return step
    known = ", ".join(f"{r:g}/255" for r in SEA_PAPER_STEP_SIZES)
    raise ValueError(f"no SEA-paper step size for eps = {radius:g}/255; radii in the table: {known}. Pass step_size.")


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss: str = "segpgd",
    n_iter: int = 300,
    step_size: float | None = None,
    seed: int | torch.Generator = 0,
    ignore_index: int = 255,
    random_start: bool = True,
    keep: str = "best",
    class_weights: torch.Tensor | Sequence[float] | None = None,
) -> torch.Tensor:
    """ℓ∞ PGD with a sign step on a per-pixel loss: x ← P(x + α·sign(∇L)).

    With the defaults this is SegPGD under the SEA-paper protocol: uniform random start in the ε-box (a
    documented choice; the paper does not say), a fixed step size per radius, and per image the iterate
    whose **own** per-image attack loss (mean over H·W, as maximised; for SegPGD with the λ(t) of the
    iteration at which it is evaluated) is highest, the start included. The final iterate is evaluated
    with t = T + 1 (λ = 1/2), which costs one extra forward pass.

    Args:
        model: segmentation model, run in eval mode with frozen parameters (both restored afterwards).
        x: (N, C, H, W) clean images in [0, 1].
        y: (N, H, W) integer labels; ``ignore_index`` marks unlabelled pixels.
        eps: ℓ∞ radius in [0, 1] units.
        loss: ``"segpgd"`` (λ(t) = (t−1)/(2T), T = ``n_iter``), ``"cospgd"`` (softmax weights),
            ``"cospgd-sigmoid"``, ``"ce"`` (plain CE-PGD), or any other name of
            :data:`~robseg_lib.attacks.losses.LOSSES`.
        n_iter: iterations T.
        step_size: α in [0, 1] units; ``None``: the SEA paper's table (:func:`sea_paper_step_size`), which
            raises for radii outside the table.
        seed: seed of the random start, or a ``torch.Generator``.
        ignore_index: label value of unlabelled pixels.
        random_start: start from x + ε·U(−1, 1) clipped to [0, 1]; ``False``: start from x.
        keep: ``"best"`` (SEA-paper protocol) or ``"last"`` (original SegPGD/CosPGD protocol).
        class_weights: weights of ``mce-bal`` if that loss is used.

    Returns:
        (N, C, H, W) adversarial images with ‖x_adv − x‖∞ <= eps and values in [0, 1].
    """
    check_attack_inputs(x, y, eps)
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', got {keep!r}")
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    alpha = sea_paper_step_size(eps) if step_size is None else float(step_size)
    objective = AttackObjective(
        loss, y.to(x.device), ignore_index=ignore_index, class_weights=class_weights, n_iter=max(n_iter, 1)
    )
    view = (x.shape[0],) + (1,) * (x.dim() - 1)
    lower, upper = box(x, eps)
    with attack_mode(model), torch.no_grad():
        x_k = project(_random_start(x, eps, make_generator(seed)), lower, upper) if random_start else x.clone()
        x_best = x_k
        f_best = torch.full((x.shape[0],), -math.inf, dtype=x.dtype, device=x.device)

        def keep_best(x_s: torch.Tensor, f_s: torch.Tensor) -> None:
            nonlocal x_best, f_best
            better = f_s > f_best
            x_best = torch.where(better.view(view), x_s, x_best)
            f_best = torch.where(better, f_s, f_best)

        for s in range(n_iter):
            g, f, _ = evaluate(model, x_k, objective, s + 1, need_grad=True)
            if keep == "best":
                keep_best(x_k, f)
            x_k = project(x_k + alpha * torch.sign(g), lower, upper)
        if keep == "last":
            return x_k
        _, f, _ = evaluate(model, x_k, objective, n_iter + 1, need_grad=False)
        keep_best(x_k, f)
        return x_best

"""APGD (ℓ∞) for semantic segmentation, with SEA's progressive radius reduction (algorithms §4–§5).

All state is per image and vectorised over the batch. Each iteration runs one forward pass (and one
backward pass, except at the last iteration) that yields the gradient of the attack loss, the tracking
loss (step-size control and restart point) and the per-image accuracy together. The output is, per image,
the iterate with the lowest accuracy over labelled pixels, the same definition at every iteration
including the start (defect D1 of the release does not occur). Random starts come from an explicit
``torch.Generator``, never from the global RNG.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import nn

from robseg_lib.attacks.losses import AttackObjective

__all__ = [
    "APGDResult",
    "APGDRun",
    "StagePoint",
    "apgd",
    "apgd_single_run",
    "attack_mode",
    "box",
    "checkpoint_schedule",
    "make_generator",
    "project",
    "radius_reduction_trace",
    "radius_schedule",
    "random_start",
    "run_apgd",
]

MOMENTUM = 0.75
"""Momentum coefficient α (α = 1 at the first step)."""
RHO = 0.75
"""Oscillation threshold ρ of the step-size rule."""


# ---------------------------------------------------------------------------------------------------------
# Schedules


def _window_params(n_iter: int) -> tuple[int, int, int]:
    """First window, window decrement and minimal window: ⌊0.22N⌋, ⌊0.03N⌋, ⌊0.06N⌋, each at least 1."""
    return max(22 * n_iter // 100, 1), max(3 * n_iter // 100, 1), max(6 * n_iter // 100, 1)


def checkpoint_schedule(n_iter: int) -> list[int]:
    """Iteration counts after which APGD checks its step size (§4.1), e.g. N=100 -> [22, 41, ..., 99]."""
    window, decr, w_min = _window_params(n_iter)
    positions, pos = [], window
    while pos <= n_iter:
        positions.append(pos)
        window = max(window - decr, w_min)
        pos += window
    return positions


def radius_schedule(eps: float, n_iter: int) -> list[tuple[float, int]]:
    """Progressive radius reduction (§5): radii (2ε, 1.5ε, ε) with ⌊0.3N⌋, ⌊0.3N⌋, N − 2⌊0.3N⌋ iterations."""
    n1 = 3 * n_iter // 10
    return [(2.0 * eps, n1), (1.5 * eps, n1), (eps, n_iter - 2 * n1)]


# ---------------------------------------------------------------------------------------------------------
# Shared attack machinery (also used by the PGD baselines)


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode and freeze the parameters; restore both afterwards.

    Frozen parameters also spare the backward pass the weight gradients an attack never uses.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def make_generator(seed: int | torch.Generator) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``, or ``seed`` itself if it already is a generator."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(int(seed))


def random_start(x: torch.Tensor, radius: float, generator: torch.Generator) -> torch.Tensor:
    """x + radius·U(−1, 1), clipped to [0, 1] (the plain uniform draw of the SEA release, §4.5).

    The noise is drawn on the generator's device and then moved, so a CPU generator gives the same start
    on every device.
    """
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=generator.device)
    return (x + radius * (2.0 * noise.to(x.device) - 1.0)).clamp(0.0, 1.0)


def box(x: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds of the feasible set {‖z − x‖∞ <= radius} ∩ [0, 1]^d: (max(x − r, 0), min(x + r, 1))."""
    return (x - radius).clamp_(min=0.0), (x + radius).clamp_(max=1.0)


def project(z: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Projection onto the box [lower, upper] given by :func:`box`.

    One clamp with tensor bounds; bit-identical to clipping to [x − r, x + r] and then to [0, 1] (only
    comparisons, no arithmetic).
    """
    return torch.clamp(z, lower, upper)


@overload
def evaluate(
    model: nn.Module, x_adv: torch.Tensor, objective: AttackObjective, iteration: int, need_grad: Literal[True]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


@overload
def evaluate(
    model: nn.Module, x_adv: torch.Tensor, objective: AttackObjective, iteration: int, need_grad: bool
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]: ...


def evaluate(
    model: nn.Module,
    x_adv: torch.Tensor,
    objective: AttackObjective,
    iteration: int,
    need_grad: bool,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """One forward (and, with ``need_grad``, one backward) pass at ``x_adv``.

    Returns:
        The gradient of the summed attack loss w.r.t. the input (zeros if the output does not depend on
        it; ``None`` without ``need_grad``), the (N,) tracking losses and the (N,) scores.
    """
    if not need_grad:
        with torch.no_grad():
            _, track, score = objective(model(x_adv), iteration, need_attack=False)
        return None, track, score
    x_in = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        total, track, score = objective(model(x_in), iteration)
        grad = torch.autograd.grad(total, x_in, allow_unused=True)[0] if total.requires_grad else None
    return (torch.zeros_like(x_adv) if grad is None else grad), track, score


def check_attack_inputs(x: torch.Tensor, y: torch.Tensor, eps: float) -> None:
    """Validate images (N, C, H, W) float, labels (N, h, w) integer, and 0 <= eps <= 1.

    Labels usually share the input resolution; they only have to match the model's output (a classifier
    seen as a segmentation model with 1×1 output takes (N, 1, 1) labels).
    """
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if y.dim() != 3 or y.is_floating_point() or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be an integer tensor (N, H, W) with N = {x.shape[0]}, got {y.dtype} {tuple(y.shape)}")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1] (images in [0, 1]); got {eps}. Give /255 radii as eps=8/255.")


# ---------------------------------------------------------------------------------------------------------
# One APGD run at a fixed radius


@dataclass(frozen=True)
class APGDRun:
    """Outcome of one APGD run at a fixed radius.

    Attributes:
        x_adv: (N, C, H, W) the lowest-score iterate per image (the attack's output).
        score: (N,) int64 its number of labelled pixels still correct (targeted: not yet the target).
        x_best_loss: (N, C, H, W) the highest-tracking-loss iterate (the restart point).
        best_loss: (N,) its tracking loss.
        iterations: iterations run (fewer than requested after an early stop).
        step_size: (N,) final step size.
    """

    x_adv: torch.Tensor
    score: torch.Tensor
    x_best_loss: torch.Tensor
    best_loss: torch.Tensor
    iterations: int
    step_size: torch.Tensor


def _single_run(
    model: nn.Module,
    x: torch.Tensor,
    x_init: torch.Tensor,
    radius: float,
    n_iter: int,
    objective: AttackObjective,
    *,
    early_stop: bool,
    iteration_offset: int = 0,
    zero_first_reference: bool = False,
) -> APGDRun:
    """APGD as in §4.2 from ``x_init`` projected onto the radius; call under ``attack_mode`` and ``no_grad``."""
    lower, upper = box(x, radius)
    view = (x.shape[0],) + (1,) * (x.dim() - 1)
    t0 = iteration_offset
    x_k = project(x_init, lower, upper)  # a new tensor: the caller's start is never written
    g, f, score = evaluate(model, x_k, objective, t0 + 1, need_grad=n_iter > 0)
    # The lowest-score and the best-loss iterates are updated in place (fewer large allocations per
    # iteration), so they start as copies; iterates themselves are never modified after creation.
    x_out, s_min = x_k.clone(), score
    x_max, g_max, f_max = x_k.clone(), (None if g is None else g.clone()), f
    eta = torch.full(view, 2.0 * radius, dtype=x.dtype, device=x.device)
    if n_iter == 0 or (early_stop and not bool((s_min > 0).any())):
        return APGDRun(x_out, s_min, x_max, f_max, 0, eta.flatten())

    reduced_prev = torch.ones_like(score, dtype=torch.bool)
    f_ref = f_max
    # Loss increases are counted against the previous iterate; for the very first step the reference is
    # f(x0), or 0 as in AutoAttack's (unfilled history slot) with zero_first_reference (bit-exact checks).
    f_prev = torch.zeros_like(f) if zero_first_reference else f
    n_incr = torch.zeros_like(f)
    x_prev = x_k
    # Iterates rotate through preallocated buffers: fewer large allocations per iteration.
    step, spare = torch.empty_like(x), torch.empty_like(x)
    window, decr, w_min = _window_params(n_iter)
    counter = 0
    iterations = 0
    for k in range(n_iter):
        if g is None or g_max is None:  # every evaluation but the last iteration's computes a gradient
            raise RuntimeError(f"APGD iteration {k} has no gradient at its iterate")
        a = 1.0 if k == 0 else MOMENTUM
        # z = P(x_k + eta·sign(g));  x_new = P(x_k + a·(z − x_k) + (1 − a)·(x_k − x_prev)), with AutoAttack's
        # floating-point operations (also at the first step, where a = 1).
        torch.sign(g, out=step).mul_(eta).add_(x_k)
        torch.clamp(step, lower, upper, out=step).sub_(x_k).mul_(a).add_(x_k)
        x_new = torch.sub(x_k, x_prev, out=spare).mul_(1 - a).add_(step)
        torch.clamp(x_new, lower, upper, out=x_new)
        spare = x_prev if x_prev is not x_k else torch.empty_like(x)  # at k = 0 both are the start
        x_prev = x_k
        g, f, score = evaluate(model, x_new, objective, t0 + k + 2, need_grad=k < n_iter - 1)

        # Output: lowest score; ties move to the later iterate.
        torch.where((score <= s_min).view(view), x_new, x_out, out=x_out)
        s_min = torch.minimum(s_min, score)
        # Restart point: highest tracking loss (strict).
        improved = f > f_max
        torch.where(improved.view(view), x_new, x_max, out=x_max)
        if g is not None:
            torch.where(improved.view(view), g, g_max, out=g_max)
        f_max = torch.where(improved, f, f_max)
        n_incr = n_incr + (f > f_prev)
        f_prev = f
        x_k = x_new
        iterations = k + 1

        counter += 1
        if counter == window:
            oscillation = n_incr <= RHO * window
            stagnation = ~reduced_prev & (f_ref >= f_max)
            halve = oscillation | stagnation
            reduced_prev, f_ref = halve, f_max
            halve_b = halve.view(view)
            eta = torch.where(halve_b, eta / 2.0, eta)
            # x_k is the buffer of this iteration's new iterate, never the caller's start. (The gradient
            # may be a broadcast view returned by autograd, so it is not written in place.)
            torch.where(halve_b, x_max, x_k, out=x_k)
            if g is not None:
                g = torch.where(halve_b, g_max, g)
            counter = 0
            n_incr = torch.zeros_like(n_incr)
            window = max(window - decr, w_min)

        if early_stop and not bool((s_min > 0).any()):
            break
    return APGDRun(x_out, s_min, x_max, f_max, iterations, eta.flatten())


def _prepare(
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss: str | None,
    track_loss: str | None,
    target: torch.Tensor | int | None,
    n_iter: int,
    ignore_index: int,
    class_weights: torch.Tensor | Sequence[float] | None,
) -> AttackObjective:
    check_attack_inputs(x, y, eps)
    if n_iter < 0:
        raise ValueError(f"n_iter must be >= 0, got {n_iter}")
    if loss is None:
        loss = "mce-bal" if target is None else "js"
    if track_loss is None:
        track_loss = "ce" if target is None else loss
    if isinstance(target, torch.Tensor):
        target = target.to(x.device)
    return AttackObjective(
        loss,
        y.to(x.device),
        ignore_index=ignore_index,
        class_weights=class_weights,
        target=target,
        track_loss=track_loss,
        n_iter=n_iter,
    )


def apgd_single_run(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    n_iter: int = 100,
    *,
    x_init: torch.Tensor | None = None,
    loss: str | None = None,
    track_loss: str | None = None,
    ignore_index: int = 255,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    target: torch.Tensor | int | None = None,
    seed: int | torch.Generator = 0,
    early_stop: bool = True,
    zero_first_reference: bool = False,
) -> APGDRun:
    """One constant-radius APGD run with its diagnostics (the building block of :func:`run_apgd`).

    Args:
        model: segmentation model, (N, C, H, W) in [0, 1] -> logits (N, K, H, W).
        x: clean images.
        y: (N, H, W) labels.
        eps: ℓ∞ radius.
        n_iter: iterations.
        x_init: start point (projected onto the ε-ball and [0, 1]); default: uniform random start.
        loss, track_loss, ignore_index, class_weights, target: as in :func:`apgd`.
        seed: seed or generator of the random start.
        early_stop: stop once every image has score 0.
        zero_first_reference: count the first step's loss change against 0 instead of f(x0), as
            AutoAttack does; only for bit-exact comparisons with it.

    Returns:
        The run's outcome.
    """
    objective = _prepare(x, y, eps, loss, track_loss, target, n_iter, ignore_index, class_weights)
    with attack_mode(model), torch.no_grad():
        start = random_start(x, eps, make_generator(seed)) if x_init is None else x_init.to(x)
        return _single_run(
            model, x, start, eps, n_iter, objective, early_stop=early_stop, zero_first_reference=zero_first_reference
        )


# ---------------------------------------------------------------------------------------------------------
# Full attack: radius reduction and restarts


@dataclass(frozen=True)
class APGDResult:
    """Output of :func:`run_apgd`.

    Attributes:
        x_adv: (N, C, H, W) adversarial images, inside the ε-ball around x and in [0, 1].
        acc: (N,) float64 fraction of labelled pixels still correct at ``x_adv`` (targeted: not yet
            predicted as the target, i.e. 1 − success rate); 0 for images without labelled pixels.
        score: (N,) int64 the corresponding pixel counts.
        best_loss: (N,) highest tracking loss of the final stage of the chosen restart.
        iterations: iterations run in all, over stages and restarts.
    """

    x_adv: torch.Tensor
    acc: torch.Tensor
    score: torch.Tensor
    best_loss: torch.Tensor
    iterations: int


def _stages(
    model: nn.Module,
    x: torch.Tensor,
    x_start: torch.Tensor,
    stages: Sequence[tuple[float, int]],
    objective: AttackObjective,
    early_stop: bool,
) -> Iterator[tuple[float, APGDRun]]:
    """Run the stages of one restart in order; each starts from the previous stage's output, projected."""
    x_cur, offset = x_start, 0
    for radius, n in stages:
        run = _single_run(model, x, x_cur, radius, n, objective, early_stop=early_stop, iteration_offset=offset)
        yield radius, run
        x_cur, offset = run.x_adv, offset + n


@dataclass(frozen=True)
class StagePoint:
    """One point of a radius-reduction trace (:func:`radius_reduction_trace`).

    Attributes:
        label: ``"start"``, ``"stage k"`` (the output of stage k) or ``"projected k"`` (stage k's start: the
            previous output projected onto stage k's radius).
        radius: the ℓ∞ radius of the feasible set at this point.
        x: (N, C, H, W) the images at this point.
    """

    label: str
    radius: float
    x: torch.Tensor


def radius_reduction_trace(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss: str,
    n_iter: int,
    *,
    ignore_index: int = 255,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    seed: int | torch.Generator = 0,
    early_stop: bool = True,
) -> list[StagePoint]:
    """The intermediate points of one red-ε APGD run (one restart): the random start in the 2ε box, each stage's
    start (the previous output projected onto the smaller ball) and each stage's output.

    The last point is the output of :func:`run_apgd` with the same arguments (one restart): what SEA uses for
    ``loss``. It shows where radius reduction gains or loses accuracy, stage by stage (§5).
    """
    objective = _prepare(x, y, eps, loss, None, None, n_iter, ignore_index, class_weights)
    stages = radius_schedule(eps, n_iter)
    with attack_mode(model), torch.no_grad():
        start = random_start(x, stages[0][0], make_generator(seed))
        points = [StagePoint("start", stages[0][0], start)]
        previous = start
        for k, (radius, run) in enumerate(_stages(model, x, start, stages, objective, early_stop), start=1):
            if k > 1:
                points.append(StagePoint(f"projected {k}", radius, project(previous, *box(x, radius))))
            points.append(StagePoint(f"stage {k}", radius, run.x_adv))
            previous = run.x_adv
    return points


def run_apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss: str | None = None,
    n_iter: int = 300,
    radius_reduction: bool = True,
    n_restarts: int = 1,
    ignore_index: int = 255,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    seed: int | torch.Generator = 0,
    early_stop: bool = True,
    target: torch.Tensor | int | None = None,
    track_loss: str | None = None,
) -> APGDResult:
    """APGD with diagnostics; :func:`apgd` returns only the adversarial images. Arguments as there."""
    objective = _prepare(x, y, eps, loss, track_loss, target, n_iter, ignore_index, class_weights)
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be >= 1, got {n_restarts}")
    stages = radius_schedule(eps, n_iter) if radius_reduction else [(eps, n_iter)]
    generator = make_generator(seed)
    view = (x.shape[0],) + (1,) * (x.dim() - 1)
    best: APGDRun | None = None
    iterations = 0
    with attack_mode(model), torch.no_grad():
        for _ in range(n_restarts):
            for _radius, run in _stages(
                model, x, random_start(x, stages[0][0], generator), stages, objective, early_stop
            ):
                iterations += run.iterations
            if best is None:
                best = run
            else:  # keep, per image, the restart with the lowest score (the earlier one on ties)
                better = run.score < best.score
                best = APGDRun(
                    torch.where(better.view(view), run.x_adv, best.x_adv),
                    torch.minimum(run.score, best.score),
                    torch.where(better.view(view), run.x_best_loss, best.x_best_loss),
                    torch.where(better, run.best_loss, best.best_loss),
                    iterations,
                    torch.where(better, run.step_size, best.step_size),
                )
            if early_stop and not bool((best.score > 0).any()):
                break
    assert best is not None
    acc = best.score.double() / objective.n_valid.clamp(min=1).double()
    return APGDResult(best.x_adv.detach(), acc, best.score, best.best_loss, iterations)


def apgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    loss: str | None = None,
    n_iter: int = 300,
    radius_reduction: bool = True,
    n_restarts: int = 1,
    ignore_index: int = 255,
    class_weights: torch.Tensor | Sequence[float] | None = None,
    seed: int | torch.Generator = 0,
    early_stop: bool = True,
    target: torch.Tensor | int | None = None,
    track_loss: str | None = None,
) -> torch.Tensor:
    """ℓ∞ APGD on a per-pixel loss, as run inside SEA (algorithms §4–§5).

    Step size 2r, momentum 0.75, step-size halving at checkpoints ⌊0.22N⌋ / −⌊0.03N⌋ / ≥⌊0.06N⌋ on
    oscillation or stagnation of the tracking loss, with a restart from the best-tracking-loss point. The
    output is, per image, the iterate with the lowest accuracy over labelled pixels (ties: the later one).

    Args:
        model: segmentation model, (N, C, H, W) in [0, 1] -> logits (N, K, H, W) at input resolution. It is
            run in eval mode with frozen parameters; modes and ``requires_grad`` flags are restored.
        x: (N, C, H, W) clean images in [0, 1].
        y: (N, H, W) integer labels; ``ignore_index`` marks unlabelled pixels.
        eps: ℓ∞ radius in [0, 1] units (8/255, not 8).
        loss: attack loss (see :mod:`robseg_lib.attacks.losses`); default ``"mce-bal"``, or ``"js"`` in
            targeted mode.
        n_iter: iterations per restart (with radius reduction, split 3:3:4 over the stages).
        radius_reduction: SEA's progressive radius reduction: stages at 2ε, 1.5ε, ε, the first from a
            random start in the 2ε box, each later one from the previous stage's lowest-accuracy output
            projected onto the new radius. ``False``: constant-ε APGD.
        n_restarts: independent runs from fresh random starts; per image the lowest-accuracy result.
        ignore_index: label value of unlabelled pixels.
        class_weights: (K,) weights of ``mce-bal``; ``None`` uses inverse pixel frequencies of ``y``.
        seed: seed of the random starts (a CPU ``torch.Generator`` is seeded with it), or a generator.
        early_stop: stop a run once every image has accuracy 0 (every labelled pixel wrong).
        target: targeted mode: a (N, H, W) target map or one class. The attack maximises −JS to the
            target one-hot (``loss="js"``) and returns the iterate with the highest fraction of labelled
            pixels predicted as the target.
        track_loss: loss tracked for the step-size rule and the restart point; default ``"ce"``, or the
            attack objective itself in targeted mode.

    Returns:
        (N, C, H, W) adversarial images with ‖x_adv − x‖∞ <= eps and values in [0, 1].
    """
    return run_apgd(
        model,
        x,
        y,
        eps,
        loss=loss,
        n_iter=n_iter,
        radius_reduction=radius_reduction,
        n_restarts=n_restarts,
        ignore_index=ignore_index,
        class_weights=class_weights,
        seed=seed,
        early_stop=early_stop,
        target=target,
        track_loss=track_loss,
    ).x_adv

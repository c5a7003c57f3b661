"""Attack specs: short names for every attack an evaluation can run, and the per-batch attack behind each.

==========================  ====================================================================================
``sea``                     SEA: red-ε APGD on each of the profile's losses (MCE-Bal, MCE, JS), worst case over them
``sea:<loss>+<loss>...``    SEA restricted to some losses, e.g. ``sea:js+mce`` (red-ε APGD, worst case over them)
``apgd:<loss>``             red-ε APGD on one loss (radius 2ε → 1.5ε → ε, algorithms §5)
``apgd-const:<loss>``       constant-ε APGD, ``n_iter`` iterations
``apgd-restarts:<loss>:<k>`` constant-ε APGD, k random restarts of ``n_iter // k`` iterations (same budget)
``pgd:<loss>``              PGD under the SEA paper's protocol (algorithms §7.1): fixed step per radius, best-loss
                            iterate
==========================  ====================================================================================

Every attack on loss L of batch b starts from the random point seeded by
``batch_seed(seed, b, SEED_ORDER.index(L))``, whatever the spec: results do not depend on sharding or
interruptions, and ``apgd:mce`` or ``sea:js+mce`` reproduce SEA's components exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robseg_lib.attacks import LOSSES, SEA_LOSSES, apgd, batch_seed, pgd
from robseg_lib.engines.evaluate._evaluate import AttackFn

__all__ = ["ATTACK_KINDS", "SEED_ORDER", "AttackSpec", "attack_batch", "parse_attack"]

SEED_ORDER: tuple[str, ...] = SEA_LOSSES + tuple(name for name in LOSSES if name not in SEA_LOSSES)
"""Loss order behind the seeds: the attack on loss L uses ``batch_seed(seed, batch, SEED_ORDER.index(L))``."""

ATTACK_KINDS: dict[str, str] = {
    "sea": "sea or sea:<loss>+<loss>...",
    "apgd": "apgd:<loss> (red-eps)",
    "apgd-const": "apgd-const:<loss>",
    "apgd-restarts": "apgd-restarts:<loss>:<k>",
    "pgd": "pgd:<loss> (SEA-paper protocol)",
}
"""The spec forms :func:`parse_attack` accepts, by kind."""


@dataclass(frozen=True)
class AttackSpec:
    """A parsed attack spec (the forms of :data:`ATTACK_KINDS`).

    Attributes:
        kind: one of :data:`ATTACK_KINDS`.
        losses: the attacked losses; empty for plain ``sea`` (the profile's SEA losses).
        restarts: random restarts (``apgd-restarts`` only).
    """

    kind: str
    losses: tuple[str, ...] = ()
    restarts: int = 1

    @property
    def name(self) -> str:
        """The canonical spec string (SEA subsets in SEA's loss order)."""
        if self.kind == "sea":
            return "sea" if not self.losses else "sea:" + "+".join(self.losses)
        if self.kind == "apgd-restarts":
            return f"apgd-restarts:{self.losses[0]}:{self.restarts}"
        return f"{self.kind}:{self.losses[0]}"

    @property
    def slug(self) -> str:
        """The folder name of the spec's results (``apgd-restarts_mce_3``)."""
        return self.name.replace(":", "_")

    def attack_losses(self, profile_losses: Sequence[str]) -> tuple[str, ...]:
        """The losses this spec attacks, given the profile's SEA losses."""
        return tuple(profile_losses) if not self.losses else self.losses

    def attack_fn(self) -> str | AttackFn:
        """The per-batch attack for :func:`robseg_lib.engines.evaluate.evaluate` (``"sea"`` for plain SEA)."""
        return "sea" if self.kind == "sea" and not self.losses else _SpecAttack(self)


_METHODS = {"sea": "red", "apgd": "red", "apgd-const": "const", "apgd-restarts": "const", "pgd": "pgd"}


@dataclass(frozen=True)
class _SpecAttack:
    """The per-batch attack of a spec; its ``attack_id`` (the spec's name) identifies it in ``run.json``, so the
    results of a spec stay valid wherever the code that runs it lives."""

    spec: AttackSpec

    @property
    def attack_id(self) -> str:
        return f"spec:{self.spec.name}"

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        return attack_batch(model, x, y, method=_METHODS[self.spec.kind], restarts=self.spec.restarts, **kwargs)


def parse_attack(spec: str) -> AttackSpec:
    """Parse an attack spec (forms in :data:`ATTACK_KINDS`); a malformed one fails with the valid forms.

    Raises:
        ValueError: unknown kind or loss, missing or repeated loss, restart count that is not an integer >= 1.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"an attack spec must be a non-empty string, got {spec!r}")
    forms = "; ".join(ATTACK_KINDS.values())
    kind, _, rest = spec.strip().partition(":")
    if kind not in ATTACK_KINDS:
        raise ValueError(f"unknown attack kind {kind!r} in {spec!r}; valid forms: {forms}")
    if kind == "sea":
        if not rest:
            return AttackSpec("sea")
        losses = tuple(_check_loss(name, spec) for name in rest.split("+"))
        if len(set(losses)) != len(losses):
            raise ValueError(f"repeated loss in {spec!r}")
        ordered = tuple(sorted(losses, key=SEED_ORDER.index))
        return AttackSpec("sea") if ordered == SEA_LOSSES else AttackSpec("sea", ordered)
    parts = rest.split(":")
    if kind == "apgd-restarts":
        if len(parts) != 2 or not re.fullmatch(r"[1-9]\d*", parts[1]):
            raise ValueError(f"{spec!r}: expected apgd-restarts:<loss>:<k> with an integer k >= 1")
        return AttackSpec(kind, (_check_loss(parts[0], spec),), int(parts[1]))
    if len(parts) != 1:
        raise ValueError(f"{spec!r}: expected {ATTACK_KINDS[kind]}")
    return AttackSpec(kind, (_check_loss(parts[0], spec),))


def _check_loss(name: str, spec: str) -> str:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r} in attack spec {spec!r}; valid losses: {', '.join(LOSSES)}")
    return name


def attack_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    num_classes: int,
    n_iter: int,
    losses: Sequence[str],
    ignore_index: int,
    class_weights: torch.Tensor | None,
    seed: int,
    batch_index: int,
    method: str,
    restarts: int = 1,
) -> dict[str, torch.Tensor]:
    """One attack per loss on one batch: ``method`` ``"red"`` (red-ε APGD), ``"const"`` (constant-ε APGD with
    ``restarts`` runs of ``n_iter // restarts`` iterations) or ``"pgd"`` (SEA-paper PGD); returns adversarial images.
    """
    del num_classes  # the evaluator scores the returned images
    out = {}
    for loss in losses:
        start = batch_seed(seed, batch_index, SEED_ORDER.index(loss))
        if method == "pgd":
            out[loss] = pgd(
                model,
                x,
                y,
                eps,
                n_iter=n_iter,
                loss=loss,
                ignore_index=ignore_index,
                class_weights=class_weights,
                seed=start,
            )
        else:
            out[loss] = apgd(
                model,
                x,
                y,
                eps,
                n_iter=n_iter // restarts,
                radius_reduction=method == "red",
                n_restarts=restarts,
                early_stop=True,
                loss=loss,
                ignore_index=ignore_index,
                class_weights=class_weights,
                seed=start,
            )
    return out

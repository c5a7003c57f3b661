"""SEA: per-batch attacks, seeds, the ensemble's worst cases (algorithms §6)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robseg_lib.attacks import (
    SEA_LOSSES,
    SEAResult,
    batch_seed,
    class_weights_from_counts,
    clean_stats,
    label_counts,
    sea,
    sea_batch,
)
from robseg_lib.metrics import SegStats, compute_stats

K = 4
EPS = 8 / 255
N_ITER = 6


def tiny_model(seed: int = 0) -> nn.Module:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, K, 3, padding=1))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


class Constant(nn.Module):
    """Logits that do not depend on the input at all (no gradient reaches it)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.0, 1.0, -1.0, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.view(1, K, 1, 1).expand(x.shape[0], K, *x.shape[2:])


def make_loader(model: nn.Module, n_batches: int = 2, batch: int = 2, size: int = 8):
    gen = torch.Generator().manual_seed(7)
    batches = []
    for _ in range(n_batches):
        x = torch.rand(batch, 3, size, size, generator=gen)
        with torch.no_grad():
            y = tiny_model(1)(x).argmax(1)  # labels from another net: clean accuracy well below 1
        y[torch.rand(y.shape, generator=gen) < 0.2] = 255
        batches.append((x, y))
    return batches


def test_batch_seed_is_deterministic_and_distinct() -> None:
    assert batch_seed(0, 3, 1) == batch_seed(0, 3, 1)
    seeds = {batch_seed(s, b, a) for s in range(3) for b in range(10) for a in range(3)}
    assert len(seeds) == 90
    assert all(0 <= s < 2**64 for s in seeds)
    with pytest.raises(ValueError):
        batch_seed(-1, 0, 0)


def test_sea_batch_returns_stats_per_attack() -> None:
    model = tiny_model()
    x, y = make_loader(model, n_batches=1)[0]
    weights = class_weights_from_counts(label_counts(y, K))
    stats = sea_batch(model, x, y, EPS, K, n_iter=N_ITER, class_weights=weights)
    assert tuple(stats) == SEA_LOSSES
    for s in stats.values():
        assert s.intersection.shape == (2, K)
        assert torch.equal(s.label_count, clean_stats(model, x, y, K).label_count)


def test_from_stats_worst_cases_never_above_any_attack() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, K, (12, 6, 6), generator=gen)
    y[:, 0] = 255
    per_attack = {}
    for name in ("a", "b", "c"):
        pred = torch.where(torch.rand(y.shape, generator=gen) < 0.5, y, torch.randint(0, K, y.shape, generator=gen))
        per_attack[name] = compute_stats(pred, y, K)
    clean = compute_stats(y.clamp(max=K - 1), y, K)
    res = SEAResult.from_stats(clean, per_attack, seed=3)
    accs = torch.stack([s.image_accuracy() for s in per_attack.values()])
    assert res.worst_acc == pytest.approx(accs.min(0).values.mean().item())
    assert torch.equal(accs[res.acc_choice, torch.arange(12)], accs.min(0).values)
    assert res.worst_miou <= min(miou for _, miou in res.per_attack.values()) + 1e-12
    assert all(res.worst_acc <= acc for acc, _ in res.per_attack.values())
    assert res.clean_acc == 1.0 and res.clean_miou == 1.0
    assert res.attacks == ("a", "b", "c") and res.seed == 3
    assert res.miou_choice.shape == (12,)
    assert set(res.summary()) == {"clean_acc", "clean_miou", "sea_acc", "sea_miou"} | {
        f"{n}_{m}" for n in "abc" for m in ("acc", "miou")
    }
    with pytest.raises(ValueError, match="same images"):
        SEAResult.from_stats(clean.select([0, 1]), per_attack)


def test_sea_reproduces_batchwise_runs_and_is_stronger_than_each_attack() -> None:
    model = tiny_model()
    loader = make_loader(model)
    res = sea(model, loader, EPS, K, n_iter=N_ITER, seed=5, progress=False)
    # A resumed / sharded evaluator calling sea_batch per batch with the same weights gets the same numbers.
    counts = sum(label_counts(y, K) for _, y in loader)
    weights = class_weights_from_counts(counts)
    parts = [
        sea_batch(model, x, y, EPS, K, n_iter=N_ITER, class_weights=weights, seed=5, batch_index=b)
        for b, (x, y) in enumerate(loader)
    ]
    per_attack = {name: SegStats.cat([p[name] for p in parts]) for name in SEA_LOSSES}
    clean = SegStats.cat([clean_stats(model, x, y, K) for x, y in loader])
    again = SEAResult.from_stats(clean, per_attack, seed=5)
    assert again.summary() == res.summary()
    for name in SEA_LOSSES:
        assert torch.equal(res.attack_stats[name].intersection, per_attack[name].intersection)
    # SEA is at least as strong as each of its components, and the attacks did something.
    for acc, miou in res.per_attack.values():
        assert res.worst_acc <= acc and res.worst_miou <= miou + 1e-12
    assert res.worst_acc < res.clean_acc
    # Explicit weights equal to the loader's counts give the same result as class_weights=None.
    explicit = sea(model, loader, EPS, K, n_iter=N_ITER, seed=5, progress=False, class_weights=weights)
    assert explicit.summary() == res.summary()


def test_constant_model_clean_equals_adversarial() -> None:
    model = Constant()
    loader = make_loader(tiny_model())
    res = sea(model, loader, EPS, K, n_iter=N_ITER, progress=False)
    for name in SEA_LOSSES:
        assert torch.equal(res.attack_stats[name].intersection, res.clean_stats.intersection)
        assert torch.equal(res.attack_stats[name].union, res.clean_stats.union)
    assert res.worst_acc == res.clean_acc and res.worst_miou == res.clean_miou


def test_loader_forms_and_errors() -> None:
    model = tiny_model()
    loader = make_loader(model, n_batches=1)
    as_dicts = [{"image": x, "label": y, "name": "img"} for x, y in loader]
    weights = torch.ones(K)
    a = sea(model, loader, EPS, K, n_iter=2, progress=False, class_weights=weights)
    b = sea(model, as_dicts, EPS, K, n_iter=2, progress=False, class_weights=weights)
    assert a.summary() == b.summary()
    with pytest.raises(ValueError, match="one-shot"):
        sea(model, iter(loader), EPS, K, n_iter=2, progress=False)
    assert sea(model, iter(loader), EPS, K, n_iter=2, progress=False, class_weights=weights).summary() == a.summary()
    with pytest.raises(ValueError, match="no batches"):
        sea(model, [], EPS, K, n_iter=2, progress=False, class_weights=weights)
    x, y = loader[0]
    with pytest.raises(ValueError, match="distinct"):
        sea_batch(model, x, y, EPS, K, n_iter=2, losses=("mce", "mce"))

"""Minimum-norm attacks from adv-lib beside SEA (Fig. 6): robust-image shares, caching, the claim's check."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robseg_lib.attacks import SEAResult
from robseg_lib.book import claims, minimum_norm
from robseg_lib.engines import evaluate, zoo
from robseg_lib.engines.evaluate import EvaluationResult
from robseg_lib.metrics import compute_stats
from robseg_lib.params import load_params

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py
K = 11


class TinySeg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, K, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.fixture
def smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The smoke profile with its zoo replaced by one small random network and results under ``tmp_path``."""
    torch.manual_seed(0)
    model = TinySeg().eval()
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ROBSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(zoo, "get_model", lambda params, name, device="cpu", progress=False: model)
    return load_params("smoke")


def test_robust_share_counts_images_beyond_each_radius():
    found = minimum_norm.MinimumNorms("alma_prox", "m", torch.tensor([1 / 255, 5 / 255, float("inf")]), torch.ones(3))
    assert found.robust_share([0.5, 1, 4, 8]) == pytest.approx([100, 200 / 3, 200 / 3, 100 / 3])


def test_bounded_share_is_the_share_of_images_above_one_percent_accuracy():
    labels = torch.zeros(4, 10, 10, dtype=torch.long)
    right = [torch.zeros(10, 10, dtype=torch.long) for _ in range(4)]
    wrong = [p.clone() for p in right]
    for i, correct in enumerate((0, 1, 2, 100)):  # correct pixels out of 100 under attack "mce"
        wrong[i].view(-1)[correct:] = 1
    clean = compute_stats(torch.stack(right), labels, 2, 255)
    attacked = compute_stats(torch.stack(wrong), labels, 2, 255)
    result = EvaluationResult(Path("."), {"seed": 0}, SEAResult.from_stats(clean, {"mce": attacked, "js": clean}))
    assert minimum_norm.bounded_robust_share(result, "mce") == 50.0  # 2 % and 100 % correct are above 1 %
    assert minimum_norm.bounded_robust_share(result) == 50.0  # SEA's per-image worst case is "mce" here
    assert minimum_norm.bounded_robust_share(result, "js") == 100.0


def test_unknown_attack_is_refused(smoke):
    with pytest.raises(ValueError, match="unknown minimum-norm attack 'fab'; valid: alma_prox, dag"):
        minimum_norm.minimum_norms(smoke, "upernet_pirat5_e", "fab", 2)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_minimum_norms_run_adv_lib_per_image_and_are_cached(smoke, monkeypatch):
    pytest.importorskip("adv_lib")
    first = minimum_norm.minimum_norms(smoke, "upernet_pirat5_e", "alma_prox", 2)
    assert first.norms.shape == first.fooled.shape == (2,)
    assert ((first.fooled >= 0) & (first.fooled <= 1)).all()
    reached = first.fooled >= minimum_norm.ADV_THRESHOLD
    assert torch.equal(torch.isfinite(first.norms), reached)
    assert (first.norms[reached] <= 1).all()
    monkeypatch.setattr(minimum_norm, "_adv_lib_attack", lambda name: pytest.fail("the cached norms were recomputed"))
    again = minimum_norm.minimum_norms(smoke, "upernet_pirat5_e", "alma_prox", 2)
    assert torch.equal(again.norms, first.norms)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_curves_reach_the_claim(smoke):
    pytest.importorskip("adv_lib")
    radii = {"upernet_clean": [1, 2], "upernet_pirat5_e": [4, 8]}
    frame = minimum_norm.robust_image_curves(smoke, list(radii), radii, 2)
    assert set(frame["attack"]) == {"APGD (Mask-CE)", "SEA", "ALMA prox", "DAG"}
    assert len(frame) == 4 * 4 and frame["robust_images"].between(0, 100).all()
    sea = evaluate.run(evaluate.Evaluation.of(smoke, "upernet_pirat5_e", eps=8, attack="sea", n_images=2))
    row = frame[(frame["model"] == "upernet_pirat5_e") & (frame["eps_255"] == 8) & (frame["attack"] == "SEA")]
    assert row["robust_images"].item() == minimum_norm.bounded_robust_share(sea)
    evidence = claims.collect_evidence(smoke)
    pd.testing.assert_frame_equal(evidence.robust_images, frame, check_dtype=False)
    verdict = next(c for c in claims.CLAIMS if c.id == "alma-prox").check(evidence)
    assert verdict.status in ("pass", "fail") and "at 8/255" in verdict.ours

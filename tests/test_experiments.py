"""Experiments of the evaluation chapters: attack specs, cached runs, recombined loss subsets, tidy tables."""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robseg_lib.book import experiments as ex
from robseg_lib.engines import evaluate, zoo
from robseg_lib.engines.evaluate import _attacks as attack_specs
from robseg_lib.engines.evaluate import default_out_dir
from robseg_lib.metrics import greedy_worst_case_miou, worst_case_accuracy
from robseg_lib.params import ParamError, load_params

K = 11  # DigitScenes classes
SPECS = ["sea:js+mce", "apgd:mce-bal", "apgd-const:mce", "apgd-restarts:js:2", "pgd:segpgd", "pgd:cospgd-sigmoid"]


class TinySeg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, K, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture
def smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The smoke profile with its zoo replaced by one small random network and results under ``tmp_path``."""
    torch.manual_seed(0)
    model = TinySeg().eval()
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ROBSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(zoo, "get_model", lambda params, name, device="cpu", progress=False: model)
    return load_params("smoke")


def _calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count calls of an attack function as the attack specs see it."""
    calls: list[int] = []
    original = getattr(attack_specs, name)

    @functools.wraps(original)
    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(attack_specs, name, counted)
    return calls


# ---------------------------------------------------------------------------------------------------------
# Specs


@pytest.mark.parametrize(
    ("spec", "kind", "losses", "restarts", "name"),
    [
        ("sea", "sea", (), 1, "sea"),
        ("sea:js+mce", "sea", ("mce", "js"), 1, "sea:mce+js"),
        ("sea:js+mce-bal+mce", "sea", (), 1, "sea"),
        ("apgd:mce-bal", "apgd", ("mce-bal",), 1, "apgd:mce-bal"),
        ("apgd-const:js", "apgd-const", ("js",), 1, "apgd-const:js"),
        ("apgd-restarts:mce:3", "apgd-restarts", ("mce",), 3, "apgd-restarts:mce:3"),
        ("pgd:cospgd-sigmoid", "pgd", ("cospgd-sigmoid",), 1, "pgd:cospgd-sigmoid"),
    ],
)
def test_parse_valid_specs(spec, kind, losses, restarts, name):
    parsed = evaluate.parse_attack(spec)
    assert (parsed.kind, parsed.losses, parsed.restarts, parsed.name) == (kind, losses, restarts, name)
    assert ":" not in parsed.slug
    assert evaluate.parse_attack(parsed.name) == parsed


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "non-empty"),
        ("fgsm:ce", "unknown attack kind 'fgsm'.*valid forms"),
        ("sea:mce+dice", "unknown loss 'dice'"),
        ("sea:mce+mce", "repeated loss"),
        ("apgd", "unknown loss ''"),
        ("apgd:mce:3", "expected apgd:<loss>"),
        ("apgd-restarts:mce", "integer k >= 1"),
        ("apgd-restarts:mce:0", "integer k >= 1"),
        ("apgd-restarts:mce:x", "integer k >= 1"),
        ("pgd:", "unknown loss ''"),
    ],
)
def test_parse_invalid_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        evaluate.parse_attack(spec)


@pytest.mark.parametrize("spec", SPECS)
def test_every_spec_stays_in_the_threat_model(spec):
    torch.manual_seed(1)
    model = TinySeg().eval()
    x, y = torch.rand(2, 3, 16, 16), torch.randint(0, K, (2, 16, 16))
    eps = 4 / 255
    parsed = evaluate.parse_attack(spec)
    out = parsed.attack_fn()(
        model, x, y, eps=eps, num_classes=K, n_iter=4, losses=parsed.attack_losses(("mce-bal", "mce", "js")),
        ignore_index=255, class_weights=None, seed=0, batch_index=0,
    )  # fmt: skip
    assert set(out) == set(parsed.losses)
    for x_adv in out.values():
        assert x_adv.shape == x.shape
        assert float((x_adv - x).abs().max()) <= eps + 1e-6
        assert 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1


def _run(params, model_name, **settings):
    return evaluate.run(evaluate.Evaluation.of(params, model_name, **settings))


# ---------------------------------------------------------------------------------------------------------
# Runs


def test_results_folders_by_spec(smoke):
    ev, m = smoke.eval, "upernet_pirat5_e"
    folder = evaluate.Evaluation.of(smoke, m, eps=4).out_dir(8)
    assert folder == default_out_dir("smoke", m, 4, ev.n_iter, 8, ev.batch_size, ev.seed, ev.class_weights)
    pair = evaluate.Evaluation.of(smoke, m, eps=4, attack="sea:js+mce", n_iter=4, batch_size=4, seed=0).out_dir(8)
    assert pair.parts[-3:-1] == ("sea_mce+js", m)


def test_second_run_reads_from_disk(smoke, monkeypatch):
    calls = _calls(monkeypatch, "apgd")
    first = _run(smoke, "upernet_pirat5_e", eps=4, attack="apgd-const:mce")
    assert len(calls) == 2  # 8 images in batches of 4
    assert first.attacks == ("mce",) and first.n_images == 8
    assert first.run["attack"] == "spec:apgd-const:mce", "a spec's runs are named by the spec, not by code paths"
    files = {p: p.stat().st_mtime_ns for p in first.out_dir.glob("batch_*.pt")}
    again = _run(smoke, "upernet_pirat5_e", eps=4, attack="apgd-const:mce")
    assert len(calls) == 2, "the second call recomputed"
    assert {p: p.stat().st_mtime_ns for p in again.out_dir.glob("batch_*.pt")} == files
    assert again.per_attack == first.per_attack


def test_components_equal_sea_and_fewer_images_are_read_from_a_larger_run(smoke, monkeypatch, tmp_path):
    full = _run(smoke, "upernet_pirat5_e", eps=4, attack="sea")
    single = _run(smoke, "upernet_pirat5_e", eps=4, attack="apgd:mce")
    assert torch.equal(single.sea.attack_stats["mce"].intersection, full.sea.attack_stats["mce"].intersection)
    before = sorted(p.name for p in full.out_dir.parent.iterdir())
    head = _run(smoke, "upernet_pirat5_e", eps=4, attack="sea", n_images=4)
    assert sorted(p.name for p in full.out_dir.parent.iterdir()) == before, "a new run was started"
    assert head.n_images == 4 and head.out_dir == full.out_dir
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path / "fresh"))
    direct = _run(smoke, "upernet_pirat5_e", eps=4, attack="sea", n_images=4)
    assert direct.out_dir != head.out_dir
    for name in full.attacks:
        assert torch.equal(direct.sea.attack_stats[name].union, head.sea.attack_stats[name].union)
    assert (direct.worst_acc, direct.worst_miou) == (head.worst_acc, head.worst_miou)


def test_run_rejects_bad_settings(smoke):
    with pytest.raises(ParamError, match="eps must lie in"):
        _run(smoke, "upernet_pirat5_e", eps=0)
    with pytest.raises(ValueError, match="no SEA-paper step size"):
        _run(smoke, "upernet_pirat5_e", eps=3, attack="pgd:segpgd")
    with pytest.raises(ValueError, match="at least 5 iterations"):
        _run(smoke, "upernet_pirat5_e", eps=4, attack="apgd-restarts:mce:5")


# ---------------------------------------------------------------------------------------------------------
# Tables


def test_loss_subsets_equal_a_direct_computation(smoke):
    result = _run(smoke, "upernet_pirat5_e", eps=4, attack="sea")
    table = ex.loss_subsets(result).set_index("attacks")
    assert list(table.index) == ["MCE+MCE-Bal", "JS+MCE-Bal", "MCE+JS", "SEA"]  # the paper's Table 7 names
    stats = result.sea.attack_stats
    pairs = {"MCE+MCE-Bal": ("mce", "mce-bal"), "JS+MCE-Bal": ("js", "mce-bal"), "MCE+JS": ("mce", "js")}
    for label, pair in pairs.items():
        acc, _ = worst_case_accuracy([stats[k] for k in pair])
        miou, _ = greedy_worst_case_miou([stats[k] for k in pair], seed=result.run["seed"])
        assert table.loc[label, "acc"] == pytest.approx(100 * acc)
        assert table.loc[label, "miou"] == pytest.approx(100 * miou)
    assert table.loc["SEA", "acc"] == pytest.approx(100 * result.worst_acc)
    assert table.loc["SEA", "miou"] == pytest.approx(100 * result.worst_miou)


def test_sweep_table_shape(smoke):
    attacks = {"red": "sea", "const": ["apgd-const:mce", "apgd-const:js"], "segpgd": "pgd:segpgd"}
    frame = ex.sweep(smoke, ["upernet_pirat5_e"], [4, 2], attacks, n_images=4)
    assert list(frame.columns) == [
        "model", "eps_255", "radius_rank", "attack", "loss", "name", "seed", "n_iter", "n_images", "acc", "miou"
    ]  # fmt: skip
    # one clean row + per radius: SEA (3 losses + worst case), const (2 + worst case), SegPGD (1)
    assert len(frame) == 1 + 2 * (4 + 3 + 1)
    assert frame.groupby("eps_255")["radius_rank"].first().to_dict() == {0: 0, 2: 1, 4: 2}
    assert set(frame["n_images"]) == {4}
    assert frame[["acc", "miou"]].stack().between(0, 100).all()
    table = ex.wide(frame[frame["attack"] == "red"], index="eps_255", order=["MCE-Bal", "MCE", "JS", "worst case"])
    assert table.shape == (2, 8)


def test_ensemble_rejects_repeated_attacks(smoke):
    result = _run(smoke, "upernet_pirat5_e", eps=4, attack="apgd-const:mce")
    with pytest.raises(ValueError, match="more than one run"):
        ex.ensemble([result, result])


def test_model_selection_and_paper_counterparts(smoke):
    assert ex.select_models(smoke, regime="pir-at", arch="upernet", attack_steps=5) == ["upernet_pirat5_e"]
    assert ex.select_models(smoke, regime="at", arch="upernet", epochs=smoke.train.epochs) == [
        "upernet_at2_e", "upernet_at5_e"
    ]  # fmt: skip
    with pytest.raises(ValueError, match="unknown model field"):
        ex.select_models(smoke, backbone="x")
    paper = ex.paper_model_rows(smoke, ["upernet_pirat5_e", "upernet_at2_6e", "upernet_clean"]).set_index("model")
    assert sorted(paper.loc["upernet_pirat5_e", "eps_255"]) == [0, 4, 8, 12]
    main = paper.loc["upernet_pirat5_e"].set_index("eps_255")
    assert main.loc[8, "miou"] == pytest.approx(34.6)
    long_at = paper.loc["upernet_at2_6e"].set_index("eps_255")
    assert long_at.loc[4, "acc"] == pytest.approx(86.5)  # VOC 2-step AT, 300 epochs
    assert "upernet_clean" not in paper.index
    assert ex.counterpart_label(smoke, "segmenter_pirat5_e") == "ADE20K Segmenter ViT-S, PIR-AT 5 steps, 128 ep."
    assert isinstance(ex.side_by_side(pd.DataFrame({"a": [1.0]}), pd.DataFrame({"a": [2.0]})), pd.DataFrame)


def test_middle_radius_is_where_sea_halves_the_clean_miou():
    import pandas as pd

    rows = [{"loss": "clean", "name": "clean", "eps_255": 0, "miou": 80.0}]
    rows += [{"loss": "mce", "name": "MCE", "eps_255": e, "miou": m} for e, m in ((2, 10.0), (4, 41.0), (8, 5.0))]
    rows += [
        {"loss": "worst", "name": "worst case", "eps_255": e, "miou": m} for e, m in ((2, 70.0), (4, 35.0), (8, 2.0))
    ]
    assert ex.middle_radius(pd.DataFrame(rows)) == 4  # |35 - 40| beats |70 - 40| and |2 - 40|; MCE rows ignored
    tie = [rows[0]] + [{"loss": "w", "name": "worst case", "eps_255": e, "miou": m} for e, m in ((2, 50.0), (4, 30.0))]
    assert ex.middle_radius(pd.DataFrame(tie)) == 2
    with pytest.raises(ValueError, match="clean row"):
        ex.middle_radius(pd.DataFrame(rows[1:]))

"""Single-image radius sweeps, the paper's per-image accuracies, targeted attacks and transferred perturbations."""

from __future__ import annotations

import dataclasses
import types
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import torch
from torch import nn

from robseg_lib.attacks import apgd, batch_seed
from robseg_lib.book import perturbations as pt
from robseg_lib.book.reporting import AdversarialExample
from robseg_lib.data import dataset_from_params
from robseg_lib.engines import zoo
from robseg_lib.engines.evaluate import SEED_ORDER
from robseg_lib.params import ParamSet, load_params

K = 11  # DigitScenes classes
IGNORE = 255


class TinySeg(nn.Module):
    """A small random convolutional segmenter that counts its forward passes."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, K, 3, padding=1))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x)


class ChannelArgmax(nn.Module):
    """Logits ``4 * x``: three classes, each pixel predicted as its largest colour channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(4 * torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture
def smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ParamSet:
    """The smoke profile with caches and results under ``tmp_path`` (the zoo is patched per test)."""
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ROBSEG_CACHE", str(tmp_path / "cache"))
    return load_params("smoke")


def patch_zoo(monkeypatch: pytest.MonkeyPatch, models: dict[str, nn.Module]) -> list[str]:
    """Serve ``models`` from the zoo (nothing is trained); returns the log of requested names."""
    requested: list[str] = []

    def get_model(params: ParamSet, name: str, device: str = "cpu", progress: bool = False) -> nn.Module:
        requested.append(name)
        return models[name].eval()

    monkeypatch.setattr(zoo, "get_model", get_model)
    return requested


def labelled_accuracy(pred: torch.Tensor, label: torch.Tensor) -> float:
    """Share of labelled pixels predicted correctly."""
    valid = label != IGNORE
    return float((pred[valid] == label[valid]).double().mean())


def intersections(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """(N, K) per image and class: labelled pixels of class c predicted as c."""
    hit = (pred == label) & (label != IGNORE)
    return torch.stack([(hit & (label == c)).flatten(1).sum(1) for c in range(K)], dim=1)


# ---------------------------------------------------------------------------------------------------------
# Radius sweeps (Figs. 3, 7-10)


@pytest.mark.parametrize("radii", [[], [2, 2], [4, 2], [0, 4, 3], [-1, 2]])
def test_radius_sweep_rejects_bad_radii(radii):
    with pytest.raises(ValueError, match="non-negative and strictly increasing"):
        pt.radius_sweep(TinySeg(0), [], 0, radii)


def test_radius_sweep_is_consistent_with_its_images(smoke):
    model = TinySeg(0).eval()
    dataset = dataset_from_params(smoke.data, "val")
    x, label = dataset[3][:2]
    assert (label == IGNORE).any() and (label != IGNORE).any(), "the accuracy check needs ignored pixels"
    sweep = pt.radius_sweep(model, dataset, 3, [0, 2, 8], title="tiny", n_iter=3)
    assert (sweep.title, sweep.index, sweep.radii) == ("tiny", 3, (0.0, 2.0, 8.0))
    assert len(sweep.examples) == 3 and len(sweep.accuracies) == 3
    with torch.no_grad():
        clean_pred = model(x[None]).argmax(1)[0]
    assert torch.equal(sweep.image(0), x)
    assert torch.equal(sweep.prediction(0), clean_pred)
    assert sweep.accuracies[0] == pytest.approx(100 * labelled_accuracy(clean_pred, label))
    for i, radius in enumerate(sweep.radii):
        example = sweep.examples[i]
        assert torch.equal(example.label, label)
        assert torch.equal(example.clean_pred, clean_pred)
        image = sweep.image(i)
        assert float((image - x).abs().max()) <= radius / 255 + 1e-6
        assert 0 <= float(image.min()) and float(image.max()) <= 1
        with torch.no_grad():
            pred = model(image[None]).argmax(1)[0]
        assert torch.equal(sweep.prediction(i), pred)
        assert sweep.accuracies[i] == pytest.approx(100 * labelled_accuracy(pred, label))
    assert not torch.equal(sweep.image(2), x), "the largest radius did not perturb the image"


def _example(acc_clean: float, acc_adv: float, eps_255: float, side: int = 4) -> AdversarialExample:
    """An example on a grey image whose perturbation is +eps on the left half and -eps on the right half."""
    image = torch.full((3, side, side), 0.5)
    sign = torch.ones(side, side)
    sign[:, side // 2 :] = -1
    label = torch.zeros(side, side, dtype=torch.long)
    label[0, 0] = IGNORE
    return AdversarialExample(
        image=image,
        label=label,
        adversarial=image + eps_255 / 255 * sign,
        clean_pred=torch.zeros(side, side, dtype=torch.long),
        adv_pred=torch.ones(side, side, dtype=torch.long),
        clean_acc=acc_clean,
        adv_acc=acc_adv,
        eps=eps_255 / 255,
        loss="mce",
    )


def _hand_made_sweeps() -> list[pt.RadiusSweep]:
    """Two sweeps of 2 and 3 radii; at radius 0 the clean accuracy must count, not the differing adv_acc."""
    first = pt.RadiusSweep("clean model", 3, (0.0, 2.0), (_example(0.95432, 0.1, 0), _example(0.95432, 0.6789, 2)))
    second = pt.RadiusSweep(
        "robust model",
        5,
        (0.0, 4.0, 8.0),
        (_example(0.9, 0.0, 0), _example(0.9, 0.8049, 4), _example(0.9, 0.25, 8)),
    )
    return [first, second]


def test_sweep_table_layout():
    table = pt.sweep_table(_hand_made_sweeps())
    assert table.index.names == ["model", "image"]
    assert list(table.index) == [("clean model", "image 3"), ("robust model", "image 5")]
    assert list(table.columns) == ["0/255", "2/255", "4/255", "8/255"]
    assert table.loc[("clean model", "image 3")].tolist()[:2] == [95.4, 67.9]
    assert table.loc[("clean model", "image 3"), ["4/255", "8/255"]].isna().all()
    robust = table.loc[("robust model", "image 5")]
    assert robust.isna().tolist() == [False, True, False, False]
    assert robust[["0/255", "4/255", "8/255"]].tolist() == [90.0, 80.5, 25.0]


def test_sweep_figure_layout():
    sweeps = _hand_made_sweeps()
    fig = pt.sweep_figure(sweeps, [f"class {c}" for c in range(3)])
    try:
        assert len(fig.axes) == 3 * 2 * (3 + 1)  # 3 rows per sweep; the longest sweep's radii + ground truth
        grid = [fig.axes[r * 4 : (r + 1) * 4] for r in range(6)]
        # 2 + 3 radii times (input, perturbation, prediction), plus one ground truth per sweep
        assert sum(bool(ax.images) for ax in fig.axes) == 3 * 2 + 1 + 3 * 3 + 1
        assert not grid[0][2].images and not grid[0][2].axison  # the first sweep has no third radius
        assert grid[2][3].get_title() == grid[5][3].get_title() == "ground truth"
        assert [ax.get_title() for ax in grid[5][:3]] == ["acc 90.0%", "acc 80.5%", "acc 25.0%"]
        assert grid[2][0].get_title() == "acc 95.4%"
        # the perturbation row maps -eps..+eps to 0..1 (no perturbation: flat grey)
        for row, column, eps_255 in [(1, 1, 2), (4, 2, 8)]:
            shown = torch.as_tensor(grid[row][column].images[0].get_array())
            expected = torch.zeros(4, 4, 3)
            expected[:, :2] = 1  # +eps on the left half
            assert torch.allclose(shown, expected, atol=1e-6)
            assert grid[row - 1][column].get_title() == f"ε = {eps_255}/255"
        assert torch.allclose(torch.as_tensor(grid[1][0].images[0].get_array()), torch.full((4, 4, 3), 0.5))
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# The paper's per-image accuracies (figures.md)


def test_paper_example_accuracies_follow_figures_md():
    rows = pt.paper_example_accuracies()
    assert list(rows.columns) == ["figure", "dataset", "model", "example", "eps_255", "acc"]
    assert len(rows) == 4 * 2 * 5  # Figs. 7-10, examples A and B, five radii each
    assert rows.groupby("figure").size().to_dict() == {7: 10, 8: 10, 9: 10, 10: 10}
    setting = rows.groupby("figure")[["dataset", "model"]].first()
    assert setting.loc[7].tolist() == ["PascalVOC", "clean"]
    assert setting.loc[8].tolist() == ["PascalVOC", "PIR-AT"]
    assert setting.loc[9].tolist() == ["ADE20K", "clean"]
    assert setting.loc[10].tolist() == ["ADE20K", "PIR-AT"]
    radii = rows.groupby("figure")["eps_255"].unique()
    assert list(radii[7]) == list(radii[9]) == [0, 0.25, 0.5, 1, 2]
    assert list(radii[8]) == list(radii[10]) == [0, 4, 8, 12, 16]
    table = rows.set_index(["figure", "example", "eps_255"])["acc"]
    assert [table[(7, "A", r)] for r in (0, 0.25, 0.5, 1, 2)] == [95.9, 94.8, 75.9, 48.3, 0.0]  # = Fig. 3, clean
    assert [table[(7, "B", r)] for r in (0, 0.25, 0.5, 1, 2)] == [96.1, 61.4, 0.0, 0.0, 0.0]
    assert table[(8, "B", 12)] == 6.8
    assert table[(9, "A", 0.5)] == 4.9
    assert [table[(10, "B", r)] for r in (0, 4, 8, 12, 16)] == [84.4, 67.3, 32.8, 6.0, 0.0]


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("- ε ∈ {0, 4, 8}/255.\n- Example A: 95.5, 94.6 (two values).\n", "2 accuracies"),
        ("- Example A: 95.5, 94.6, 90.8.\n- ε ∈ {0, 4, 8}/255.\n", "radii None"),
    ],
)
def test_paper_example_accuracies_rejects_a_malformed_block(tmp_path, monkeypatch, block, message):
    (tmp_path / "figures.md").write_text(f"# Figures\n\n## Fig. 8 — Untargeted attacks, PIR-AT\n{block}", "utf-8")
    monkeypatch.setattr(pt, "resources", types.SimpleNamespace(files=lambda package: tmp_path))
    with pytest.raises(ValueError, match=message):
        pt.paper_example_accuracies()


# ---------------------------------------------------------------------------------------------------------
# Targeted attacks (Fig. 1)


def test_targeted_attack_reaches_every_reachable_pixel():
    model = ChannelArgmax().eval()
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    eps, target = 16 / 255, 0
    x_adv, clean_pred, adv_pred = pt.targeted_attack(model, x, target, eps, n_iter=5)
    assert float((x_adv - x).abs().max()) <= eps + 1e-6
    assert 0 <= float(x_adv.min()) and float(x_adv.max()) <= 1
    assert torch.equal(clean_pred, x.argmax(1))
    assert torch.equal(adv_pred, x_adv.argmax(1))
    # pixel by pixel: raise the target channel and lower the others as far as the ball and [0, 1] allow
    best = torch.cat([(x[:, :1] + eps).clamp(max=1), (x[:, 1:] - eps).clamp(min=0)], dim=1)
    reachable = best.argmax(1) == target
    assert (clean_pred == target).sum() < reachable.sum()
    assert torch.equal(adv_pred == target, reachable)


def test_targeted_run_caches_per_model_key(smoke, monkeypatch, tmp_path):
    model = TinySeg(0)
    requested = patch_zoo(monkeypatch, {"upernet_clean": model})
    with pytest.raises(ValueError, match="target must be a class"):
        pt.targeted_run(smoke, "upernet_clean", K)
    with pytest.raises(ValueError, match="target must be a class"):
        pt.targeted_run(smoke, "upernet_clean", -1)
    first = pt.targeted_run(smoke, "upernet_clean", 3, eps=8, n_iter=3, n_images=5)
    assert requested == ["upernet_clean"] and model.calls > 0

    key = zoo.model_key(smoke, "upernet_clean")
    folder = tmp_path / "results" / "smoke" / "targeted" / "upernet_clean"
    assert [p.name for p in folder.iterdir()] == [f"eps8_it3_img5_seed0_target3_{key}.pt"]
    assert (first.model, first.target, first.eps) == ("upernet_clean", 3, 8)
    # the same attack run directly, per batch of the profile's batch size 4 with the per-batch seeds
    dataset = dataset_from_params(smoke.data, "val")
    x = torch.stack([dataset[i][0] for i in range(5)])
    direct = [
        pt.targeted_attack(model, x[start:stop], 3, 8 / 255, n_iter=3, seed=batch_seed(0, b, 0))
        for b, (start, stop) in enumerate([(0, 4), (4, 5)])
    ]
    for field, i in (("x_adv", 0), ("clean_pred", 1), ("adv_pred", 2)):
        assert torch.equal(getattr(first, field), torch.cat([d[i] for d in direct]))
    assert float((first.x_adv - x).abs().max()) <= 8 / 255 + 1e-6
    with torch.no_grad():
        assert torch.equal(first.clean_pred, model(x).argmax(1))
        assert torch.equal(first.adv_pred, model(first.x_adv).argmax(1))
    assert first.fraction == pytest.approx(100 * float((first.adv_pred == 3).double().mean()))
    assert first.clean_fraction == pytest.approx(100 * float((first.clean_pred == 3).double().mean()))

    calls = model.calls
    again = pt.targeted_run(smoke, "upernet_clean", 3, eps=8, n_iter=3, n_images=5)
    assert model.calls == calls and requested == ["upernet_clean"], "the second call recomputed"
    for field in ("x_adv", "clean_pred", "adv_pred"):
        assert torch.equal(getattr(again, field), getattr(first, field))

    retrained = dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, lr=2 * smoke.train.lr))
    new_key = zoo.model_key(retrained, "upernet_clean")
    assert new_key != key
    pt.targeted_run(retrained, "upernet_clean", 3, eps=8, n_iter=3, n_images=5)
    assert model.calls > calls
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"eps8_it3_img5_seed0_target3_{k}.pt" for k in (key, new_key)
    )


# ---------------------------------------------------------------------------------------------------------
# Transferred perturbations (Table 9)


def test_transfer_run_scores_the_target_on_the_source_images(smoke, monkeypatch, tmp_path):
    source, target = TinySeg(1), TinySeg(2)
    patch_zoo(monkeypatch, {"upernet_clean": source, "upernet_pirat5_e": target})
    eps, n_iter, n_images = 2, 3, 6  # two batches of the profile's batch size 4
    result = pt.transfer_run(smoke, "upernet_clean", "upernet_pirat5_e", eps=eps, n_iter=n_iter, n_images=n_images)
    expected_dir = (
        tmp_path / "results" / "smoke" / "transfer_from_upernet_clean" / "upernet_pirat5_e"
        / "eps2_it3_img6_bs4_seed0_train_split"
    )  # fmt: skip
    assert result.out_dir == expected_dir
    assert sorted(p.name for p in expected_dir.glob("batch_*.pt")) == ["batch_00000.pt", "batch_00001.pt"]
    assert result.attacks == ("mce",) and result.n_images == n_images
    assert zoo.model_key(smoke, "upernet_clean") in result.run["attack"]
    assert result.run["model"]["name"] == "smoke/upernet_pirat5_e"

    # independent recomputation: red-eps APGD on the source, per batch with the SEA seeds; scored on the target
    dataset = dataset_from_params(smoke.data, "val")
    transferred, white_box, clean = [], [], []
    for b, (start, stop) in enumerate([(0, 4), (4, 6)]):
        x = torch.stack([dataset[i][0] for i in range(start, stop)])
        y = torch.stack([dataset[i][1] for i in range(start, stop)])
        seed = batch_seed(0, b, SEED_ORDER.index("mce"))
        with torch.no_grad():
            clean.append(intersections(target(x).argmax(1), y))
            for model, out in ((source, transferred), (target, white_box)):
                x_adv = apgd(model, x, y, eps / 255, loss="mce", n_iter=n_iter, seed=seed)
                out.append(intersections(target(x_adv).argmax(1), y))
    stats = result.sea.attack_stats["mce"]
    assert torch.equal(result.sea.clean_stats.intersection, torch.cat(clean))
    assert torch.equal(stats.intersection, torch.cat(transferred))
    assert not torch.equal(stats.intersection, torch.cat(white_box)), "the check cannot tell source from target"
    labelled = torch.stack([(dataset[i][1] != IGNORE).sum() for i in range(n_images)])
    assert result.per_attack["mce"][0] == pytest.approx(float((torch.cat(transferred).sum(1) / labelled).mean()))

    source.calls = target.calls = 0
    again = pt.transfer_run(smoke, "upernet_clean", "upernet_pirat5_e", eps=eps, n_iter=n_iter, n_images=n_images)
    assert source.calls == target.calls == 0, "the rerun recomputed"
    assert again.out_dir == result.out_dir
    assert torch.equal(again.sea.attack_stats["mce"].intersection, stats.intersection)

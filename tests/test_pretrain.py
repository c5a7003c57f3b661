"""Tests of robseg_lib.engines.pretrain: digit-classifier pre-training of tiny backbones."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from robseg_lib import cli, models
from robseg_lib.data.digitscenes import scene_digit_sides
from robseg_lib.engines.pretrain import classifier_pgd, evaluate_classifier, pretrain_backbone
from robseg_lib.params import load_params

SIDES = scene_digit_sides(load_params("smoke").data.image_size)  # the smoke scenes' digit sides


@pytest.fixture(scope="module")
def smoke():
    return load_params("smoke")


def test_classifier_pgd_stays_in_ball_and_box_and_restores_mode():
    torch.manual_seed(0)
    model = models.create_classifier("tiny_upernet_convnext", 10).train()
    modes: list[bool] = []
    model.register_forward_pre_hook(lambda m, inp: modes.append(m.training))
    x = torch.rand(4, 3, 32, 32)
    x[:, :, :3] = 1.0
    y = torch.arange(4)
    x_adv = classifier_pgd(model, x, y, 8 / 255, steps=3)
    assert modes == [False] * 3 and model.training
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-7
    assert 0 <= x_adv.min() and x_adv.max() <= 1
    assert classifier_pgd(model, x, y, 8 / 255, steps=0) is x


@pytest.mark.parametrize(("arch", "kind"), [("tiny_upernet_convnext", "robust"), ("tiny_segmenter_vit", "clean")])
def test_pretrain_saves_weights_with_metrics_that_load_into_the_segmenter(smoke, tmp_path, arch, kind):
    result = pretrain_backbone(smoke.pretrain, arch, kind, tmp_path / "c.safetensors", digit_side=SIDES, progress=False)
    metrics = result.metrics
    assert set(metrics) == {"clean_acc", "robust_acc", "robust_acc_4", "eps", "wall_time_s"}
    assert 0 <= metrics["robust_acc"] <= metrics["clean_acc"] <= 1
    meta = models.read_checkpoint_meta(result.path)
    assert meta["kind"] == kind and meta["metrics"] == pytest.approx(metrics)
    seg = models.create_model(arch, num_classes=11)
    report = models.load_backbone(seg, result.path)
    assert report.loaded
    target = seg.backbone if arch == "tiny_upernet_convnext" else seg.encoder
    src = result.model.backbone.state_dict()
    key = next(k for k in src if k.endswith("weight") and src[k].ndim == 4)
    torch.testing.assert_close(target.state_dict()[key], src[key])


def test_pretrain_is_deterministic_and_rejects_unknown_kind(smoke):
    pp = dataclasses.replace(smoke.pretrain, train_size=32, val_size=8)
    a = pretrain_backbone(pp, "tiny_segmenter_vit", "robust", digit_side=SIDES, progress=False)
    b = pretrain_backbone(pp, "tiny_segmenter_vit", "robust", digit_side=SIDES, progress=False)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k
    with pytest.raises(ValueError, match="kind"):
        pretrain_backbone(pp, "tiny_segmenter_vit", "adversarial", digit_side=SIDES, progress=False)


def test_evaluate_classifier_perfect_model():
    class Oracle(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.one_hot(x[:, 0, 0, 0].long(), 10).float() * 100

    data = [(torch.full((3, 4, 4), float(i)), torch.tensor(i)) for i in range(10)]
    assert evaluate_classifier(Oracle(), data) == 1.0


def test_cli_options(monkeypatch):
    seen = []
    monkeypatch.setitem(cli._COMMANDS, "pretrain", (*cli._COMMANDS["pretrain"][:2], seen.append))
    assert cli.main(["pretrain", "--kind", "robust", "--arch", "tiny_upernet_convnext"]) == 0
    assert seen[0].profile == "tiny" and seen[0].out is None
    with pytest.raises(SystemExit):
        cli.main(["pretrain", "--kind", "weird", "--arch", "x"])


def test_pretrain_applies_the_arch_overrides(smoke, tmp_path):
    pp = dataclasses.replace(
        smoke.pretrain, train_size=32, val_size=8, per_arch={"tiny_segmenter_vit": {"lr": 3e-4, "epochs": 2}}
    )
    result = pretrain_backbone(
        pp, "tiny_segmenter_vit", "clean", tmp_path / "c.safetensors", digit_side=SIDES, progress=False
    )
    recorded = models.read_checkpoint_meta(result.path)["pretrain"]
    assert (recorded["lr"], recorded["epochs"], recorded["per_arch"]) == (3e-4, 2, {})

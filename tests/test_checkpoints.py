"""Checkpoints: released-key mapping, strict loading and its errors, robust backbones, safetensors files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from robseg_lib import models
from robseg_lib.models import (
    RELEASE_KEY_MAP,
    from_release_keys,
    load_backbone,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    to_release_keys,
)


class Custom:
    """A class that a weights-only unpickler must refuse."""


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _upernet(**kwargs: object) -> nn.Module:
    return models.create_model("tiny_upernet_convnext", num_classes=11, **kwargs).eval()


def _segmenter(**kwargs: object) -> nn.Module:
    return models.create_model("tiny_segmenter_vit", num_classes=11, **kwargs).eval()


def _randomise_buffers(model: nn.Module) -> nn.Module:
    """Non-default BatchNorm statistics, so that a load that forgets them is detected."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(7)
    return model


def _release_file(model: nn.Module, path: Path, wrap: str | None = None, prefix: str = "") -> Path:
    state = {prefix + k: v for k, v in to_release_keys(model.state_dict()).items()}
    torch.save({wrap: state} if wrap else state, path)
    return path


# --- key mapping --------------------------------------------------------------------------------------------


def test_release_names_of_upernet_backbone() -> None:
    released = to_release_keys(_upernet().state_dict())
    expected = {
        "backbone.downsample_layers.0.stem.0.weight",
        "backbone.downsample_layers.0.stem.1.bias",
        "backbone.downsample_layers.0.stem.3.weight",
        "backbone.downsample_layers.0.stem.4.weight",
        "backbone.downsample_layers.1.0.weight",
        "backbone.downsample_layers.3.1.bias",
        "backbone.stages.0.0.dwconv.weight",
        "backbone.stages.2.1.norm.bias",
        "backbone.stages.2.1.pwconv1.weight",
        "backbone.stages.3.0.pwconv2.bias",
        "backbone.stages.3.0.gamma",
        "backbone.norm0.weight",
        "decode_head.psp_modules.3.1.conv.weight",
        "auxiliary_head.convs.0.batch_norm.running_mean",
    }
    assert expected <= set(released)
    for ours in ("blocks", "conv_dw", "mlp.fc", "downsample.", "stem.stem"):
        assert not any(ours in k for k in released), ours
    families = ("backbone.downsample_layers.", "backbone.stages.", "backbone.norm", "decode_head.", "auxiliary_head.")
    assert all(k.startswith(families) for k in released)


def test_release_key_map_round_trip_and_segmenter_identity() -> None:
    state = _upernet().state_dict()
    assert from_release_keys(to_release_keys(state)).keys() == state.keys()
    seg_state = _segmenter().state_dict()
    assert to_release_keys(seg_state).keys() == seg_state.keys()
    assert len(RELEASE_KEY_MAP) == 7


def test_release_key_collision_is_an_error() -> None:
    state = {
        "backbone.stages.0.0.dwconv.weight": torch.zeros(1),
        "backbone.stages.0.blocks.0.conv_dw.weight": torch.zeros(1),
    }
    with pytest.raises(ValueError, match="conv_dw"):
        from_release_keys(state)


# --- released checkpoints -----------------------------------------------------------------------------------


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_released_upernet_checkpoint_loads_strictly(tmp_path: Path, wrap: str | None, prefix: str) -> None:
    source = _randomise_buffers(_upernet())
    path = _release_file(source, tmp_path / "UperNet_ConvNext_T_VOC.pth", wrap, prefix)
    target = _upernet()
    load_checkpoint(target, path)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_released_segmenter_checkpoint_loads_strictly(tmp_path: Path) -> None:
    source = _segmenter()
    path = _release_file(source, tmp_path / "Segmenter_vit_s_robust.pth")
    target = _segmenter()
    load_checkpoint(target, path)
    x = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_missing_extra_and_misshaped_keys_are_listed(tmp_path: Path) -> None:
    state = to_release_keys(_upernet().state_dict())
    missing = dict(state)
    del missing["backbone.stages.2.1.pwconv1.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(RuntimeError, match=r"1 missing key\(s\) \[backbone\.stages\.2\.blocks\.1\.mlp\.fc1\.weight\]"):
        load_checkpoint(_upernet(), tmp_path / "missing.pth")

    extra = {**state, "decode_head.conv_seg.weight": torch.zeros(3)}
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(RuntimeError, match=r"unexpected key\(s\) \[decode_head\.conv_seg\.weight\]"):
        load_checkpoint(_upernet(), tmp_path / "extra.pth")

    wrong = {**state, "decode_head.classifier.weight": torch.zeros(21, 32, 1, 1)}
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(RuntimeError, match=r"decode_head\.classifier\.weight: checkpoint \(21, 32, 1, 1\) vs model"):
        load_checkpoint(_upernet(), tmp_path / "wrong.pth")
    with pytest.raises(RuntimeError, match="mismatched shapes"):
        load_checkpoint(_upernet(), tmp_path / "wrong.pth", strict=False)


def test_non_strict_load_warns_and_loads_the_rest(tmp_path: Path) -> None:
    source = _upernet()
    state = to_release_keys(source.state_dict())
    del state["auxiliary_head.classifier.bias"]
    torch.save(state, tmp_path / "partial.pth")
    target = _upernet()
    with pytest.warns(UserWarning, match=r"auxiliary_head\.classifier\.bias"):
        load_checkpoint(target, tmp_path / "partial.pth", strict=False)
    assert torch.equal(target.backbone.stem.stem[0].weight, source.backbone.stem.stem[0].weight)


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _upernet().state_dict(), "extra": Custom()}, path)
    with pytest.raises(RuntimeError, match=r"pickled Python objects.*Custom.*weights_only=True"):
        load_checkpoint(_upernet(), path)


def test_timm_training_checkpoint_with_argparse_options(tmp_path: Path) -> None:
    source = _upernet()
    state = to_release_keys(source.state_dict())
    torch.save({"epoch": 49, "state_dict": state, "args": argparse.Namespace(lr=1e-3, model="x")}, tmp_path / "t.pth")
    target = _upernet()
    load_checkpoint(target, tmp_path / "t.pth")
    assert torch.equal(target.decode_head.classifier.weight, source.decode_head.classifier.weight)


def test_non_tensor_entries_and_missing_file(tmp_path: Path) -> None:
    torch.save({"decode_head.classifier.weight": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(TypeError, match=r"not tensors: \[decode_head\.classifier\.weight\]"):
        load_checkpoint(_upernet(), tmp_path / "list.pth")
    torch.save([torch.zeros(1)], tmp_path / "seq.pth")
    with pytest.raises(TypeError, match="expected a state dict"):
        load_checkpoint(_upernet(), tmp_path / "seq.pth")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(_upernet(), tmp_path / "absent.pth")


# --- our safetensors checkpoints ----------------------------------------------------------------------------


def test_safetensors_round_trip_is_exact_and_atomic(tmp_path: Path) -> None:
    source = _randomise_buffers(_upernet())
    meta = {"name": "tiny_upernet_convnext", "num_classes": 11, "epochs": 2}
    path = save_checkpoint(source, tmp_path / "ckpt" / "model.safetensors", meta)
    assert path == tmp_path / "ckpt" / "model.safetensors"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors", "model.safetensors.json"]
    assert read_checkpoint_meta(path) == meta
    assert json.loads((path.parent / "model.safetensors.json").read_text()) == meta
    target = _upernet()
    load_checkpoint(target, path)
    for key, value in source.state_dict().items():
        loaded = target.state_dict()[key]
        assert loaded.dtype == value.dtype and torch.equal(loaded, value), key


def test_save_checkpoint_validation(tmp_path: Path) -> None:
    model = _segmenter()
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_checkpoint(model, tmp_path / "model.pth", {})
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(model, tmp_path / "model.safetensors", {"when": object()})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match="metadata"):
        read_checkpoint_meta(tmp_path / "model.safetensors")


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("robseg_lib.models.checkpoints.save_file", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(_segmenter(), tmp_path / "model.safetensors", {})
    assert list(tmp_path.iterdir()) == []


# --- robust ImageNet backbones ------------------------------------------------------------------------------


def _revisiting_convnext(model_name: str = "tiny_upernet_convnext", **kwargs: object) -> dict[str, torch.Tensor]:
    """A Revisiting-AT style ConvNeXt-CvSt ImageNet file: timm names behind module./base_model., with head."""
    clf = models.create_classifier(model_name, num_classes=1000, **kwargs)
    state = {}
    for key, value in clf.state_dict().items():
        key = key.removeprefix("backbone.")
        state[f"module.base_model.{key}"] = value
    return state


def test_revisiting_at_convnext_backbone_report() -> None:
    source = _revisiting_convnext()
    model = _upernet()
    report = load_backbone(model, source)
    backbone_keys = [k for k in model.state_dict() if k.startswith("backbone.")]
    norms = {f"backbone.norm{i}.{p}" for i in range(4) for p in ("weight", "bias")}
    assert set(report.loaded) == set(backbone_keys) - norms
    assert norms <= set(report.left_at_init)
    assert {k for k in report.left_at_init if not k.startswith(("decode_head.", "auxiliary_head."))} == norms
    assert set(report.unused) == {"head.norm.weight", "head.norm.bias", "head.fc.weight", "head.fc.bias"}
    assert report.resized == () and report.skipped == ()
    key = "module.base_model.stages.2.blocks.1.mlp.fc1.weight"
    assert torch.equal(model.state_dict()["backbone.stages.2.blocks.1.mlp.fc1.weight"], source[key])
    text = str(report)
    assert f"loaded {len(report.loaded)} tensors into backbone" in text
    assert "backbone.norm0 (2)" in text and "head.fc (2)" in text and "decode_head.psp_modules" in text


def test_backbone_load_from_file_and_create_model(tmp_path: Path) -> None:
    torch.save({"model": _revisiting_convnext()}, tmp_path / "convnext_cvst_robust.pt")
    model = models.create_model("tiny_upernet_convnext", 11, pretrained_backbone=tmp_path / "convnext_cvst_robust.pt")
    clf = models.create_classifier("tiny_upernet_convnext", num_classes=10)
    save_checkpoint(clf, tmp_path / "clf.safetensors", {"kind": "classifier"})
    report = load_backbone(model, tmp_path / "clf.safetensors")
    assert torch.equal(model.backbone.stages[3].blocks[0].gamma, clf.backbone.stages[3].blocks[0].gamma)
    assert len(report.loaded) == len(clf.backbone.state_dict())


def test_wrong_backbone_variant_is_an_error() -> None:
    deeper = _revisiting_convnext(depths=(1, 1, 3, 1))
    with pytest.raises(RuntimeError, match=r"no counterpart in model\.backbone: \[stages\.2\.blocks\.2\.conv_dw\.bias"):
        load_backbone(_upernet(), deeper)
    shallower = _revisiting_convnext(depths=(1, 1, 1, 1))
    with pytest.raises(RuntimeError, match=r"missing from the source: \[stages\.2\.blocks\.1\.conv_dw\.bias"):
        load_backbone(_upernet(), shallower)
    foreign = {**_revisiting_convnext(), "module.base_model.fc_extra.weight": torch.zeros(2)}
    with pytest.raises(RuntimeError, match=r"fc_extra\.weight"):
        load_backbone(_upernet(), foreign)


def test_backbone_shape_mismatch_raises_or_is_skipped() -> None:
    source = _revisiting_convnext()
    source["module.base_model.stem.stem.0.weight"] = torch.zeros(8, 3, 5, 5)
    with pytest.raises(RuntimeError, match=r"stem\.stem\.0\.weight: source \(8, 3, 5, 5\) vs model \(8, 3, 3, 3\)"):
        load_backbone(_upernet(), source)
    model = _upernet()
    before = model.backbone.stem.stem[0].weight.clone()
    report = load_backbone(model, source, strict_shapes=False)
    assert report.skipped == ("backbone.stem.stem.0.weight",)
    assert "backbone.stem.stem.0.weight" in report.left_at_init
    assert torch.equal(model.backbone.stem.stem[0].weight, before)
    assert "skipped (shape mismatch): 1" in str(report)


def test_backbone_target_must_exist() -> None:
    with pytest.raises(TypeError, match="neither"):
        load_backbone(nn.Linear(2, 2), {})


def _revisiting_vit(encoder: VisionTransformer) -> dict[str, torch.Tensor]:
    """A Revisiting-AT style ViT file: module.base_model.* timm names plus the stored input normaliser."""
    state = {f"module.base_model.{k}": v for k, v in encoder.state_dict().items()}
    state["module.base_normalize.mean"] = torch.tensor([0.485, 0.456, 0.406])
    state["module.base_normalize.std"] = torch.tensor([0.229, 0.224, 0.225])
    return state


def test_revisiting_at_vit_backbone_resizes_pos_embed() -> None:
    model = _segmenter()
    cfg = models.model_config("tiny_segmenter_vit")
    patch, dim = cfg["patch_size"], cfg["embed_dim"]
    source_vit = models.create_classifier("tiny_segmenter_vit", 10, img_size=4 * patch).backbone
    source_vit.head = nn.Linear(dim, 1000)
    source = _revisiting_vit(source_vit)
    report = load_backbone(model, source)
    grid = cfg["img_size"] // patch
    assert report.resized == (f"encoder.pos_embed: (1, 17, {dim}) -> (1, {1 + grid * grid}, {dim})",)
    assert set(report.unused) == {"base_normalize.mean", "base_normalize.std", "head.weight", "head.bias"}
    assert all(k.startswith("decoder.") for k in report.left_at_init)
    pos = model.encoder.pos_embed
    assert torch.equal(pos[:, 0], source_vit.pos_embed[:, 0])
    old = source_vit.pos_embed[:, 1:].reshape(1, 4, 4, dim).permute(0, 3, 1, 2)
    ref = F.interpolate(old, size=(grid, grid), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    torch.testing.assert_close(pos[:, 1:], ref)
    assert torch.equal(model.encoder.blocks[-1].attn.qkv.weight, source_vit.blocks[-1].attn.qkv.weight)


@pytest.mark.slow
def test_revisiting_at_vit_s_into_paper_segmenter() -> None:
    """ViT-S/16 at 224 (197 tokens) into the 512-px Segmenter encoder (1025 tokens); the 1000-way head loads."""
    model = models.create_model("segmenter_vit_s", num_classes=151)
    vit = VisionTransformer(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6, num_classes=1000)
    report = load_backbone(model, _revisiting_vit(vit))
    assert report.resized == ("encoder.pos_embed: (1, 197, 384) -> (1, 1025, 384)",)
    assert {"encoder.head.weight", "encoder.head.bias"} <= set(report.loaded)
    assert set(report.unused) == {"base_normalize.mean", "base_normalize.std"}
    assert all(k.startswith("decoder.") for k in report.left_at_init)
    assert torch.equal(model.encoder.blocks[11].mlp.fc2.weight, vit.blocks[11].mlp.fc2.weight)


@pytest.mark.slow
def test_released_paper_upernet_key_families(tmp_path: Path) -> None:
    """The paper-scale UPerNet ConvNeXt-T round-trips through the authors' format (151 classes, ADE20K)."""
    source = models.create_model("upernet_convnext_t_cvst", num_classes=151).eval()
    released = to_release_keys(source.state_dict())
    assert released["decode_head.classifier.weight"].shape == (151, 512, 1, 1)
    assert released["auxiliary_head.classifier.weight"].shape == (151, 256, 1, 1)
    assert released["backbone.downsample_layers.0.stem.0.weight"].shape == (48, 3, 3, 3)
    assert released["backbone.stages.2.8.pwconv1.weight"].shape == (1536, 384)
    torch.save(released, tmp_path / "UperNet_ConvNext_T_ADE.pth")
    target = models.create_model("upernet_convnext_t_cvst", num_classes=151).eval()
    load_checkpoint(target, tmp_path / "UperNet_ConvNext_T_ADE.pth")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))

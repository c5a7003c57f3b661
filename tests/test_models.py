"""Models: registry, shapes, module names, initialisation, parameter counts, classifiers and backbone transfer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import nn

from robseg_lib import models
from robseg_lib.models._vit import create_vit_encoder, resize_pos_embed, vit_tokens

TINY = ("tiny_upernet_convnext", "tiny_segmenter_vit")
PAPER = ("upernet_convnext_t_cvst", "upernet_convnext_s_cvst", "segmenter_vit_s")
# Paper / model cards: UPerNet + ConvNeXt-T about 60M parameters, Segmenter ViT-S about 26M. ConvNeXt-S is
# not quoted in the paper; mmsegmentation's model card gives 82M. Tolerance 3 % (class count and rounding).
PAPER_PARAMS = {"upernet_convnext_t_cvst": 60e6, "upernet_convnext_s_cvst": 82e6, "segmenter_vit_s": 26e6}
PARAM_TOLERANCE = 0.03


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- registry ---------------------------------------------------------------------------------------------


def test_list_models_has_paper_and_tiny_models() -> None:
    assert set(models.list_models()) == set(TINY) | set(PAPER)
    assert models.list_models() == sorted(models.list_models())


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="tiny_segmenter_vit") as info:
        models.create_model("resnet50", num_classes=11)
    assert "resnet50" in str(info.value)
    with pytest.raises(ValueError, match="upernet_convnext_t_cvst"):
        models.create_classifier("nope", num_classes=10)


def test_unknown_option_and_bad_num_classes() -> None:
    with pytest.raises(ValueError, match="unknown option.*'widht'.*valid options"):
        models.create_model("tiny_upernet_convnext", num_classes=11, widht=3)
    with pytest.raises(ValueError, match="num_classes"):
        models.create_model("tiny_upernet_convnext", num_classes=0)
    with pytest.raises(TypeError, match="num_classes"):
        models.create_model("tiny_segmenter_vit", num_classes=11.0)


def test_model_config_overrides_and_is_a_copy() -> None:
    cfg = models.model_config("tiny_upernet_convnext", drop_path_rate=0.0)
    assert cfg["drop_path_rate"] == 0.0
    cfg["dims"] = (1, 2, 3, 4)
    assert models.model_config("tiny_upernet_convnext")["dims"] != (1, 2, 3, 4)
    model = models.create_model("tiny_upernet_convnext", num_classes=3, channels=16)
    assert model.decode_head.classifier.in_channels == 16


# --- tiny models: interface -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", [(64, 64), (70, 50), (33, 47)])
def test_tiny_output_shapes(name: str, size: tuple[int, int]) -> None:
    model = models.create_model(name, num_classes=11).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        logits = model(x)
        main, aux = model.forward_with_aux(x)
    assert logits.shape == (2, 11, *size)
    assert torch.equal(logits, main)
    if name.startswith("tiny_upernet"):
        assert aux is not None and aux.shape == (2, 11, *size)
    else:
        assert aux is None


@pytest.mark.parametrize("name", TINY)
def test_forward_rejects_non_image_input(name: str) -> None:
    model = models.create_model(name, num_classes=11)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model.forward_with_aux(torch.rand(3, 32, 32))


def test_aux_head_runs_only_in_forward_with_aux() -> None:
    model = models.create_model("tiny_upernet_convnext", num_classes=11).eval()
    calls: list[int] = []
    model.auxiliary_head.register_forward_hook(lambda *_: calls.append(1))
    x = torch.rand(1, 3, 64, 64)
    model(x)
    assert calls == []
    model.forward_with_aux(x)
    assert calls == [1]


@pytest.mark.parametrize("name", TINY)
def test_eval_mode_is_deterministic_and_batch_independent(name: str) -> None:
    model = models.create_model(name, num_classes=11).eval()
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        full = model(x)
        again = model(x)
        single = model(x[1:2])
    assert torch.equal(full, again)
    torch.testing.assert_close(full[1:2], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", TINY)
def test_training_step_reaches_every_trainable_parameter(name: str) -> None:
    """All trainable parameters get gradients (DDP without find_unused_parameters)."""
    model = models.create_model(name, num_classes=11).train()
    main, aux = model.forward_with_aux(torch.rand(4, 3, 64, 64))
    loss = main.logsumexp(1).mean() + (0.4 * aux.logsumexp(1).mean() if aux is not None else 0.0)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


# --- ConvNeXt-CvSt ------------------------------------------------------------------------------------------


def test_convstem_structure_and_feature_strides() -> None:
    backbone = models.ConvNeXtCvSt((1, 1, 2, 1), (16, 32, 64, 128), drop_path_rate=0.1)
    stem = backbone.stem.stem
    assert [type(m) for m in stem] == [nn.Conv2d, LayerNorm2d, nn.GELU, nn.Conv2d, LayerNorm2d, nn.GELU]
    assert (stem[0].in_channels, stem[0].out_channels, stem[0].stride, stem[0].kernel_size) == (3, 8, (2, 2), (3, 3))
    assert (stem[3].in_channels, stem[3].out_channels, stem[3].stride) == (8, 16, (2, 2))
    assert stem[1].eps == 1e-6 and stem[4].eps == 1e-6
    params = {k.split(".")[2] for k in backbone.state_dict() if k.startswith("stem.stem.")}
    assert params == {"0", "1", "3", "4"}
    feats = backbone(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 16, 24), (32, 8, 12), (64, 4, 6), (128, 2, 3)]


def test_convnext_t_block_names_layer_scale_and_drop_path() -> None:
    backbone = models.ConvNeXtCvSt((3, 3, 9, 3), (96, 24, 24, 24), drop_path_rate=0.4)
    keys = backbone.state_dict().keys()
    for suffix in ("conv_dw.weight", "norm.weight", "mlp.fc1.weight", "mlp.fc2.bias", "gamma"):
        assert f"stages.2.blocks.8.{suffix}" in keys
    assert "stages.0.downsample.0.weight" not in keys
    assert {f"stages.{j}.downsample.{i}.weight" for j in (1, 2, 3) for i in (0, 1)} <= keys
    assert {f"norm{i}.weight" for i in range(4)} <= keys
    assert backbone.stem.stem[0].out_channels == 48
    blocks = [b for stage in backbone.stages for b in stage.blocks]
    assert len(blocks) == 18
    assert all(torch.equal(b.gamma, torch.ones_like(b.gamma)) for b in blocks)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in blocks]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.4, 18))
    assert blocks[0].norm.eps == 1e-6 and backbone.norm3.eps == 1e-6


def test_convnext_init_truncated_normal_and_zero_bias() -> None:
    backbone = models.ConvNeXtCvSt((1, 1, 1, 1), (8, 16, 64, 8))
    fc1 = backbone.stages[2].blocks[0].mlp.fc1
    assert abs(fc1.weight.std().item() - 0.02) < 0.001
    assert torch.count_nonzero(fc1.bias) == 0
    assert torch.count_nonzero(backbone.stem.stem[0].bias) == 0


def test_convnext_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="4 stages"):
        models.ConvNeXtCvSt((1, 1, 1), (8, 16, 32))
    with pytest.raises(ValueError, match="drop_path_rate"):
        models.ConvNeXtCvSt((1, 1, 1, 1), (8, 16, 32, 64), drop_path_rate=1.5)


# --- UPerNet ------------------------------------------------------------------------------------------------


def test_upernet_head_names_and_init() -> None:
    model = models.create_model("tiny_upernet_convnext", num_classes=7)
    keys = set(model.state_dict())
    for s in range(4):
        assert f"decode_head.psp_modules.{s}.1.conv.weight" in keys
        assert f"decode_head.psp_modules.{s}.1.batch_norm.running_var" in keys
        assert not any(k.startswith(f"decode_head.psp_modules.{s}.0.") for k in keys)
    for i in range(3):
        assert f"decode_head.lateral_convs.{i}.conv.weight" in keys
        assert f"decode_head.fpn_convs.{i}.batch_norm.weight" in keys
    assert {
        "decode_head.bottleneck.conv.weight",
        "decode_head.fpn_bottleneck.conv.weight",
        "decode_head.classifier.bias",
        "auxiliary_head.convs.0.conv.weight",
        "auxiliary_head.convs.0.batch_norm.num_batches_tracked",
        "auxiliary_head.classifier.weight",
    } <= keys
    assert not any(k.endswith("conv.bias") for k in keys if "head" in k)
    assert [m.output_size for m in (b[0] for b in model.decode_head.psp_modules)] == [1, 2, 3, 6]
    paper = models.create_model("tiny_upernet_convnext", num_classes=7, weight_init="paper")
    assert torch.count_nonzero(paper.decode_head.classifier.bias) == 0
    weight = paper.decode_head.fpn_bottleneck.conv.weight
    assert abs(weight.std().item() - 0.02) < 0.001 and abs(weight.mean().item()) < 0.001
    stem = paper.backbone.stem.stem[0].weight
    assert abs(stem.std().item() - 0.02) < 0.005
    # The tiny default keeps PyTorch's fan-in init: uniform with bound 1/sqrt(fan_in), std bound/sqrt(3).
    for conv in (model.decode_head.fpn_bottleneck.conv, model.backbone.stem.stem[0]):
        bound = conv.weight[0].numel() ** -0.5
        assert conv.weight.abs().max() <= bound and abs(conv.weight.std().item() - bound / 3**0.5) < 0.1 * bound
    with pytest.raises(ValueError, match="weight_init"):
        models.create_model("tiny_upernet_convnext", num_classes=7, weight_init="xavier")
    with torch.device("meta"):
        big = models.create_model("upernet_convnext_t_cvst", num_classes=21)
    assert big.decode_head.classifier.weight.shape == (21, 512, 1, 1)
    assert big.auxiliary_head.classifier.weight.shape == (21, 256, 1, 1)
    assert big.auxiliary_head.convs[0].conv.weight.shape == (256, 384, 3, 3)
    assert big.decode_head.bottleneck.conv.weight.shape == (512, 768 + 4 * 512, 3, 3)
    assert big.decode_head.fpn_bottleneck.conv.weight.shape == (512, 4 * 512, 3, 3)


def test_upernet_top_down_path_uses_all_levels() -> None:
    """Perturbing the coarsest feature changes the logits (PPM + top-down path are wired in)."""
    head = models.UperNetHead((8, 16, 32, 64), channels=8, num_classes=3).eval()
    feats = [torch.rand(1, c, s, s) for c, s in zip((8, 16, 32, 64), (16, 8, 4, 2), strict=True)]
    base = head(feats)
    assert base.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="4 feature levels"):
        head(feats[1:])
    for level in range(4):
        changed = [f.clone() for f in feats]
        changed[level] += 1.0
        assert not torch.allclose(head(changed), base)


# --- Segmenter ----------------------------------------------------------------------------------------------


def test_segmenter_vit_s_structure() -> None:
    with torch.device("meta"):
        model = models.create_model("segmenter_vit_s", num_classes=150)
    enc, dec = model.encoder, model.decoder
    assert enc.pos_embed.shape == (1, 1025, 384)
    assert enc.patch_embed.proj.weight.shape == (384, 3, 16, 16)
    assert len(enc.blocks) == 12 and enc.blocks[0].attn.num_heads == 6
    assert enc.blocks[0].norm1.eps == 1e-5 and enc.norm.eps == 1e-5
    assert enc.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)
    assert enc.head.weight.shape == (1000, 384) and not enc.head.weight.requires_grad
    state = model.state_dict()
    assert state["decoder.cls_emb"].shape == (1, 150, 384)
    assert state["decoder.proj_patch"].shape == (384, 384)
    assert state["decoder.proj_classes"].shape == (384, 384)
    assert state["decoder.mask_norm.weight"].shape == (150,)
    for key in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
        assert f"decoder.blocks.1.{key}.weight" in state
    assert "decoder.blocks.2.norm1.weight" not in state
    assert {"decoder.proj_dec.weight", "decoder.decoder_norm.bias"} <= set(state)
    assert dec.blocks[0].attn.attn_drop.p == 0.1 and dec.blocks[0].mlp.drop1.p == 0.1


def test_mask_transformer_init() -> None:
    dec = models.MaskTransformer(num_classes=5, d_encoder=32, d_model=256, n_layers=1, n_heads=4)
    assert abs(dec.proj_patch.std().item() - 256**-0.5) < 0.002
    assert abs(dec.cls_emb.std().item() - 0.02) < 0.01
    assert torch.count_nonzero(dec.proj_dec.bias) == 0
    assert torch.equal(dec.mask_norm.weight, torch.ones(5))


def test_segmenter_pads_and_crops() -> None:
    """Padding right/bottom: the logits of the un-padded region do not depend on the size of the pad.

    Without input centring: padding the image outside the model changes its mean colour, padding inside does not.
    """
    model = models.create_model("tiny_segmenter_vit", num_classes=5, center_input=False).eval()
    patch = model.encoder.patch_embed.patch_size[0]
    x = torch.rand(1, 3, 5 * patch - 3, 4 * patch - 1)
    padded = F.pad(x, (0, 1, 0, 3))
    with torch.no_grad():
        out, ref = model(x), model(padded)
    assert out.shape == (1, 5, *x.shape[2:])
    torch.testing.assert_close(out, ref[:, :, : x.shape[2], : x.shape[3]])


def test_resize_pos_embed_is_bilinear_and_keeps_class_token() -> None:
    pos = torch.randn(1, 1 + 4 * 4, 6)
    out = resize_pos_embed(pos, (8, 6))
    assert out.shape == (1, 1 + 48, 6)
    assert torch.equal(out[:, 0], pos[:, 0])
    grid = pos[:, 1:].reshape(1, 4, 4, 6).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(8, 6), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 48, 6))
    assert resize_pos_embed(pos, (4, 4)) is pos
    with pytest.raises(ValueError, match="square"):
        resize_pos_embed(torch.randn(1, 1 + 12, 6), (4, 4))


# --- classifiers and transfer -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("size", [32, 64])
def test_classifier_shapes_and_gradients(name: str, size: int) -> None:
    clf = models.create_classifier(name, num_classes=10).train()
    logits = clf(torch.rand(4, 3, size, size))
    assert logits.shape == (4, 10)
    logits.logsumexp(1).mean().backward()
    assert [n for n, p in clf.named_parameters() if p.grad is None] == []
    assert all(k.startswith(("backbone.", "head.")) for k in clf.state_dict())


def test_classifier_backbone_matches_segmentation_backbone_config() -> None:
    clf = models.create_classifier("tiny_upernet_convnext", num_classes=10)
    seg = models.create_model("tiny_upernet_convnext", num_classes=11)
    assert type(clf.backbone) is type(seg.backbone)
    clf_keys = set(clf.backbone.state_dict())
    seg_keys = set(seg.backbone.state_dict())
    assert seg_keys - clf_keys == {f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")}
    assert clf_keys <= seg_keys


def test_convnext_classifier_transfer_gives_identical_features() -> None:
    clf = models.create_classifier("tiny_upernet_convnext", num_classes=10).eval()
    seg = models.create_model("tiny_upernet_convnext", num_classes=11).eval()
    report = models.load_backbone(seg, clf.state_dict())
    assert set(report.unused) == {"head.norm.weight", "head.norm.bias", "head.fc.weight", "head.fc.bias"}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        raw = seg.backbone.stages(seg.backbone.stem(x))
        assert torch.equal(raw, clf.backbone.stages(clf.backbone.stem(x)))
        assert torch.equal(seg.backbone(x)[-1], seg.backbone.norm3(clf.backbone(x)[-1]))


def test_vit_classifier_transfer_gives_identical_tokens() -> None:
    clf = models.create_classifier("tiny_segmenter_vit", num_classes=10).eval()
    seg = models.create_model("tiny_segmenter_vit", num_classes=11).eval()
    report = models.load_backbone(seg, clf.state_dict())
    assert report.target == "encoder" and set(report.unused) == {"head.weight", "head.bias"}
    assert all(k.startswith("decoder.") for k in report.left_at_init)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(vit_tokens(seg.encoder, x)[0], vit_tokens(clf.backbone, x)[0])


# --- paper-scale models -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER)
def test_paper_models_shapes_and_parameter_counts(name: str) -> None:
    model = models.create_model(name, num_classes=150).eval()
    n = _n_params(model)
    print(f"{name}: {n / 1e6:.2f}M parameters (paper/model card {PAPER_PARAMS[name] / 1e6:.0f}M)")
    assert abs(n - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < PARAM_TOLERANCE
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        main, aux = model.forward_with_aux(x)
    assert main.shape == (1, 150, 64, 64)
    assert (aux is None) == name.startswith("segmenter")
    if aux is not None:
        assert aux.shape == main.shape


@pytest.mark.slow
def test_paper_segmenter_odd_input_size() -> None:
    model = models.create_model("segmenter_vit_s", num_classes=21).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 70, 50)).shape == (1, 21, 70, 50)


@pytest.mark.parametrize(
    ("tiny_arch", "paper_arch"),
    [("tiny_upernet_convnext", "upernet_convnext_t_cvst"), ("tiny_segmenter_vit", "segmenter_vit_s")],
)
def test_tiny_models_centre_their_input_and_paper_models_do_not(tiny_arch: str, paper_arch: str) -> None:
    """Tiny models subtract each image's mean colour first, so a constant colour shift does not change them."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32) * 0.5
    shift = torch.tensor([0.3, -0.1, 0.2]).view(1, 3, 1, 1)
    tiny = models.create_model(tiny_arch, num_classes=5).eval()
    classifier = models.create_classifier(tiny_arch, num_classes=5).eval()
    plain = models.create_model(tiny_arch, num_classes=5, center_input=False).eval()
    with torch.no_grad():
        torch.testing.assert_close(tiny(x + shift), tiny(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(classifier(x + shift), classifier(x), atol=1e-5, rtol=0)
        assert (plain(x + shift) - plain(x)).abs().max() > 1e-3
    assert models.model_config(tiny_arch)["center_input"]
    assert not models.model_config(paper_arch).get("center_input", False)


def test_vit_conv_stem_replaces_the_patchify_layer() -> None:
    encoder = create_vit_encoder(32, 8, embed_dim=16, depth=1, num_heads=2, conv_stem=(4, 8, 8))
    assert isinstance(encoder.patch_embed, models.ConvStemEmbed) and encoder.patch_embed.patch_size == (8, 8)
    tokens, grid = vit_tokens(encoder, torch.rand(2, 3, 40, 21))  # padded to 40 x 24
    assert grid == (5, 3) and tokens.shape == (2, 1 + 15, 16)
    with pytest.raises(ValueError, match="stride 8, not patch_size 16"):
        create_vit_encoder(32, 16, embed_dim=16, depth=1, num_heads=2, conv_stem=(4, 8, 8))
    assert models.model_config("tiny_segmenter_vit")["conv_stem"] == (16, 32, 64)
    assert models.model_config("segmenter_vit_s").get("conv_stem") is None


@pytest.mark.parametrize("size", [(1, 1), (2, 3), (3, 3), (4, 7), (9, 9)])
def test_same_depthwise_conv_matches_the_full_kernel_on_small_maps(size):
    from robseg_lib.models.convnext import SameDepthwiseConv2d

    torch.manual_seed(0)
    full = torch.nn.Conv2d(6, 6, 7, padding=3, groups=6)
    same = SameDepthwiseConv2d(6, 6, 7, padding=3, groups=6)
    same.load_state_dict(full.state_dict())
    x = torch.randn(2, 6, *size, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    out_full, out_same = full(x), same(x2)
    torch.testing.assert_close(out_same, out_full, rtol=0, atol=1e-6)
    out_full.square().sum().backward()
    out_same.square().sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=0, atol=1e-5)
    torch.testing.assert_close(same.weight.grad, full.weight.grad, rtol=0, atol=1e-5)


def test_convnext_blocks_use_the_same_depthwise_conv_under_timm_names():
    from robseg_lib.models.convnext import SameDepthwiseConv2d

    model = models.create_model("tiny_upernet_convnext", num_classes=11)
    convs = [m for n, m in model.named_modules() if n.endswith("conv_dw")]
    assert convs and all(isinstance(c, SameDepthwiseConv2d) for c in convs)
    assert "backbone.stages.3.blocks.0.conv_dw.weight" in model.state_dict()

"""Tests of robseg_lib.engines.train: the training attack, loss, optimiser groups, LR schedule, logs, resume and DDP."""

from __future__ import annotations

import csv
import dataclasses
import itertools
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from robseg_lib import models
from robseg_lib.data import dataset_from_params
from robseg_lib.engines.pretrain import pretrain_backbone
from robseg_lib.engines.train import (
    LOG_COLUMNS,
    ShiftAugment,
    fit,
    lr_at,
    param_groups,
    pgd_training_attack,
    segmentation_loss,
    train_model,
)
from robseg_lib.params import ParamError, load_params

NUM_CLASSES = 11
VOC_PARAMS = Path(__file__).resolve().parents[1] / "params" / "voc" / "upernet_convnext_t_cvst.yaml"


@pytest.fixture(scope="module")
def smoke():
    return load_params("smoke")


@pytest.fixture(scope="module")
def smoke_data(smoke):
    return dataset_from_params(smoke.data, "train"), dataset_from_params(smoke.data, "val")


def _tiny(arch: str = "tiny_upernet_convnext", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create_model(arch, num_classes=NUM_CLASSES, **kwargs)


def _batch(n: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, size, size, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n, size, size), generator=g)
    y[:, :2] = 255
    return x, y


def _read_log(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------------------------- schedule


def test_lr_formula_at_chosen_steps():
    base, total, warmup, r = 1e-3, 100, 10, 1e-5
    assert lr_at(0, base, total, warmup, r, 1.0) == pytest.approx(base * r)
    assert lr_at(5, base, total, warmup, r, 1.0) == pytest.approx(base * (r + (1 - r) * 0.5))
    assert lr_at(10, base, total, warmup, r, 1.0) == pytest.approx(base)
    assert lr_at(55, base, total, warmup, r, 1.0) == pytest.approx(base * 0.5)
    assert lr_at(55, base, total, warmup, r, 0.9) == pytest.approx(base * 0.5**0.9)
    assert lr_at(99, base, total, warmup, r, 1.0) == pytest.approx(base / 90)
    assert lr_at(3, base, total, 0, r, 1.0) == pytest.approx(base * (1 - 3 / 100))
    with pytest.raises(ValueError, match="warmup"):
        lr_at(0, base, 10, 11, r, 1.0)


def test_fit_sets_the_formula_lr_every_iteration(smoke, smoke_data, tmp_path, monkeypatch):
    seen: list[float] = []
    original = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        assert all(g["lr"] == seen[-1] for g in self.param_groups)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    tp = dataclasses.replace(smoke.train, epochs=2, warmup_epochs=1.0, robust_val_iter=0, lr=2e-3, power=0.9)
    fit(_tiny(), smoke_data[0], None, tp, tmp_path, num_classes=NUM_CLASSES, progress=False)
    per_epoch = len(smoke_data[0]) // tp.batch_size
    total = 2 * per_epoch
    assert seen == pytest.approx([lr_at(t, 2e-3, total, per_epoch, tp.warmup_ratio, 0.9) for t in range(total)])


# ----------------------------------------------------------------------------------------------- optimiser


@pytest.mark.parametrize("arch", ["tiny_upernet_convnext", "tiny_segmenter_vit"])
def test_no_weight_decay_on_norms_biases_and_layer_scale(arch):
    model = _tiny(arch)
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert not no_decay_names & decay_names
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert name not in no_decay_names | decay_names
        elif p.ndim <= 1 or "norm" in name:
            assert name in no_decay_names, name
        else:
            assert name in decay_names, name
    assert any(n.endswith(".bias") for n in no_decay_names)
    if arch == "tiny_upernet_convnext":
        assert any(n.endswith("gamma") for n in no_decay_names)
        assert any("batch_norm.weight" in n for n in no_decay_names)
        assert any(n.endswith("conv.weight") for n in decay_names)


# ----------------------------------------------------------------------------------------------- attack


def test_training_attack_eps_ball_box_and_eval_mode():
    model = _tiny()
    model.train()
    modes: list[bool] = []
    model.register_forward_pre_hook(lambda m, inp: modes.append(m.training))
    x, y = _batch()
    x[0, 0, :4, :4] = 0.0
    x[0, 1, :4, :4] = 1.0
    eps = 4 / 255
    x_adv = pgd_training_attack(model, x, y, eps, 0.01, 5)
    assert modes == [False] * 5
    assert model.training
    assert all(m.training for m in model.modules())
    assert (x_adv - x).abs().max() <= eps + 1e-7
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.9 * eps
    assert not x_adv.requires_grad
    assert pgd_training_attack(model, x, y, eps, 0.01, 0) is x


def test_training_attack_first_step_is_signed_gradient_from_zero():
    model = _tiny().eval()
    x, y = _batch()
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x), y, ignore_index=255), x)
    expected = (x.detach() + 0.01 * grad.sign()).clamp(0, 1)
    got = pgd_training_attack(model, x.detach(), y, 4 / 255, 0.01, 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-7)


def test_segmentation_loss_weights_aux_and_ignores_pixels():
    _, y = _batch()
    main, aux = torch.randn(4, NUM_CLASSES, 32, 32), torch.randn(4, NUM_CLASSES, 32, 32)
    expected = F.cross_entropy(main, y, ignore_index=255) + 0.4 * F.cross_entropy(aux, y, ignore_index=255)
    torch.testing.assert_close(segmentation_loss(main, aux, y, 0.4), expected)
    torch.testing.assert_close(segmentation_loss(main, None, y, 0.4), F.cross_entropy(main, y, ignore_index=255))


# ----------------------------------------------------------------------------------------------- loop


@pytest.mark.parametrize("name", ["upernet_clean", "upernet_at2_e", "upernet_pirat2_e", "segmenter_at5_e"])
def test_each_regime_decreases_the_training_loss(smoke, name, tmp_path):
    mp = smoke.model(name)
    backbone = None
    if mp.init != "random":
        backbone = pretrain_backbone(
            smoke.pretrain, mp.arch, mp.init, tmp_path / "bb.safetensors", digit_side=(15, 19), progress=False
        ).path
    over = {"epochs": 4, "robust_val_iter": 0, "val_images": None, "lr": 4e-3}
    params = dataclasses.replace(smoke, models={name: dataclasses.replace(mp, train={**mp.train, **over})})
    result = train_model(params, name, tmp_path / "run", backbone=backbone, progress=False)
    rows = _read_log(result.log_path)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < 0.8 * float(rows[0]["train_loss"])
    steps = params.train_for(name).attack_steps
    assert [int(r["cost_passes"]) for r in rows] == [int(r["iteration"]) * (steps + 1) for r in rows]
    assert (tmp_path / "run" / "model.safetensors").exists()
    assert not (tmp_path / "run" / "train_state.pt").exists()
    meta = models.read_checkpoint_meta(tmp_path / "run" / "model.safetensors")
    assert meta["name"] == name and meta["train"]["attack_steps"] == steps


def test_log_has_all_columns_and_validation(smoke, smoke_data, tmp_path):
    tp = dataclasses.replace(smoke.train, epochs=2, attack_steps=1, robust_val_iter=2, val_images=4)
    fit(_tiny(), smoke_data[0], smoke_data[1], tp, tmp_path, num_classes=NUM_CLASSES, progress=False)
    rows = _read_log(tmp_path / "train_log.csv")
    assert tuple(rows[0]) == LOG_COLUMNS
    for row in rows:
        assert 0 <= float(row["val_robust_miou"]) <= float(row["val_miou"]) + 1e-9 <= 1 + 1e-9
        assert 0 <= float(row["val_acc"]) <= 1
    assert float(rows[1]["wall_time_s"]) > float(rows[0]["wall_time_s"]) > 0


def test_resume_after_crash_equals_uninterrupted_run(smoke, smoke_data, tmp_path):
    # Drop-path is on (registry default) and AT draws nothing random: the RNG state must be restored exactly.
    tp = dataclasses.replace(smoke.train, epochs=2, attack_steps=2, robust_val_iter=0, val_images=2)
    straight = fit(
        _tiny(), smoke_data[0], smoke_data[1], tp, tmp_path / "a", num_classes=NUM_CLASSES, progress=False
    ).model

    def crash(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt("simulated kill after epoch 1")

    with pytest.raises(KeyboardInterrupt):
        fit(
            _tiny(),
            smoke_data[0],
            smoke_data[1],
            tp,
            tmp_path / "b",
            num_classes=NUM_CLASSES,
            progress=False,
            callback=crash,
        )
    assert (tmp_path / "b" / "train_state.pt").exists()
    fresh = _tiny()  # different init would be overwritten by the checkpoint
    torch.nn.init.zeros_(next(fresh.parameters()))
    resumed = fit(fresh, smoke_data[0], smoke_data[1], tp, tmp_path / "b", num_classes=NUM_CLASSES, progress=False)
    assert resumed.resumed_from_epoch == 1
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    log_a, log_b = _read_log(tmp_path / "a" / "train_log.csv"), _read_log(tmp_path / "b" / "train_log.csv")
    assert [r["epoch"] for r in log_b] == ["1", "2"]
    assert [r["train_loss"] for r in log_a] == [r["train_loss"] for r in log_b]
    with pytest.raises(FileExistsError, match="finished"):
        fit(_tiny(), smoke_data[0], None, tp, tmp_path / "b", num_classes=NUM_CLASSES, progress=False)


def test_amp_on_cpu_and_bad_batch_raise(smoke, smoke_data, tmp_path):
    with pytest.raises(ValueError, match="CUDA"):
        fit(_tiny(), smoke_data[0], None, dataclasses.replace(smoke.train, amp=True), tmp_path, num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="no full batch"):
        fit(
            _tiny(),
            smoke_data[0],
            None,
            dataclasses.replace(smoke.train, batch_size=1000),
            tmp_path,
            num_classes=NUM_CLASSES,
        )


def test_shift_augment_crops_consistently(smoke_data):
    base = smoke_data[0]
    aug = ShiftAugment(base, seed=3, crop=20)
    x, y = aug[5]
    assert x.shape == (3, 20, 20) and y.shape == (20, 20)
    assert torch.equal(x, aug[5][0]) and torch.equal(y, aug[5][1])
    # Every crop pixel comes from the (edge-replicated) image: the label under it must match a window of the
    # padded label map, and the colours a channel permutation of the image's window at the same offset.
    image, label = base[5]
    padded = F.pad(label[None, None].float(), (6, 6, 6, 6), mode="replicate")[0, 0].long()
    padded_image = F.pad(image[None], (6, 6, 6, 6), mode="replicate")[0]
    windows = [
        (top, left)
        for top in range(padded.shape[0] - 19)
        for left in range(padded.shape[1] - 19)
        if torch.equal(padded[top : top + 20, left : left + 20], y)
        and any(
            torch.equal(x, padded_image[list(order), top : top + 20, left : left + 20])
            for order in itertools.permutations(range(3))
        )
    ]
    assert windows
    with pytest.raises(ValueError, match="does not fit"):
        ShiftAugment(base, seed=3, crop=64)[0]


def test_train_crop_is_digitscenes_only_and_fits_the_images(smoke, tmp_path):
    name = "upernet_clean"
    too_big = dataclasses.replace(smoke, data=dataclasses.replace(smoke.data, train_crop=smoke.data.image_size + 1))
    with pytest.raises(ParamError, match="train_crop"):
        train_model(too_big, name, tmp_path / "a", progress=False)
    voc = dataclasses.replace(smoke, data=dataclasses.replace(smoke.data, name="voc", train_crop=16))
    with pytest.raises(ParamError, match="train_crop"):
        train_model(voc, name, tmp_path / "b", progress=False)


def test_shift_augment_is_deterministic_and_consistent(smoke_data):
    base = smoke_data[0]
    aug = ShiftAugment(base, seed=3)
    x1, y1 = aug[5]
    x2, y2 = aug[5]
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    aug.set_epoch(1)
    x3, _ = aug[5]
    assert not torch.equal(x1, x3)
    assert x1.shape == base[5][0].shape and y1.shape == base[5][1].shape
    assert set(y1.unique().tolist()) <= set(base[5][1].unique().tolist())


# ----------------------------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, init_file: str, out: str, tp, data) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = _tiny("tiny_segmenter_vit", dropout=0.0, drop_path_rate=0.0)
        fit(model, TensorDataset(*data), None, tp, out, num_classes=NUM_CLASSES, progress=False)
    finally:
        dist.destroy_process_group()


def test_ddp_two_gloo_processes_equal_one_process(smoke_data, smoke, tmp_path):
    """Tolerance 1e-5 (absolute, on every parameter): the runs differ only in float summation order.

    SGD, not AdamW: the attention key biases have an analytically zero gradient (softmax is shift invariant),
    and Adam's normalisation turns the round-off noise of that zero into full-size, sign-random steps (1e-4
    apart after 4 steps), while every other parameter agrees to 1e-8. With SGD the comparison covers all.
    """
    import torch.multiprocessing as mp

    x = torch.stack([smoke_data[0][i][0] for i in range(16)])
    y = torch.stack([smoke_data[0][i][1] for i in range(16)])
    tp = dataclasses.replace(
        smoke.train, epochs=2, batch_size=8, attack_steps=2, robust_val_iter=0, optimizer="sgd", lr=0.05
    )
    single = fit(
        _tiny("tiny_segmenter_vit", dropout=0.0, drop_path_rate=0.0),
        TensorDataset(x, y),
        None,
        tp,
        tmp_path / "single",
        num_classes=NUM_CLASSES,
        progress=False,
    ).model
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "ddp"), tp, (x, y)), nprocs=2)
    ddp = _tiny("tiny_segmenter_vit", dropout=0.0, drop_path_rate=0.0)
    models.load_checkpoint(ddp, tmp_path / "ddp" / "model.safetensors")
    changed = 0
    init = _tiny("tiny_segmenter_vit", dropout=0.0, drop_path_rate=0.0).state_dict()
    for name, a in single.state_dict().items():
        b = ddp.state_dict()[name]
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=name)
        changed += int(not torch.equal(a, init[name]))
    assert changed > 10
    rows_single = _read_log(tmp_path / "single" / "train_log.csv")
    rows_ddp = _read_log(tmp_path / "ddp" / "train_log.csv")
    for a, b in zip(rows_single, rows_ddp, strict=True):
        assert float(a["train_loss"]) == pytest.approx(float(b["train_loss"]), abs=1e-5)


# ----------------------------------------------------------------------------------------------- command line


def _cli(*argv: str) -> int:
    from robseg_lib.cli import main

    return main(["train", *argv])


def test_cli_trains_a_smoke_model_into_out(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROBSEG_CACHE", str(tmp_path / "cache"))
    assert _cli("--params", "smoke", "--model", "upernet_clean_e", "--out", str(tmp_path / "run"), "--no-progress") == 0
    assert "trained upernet_clean_e" in capsys.readouterr().out
    meta = models.read_checkpoint_meta(tmp_path / "run" / "model.safetensors")
    assert meta["name"] == "upernet_clean_e" and meta["profile"] == "smoke"
    assert [int(r["epoch"]) for r in _read_log(tmp_path / "run" / "train_log.csv")] == [1]


def test_cli_data_root_and_backbone_reach_training(tmp_path, monkeypatch):
    """Paper scale: --data-root overrides data.root and --backbone is used as given (nothing is pre-trained)."""
    from robseg_lib.engines import train, zoo

    seen = {}

    def fake_train_model(params, name, out, *, backbone, device, progress):
        seen.update(root=params.data.root, name=name, out=out, backbone=backbone, device=device)

        class Result:
            out_dir, wall_time_s, final = out, 0.0, {}

        return Result()

    monkeypatch.setattr(train, "train_model", fake_train_model)
    monkeypatch.setattr(zoo, "get_backbone", lambda *a, **k: pytest.fail("the zoo must not pre-train a backbone"))
    backbone = tmp_path / "robust.pt"
    backbone.write_bytes(b"")
    name = "upernet_convnext_t_cvst_pirat_5s_50ep"
    status = _cli(
        "--params", str(VOC_PARAMS), "--model", name, "--backbone", str(backbone),
        "--data-root", str(tmp_path / "VOCdevkit"), "--out", str(tmp_path / "run"), "--device", "cpu",
    )  # fmt: skip
    assert status == 0
    assert seen == {
        "root": str(tmp_path / "VOCdevkit"),
        "name": name,
        "out": tmp_path / "run",
        "backbone": str(backbone),
        "device": "cpu",
    }

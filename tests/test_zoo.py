"""Tests of robseg_lib.engines.zoo: on-demand training, caching, cache keys, checkpoints, logs and the CLI."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest
import torch

from robseg_lib import cli, models, paths
from robseg_lib.engines import pretrain as pretrain_module
from robseg_lib.engines import train as train_module
from robseg_lib.engines import zoo
from robseg_lib.params import load_params

FAST = {"robust_val_iter": 0, "val_images": 2}


def _fast(params, *names):
    """The smoke profile restricted to ``names``, with validation cut to the bone."""
    chosen = {n: dataclasses.replace(params.models[n], train={**params.models[n].train, **FAST}) for n in names}
    return dataclasses.replace(params, models=chosen)


@pytest.fixture(scope="module")
def smoke():
    return load_params("smoke")


@pytest.fixture
def spies(monkeypatch):
    calls = {"train": 0, "pretrain": 0}
    train_orig, pre_orig = train_module.train_model, pretrain_module.pretrain_backbone

    def train_spy(*args, **kwargs):
        calls["train"] += 1
        return train_orig(*args, **kwargs)

    def pre_spy(*args, **kwargs):
        calls["pretrain"] += 1
        return pre_orig(*args, **kwargs)

    monkeypatch.setattr(zoo, "train_model", train_spy)
    monkeypatch.setattr(zoo, "pretrain_backbone", pre_spy)
    return calls


def test_get_model_trains_once_then_loads_from_cache(smoke, tmp_path, spies):
    params = _fast(smoke, "upernet_clean_e")
    first = zoo.get_model(params, "upernet_clean_e", progress=False, root=tmp_path)
    assert spies == {"train": 1, "pretrain": 1}  # clean init: the clean digit classifier is pre-trained first
    assert not first.training
    folder = zoo.model_dir(params, "upernet_clean_e", tmp_path)
    assert folder.parent == tmp_path / "smoke" and folder.name.startswith("upernet_clean_e-")
    assert {"model.safetensors", "model.safetensors.json", "params.json", "train_log.csv"} <= {
        p.name for p in folder.iterdir()
    }
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    second = zoo.get_model(params, "upernet_clean_e", progress=False, root=tmp_path)
    assert spies == {"train": 1, "pretrain": 1}
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert not second.training
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    manifest = json.loads((folder / "params.json").read_text())
    assert manifest["key"] == zoo.model_key(params, "upernet_clean_e")
    assert manifest["train"]["epochs"] == params.train_for("upernet_clean_e").epochs

    log = zoo.training_log(params, "upernet_clean_e", root=tmp_path)
    assert isinstance(log, pd.DataFrame) and list(log["epoch"]) == [1]
    table = zoo.list_zoo(params, root=tmp_path)
    assert table.set_index("name").loc["upernet_clean_e", "cached"]


def test_backbone_is_shared_between_models_and_env_root(smoke, tmp_path, spies, monkeypatch):
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path))
    params = _fast(smoke, "upernet_at2_e", "upernet_clean")
    zoo.get_model(params, "upernet_clean", progress=False)
    zoo.get_model(params, "upernet_at2_e", progress=False)
    assert spies == {"train": 2, "pretrain": 1}
    path = zoo.get_backbone(params, "upernet_at2_e", progress=False)
    assert path.is_relative_to(tmp_path / "smoke" / "backbones")
    info = zoo.backbone_info(path)
    assert info["kind"] == "clean" and 0 <= info["metrics"]["clean_acc"] <= 1


def test_cache_key_covers_what_determines_the_result(smoke):
    name = "upernet_pirat2_e"
    key = zoo.model_key(smoke, name)
    assert zoo.model_key(smoke, name) == key
    changed = [
        dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, lr=smoke.train.lr * 2)),
        dataclasses.replace(smoke, data=dataclasses.replace(smoke.data, seed=smoke.data.seed + 1)),
        dataclasses.replace(smoke, pretrain=dataclasses.replace(smoke.pretrain, eps=4)),
        dataclasses.replace(
            smoke,
            models={
                **smoke.models,
                name: dataclasses.replace(smoke.models[name], train={**smoke.models[name].train, "attack_steps": 3}),
            },
        ),
    ]
    for params in changed:
        assert zoo.model_key(params, name) != key
    described = dataclasses.replace(
        smoke, models={**smoke.models, name: dataclasses.replace(smoke.models[name], description="other words")}
    )
    assert zoo.model_key(described, name) == key
    assert zoo.model_key(smoke, "upernet_at2_e") != zoo.model_key(smoke, "upernet_pirat2_e")


def test_cache_key_covers_the_registered_architecture(smoke, monkeypatch):
    """A changed registry default (e.g. the tiny models' init) must not load weights trained for the old one."""
    from robseg_lib.models import _registry

    name = "upernet_pirat2_e"
    key, backbone = zoo.model_key(smoke, name), zoo._backbone_dir(smoke, "tiny_upernet_convnext", "robust", None)
    entry = _registry._MODELS["tiny_upernet_convnext"]
    changed = dataclasses.replace(entry, defaults={**entry.defaults, "drop_path_rate": 0.2})
    monkeypatch.setitem(_registry._MODELS, "tiny_upernet_convnext", changed)
    assert zoo.model_key(smoke, name) != key
    assert zoo._backbone_dir(smoke, "tiny_upernet_convnext", "robust", None) != backbone


def test_missing_model_without_training_and_missing_checkpoint(smoke, tmp_path):
    with pytest.raises(FileNotFoundError, match="not cached"):
        zoo.get_model(smoke, "upernet_clean", train_if_missing=False, root=tmp_path)
    mp = dataclasses.replace(smoke.models["upernet_clean"], checkpoint="nowhere/released.safetensors")
    params = dataclasses.replace(smoke, models={"released": mp})
    with pytest.raises(FileNotFoundError, match=r"looked at: .*nowhere/released\.safetensors"):
        zoo.get_model(params, "released", root=tmp_path)


def test_checkpoint_models_load_the_file_instead_of_training(smoke, tmp_path, spies):
    torch.manual_seed(3)
    source = models.create_model("tiny_upernet_convnext", num_classes=smoke.data.num_classes)
    path = models.save_checkpoint(source, tmp_path / "released.safetensors", {"note": "test"})
    mp = dataclasses.replace(smoke.models["upernet_pirat2_e"], checkpoint=str(path))
    params = dataclasses.replace(smoke, models={"released": mp})
    model = zoo.get_model(params, "released", root=tmp_path / "cache")
    assert spies == {"train": 0, "pretrain": 0}
    for (k, a), b in zip(source.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_cli_lists_the_zoo(smoke, tmp_path, capsys):
    assert cli.main(["zoo", "--profile", "smoke", "--list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "upernet_clean" in out and "segmenter_pirat5_e" in out


def test_pending_jobs_wait_for_their_backbone_and_estimate_cost(smoke, tmp_path):
    params = _fast(smoke, "upernet_clean", "upernet_at2_e", "upernet_pirat5_e", "segmenter_pirat5_e")
    jobs = {job.label: job for job in zoo._pending_jobs(params, list(params.models), tmp_path)}
    assert set(jobs) == {
        "backbone tiny_upernet_convnext/clean",
        "backbone tiny_upernet_convnext/robust",
        "backbone tiny_segmenter_vit/robust",
        "model upernet_clean",
        "model upernet_at2_e",
        "model upernet_pirat5_e",
        "model segmenter_pirat5_e",
    }
    assert jobs["model upernet_at2_e"].needs == "backbone tiny_upernet_convnext/clean"
    assert jobs["model segmenter_pirat5_e"].needs == "backbone tiny_segmenter_vit/robust"
    assert jobs["model upernet_pirat5_e"].cost == 2 * jobs["model upernet_at2_e"].cost  # 6 passes against 3
    zoo.get_backbone_file(params, "tiny_upernet_convnext", "clean", progress=False, root=tmp_path)
    after = {job.label: job for job in zoo._pending_jobs(params, ["upernet_at2_e"], tmp_path)}
    assert list(after) == ["model upernet_at2_e"] and after["model upernet_at2_e"].needs is None


def test_train_zoo_in_two_processes_trains_each_job_once(smoke, tmp_path):
    params = _fast(smoke, "upernet_clean", "upernet_at2_e", "segmenter_pirat5_e")
    times = zoo.train_zoo(params, jobs=2, progress=False, root=tmp_path)
    assert set(times) == {
        "backbone tiny_upernet_convnext/clean",
        "backbone tiny_segmenter_vit/robust",
        "model upernet_clean",
        "model upernet_at2_e",
        "model segmenter_pirat5_e",
    }
    assert all(seconds > 0 for seconds in times.values())
    for name in params.models:
        assert not zoo.get_model(params, name, train_if_missing=False, root=tmp_path).training
    assert zoo.train_zoo(params, jobs=2, progress=False, root=tmp_path) == {}


def test_train_zoo_in_process_trains_backbones_first(smoke, tmp_path, spies, monkeypatch):
    params = _fast(smoke, "upernet_at2_e", "upernet_clean")
    order = []
    monkeypatch.setattr(zoo, "_run_job", lambda p, job, *rest: order.append(job.label) or 1.0)
    zoo.train_zoo(params, jobs=1, progress=False, root=tmp_path)
    assert order[0] == "backbone tiny_upernet_convnext/clean" and len(order) == 3
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        zoo.train_zoo(params, jobs=0, progress=False, root=tmp_path)


@pytest.mark.parametrize("jobs", [1, 2])
def test_train_zoo_names_the_job_that_failed(smoke, tmp_path, jobs):
    mp = smoke.models["upernet_clean"]
    broken = dataclasses.replace(mp, train={**mp.train, **FAST, "batch_size": 4 * smoke.data.train_size})
    params = dataclasses.replace(smoke, models={"broken": broken})
    with pytest.raises(RuntimeError, match=r"zoo training of model broken failed: ValueError: .*no full batch"):
        zoo.train_zoo(params, jobs=jobs, progress=False, root=tmp_path)


def test_cli_trains_a_model(smoke, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "load_params", lambda profile: _fast(smoke, "upernet_clean"))
    assert cli.main(["zoo", "--train", "all", "--jobs", "1", "--no-progress", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "model upernet_clean: trained in" in out and "1 model(s) ready; 2 job(s) trained" in out


def test_backbone_key_follows_its_own_per_arch_overrides_only(smoke):
    vit, convnext = "tiny_segmenter_vit", "tiny_upernet_convnext"
    before = {arch: zoo._backbone_dir(smoke, arch, "clean", None) for arch in (vit, convnext)}
    pretrain = dataclasses.replace(smoke.pretrain, per_arch={vit: {"lr": smoke.pretrain.lr / 2}})
    params = dataclasses.replace(smoke, pretrain=pretrain)
    assert zoo._backbone_dir(params, convnext, "clean", None) == before[convnext]
    assert zoo._backbone_dir(params, vit, "clean", None) != before[vit]

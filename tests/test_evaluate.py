"""Resumable, sharded evaluation: files, resumption, settings checks, aggregation, class weights, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from robseg_lib.attacks import SEAResult, class_weights_from_counts, released_class_weights, sea
from robseg_lib.checks import EvalCheckError, EvalCheckWarning
from robseg_lib.cli import main as cli
from robseg_lib.data.class_counts import class_pixel_counts
from robseg_lib.engines.evaluate import (
    EvaluationResult,
    RunMismatchError,
    default_out_dir,
    evaluate,
    load_results,
    resolve_class_weights,
)
from robseg_lib.metrics import SegStats, compute_stats
from robseg_lib.params import load_params

K = 4
EPS = 8 / 255
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


class TinySeg(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, K, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return TinySeg().eval()


class SynthData(torch.utils.data.Dataset):
    """Deterministic images whose labels follow the colour, with a few ignore pixels."""

    class_names = ("bg", "a", "b", "c")

    def __init__(self, size: int = 10, side: int = 8) -> None:
        gen = torch.Generator().manual_seed(7)
        self.x = torch.rand(size, 3, side, side, generator=gen)
        self.y = (self.x[:, 0] * K).long().clamp(max=K - 1)
        self.y[:, 0, :2] = 255

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]


class NoiseAttack:
    """Two deterministic 'attacks': sign noise seeded by (seed, batch, attack); optional failure at a batch."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.calls: list[int] = []
        self.kwargs: dict = {}

    def __call__(self, model, x, y, *, eps, num_classes, ignore_index, seed, batch_index, **kwargs):
        if batch_index == self.fail_at:
            raise RuntimeError(f"killed at batch {batch_index}")
        self.calls.append(batch_index)
        self.kwargs = {"eps": eps, "seed": seed, **kwargs}
        out = {}
        for a, name in enumerate(("noise-a", "noise-b")):
            gen = torch.Generator().manual_seed(1000 * seed + 10 * batch_index + a)
            out[name] = (x + eps * torch.randn(x.shape, generator=gen).sign()).clamp(0, 1)
        with torch.no_grad():
            out["identity"] = compute_stats(model(x).argmax(1), y, num_classes, ignore_index)
        return out


def run(tmp: Path, attack=None, **kwargs) -> EvaluationResult:
    args = {"eps": EPS, "num_classes": K, "n_iter": 1, "batch_size": 3, "progress": False}
    args.update(kwargs)
    model = args.pop("model", None) or make_model()
    dataset = args.pop("dataset", None) or SynthData()
    return evaluate(model, dataset, tmp, attack=attack or NoiseAttack(), **args)


def batch_files(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("batch_*.pt"))


# ---------------------------------------------------------------------------------------------------------
# Files and numbers


def test_writes_one_file_per_batch_and_matches_direct_computation(tmp_path):
    result = run(tmp_path)
    assert batch_files(tmp_path) == [f"batch_{i:05d}.pt" for i in range(4)]  # 10 images, batches of 3
    run_json = json.loads((tmp_path / "run.json").read_text())
    assert run_json["eps"] == EPS and run_json["n_images"] == 10 and run_json["batch_size"] == 3
    assert run_json["attack"].endswith("NoiseAttack") and run_json["library_version"]
    assert run_json["data"]["class_names"] == list(SynthData.class_names)

    # Direct computation over the same fixed batches.
    model, data, attack = make_model(), SynthData(), NoiseAttack()
    clean, per = [], {}
    for b, start in enumerate(range(0, 10, 3)):
        x, y = data.x[start : start + 3], data.y[start : start + 3]
        with torch.no_grad():
            clean.append(compute_stats(model(x).argmax(1), y, K))
            for name, value in attack(
                model, x, y, eps=EPS, num_classes=K, ignore_index=255, seed=0, batch_index=b
            ).items():
                if isinstance(value, torch.Tensor):
                    value = compute_stats(model(value).argmax(1), y, K)
                per.setdefault(name, []).append(value)
    expected = SEAResult.from_stats(SegStats.cat(clean), {k: SegStats.cat(v) for k, v in per.items()}, seed=0)
    assert result.attacks == ("noise-a", "noise-b", "identity")
    assert result.worst_acc == expected.worst_acc
    assert result.worst_miou == expected.worst_miou
    assert result.per_attack == expected.per_attack
    assert result.clean_acc == expected.clean_acc and result.clean_miou == expected.clean_miou
    assert result.per_attack["identity"] == (result.clean_acc, result.clean_miou)
    assert result.worst_acc <= min(acc for acc, _ in result.per_attack.values())
    assert result.worst_miou <= min(miou for _, miou in result.per_attack.values())

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary()))
    assert summary["worst_case"]["acc"] == expected.worst_acc
    # D23: per-image mean and pooled accuracy are both reported (they differ with ignore pixels).
    assert summary["per_attack"]["noise-a"]["acc_pooled"] == expected.attack_stats["noise-a"].pooled_accuracy()


def test_load_results_and_tables(tmp_path):
    result = run(tmp_path)
    again = load_results(tmp_path)
    assert again.summary() == result.summary()
    assert again.run == result.run
    table = again.table()
    assert list(table.index) == ["clean", "noise-a", "noise-b", "identity", "worst case"]
    assert table.loc["worst case", "acc"] == pytest.approx(100 * result.worst_acc)
    classes = again.class_iou_table()
    assert list(classes.index) == list(SynthData.class_names)
    assert list(classes.columns) == ["clean", "noise-a", "noise-b", "identity", "worst case"]
    worst = again.worst_stats("miou")
    assert worst.miou() == pytest.approx(result.worst_miou)
    assert again.worst_stats("acc").mean_accuracy() == pytest.approx(result.worst_acc)
    with pytest.raises(ValueError, match="class_names"):
        again.class_iou_table(class_names=["x"])


def test_progress_bar_shows_running_worst_case_accuracy(tmp_path, capsys):
    run(tmp_path, progress=True)
    assert "worst_acc=" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Resumption


def test_interrupted_run_resumes_with_identical_numbers(tmp_path):
    reference = run(tmp_path / "reference")

    attack = NoiseAttack(fail_at=2)
    with pytest.raises(RuntimeError, match="killed at batch 2"):
        run(tmp_path / "resumed", attack=attack)
    assert batch_files(tmp_path / "resumed") == ["batch_00000.pt", "batch_00001.pt"]
    assert not (tmp_path / "resumed" / "summary.json").exists()
    with pytest.raises(RuntimeError, match="unfinished: 2 of 4 batches missing"):
        load_results(tmp_path / "resumed")

    attack.fail_at = None
    resumed = run(tmp_path / "resumed", attack=attack)
    assert attack.calls == [0, 1, 2, 3]  # batches 0, 1 before the kill; only 2, 3 after the restart
    assert resumed.summary() == reference.summary()
    for name in batch_files(tmp_path / "reference"):
        a = torch.load(tmp_path / "reference" / name, weights_only=True)
        b = torch.load(tmp_path / "resumed" / name, weights_only=True)
        assert all(torch.equal(a["clean"][k], b["clean"][k]) for k in a["clean"])

    # A finished run is not recomputed.
    attack.calls.clear()
    assert run(tmp_path / "resumed", attack=attack).summary() == reference.summary()
    assert attack.calls == []


def test_leftover_temporary_file_of_a_killed_write_is_ignored(tmp_path):
    attack = NoiseAttack(fail_at=1)
    with pytest.raises(RuntimeError):
        run(tmp_path / "run", attack=attack)
    (tmp_path / "run" / ".batch_00001.pt.abc.tmp").write_bytes(b"half a file")
    attack.fail_at = None
    assert run(tmp_path / "run", attack=attack).summary() == run(tmp_path / "ref").summary()


def test_unreadable_batch_file_is_a_clear_error(tmp_path):
    run(tmp_path)
    (tmp_path / "batch_00002.pt").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match="batch_00002.pt.*delete it"):
        load_results(tmp_path)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"eps": 4 / 255}, "eps"),
        ({"seed": 1}, "seed"),
        ({"n_iter": 2}, "n_iter"),
        ({"batch_size": 2}, "batch_size"),
        ({"n_images": 9}, "n_images"),
        ({"losses": ("mce",)}, "losses"),
        ({"class_weights": "uniform"}, "class_weights"),
        ({"model": make_model(seed=1)}, "model"),
        ({"dataset": SynthData(size=11)}, "data"),
    ],
)
def test_other_settings_in_the_same_folder_are_an_error(tmp_path, change, key):
    run(tmp_path)
    with pytest.raises(RunMismatchError, match=rf"(?s)other settings.*\b{key}:"):
        run(tmp_path, **change)


def test_batch_files_without_run_json_are_an_error(tmp_path):
    run(tmp_path)
    (tmp_path / "run.json").unlink()
    with pytest.raises(RunMismatchError, match="no run.json"):
        run(tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Attack outputs and checks


def test_adversarial_images_outside_the_threat_model_are_rejected(tmp_path):
    def too_far(model, x, y, *, eps, **kwargs):
        return {"bad": (x + 2 * eps).clamp(0, 1)}

    with pytest.raises(ValueError, match="left the threat model"):
        run(tmp_path, attack=too_far, dataset=SynthData(side=8))
    assert batch_files(tmp_path) == []


@pytest.mark.parametrize(
    ("output", "error"),
    [({}, TypeError), ({"clean": None}, ValueError), ({"x": 3}, TypeError), ({"x": "adv"}, TypeError)],
)
def test_malformed_attack_outputs_are_errors(tmp_path, output, error):
    with pytest.raises(error):
        run(tmp_path, attack=lambda model, x, y, **kwargs: output)


def test_sanity_checks_run_first(tmp_path):
    model = nn.Sequential(make_model(), nn.Softmax(dim=1))
    with pytest.warns(EvalCheckWarning, match="probabilities"):
        run(tmp_path / "warn", model=model)
    with pytest.raises(EvalCheckError, match="probabilities"):
        run(tmp_path / "strict", model=model, strict_checks=True)
    assert batch_files(tmp_path / "strict") == []
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvalCheckWarning)
        run(tmp_path / "off", model=model, run_checks=False)


def test_model_is_evaluated_in_eval_mode_and_restored(tmp_path):
    model = make_model().train()
    with warnings.catch_warnings():
        warnings.simplefilter("error", EvalCheckWarning)  # no train-mode flag: evaluation runs in eval mode
        run(tmp_path, model=model)
    assert model.training and all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": -1.0},
        {"n_iter": 0},
        {"batch_size": 0},
        {"n_images": 11},
        {"seed": -1},
        {"losses": ("nope",)},
        {"attack": "pgd"},
    ],
)
def test_invalid_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        run(tmp_path, **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Class weights


def test_class_weights_reach_the_attack(tmp_path):
    attack = NoiseAttack()
    run(tmp_path / "explicit", attack=attack, class_weights=[1.0, 2.0, 3.0, 4.0])
    assert attack.kwargs["class_weights"].tolist() == [1.0, 2.0, 3.0, 4.0]
    run(tmp_path / "uniform", attack=attack, class_weights="uniform")
    assert attack.kwargs["class_weights"].tolist() == [0.25] * 4
    run(tmp_path / "none", attack=attack)  # default: the evaluated images' own pixel frequencies
    counts = class_pixel_counts(SynthData(), K)
    assert torch.equal(attack.kwargs["class_weights"], class_weights_from_counts(counts))
    assert json.loads((tmp_path / "none" / "run.json").read_text())["class_weights"] == "evaluated_images"
    run(tmp_path / "unused", attack=attack, losses=("mce", "js"))
    assert attack.kwargs["class_weights"] is None


def test_resolve_class_weights_options(tmp_path, monkeypatch):
    smoke = load_params("smoke").data
    assert resolve_class_weights(None, 3) is None
    assert resolve_class_weights("uniform", 4).tolist() == [0.25] * 4
    voc = load_params("smoke").data.__class__(name="voc", num_classes=21, image_size=32, root="/nowhere")
    assert torch.equal(resolve_class_weights("released", 21, data_params=voc), released_class_weights("voc"))
    with pytest.raises(ValueError, match="released class weights exist for 'voc' and 'ade20k'"):
        resolve_class_weights("released", 11, data_params=smoke)
    with pytest.raises(ValueError, match="needs data_params"):
        resolve_class_weights("train_split", 11)
    with pytest.raises(ValueError, match="unknown class_weights option"):
        resolve_class_weights("train", 11, data_params=smoke)
    with pytest.raises(ValueError, match="11 finite non-negative"):
        resolve_class_weights([1.0, 2.0], 11)
    with pytest.raises(ValueError, match="finite non-negative"):
        resolve_class_weights([1.0, -2.0], 2)

    from robseg_lib.data import dataset_from_params

    weights = resolve_class_weights("train_split", 11, data_params=smoke, cache_dir=tmp_path)
    counts = class_pixel_counts(dataset_from_params(smoke, "train"), 11)
    assert torch.equal(weights, class_weights_from_counts(counts))
    assert len(list(tmp_path.glob("class_counts_train_*.pt"))) == 1

    def no_counting(*args, **kwargs):
        raise AssertionError("the cached counts should have been used")

    monkeypatch.setattr("robseg_lib.engines.evaluate._class_weights.class_pixel_counts", no_counting)
    assert torch.equal(resolve_class_weights("train_split", 11, data_params=smoke, cache_dir=tmp_path), weights)


# ---------------------------------------------------------------------------------------------------------
# SEA wiring


def test_sea_default_matches_attacks_sea(tmp_path):
    model, data = make_model(), SynthData(size=5)
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    result = evaluate(model, data, tmp_path, EPS, K, n_iter=3, batch_size=3, class_weights=weights, progress=False)
    assert result.run["attack"] == "sea" and result.attacks == ("mce-bal", "mce", "js")
    loader = DataLoader(data, batch_size=3)
    expected = sea(model, loader, EPS, K, n_iter=3, class_weights=weights, progress=False)
    assert result.per_attack == expected.per_attack
    assert (result.worst_acc, result.worst_miou) == (expected.worst_acc, expected.worst_miou)
    assert result.worst_acc <= result.clean_acc


# ---------------------------------------------------------------------------------------------------------
# Sharding under torchrun


_WORKER = """
import json, os, sys
import torch
sys.path.insert(0, {tests!r})
from test_evaluate import EPS, K, NoiseAttack, SynthData, make_model
from robseg_lib.engines.evaluate import evaluate

class LoggingAttack(NoiseAttack):
    def __call__(self, model, x, y, **kwargs):
        with open(os.path.join(sys.argv[2], "rank" + os.environ.get("RANK", "0")), "a") as fh:
            fh.write(str(kwargs["batch_index"]) + "\\n")
        return super().__call__(model, x, y, **kwargs)

torch.set_num_threads(1)
result = evaluate(make_model(), SynthData(11), sys.argv[1], EPS, K, attack=LoggingAttack(), n_iter=1, batch_size=2,
                  progress=False)
with open(os.path.join(sys.argv[2], "result" + os.environ.get("RANK", "0")), "w") as fh:
    json.dump(result.summary(), fh)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_torchrun_shards_give_the_single_process_numbers(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER.format(tests=str(TESTS))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("WORLD_SIZE", None)
    for name in ("single", "shards"):
        (tmp_path / f"{name}_log").mkdir()
    single = [sys.executable, str(script), str(tmp_path / "single"), str(tmp_path / "single_log")]
    sharded = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path / "shards"),
        str(tmp_path / "shards_log"),
    ]
    for cmd in (single, sharded):
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=110)
        assert done.returncode == 0, done.stderr[-3000:]

    def lines(path: Path) -> list[int]:
        return [int(v) for v in path.read_text().split()]

    assert lines(tmp_path / "shards_log" / "rank0") == [0, 2, 4]  # 11 images, batches of 2: 6 batches
    assert lines(tmp_path / "shards_log" / "rank1") == [1, 3, 5]
    reference = json.loads((tmp_path / "single_log" / "result0").read_text())
    for rank in (0, 1):
        assert json.loads((tmp_path / "shards_log" / f"result{rank}").read_text()) == reference
    assert json.loads((tmp_path / "shards" / "summary.json").read_text()) == reference
    for name in batch_files(tmp_path / "single"):
        a = torch.load(tmp_path / "single" / name, weights_only=True)
        b = torch.load(tmp_path / "shards" / name, weights_only=True)
        for attack, stats in a["attacks"].items():
            assert all(torch.equal(stats[k], b["attacks"][attack][k]) for k in stats)


def test_an_existing_process_group_is_used_and_left_alone(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        result = run(tmp_path / "out")
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
    assert result.summary() == run(tmp_path / "ref").summary()


# ---------------------------------------------------------------------------------------------------------
# Command line


def sea_cli(*argv: str) -> int:
    return cli(["sea", *argv])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--params", "nosuch"], "unknown profile 'nosuch'; valid: "),
        (["--params", "smoke", "--eps", "0"], "(0, 64]"),
        (["--params", "smoke", "--eps", "100"], "(0, 64]"),
        (["--params", "smoke", "--n-iter", "0"], "--n-iter must be positive"),
    ],
)
def test_cli_errors(argv, message, capsys):
    assert sea_cli(*argv) == 2
    assert message in capsys.readouterr().err


def test_cli_cuda_without_cuda_suggests_cpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert sea_cli("--params", "smoke", "--device", "cuda") == 2
    assert "use device='cpu'" in capsys.readouterr().err


_PARAMS_FILE = """
data: {name: digitscenes, num_classes: 11, image_size: 32, train_size: 8, val_size: 4, digits_per_image: [1, 2]}
eval: {eps: 4, n_iter: 2, n_images: 4, batch_size: 2, seed: 0, device: cpu, class_weights: train_split}
models:
  net_a: {arch: tiny_upernet_convnext}
  net_b: {arch: tiny_upernet_convnext}
"""


@pytest.fixture
def params_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ROBSEG_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "params.yaml"
    path.write_text(_PARAMS_FILE)
    return path


def test_cli_model_errors_list_valid_models(params_file, capsys):
    assert sea_cli("--params", str(params_file), "--model", "nosuch") == 2
    assert "unknown model 'nosuch'" in capsys.readouterr().err
    assert sea_cli("--params", str(params_file)) == 2
    assert "pass --model" in capsys.readouterr().err
    assert sea_cli("--params", str(params_file), "--model", "net_a", "--checkpoint", "/no/file") == 2
    assert "does not exist" in capsys.readouterr().err


def test_default_out_dir_names_every_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBSEG_RESULTS", str(tmp_path))
    path = default_out_dir("tiny", "pir_at", 4.0, 100, 50, 25, 0, "train_split")
    assert path == tmp_path / "tiny" / "sea" / "pir_at" / "eps4_it100_img50_bs25_seed0_train_split"
    assert (
        default_out_dir("voc", "m", 0.25, 300, 1449, 24, 1, "released").name
        == "eps0.25_it300_img1449_bs24_seed1_released"
    )


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cli_with_a_checkpoint(tmp_path, params_file, capsys):
    from robseg_lib import models

    torch.manual_seed(0)
    model = models.create_model("tiny_upernet_convnext", num_classes=11)
    checkpoint = models.save_checkpoint(model, tmp_path / "model.safetensors", {})
    out = tmp_path / "out"
    argv = ["--params", str(params_file), "--model", "net_a", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert sea_cli(*argv, "--no-progress") == 0
    printed = capsys.readouterr().out
    assert "worst case" in printed and "mce-bal" in printed and "eps 4/255" in printed
    result = load_results(out)
    assert (
        result.n_images == 4
        and result.run["eps_255"] == 4
        and result.run["model"]["name"] == f"{params_file.parent.name}/net_a"
    )
    assert result.run["class_weights"] == "train_split"
    assert len(list((tmp_path / "cache").rglob("class_counts_train_*.pt"))) == 1
    # The same command on the finished folder reads the results back; other settings are refused.
    assert sea_cli(*argv, "--no-progress") == 0
    assert load_results(out).summary() == result.summary()
    assert sea_cli(*argv, "--eps", "8", "--no-progress") == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_cli_on_the_smoke_profile_zoo(tmp_path, capsys):
    """Through the zoo; uses the shared zoo cache, so the smoke model is trained once for every test run."""
    params = load_params("smoke")
    if not params.models:
        pytest.skip("params/smoke has no models.yaml yet")
    name = next(iter(params.models))
    out = tmp_path / "out"
    argv = ["--params", "smoke", "--model", name, "--n-iter", "2", "--n-images", "4", "--out", str(out)]
    assert sea_cli(*argv, "--no-progress") == 0
    assert "worst case" in capsys.readouterr().out
    assert load_results(out).run["model"]["name"] == f"smoke/{name}"

"""Resumable, shardable evaluation of a segmentation model under SEA (or any per-batch attack).

A long evaluation is split into fixed batches: batch ``i`` always covers images ``[i*b, (i+1)*b)``. Each
batch's per-image statistics (clean and per attack) are written atomically to ``out_dir/batch_<i>.pt``
next to a ``run.json`` that describes the settings. A restarted run checks that ``run.json`` agrees with
the requested settings (results of different settings are never mixed) and skips the finished batches.
Under ``torchrun`` (``torch.distributed`` initialised, or ``WORLD_SIZE > 1``) rank ``r`` processes batches
``r, r + world, ...``; after a barrier rank 0 concatenates every batch in batch order, computes SEA's
numbers and writes ``summary.json``. Attack randomness is seeded per (seed, batch index, attack), so the
numbers depend neither on the number of processes nor on interruptions.

Compared with the authors' release (ALGORITHMS.md §15): statistics are stored per image and concatenated
by image index, so a partial last batch is scored against its own labels (D2); every random start is
seeded explicitly (D6); per-attack accuracy is reported both as the per-image mean and pooled (D23);
finished work is found and reused on restart (D24).

Layout of ``out_dir``::

    run.json          settings, model and data fingerprints, library version
    batch_00000.pt    {"clean": SegStats dict, "attacks": {name: SegStats dict}, "start", "stop", ...}
    ...
    summary.json      clean / per-attack / worst-case numbers (fractions) and per-image choices
    class_counts_*.pt cached pixel counts behind the MCE-Bal class weights
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from robseg_lib import __version__
from robseg_lib import checks as _checks
from robseg_lib._io import atomic_json_dump, atomic_torch_save
from robseg_lib._progress import progress_bar
from robseg_lib.attacks import SEA_LOSSES, SEAResult, attack_mode, sea_batch
from robseg_lib.attacks.losses import check_loss_name, class_weights_from_counts, released_class_weights
from robseg_lib.data import dataset_from_params
from robseg_lib.data.class_counts import class_pixel_counts
from robseg_lib.metrics import SegStats, compute_stats
from robseg_lib.params import DataParams, ParamError, ParamSet, check_device, load_params, params_root
from robseg_lib.zoo import cache_root

if TYPE_CHECKING:
    import pandas as pd
    from torch.utils.data import Dataset

__all__ = [
    "AttackFn",
    "EvaluationResult",
    "RunMismatchError",
    "aggregate",
    "configure_parser",
    "default_out_dir",
    "evaluate",
    "evaluate_profile",
    "load_results",
    "profile_run_fields",
    "resolve_class_weights",
    "results_root",
    "run_from_args",
]

AttackFn = Callable[..., Mapping[str, "SegStats | torch.Tensor"]]
"""A per-batch attack: ``fn(model, x, y, *, eps, num_classes, n_iter, losses, ignore_index, class_weights, seed,
batch_index) -> {name: SegStats | x_adv}``. Each value is either the per-image statistics of that attack's
final adversarial images or the adversarial images themselves (N, C, H, W), which the evaluator checks
against the threat model and scores. Randomness must derive from ``(seed, batch_index)`` only (as
:func:`robseg_lib.attacks.sea_batch` does), never from the global RNG: then results do not depend on
sharding or resumption."""

_FORMAT = 1
_RUN_FILE = "run.json"
_SUMMARY_FILE = "summary.json"
_CHECK_IMAGES = 8
_VOLATILE_KEYS = frozenset({"created"})
_RESERVED_NAMES = frozenset({"clean", "worst case"})
_CLASS_WEIGHT_OPTIONS = ("train_split", "released", "uniform")
_T = TypeVar("_T")


class RunMismatchError(ValueError):
    """An output folder holds results of other settings than the ones requested."""


# ---------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class EvaluationResult:
    """SEA's numbers over a finished run, with the per-image statistics behind them (fractions in [0, 1]).

    Attributes:
        out_dir: the run's folder.
        run: the contents of its ``run.json``.
        sea: clean, per-attack and worst-case numbers (:class:`robseg_lib.attacks.SEAResult`); per-attack and
            worst-case accuracies are means over images of the per-image accuracy.
    """

    out_dir: Path
    run: dict[str, Any]
    sea: SEAResult

    @property
    def attacks(self) -> tuple[str, ...]:
        """Attack names, in the order the per-image choice indices refer to."""
        return self.sea.attacks

    @property
    def n_images(self) -> int:
        return self.sea.clean_stats.num_images

    @property
    def clean_acc(self) -> float:
        return self.sea.clean_acc

    @property
    def clean_miou(self) -> float:
        return self.sea.clean_miou

    @property
    def per_attack(self) -> dict[str, tuple[float, float]]:
        """``{attack: (acc, miou)}``, acc the mean over images of the per-image accuracy."""
        return self.sea.per_attack

    @property
    def worst_acc(self) -> float:
        """Mean over images of the lowest per-image accuracy over the attacks (SEA's aAcc)."""
        return self.sea.worst_acc

    @property
    def worst_miou(self) -> float:
        """Greedy worst-case mIoU over one attack per image (SEA's mIoU)."""
        return self.sea.worst_miou

    def worst_stats(self, metric: str = "miou") -> SegStats:
        """Per-image statistics of the worst-case selection: ``"miou"`` (greedy) or ``"acc"`` (per image)."""
        if metric not in ("miou", "acc"):
            raise ValueError(f"metric must be 'miou' or 'acc', got {metric!r}")
        choice = self.sea.miou_choice if metric == "miou" else self.sea.acc_choice
        stats = [self.sea.attack_stats[name] for name in self.attacks]
        rows = torch.arange(self.n_images)

        def pick(field: str) -> torch.Tensor:
            return torch.stack([getattr(s, field) for s in stats])[choice, rows]

        return SegStats(pick("intersection"), pick("union"), pick("label_count"))

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: per-image-mean and pooled accuracies (D23), mIoUs, and the per-image choices."""

        def numbers(stats: SegStats, acc: float, miou: float) -> dict[str, float]:
            return {"acc": acc, "acc_pooled": stats.pooled_accuracy(), "miou": miou}

        s = self.sea
        return {
            "n_images": self.n_images,
            "attacks": list(self.attacks),
            "clean": numbers(s.clean_stats, s.clean_acc, s.clean_miou),
            "per_attack": {name: numbers(s.attack_stats[name], *s.per_attack[name]) for name in self.attacks},
            "worst_case": {
                "acc": s.worst_acc,
                "acc_pooled": self.worst_stats("acc").pooled_accuracy(),
                "miou": s.worst_miou,
            },
            "worst_acc_attack": s.acc_choice.tolist(),
            "worst_miou_attack": s.miou_choice.tolist(),
            "greedy_seed": s.seed,
        }

    def table(self, percent: bool = True) -> pd.DataFrame:
        """One row per setting (clean, each attack, worst case); columns acc, acc_pooled, miou."""
        import pandas as pd

        summary = self.summary()
        rows = {"clean": summary["clean"], **summary["per_attack"], "worst case": summary["worst_case"]}
        frame = pd.DataFrame.from_dict(rows, orient="index")[["acc", "acc_pooled", "miou"]]
        return frame * 100 if percent else frame

    def class_iou_table(self, class_names: Sequence[str] | None = None, percent: bool = True) -> pd.DataFrame:
        """Pooled IoU per class: clean, each attack, and the greedy worst-case selection (NaN: class absent)."""
        import pandas as pd

        columns = {"clean": self.sea.clean_stats, **self.sea.attack_stats, "worst case": self.worst_stats("miou")}
        names = class_names if class_names is not None else self.run.get("data", {}).get("class_names")
        num_classes = self.sea.clean_stats.num_classes
        if names is None:
            names = [str(c) for c in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"class_names has {len(names)} entries for {num_classes} classes")
        frame = pd.DataFrame({k: s.class_iou().numpy() for k, s in columns.items()}, index=list(names))
        frame.index.name = "class"
        return frame * 100 if percent else frame


# ---------------------------------------------------------------------------------------------------------
# Fingerprints and the run description


def _hash_tensors(items: Sequence[tuple[str, torch.Tensor]]) -> str:
    digest = hashlib.sha256()
    for name, tensor in items:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers (names, dtypes, shapes, values)."""
    return _hash_tensors(sorted(model.state_dict().items()))


def _batch_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    return _hash_tensors([("x", x), ("y", y)])


def _callable_id(fn: Callable[..., Any]) -> str:
    """A stable name for a callable: module.qualname, with a partial's bound arguments."""
    if isinstance(fn, functools.partial):
        bound = [repr(a) for a in fn.args] + [f"{k}={v!r}" for k, v in sorted(fn.keywords.items())]
        return f"partial({_callable_id(fn.func)}, {', '.join(bound)})"
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{getattr(fn, '__module__', None) or type(fn).__module__}.{name}"


def _data_identity(data_params: DataParams) -> dict[str, Any]:
    """The data section without its local root: moving the data folder does not change the run."""
    return {k: v for k, v in dataclasses.asdict(data_params).items() if k != "root"}


def _data_id(dataset: Dataset, data_params: DataParams | None, x0: torch.Tensor, y0: torch.Tensor) -> dict[str, Any]:
    """What identifies the evaluated data: type, size, profile section (without root), first batch's content."""
    return {
        "type": f"{type(dataset).__module__}.{type(dataset).__qualname__}",
        "size": len(dataset),
        "params": None if data_params is None else _data_identity(data_params),
        "first_batch_sha256": _batch_fingerprint(x0, y0),
        "class_names": list(getattr(dataset, "class_names", [])) or None,
    }


def _json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted((set(old) | set(new)) - _VOLATILE_KEYS)
    return [
        f"{k}: {old.get(k, '<absent>')!r} in the folder, {new.get(k, '<absent>')!r} requested"
        for k in keys
        if old.get(k) != new.get(k)
    ]


def _prepare_run_dir(out_dir: Path, description: dict[str, Any]) -> None:
    """Write ``run.json``, or check that the existing one describes the same run."""
    path = out_dir / _RUN_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise RunMismatchError(f"{path} is not valid JSON ({err}); delete the folder or choose another") from err
        differences = _diff(old, description)
        if differences:
            raise RunMismatchError(
                f"{out_dir} holds a run with other settings; results of different settings are never mixed. "
                "Use another output folder or delete this one. Differences:\n  " + "\n  ".join(differences)
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.glob("batch_*.pt")):
        raise RunMismatchError(f"{out_dir} holds batch files but no {_RUN_FILE}: their settings are unknown")
    created = datetime.now(UTC).isoformat(timespec="seconds")
    atomic_json_dump({**description, "created": created}, path)


def _read_run(out_dir: Path) -> dict[str, Any]:
    path = out_dir / _RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{out_dir} is not an evaluation folder (no {_RUN_FILE})")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------------------
# Batches


def _batch_path(out_dir: Path, index: int) -> Path:
    return out_dir / f"batch_{index:05d}.pt"


def _batch_range(index: int, batch_size: int, n_images: int) -> tuple[int, int]:
    return index * batch_size, min((index + 1) * batch_size, n_images)


def _load_images(dataset: Dataset, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack items ``start..stop-1`` of a data set whose items are ``(image, label, ...)``."""
    items = [dataset[i] for i in range(start, stop)]
    try:
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = torch.stack([torch.as_tensor(item[1]) for item in items])
    except RuntimeError as err:
        raise ValueError(
            f"images {start}..{stop - 1} cannot be stacked into one batch ({err}); the evaluation protocol needs "
            "equal-size images (e.g. centre crops)"
        ) from err
    if y.is_floating_point() or y.is_complex():
        raise ValueError(f"labels must be integer class maps, got dtype {y.dtype}")
    return x.float(), y.long()


def _read_batch(path: Path, start: int, stop: int, num_classes: int) -> dict[str, Any]:
    try:
        record = torch.load(path, weights_only=True)
        clean = SegStats.from_dict(record["clean"])
        attacks = {name: SegStats.from_dict(d) for name, d in record["attacks"].items()}
    except Exception as err:
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise RuntimeError(f"cannot read {path} ({reason}); delete it and rerun to recompute that batch") from err
    expected = (stop - start, num_classes)
    shapes = {tuple(s.intersection.shape) for s in (clean, *attacks.values())}
    if (record.get("start"), record.get("stop")) != (start, stop) or shapes != {expected} or not attacks:
        raise RuntimeError(
            f"{path} does not hold images {start}..{stop - 1} with {num_classes} classes; delete it and rerun"
        )
    return {"clean": clean, "attacks": attacks}


def _attack_stats(
    raw: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_classes: int, ignore_index: int
) -> dict[str, SegStats]:
    """Validate an attack function's output and turn adversarial images into statistics."""
    if not isinstance(raw, Mapping) or not raw:
        raise TypeError(f"an attack function must return a non-empty mapping name -> SegStats | x_adv, got {raw!r}")
    out = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not name or name in _RESERVED_NAMES:
            raise ValueError(f"attack names must be non-empty strings other than {sorted(_RESERVED_NAMES)}: {name!r}")
        if isinstance(value, torch.Tensor):
            if value.shape != x.shape:
                raise ValueError(
                    f"attack {name!r} returned images of shape {tuple(value.shape)}, expected {tuple(x.shape)}"
                )
            x_adv = value.to(x.device)
            excess = float((x_adv - x).abs().max())
            if excess > eps + 1e-6 or x_adv.min() < 0 or x_adv.max() > 1 or not torch.isfinite(x_adv).all():
                raise ValueError(
                    f"attack {name!r} left the threat model: max |x_adv - x| = {excess:.6g} (eps = {eps:.6g}), "
                    f"range [{float(x_adv.min()):.4g}, {float(x_adv.max()):.4g}]"
                )
            with torch.no_grad():
                value = compute_stats(model(x_adv).argmax(1), y, num_classes, ignore_index)
        if not isinstance(value, SegStats):
            raise TypeError(f"attack {name!r} returned {type(value).__name__}; expected SegStats or a tensor")
        if value.intersection.shape != (x.shape[0], num_classes):
            raise ValueError(
                f"attack {name!r} returned statistics of shape {tuple(value.intersection.shape)}, "
                f"expected {(x.shape[0], num_classes)}"
            )
        out[name] = value
    return out


# ---------------------------------------------------------------------------------------------------------
# Distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def from_rank0(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on rank 0 and give its value to every rank; an exception there is raised on every rank."""
        if not self.active:
            return fn()
        box: list[Any] = [None, None]
        if self.rank == 0:
            try:
                box[0] = fn()
            except Exception as err:
                box[1] = f"{type(err).__name__}: {err}"
                dist.broadcast_object_list(box, src=0)
                raise
        dist.broadcast_object_list(box, src=0)
        if box[1] is not None:
            raise RuntimeError(f"rank 0 failed: {box[1]}")
        return box[0]


@contextlib.contextmanager
def _distributed(device: torch.device) -> Iterator[_Dist]:
    """The process group of a torchrun launch (initialised here if needed), or a single process."""
    if dist.is_available() and dist.is_initialized():
        yield _Dist(dist.get_rank(), dist.get_world_size())
        return
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield _Dist()
        return
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(hours=12))
    try:
        yield _Dist(dist.get_rank(), dist.get_world_size())
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------
# MCE-Bal class weights


def _counts_cache_path(cache_dir: Path, data_params: DataParams, num_classes: int, ignore_index: int) -> Path:
    key = json.dumps([dataclasses.asdict(data_params), num_classes, ignore_index], sort_keys=True)
    return cache_dir / f"class_counts_train_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def resolve_class_weights(
    option: str | torch.Tensor | Sequence[float] | None,
    num_classes: int,
    *,
    data_params: DataParams | None = None,
    ignore_index: int = 255,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> torch.Tensor | None:
    """The (K,) MCE-Bal class weights an option names.

    Args:
        option: ``"train_split"`` (paper: normalised inverse pixel counts of the training split of
            ``data_params``, counted with :func:`robseg_lib.data.class_counts.class_pixel_counts` and cached),
            ``"released"`` (the authors' VOC/ADE20K lists), ``"uniform"`` (all equal), explicit weights, or
            ``None`` (returned as is; the caller decides).
        num_classes: K.
        data_params: the profile's data section (needed by ``"train_split"`` and ``"released"``).
        ignore_index: label value that is not counted.
        cache_dir: folder of the cached training-split counts (default: none, count every time).
        progress: progress bar while counting.

    Returns:
        float64 weights, or ``None`` for ``option=None``.
    """
    if option is None:
        return None
    if isinstance(option, str):
        if option == "uniform":
            return torch.full((num_classes,), 1.0 / num_classes, dtype=torch.float64)
        if option not in _CLASS_WEIGHT_OPTIONS:
            raise ValueError(f"unknown class_weights option {option!r}; valid: {', '.join(_CLASS_WEIGHT_OPTIONS)}")
        if data_params is None:
            raise ValueError(f"class_weights={option!r} needs data_params (the profile's data section)")
        if option == "released":
            if data_params.name not in ("voc", "ade20k"):
                raise ValueError(f"released class weights exist for 'voc' and 'ade20k' only, not {data_params.name!r}")
            weights = released_class_weights(data_params.name)
        else:
            weights = class_weights_from_counts(
                _train_counts(data_params, num_classes, ignore_index, cache_dir, progress)
            )
    else:
        weights = torch.as_tensor(option, dtype=torch.float64).detach().cpu()
    if weights.shape != (num_classes,) or not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(
            f"class weights must be {num_classes} finite non-negative values, got shape {tuple(weights.shape)}"
        )
    return weights


def _train_counts(
    data_params: DataParams, num_classes: int, ignore_index: int, cache_dir: str | Path | None, progress: bool
) -> torch.Tensor:
    path = None if cache_dir is None else _counts_cache_path(Path(cache_dir), data_params, num_classes, ignore_index)
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    train = dataset_from_params(data_params, "train", augment=False)
    counts = class_pixel_counts(train, num_classes, ignore_index, progress=progress)
    if path is not None:
        atomic_torch_save(counts, path)
    return counts


def _eval_counts_weights(
    dataset: Dataset, n_images: int, num_classes: int, ignore_index: int, data_key: str, cache_dir: Path
) -> torch.Tensor:
    """Weights from the evaluated images' own labels (what :func:`robseg_lib.attacks.sea` does without weights)."""
    key = json.dumps([data_key, n_images, num_classes, ignore_index])
    path = cache_dir / f"class_counts_eval_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        counts = torch.load(path, weights_only=True)
    else:
        counts = class_pixel_counts(dataset, num_classes, ignore_index, max_items=n_images)
        atomic_torch_save(counts, path)
    return class_weights_from_counts(counts)


# ---------------------------------------------------------------------------------------------------------
# Evaluation


def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    out_dir: str | Path,
    eps: float,
    num_classes: int,
    attack: str | AttackFn = "sea",
    n_iter: int = 300,
    batch_size: int = 16,
    n_images: int | None = None,
    ignore_index: int = 255,
    class_weights: str | torch.Tensor | Sequence[float] | None = None,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    run_checks: bool = True,
    *,
    losses: Sequence[str] = SEA_LOSSES,
    data_params: DataParams | None = None,
    model_id: str | None = None,
    strict_checks: bool = False,
    cache_dir: str | Path | None = None,
) -> EvaluationResult:
    """Evaluate ``model`` on the first ``n_images`` of ``dataset`` under an attack, resumably and sharded.

    The model runs in eval mode with frozen parameters (restored afterwards). Sanity checks
    (:func:`robseg_lib.checks.run_checks`) run first on a few images of the first batch while any batch is
    missing. Each batch is then attacked and its statistics saved atomically; finished batches of an earlier,
    interrupted run with the same settings are skipped. Under torchrun, ranks share the batches round-robin
    and rank 0 aggregates after a barrier; every rank returns the same result.

    Args:
        model: segmentation model, ``model(x)`` -> logits (N, K, H, W); moved to ``device``.
        dataset: items ``(image, label, ...)``: float images (C, H, W) in [0, 1], integer labels (H, W).
        out_dir: folder of the run (created; see the module docstring for its layout).
        eps: L-inf radius in [0, 1] units (8/255).
        num_classes: K.
        attack: ``"sea"`` (:func:`robseg_lib.attacks.sea_batch`) or a per-batch attack function
            (:data:`AttackFn`).
        n_iter: iterations per attack.
        batch_size: images per batch (part of the run's identity: random starts are drawn per batch).
        n_images: evaluate the first ``n_images`` images (``None``: all).
        ignore_index: label of unlabelled pixels.
        class_weights: MCE-Bal weights: ``"train_split"``, ``"released"`` (both need ``data_params``),
            ``"uniform"``, explicit (K,) weights, or ``None``: inverse pixel frequencies of the evaluated
            images' labels (as :func:`robseg_lib.attacks.sea` does).
        seed: seed of the random starts (per batch and attack) and of the greedy mIoU search.
        device: torch device; under torchrun ``"cuda"`` means each rank's local GPU.
        progress: tqdm bar over batches with the running worst-case accuracy (rank 0 only).
        run_checks: run the sanity checks before attacking.
        losses: the attacks' losses (passed to the attack function).
        data_params: the profile's data section (class-weight options; recorded in ``run.json``).
        model_id: a readable model name for ``run.json`` (the parameter fingerprint is always recorded).
        strict_checks: turn check flags into an :class:`robseg_lib.checks.EvalCheckError`.
        cache_dir: folder of cached class pixel counts (default: ``out_dir``).

    Returns:
        The aggregated result (also written to ``out_dir/summary.json``).

    Raises:
        RunMismatchError: ``out_dir`` holds a run with other settings.
    """
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite non-negative float in [0, 1] units (8/255), got {eps!r}")
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("n_iter", n_iter)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("n_images", n_images, allow_none=True)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    losses = tuple(losses)
    for name in losses:
        check_loss_name(name)
    if not losses or len(set(losses)) != len(losses):
        raise ValueError(f"losses must be distinct and non-empty, got {list(losses)}")
    if attack == "sea":
        attack_fn: AttackFn = sea_batch
        attack_name = "sea"
    elif callable(attack):
        attack_fn, attack_name = attack, _callable_id(attack)
    else:
        raise ValueError(f"attack must be 'sea' or a callable, got {attack!r}")
    total = len(dataset)
    n = total if n_images is None else n_images
    if n > total or n < 1:
        raise ValueError(f"n_images={n_images} but the data set has {total} images")
    dev = torch.device(check_device(device))
    out_dir = Path(out_dir)
    cache = out_dir if cache_dir is None else Path(cache_dir)

    with _distributed(dev) as group:
        if dev.type == "cuda" and dev.index is None and group.active:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(dev)
        model.to(dev)
        with attack_mode(model):
            n_batches = math.ceil(n / batch_size)
            x0, y0 = _load_images(dataset, *_batch_range(0, batch_size, n))
            data_id = _data_id(dataset, data_params, x0, y0)
            if class_weights is None and "mce-bal" in losses:
                data_key = json.dumps(data_id, sort_keys=True)
                weights = group.from_rank0(
                    lambda: _eval_counts_weights(dataset, n, num_classes, ignore_index, data_key, cache)
                )
                weights_option = "evaluated_images"
            else:
                weights = group.from_rank0(
                    lambda: resolve_class_weights(
                        class_weights, num_classes, data_params=data_params, ignore_index=ignore_index, cache_dir=cache
                    )
                )
                weights_option = class_weights if isinstance(class_weights, str | None) else "explicit"
            attack_kwargs = {
                "eps": float(eps),
                "num_classes": num_classes,
                "n_iter": n_iter,
                "losses": losses,
                "ignore_index": ignore_index,
                "class_weights": weights,
                "seed": seed,
            }
            description = _json_roundtrip(
                {
                    "format": _FORMAT,
                    "library_version": __version__,
                    "attack": attack_name,
                    **attack_kwargs,
                    "eps_255": round(float(eps) * 255, 6),
                    "batch_size": batch_size,
                    "n_images": n,
                    "class_weights": weights_option,
                    "class_weights_values": None if weights is None else weights.tolist(),
                    "device_type": dev.type,
                    "model": {"name": model_id or type(model).__qualname__, "sha256": _model_fingerprint(model)},
                    "data": data_id,
                }
            )
            group.from_rank0(lambda: _prepare_run_dir(out_dir, description))
            pending = [i for i in range(n_batches) if not _batch_path(out_dir, i).exists()]
            if run_checks and pending:
                with warnings.catch_warnings():
                    if group.rank != 0:
                        warnings.simplefilter("ignore", _checks.EvalCheckWarning)
                    k = min(_CHECK_IMAGES, x0.shape[0])
                    _checks.run_checks(
                        model, x0[:k].to(dev), y0[:k].to(dev), eps, num_classes, ignore_index, strict=strict_checks
                    )
            own = list(range(group.rank, n_batches, group.world))
            bar = progress and group.rank == 0
            _run_batches(model, dataset, out_dir, own, attack_fn, attack_kwargs, batch_size, n, dev, bar)
        group.barrier()
        return group.from_rank0(lambda: aggregate(out_dir))


def _run_batches(
    model: nn.Module,
    dataset: Dataset,
    out_dir: Path,
    indices: Sequence[int],
    attack_fn: AttackFn,
    attack_kwargs: dict[str, Any],
    batch_size: int,
    n_images: int,
    device: torch.device,
    progress: bool,
) -> None:
    num_classes, ignore_index = attack_kwargs["num_classes"], attack_kwargs["ignore_index"]
    worst_sum, worst_count = 0.0, 0
    bar = progress_bar(
        total=len(indices),
        enabled=progress,
        desc=f"SEA eps={attack_kwargs['eps'] * 255:g}/255",
        unit="batch",
        file=sys.stderr,
    )

    def update(attacks: Mapping[str, SegStats]) -> None:
        nonlocal worst_sum, worst_count
        worst = torch.stack([s.image_accuracy() for s in attacks.values()]).min(0).values
        worst_sum += float(worst.sum())
        worst_count += worst.numel()
        bar.set_postfix(worst_acc=f"{100 * worst_sum / worst_count:.1f}%", refresh=False)
        bar.update()

    with bar:
        for index in indices:
            start, stop = _batch_range(index, batch_size, n_images)
            path = _batch_path(out_dir, index)
            if path.exists():
                update(_read_batch(path, start, stop, num_classes)["attacks"])
                continue
            tic = time.perf_counter()
            x, y = _load_images(dataset, start, stop)
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                clean = compute_stats(model(x).argmax(1), y, num_classes, ignore_index)
            raw = attack_fn(model, x, y, batch_index=index, **attack_kwargs)
            attacks = _attack_stats(raw, model, x, y, attack_kwargs["eps"], num_classes, ignore_index)
            record = {
                "format": _FORMAT,
                "batch_index": index,
                "start": start,
                "stop": stop,
                "data_sha256": _batch_fingerprint(x, y),
                "seconds": time.perf_counter() - tic,
                "clean": clean.to_dict(),
                "attacks": {name: s.to_dict() for name, s in attacks.items()},
            }
            atomic_torch_save(record, path)
            update(attacks)


def _collect(out_dir: Path) -> tuple[dict[str, Any], SegStats, dict[str, SegStats]]:
    run = _read_run(out_dir)
    n, b, k = run["n_images"], run["batch_size"], run["num_classes"]
    n_batches = math.ceil(n / b)
    missing = [i for i in range(n_batches) if not _batch_path(out_dir, i).exists()]
    if missing:
        raise RuntimeError(
            f"the run in {out_dir} is unfinished: {len(missing)} of {n_batches} batches missing (first: {missing[0]}); "
            "rerun the same evaluation to resume it"
        )
    clean_parts, attack_parts = [], {}
    for i in range(n_batches):
        record = _read_batch(_batch_path(out_dir, i), *_batch_range(i, b, n), k)
        if i == 0:
            attack_parts = {name: [] for name in record["attacks"]}
        if list(record["attacks"]) != list(attack_parts):
            raise RuntimeError(f"batch {i} holds attacks {list(record['attacks'])}, batch 0 holds {list(attack_parts)}")
        clean_parts.append(record["clean"])
        for name, stats in record["attacks"].items():
            attack_parts[name].append(stats)
    return run, SegStats.cat(clean_parts), {name: SegStats.cat(p) for name, p in attack_parts.items()}


def load_results(out_dir: str | Path) -> EvaluationResult:
    """Re-read a finished run: concatenate its batches in batch order and recompute SEA's numbers.

    Raises:
        FileNotFoundError: not an evaluation folder.
        RuntimeError: batches are missing (the run is unfinished) or unreadable.
    """
    out_dir = Path(out_dir)
    run, clean, attacks = _collect(out_dir)
    return EvaluationResult(out_dir=out_dir, run=run, sea=SEAResult.from_stats(clean, attacks, seed=run["seed"]))


def aggregate(out_dir: str | Path) -> EvaluationResult:
    """:func:`load_results`, then write ``summary.json`` atomically."""
    result = load_results(out_dir)
    atomic_json_dump(result.summary(), result.out_dir / _SUMMARY_FILE)
    return result


# ---------------------------------------------------------------------------------------------------------
# Profiles and the command line


def results_root() -> Path:
    """The root of every stored result: ``$ROBSEG_RESULTS``, else ``results/`` of the checkout."""
    return Path(os.environ.get("ROBSEG_RESULTS", params_root().parent / "results"))


def default_out_dir(
    profile: str,
    model_name: str,
    eps: float,
    n_iter: int,
    n_images: int,
    batch_size: int,
    seed: int,
    class_weights: str,
) -> Path:
    """``results/<profile>/sea/<model>/eps<e>_it<n>_img<n>_bs<b>_seed<s>_<weights>`` (``$ROBSEG_RESULTS`` overrides
    ``results/``)."""
    name = f"eps{eps:g}_it{n_iter}_img{n_images}_bs{batch_size}_seed{seed}_{class_weights}"
    return results_root() / profile / "sea" / model_name / name


def profile_run_fields(params: ParamSet, model_name: str, data: DataParams | None = None) -> dict[str, Any]:
    """The arguments of :func:`evaluate` that a profile's model fixes: classes, ignore index, data identity, the
    model id and the class-count cache. Every caller takes them from here, so runs are named (and resumed) alike.

    Args:
        params: The profile.
        model_name: Model of the profile's zoo.
        data: Data parameters if not the profile's own (e.g. another ``root``).
    """
    data = params.data if data is None else data
    return {
        "num_classes": data.num_classes,
        "ignore_index": data.ignore_index,
        "data_params": data,
        "model_id": f"{params.profile}/{model_name}",
        "cache_dir": cache_root() / params.profile / "class_counts",
    }


def evaluate_profile(
    params: ParamSet,
    model: nn.Module,
    model_name: str,
    *,
    eps: float | None = None,
    n_iter: int | None = None,
    n_images: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    class_weights: str | None = None,
    data_root: str | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    strict_checks: bool = False,
) -> EvaluationResult:
    """SEA evaluation of a profile's model with the profile's defaults (what the notebooks and the CLI call).

    Args:
        params: the loaded profile.
        model: the model (from :func:`robseg_lib.zoo.get_model` or a checkpoint).
        model_name: its name in the profile (recorded, and part of the default output folder).
        eps: radius in /255 (default: ``params.eval.eps``); must lie in (0, 64].
        n_iter, n_images, batch_size, seed, device, class_weights: override ``params.eval``.
        data_root: override ``params.data.root``.
        out_dir: output folder (default: :func:`default_out_dir`).
        progress: progress bar.
        strict_checks: sanity-check flags become errors.
    """
    ev = params.eval
    eps = float(ev.eps if eps is None else eps)
    if not 0 < eps <= 64:
        raise ParamError(f"eps must lie in (0, 64] (a count of /255), got {eps:g}")
    data = params.data if data_root is None else dataclasses.replace(params.data, root=data_root)
    dataset = dataset_from_params(data, "val")
    n_images = n_images if n_images is not None else ev.n_images
    n = len(dataset) if n_images is None else n_images
    batch_size = batch_size or ev.batch_size
    seed = ev.seed if seed is None else seed
    n_iter = n_iter or ev.n_iter
    class_weights = class_weights or ev.class_weights
    if out_dir is None:
        out_dir = default_out_dir(params.profile, model_name, eps, n_iter, n, batch_size, seed, class_weights)
    return evaluate(
        model,
        dataset,
        out_dir,
        eps / 255,
        n_iter=n_iter,
        batch_size=batch_size,
        n_images=n,
        class_weights=class_weights,
        seed=seed,
        device=device or ev.device,
        progress=progress,
        losses=ev.losses,
        strict_checks=strict_checks,
        **profile_run_fields(params, model_name, data),
    )


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m robseg_lib sea``."""
    parser.add_argument("--params", required=True, help="profile name (tiny, smoke, voc, ade20k) or a YAML file")
    parser.add_argument("--eps", type=float, default=None, help="L-inf radius in /255, in (0, 64] (default: profile)")
    parser.add_argument("--model", default=None, help="model name of the profile's models.yaml")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="load this checkpoint into the model's architecture instead of taking the model from the zoo",
    )
    parser.add_argument("--data-root", default=None, help="local folder of the data set (overrides data.root)")
    parser.add_argument("--n-iter", type=int, default=None, help="iterations per attack (default: profile)")
    parser.add_argument("--n-images", type=int, default=None, help="evaluate the first N images (default: profile)")
    parser.add_argument("--batch-size", type=int, default=None, help="images per batch (default: profile)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: profile)")
    parser.add_argument("--out", default=None, help="output folder (default: results/<profile>/sea/<model>/...)")
    parser.add_argument("--seed", type=int, default=None, help="seed of random starts and greedy search")
    parser.add_argument(
        "--class-weights", choices=_CLASS_WEIGHT_OPTIONS, default=None, help="MCE-Bal class weights (default: profile)"
    )
    parser.add_argument("--strict-checks", action="store_true", help="fail instead of warning on sanity-check flags")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _model_from_args(params: ParamSet, args: argparse.Namespace, device: str) -> tuple[str, nn.Module]:
    if args.model is not None:
        name = args.model
    else:
        try:
            name = params.default_model()
        except ParamError as err:
            raise ParamError(f"{err}; pass --model NAME") from err
    spec = params.model(name)
    if args.checkpoint is not None:
        from robseg_lib import models

        if not Path(args.checkpoint).is_file():
            raise ParamError(f"checkpoint {args.checkpoint} does not exist")
        model = models.create_model(spec.arch, num_classes=params.data.num_classes)
        models.load_checkpoint(model, args.checkpoint)
        return name, model
    from robseg_lib import zoo

    return name, zoo.get_model(params, name, device=device, progress=not args.no_progress)


def run_from_args(args: argparse.Namespace) -> int:
    """Run ``python -m robseg_lib sea``; prints the results table (rank 0) and returns the exit status."""
    try:
        params = load_params(args.params)
        if args.eps is not None and not 0 < args.eps <= 64:
            raise ParamError(f"--eps must lie in (0, 64] (a count of /255, e.g. 8 for 8/255), got {args.eps:g}")
        device = check_device(args.device or params.eval.device)
        for flag in ("n_iter", "n_images", "batch_size"):
            value = getattr(args, flag)
            if value is not None and value < 1:
                raise ParamError(f"--{flag.replace('_', '-')} must be positive, got {value}")
        if args.seed is not None and args.seed < 0:
            raise ParamError(f"--seed must be non-negative, got {args.seed}")
        name, model = _model_from_args(params, args, device)
        result = evaluate_profile(
            params,
            model,
            name,
            eps=args.eps,
            n_iter=args.n_iter,
            n_images=args.n_images,
            batch_size=args.batch_size,
            seed=args.seed,
            device=device,
            class_weights=args.class_weights,
            data_root=args.data_root,
            out_dir=args.out,
            progress=not args.no_progress,
            strict_checks=args.strict_checks,
        )
    except _checks.EvalCheckError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ParamError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        run = result.run
        print(
            f"SEA on {run['model']['name']}: eps {run['eps_255']:g}/255, {run['n_iter']} iterations, "
            f"{result.n_images} images, seed {run['seed']} -> {result.out_dir}"
        )
        print(result.table().to_string(float_format=lambda v: f"{v:.1f}"))
    return 0

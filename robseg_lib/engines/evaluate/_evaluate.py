"""The evaluation loop: a model over a data set under a per-batch attack, resumable and sharded."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from robseg_lib import __version__
from robseg_lib import checks as _checks
from robseg_lib._io import atomic_torch_save
from robseg_lib._progress import progress_bar
from robseg_lib.attacks import SEA_LOSSES, attack_mode, sea_batch
from robseg_lib.attacks.losses import check_loss_name
from robseg_lib.engines.evaluate._class_weights import _eval_counts_weights, resolve_class_weights
from robseg_lib.engines.evaluate._distributed import _distributed
from robseg_lib.engines.evaluate._result import EvaluationResult, aggregate
from robseg_lib.engines.evaluate._run_state import (
    _FORMAT,
    _batch_fingerprint,
    _batch_path,
    _batch_range,
    _callable_id,
    _data_id,
    _json_roundtrip,
    _load_images,
    _model_fingerprint,
    _prepare_run_dir,
    _read_batch,
)
from robseg_lib.metrics import SegStats, compute_stats
from robseg_lib.params import DataParams, check_device

if TYPE_CHECKING:
    from robseg_lib.data import IndexedDataset

AttackFn = Callable[..., Mapping[str, "SegStats | torch.Tensor"]]
"""A per-batch attack: ``fn(model, x, y, *, eps, num_classes, n_iter, losses, ignore_index, class_weights, seed,
batch_index) -> {name: SegStats | x_adv}``. Each value is either the per-image statistics of that attack's
final adversarial images or the adversarial images themselves (N, C, H, W), which the evaluator checks
against the threat model and scores. ``run.json`` names the attack by its ``attack_id`` attribute where it has one
(else by its module path). Randomness must derive from ``(seed, batch_index)`` only (as
:func:`robseg_lib.attacks.sea_batch` does), never from the global RNG: then results do not depend on
sharding or resumption."""
_CHECK_IMAGES = 8
_RESERVED_NAMES = frozenset({"clean", "worst case"})


def _check_positive_int(name: str, value: Any, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def evaluate(
    model: nn.Module,
    dataset: IndexedDataset,
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
            weights: torch.Tensor | None
            weights_option: str | None
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
    dataset: IndexedDataset,
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

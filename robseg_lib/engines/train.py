"""Clean training, AT and PIR-AT of segmentation models (algorithms §8).

One entry point, :func:`fit`, trains a model on one process or under ``torchrun`` (DDP; gloo on CPU, NCCL on
GPUs) with the paper's recipe:

* training attack (§8.2): PGD on the cross-entropy, ε = ``attack_eps``/255, step 0.01, **zero** start,
  ``delta += step * sign(grad)``, clip ``x + delta`` to [0, 1], clip ``delta`` to [-ε, ε], last iterate; the model
  is in eval mode while the attack runs and back in train mode for the update; only adversarial inputs are used;
* loss (§8.3): CE(main) + ``aux_weight`` · CE(aux), ignore pixels excluded, averaged over the labelled pixels of
  the **global** batch (so that a DDP run computes the same gradient as one process);
* AdamW or SGD without weight decay on parameters with ``ndim <= 1`` or "norm" in their name (§8.4);
* learning rate set every iteration: linear warm-up from ``warmup_ratio * lr``, then poly decay (:func:`lr_at`).

A run is resumable: after every epoch the model, optimiser, iteration, epoch and the RNG states of every rank are
written atomically to ``train_state.pt`` beside the log, so a killed run restarted with the same arguments ends
with the same weights as an uninterrupted one. The data order is a pure function of (seed, epoch) (a
``DistributedSampler``, also with one process) and augmentation draws from (seed, epoch, index).

The training log ``train_log.csv`` gets one row per logged epoch (appended and flushed at once): epoch, iteration,
wall time, cumulative cost in forward+backward passes, train loss, clean validation mIoU and accuracy, a cheap
robust validation mIoU (short APGD) and the learning rate.

Known limits of DDP equivalence: BatchNorm statistics and dropout / drop-path masks are drawn per rank (the
per-GPU semantics of the paper's runs), so only models without them give the single-process result exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from robseg_lib import attacks, models
from robseg_lib._io import atomic_torch_save
from robseg_lib._progress import progress_bar
from robseg_lib.data import IndexedDataset, dataset_from_params
from robseg_lib.metrics import SegStats, compute_stats
from robseg_lib.params import ParamError, ParamSet, TrainParams, check_device

__all__ = [
    "LOG_COLUMNS",
    "ShiftAugment",
    "TrainResult",
    "build_model",
    "evaluate_segmentation",
    "fit",
    "lr_at",
    "param_groups",
    "pgd_training_attack",
    "segmentation_loss",
    "train_model",
]

STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.csv"
MODEL_FILE = "model.safetensors"
LOG_COLUMNS = (
    "epoch",
    "iteration",
    "wall_time_s",
    "cost_passes",
    "train_loss",
    "val_miou",
    "val_acc",
    "val_robust_miou",
    "lr",
)


@dataclass(frozen=True)
class TrainResult:
    """What :func:`fit` produced.

    Attributes:
        model: the trained model (unwrapped from DDP), in eval mode.
        out_dir: folder holding the log and the final weights.
        epochs: epochs trained in total (including those of earlier, resumed runs).
        iterations: optimiser steps in total.
        wall_time_s: training wall time summed over all (resumed) runs, validation included.
        resumed_from_epoch: epoch of the checkpoint this run started from (0 for a fresh run).
        final: the last log row.
    """

    model: nn.Module
    out_dir: Path
    epochs: int
    iterations: int
    wall_time_s: float
    resumed_from_epoch: int
    final: dict[str, float]

    @property
    def log_path(self) -> Path:
        return self.out_dir / LOG_FILE


# --------------------------------------------------------------------------------------------- recipe pieces


def lr_at(iteration: int, base_lr: float, total: int, warmup: int, warmup_ratio: float, power: float) -> float:
    """Learning rate of the warm-up + poly schedule at 0-based ``iteration`` (algorithms §8.4).

    ``base * (r + (1 - r) * t / W)`` for ``t < W``, then ``base * (1 - (t - W) / (T - W)) ** power``.
    """
    if total < 1 or not 0 <= warmup <= total:
        raise ValueError(f"need total >= 1 and 0 <= warmup <= total, got total={total}, warmup={warmup}")
    if iteration < warmup:
        return base_lr * (warmup_ratio + (1.0 - warmup_ratio) * iteration / warmup)
    return base_lr * max(0.0, 1.0 - (iteration - warmup) / max(total - warmup, 1)) ** power


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimiser groups: decayed weights, and norm / bias / layer-scale parameters without weight decay.

    A parameter gets no weight decay when ``ndim <= 1`` (biases, norm weights, ConvNeXt's layer-scale γ) or
    when its name contains "norm" (algorithms §8.4). Frozen parameters are left out.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or "norm" in name else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _optimizer(model: nn.Module, tp: TrainParams) -> torch.optim.Optimizer:
    groups = param_groups(model, tp.weight_decay)
    if tp.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=tp.lr, betas=tp.betas, eps=1e-8)
    return torch.optim.SGD(groups, lr=tp.lr, momentum=tp.momentum)


def pgd_training_attack(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    ignore_index: int = 255,
    autocast: bool = False,
) -> torch.Tensor:
    """The paper's training attack: ``steps`` PGD steps on the CE loss from δ = 0, returning the last iterate.

    The model is put in eval mode while the attack runs (BatchNorm running statistics, no drop-path or dropout)
    and restored to its previous mode afterwards. Only the input gradient is computed.

    Args:
        model: segmentation model (not a DDP wrapper: no gradient synchronisation is wanted here).
        x: clean images (N, 3, H, W) in [0, 1].
        y: labels (N, H, W).
        eps: L-inf radius as a float (4/255 in the paper).
        step_size: step in [0, 1] units (0.01 in the paper).
        steps: PGD steps (0 returns ``x``).
        ignore_index: label of unlabelled pixels.
        autocast: run the forward passes under CUDA bf16 autocast.
    """
    if steps == 0:
        return x
    was_training = model.training
    model.eval()
    delta = torch.zeros_like(x)
    try:
        for _ in range(steps):
            delta.requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
                logits = model(x + delta)
            loss = F.cross_entropy(logits.float(), y, ignore_index=ignore_index)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = delta.detach() + step_size * grad.sign()
            delta = (x + delta).clamp(0.0, 1.0) - x
            delta = delta.clamp(-eps, eps)
    finally:
        model.train(was_training)
    return (x + delta).detach()


def segmentation_loss(
    main: torch.Tensor,
    aux: torch.Tensor | None,
    y: torch.Tensor,
    aux_weight: float,
    ignore_index: int = 255,
    labelled: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """CE(main) + ``aux_weight`` · CE(aux), summed over labelled pixels and divided by ``labelled``.

    ``labelled`` defaults to the number of labelled pixels of ``y`` (the usual mean); under DDP the training
    loop passes the global count divided by the world size, so that DDP's gradient averaging yields the
    gradient of the mean over the global batch.
    """
    if labelled is None:
        labelled = (y != ignore_index).sum().clamp(min=1)
    loss = F.cross_entropy(main.float(), y, ignore_index=ignore_index, reduction="sum")
    if aux is not None and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(aux.float(), y, ignore_index=ignore_index, reduction="sum")
    return loss / labelled


class ShiftAugment(Dataset):
    """Random translation (edge-replicated, up to ``max_shift`` pixels), colour-channel permutation, random crop.

    The training augmentation of DigitScenes: no flips (mirrored digits are other shapes) and no rescaling
    (digit sizes already vary). With ``crop``, each item is a random ``crop`` x ``crop`` window of the shifted
    image, as the paper trains on random crops: a 32-pixel window of a 48-pixel scene costs 0.44 times the
    compute, and the tiny PIR-AT model learned as much from 6 epochs of such crops as from 4 of whole images.
    Draws come from ``numpy.random.default_rng([seed, epoch, index])``, so an item depends only on the seed, the
    epoch (:meth:`set_epoch`) and its index, for any number of ranks or workers.
    """

    def __init__(self, dataset: IndexedDataset, seed: int, max_shift: int = 6, crop: int | None = None) -> None:
        self.dataset, self.seed, self.max_shift, self.crop, self.epoch = dataset, seed, max_shift, crop, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.dataset[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        s = self.max_shift
        dy, dx = (int(v) for v in rng.integers(-s, s + 1, size=2))
        height, width = image.shape[-2:]
        top, left = s + dy, s + dx
        if self.crop is not None:
            if not 0 < self.crop <= min(height, width):
                raise ValueError(f"crop {self.crop} does not fit images of {height}x{width}")
            top += int(rng.integers(0, height - self.crop + 1))
            left += int(rng.integers(0, width - self.crop + 1))
            height = width = self.crop
        padded = F.pad(image[None], (s, s, s, s), mode="replicate")[0]
        padded_label = F.pad(label[None, None].float(), (s, s, s, s), mode="replicate")[0, 0].long()
        image = padded[:, top : top + height, left : left + width]
        label = padded_label[top : top + height, left : left + width]
        return image[torch.from_numpy(rng.permutation(3))].contiguous(), label.contiguous()


class _WithAux(nn.Module):
    """Routes ``forward`` to ``forward_with_aux`` so that DDP (which hooks ``forward`` only) sees the call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        forward_with_aux = cast(
            Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]], self.model.forward_with_aux
        )
        return forward_with_aux(x)


# --------------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).argmax(1)


def evaluate_segmentation(
    model: nn.Module,
    dataset: Dataset,
    num_classes: int,
    ignore_index: int = 255,
    batch_size: int = 32,
    device: str = "cpu",
    robust_eps: float | None = None,
    robust_iter: int = 0,
) -> dict[str, float]:
    """Clean mIoU / accuracy and, if ``robust_eps`` and ``robust_iter`` are set, a cheap robust mIoU.

    The robust number comes from one short APGD run on the masked CE (no radius reduction): an upper bound on
    the true robust mIoU meant for training curves, not for reporting (use SEA for that). The model is
    evaluated in eval mode and returned to its previous mode.
    """
    was_training = model.training
    model.eval()
    clean, robust = [], []
    try:
        for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            x, y = x.to(device), y.to(device)
            clean.append(compute_stats(_predict(model, x), y, num_classes, ignore_index))
            if robust_eps is not None and robust_iter > 0:
                x_adv = attacks.apgd(
                    model,
                    x,
                    y,
                    eps=robust_eps,
                    loss="mce",
                    n_iter=robust_iter,
                    radius_reduction=False,
                    ignore_index=ignore_index,
                    seed=0,
                )
                robust.append(compute_stats(_predict(model, x_adv), y, num_classes, ignore_index))
    finally:
        model.train(was_training)
    stats = SegStats.cat(clean)
    out = {"val_miou": stats.miou(), "val_acc": stats.mean_accuracy(), "val_robust_miou": float("nan")}
    if robust:
        out["val_robust_miou"] = SegStats.cat(robust).miou()
    return out


# --------------------------------------------------------------------------------------------- the loop


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rng_state() -> dict[str, Any]:
    """The torch generators (CPU and, when in use, CUDA): the only global RNGs training draws from.

    Drop-path and dropout draw from them; data order and augmentation are pure functions of (seed, epoch,
    index), and the library never uses NumPy's or Python's global generators.
    """
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])


def _all_rng_states(world: int) -> list[dict[str, Any]]:
    """The RNG states of every rank, gathered (on all ranks) in rank order."""
    state = _rng_state()
    if world == 1:
        return [state]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, state)
    return gathered


def _append_row(path: Path, row: dict[str, float]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        fh.flush()
        os.fsync(fh.fileno())


def _truncate_log(path: Path, epoch: int) -> None:
    """Drop rows written after the checkpoint of ``epoch`` (a crash between the log and the checkpoint)."""
    if not path.exists():
        return
    with path.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["epoch"]) <= epoch]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _batches(loader: DataLoader, device: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@dataclass
class _Progress:
    """Where a run stands after an epoch: what its checkpoint stores and a resumed run starts from."""

    epoch: int = 0
    iteration: int = 0
    cost: int = 0
    elapsed: float = 0.0
    row: dict[str, float] = field(default_factory=dict)


def _resume(
    state_path: Path, log_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, seed: int, device: str
) -> _Progress:
    """Restore model, optimizer, progress and this rank's RNG from ``state_path``; a fresh run seeds the RNG."""
    rank, world = _dist()
    if not state_path.exists():
        torch.manual_seed(seed + 1000 * rank)
        return _Progress()
    state = torch.load(state_path, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    progress = _Progress(state["epoch"], state["iteration"], state["cost"], state["wall_time_s"], state["row"])
    if state["world_size"] != world:
        raise ValueError(f"{state_path} was written by {state['world_size']} processes, now {world}")
    _set_rng_state(state["rng"][rank])
    if rank == 0:
        _truncate_log(log_path, progress.epoch)
    return progress


def _loader(train_set: Dataset, params: TrainParams, device: str) -> tuple[DataLoader, DistributedSampler]:
    """This rank's share of every epoch: a seeded shuffle without replacement, ``drop_last``."""
    rank, world = _dist()
    sampler: DistributedSampler[int] = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=params.seed, drop_last=True
    )
    loader = DataLoader(
        train_set,
        batch_size=params.batch_size // world,
        sampler=sampler,
        drop_last=True,
        num_workers=params.num_workers,
        pin_memory=device.startswith("cuda"),
    )
    return loader, sampler


@dataclass(frozen=True)
class _Schedule:
    """The iteration counts of the learning-rate schedule."""

    total: int
    warmup: int
    iters_per_epoch: int


def _train_epoch(
    model: nn.Module,
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    params: TrainParams,
    schedule: _Schedule,
    progress: _Progress,
    ignore_index: int,
    device: str,
    bar: Any,
) -> tuple[float, float]:
    """One epoch of (adversarial) training; advances ``progress`` and returns (mean loss, last learning rate)."""
    _, world = _dist()
    eps = params.attack_eps / 255
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    lr = float("nan")
    for x, y in _batches(loader, device):
        x = pgd_training_attack(
            model, x, y, eps, params.attack_step_size, params.attack_steps, ignore_index, params.amp
        )
        lr = lr_at(progress.iteration, params.lr, schedule.total, schedule.warmup, params.warmup_ratio, params.power)
        for group in optimizer.param_groups:
            group["lr"] = lr
        labelled = (y != ignore_index).sum().to(torch.float64)
        if world > 1:
            dist.all_reduce(labelled)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=params.amp):
            main, aux = net(x)
        loss = segmentation_loss(main, aux, y, params.aux_weight, ignore_index, labelled.clamp(min=1) / world)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach()
        progress.iteration += 1
        progress.cost += params.attack_steps + 1
        bar.update()
        bar.set_postfix(epoch=progress.epoch + 1, loss=f"{loss.item():.3f}", lr=f"{lr:.2e}", refresh=False)
    if world > 1:
        dist.all_reduce(loss_sum)
    return float(loss_sum) / schedule.iters_per_epoch / world, lr


def _checkpoint(
    state_path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: _Progress, params: TrainParams
) -> None:
    """Save everything a resumed run needs (rank 0 writes; every rank contributes its RNG state)."""
    rank, world = _dist()
    rngs = _all_rng_states(world)
    if rank == 0:
        atomic_torch_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": progress.epoch,
                "iteration": progress.iteration,
                "cost": progress.cost,
                "wall_time_s": progress.elapsed,
                "row": progress.row,
                "rng": rngs,
                "world_size": world,
                "sampler_seed": params.seed,
            },
            state_path,
        )


def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    params: TrainParams,
    out_dir: str | Path,
    *,
    num_classes: int,
    ignore_index: int = 255,
    device: str = "cpu",
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` with ``params`` (clean if ``attack_steps == 0``, else adversarially), resuming if possible.

    Works unchanged under ``torchrun`` once a process group is initialised: the model is wrapped in DDP, the
    global batch ``params.batch_size`` is split over the ranks, only rank 0 writes files and validates.

    Args:
        model: segmentation model with ``forward_with_aux``; its weights are the starting point of a fresh run
            (a resumed run overwrites them with the checkpoint).
        train_set: training pairs (image, label); items are drawn without replacement, ``drop_last``.
        val_set: validation pairs for the log (``None``: no validation columns).
        params: the training parameters.
        out_dir: folder of ``train_state.pt``, ``train_log.csv`` and the final ``model.safetensors``.
        num_classes: number of classes (for mIoU).
        ignore_index: label of unlabelled pixels.
        device: torch device of this rank.
        progress: show a tqdm bar over iterations (rank 0).
        meta: extra JSON-serialisable information stored with the final weights.
        callback: called on rank 0 with each log row, after the epoch's checkpoint is on disk.

    Returns:
        The trained model and where its files are.

    Raises:
        ValueError: AMP requested without CUDA, a batch that does not split over the ranks, or fewer training
            images than one global batch.
        FileExistsError: ``out_dir`` already holds finished weights.
    """
    device = check_device(device)
    if not isinstance(train_set, Sized):
        raise TypeError(f"train_set must be a map-style data set with a length, got {type(train_set).__name__}")
    if val_set is not None and not isinstance(val_set, Sized):
        raise TypeError(f"val_set must be a map-style data set with a length, got {type(val_set).__name__}")
    if params.amp and not device.startswith("cuda"):
        raise ValueError(f"amp=true needs a CUDA device (mixed precision is GPU only), got device={device!r}")
    rank, world = _dist()
    if params.batch_size % world:
        raise ValueError(f"global batch {params.batch_size} does not split evenly over {world} processes")
    iters_per_epoch = len(train_set) // params.batch_size
    if iters_per_epoch < 1:
        raise ValueError(f"{len(train_set)} training images give no full batch of {params.batch_size}")
    out_dir = Path(out_dir)
    if (out_dir / f"{MODEL_FILE}.json").exists():
        raise FileExistsError(f"{out_dir / MODEL_FILE} exists: this run is finished (use another folder)")
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    total = params.epochs * iters_per_epoch
    schedule = _Schedule(total, min(round(params.warmup_epochs * iters_per_epoch), total), iters_per_epoch)
    model.to(device)
    optimizer = _optimizer(model, params)
    state_path, log_path = out_dir / STATE_FILE, out_dir / LOG_FILE
    state = _resume(state_path, log_path, model, optimizer, params.seed, device)
    resumed_from = state.epoch

    net: nn.Module = _WithAux(model)
    if world > 1:
        ids = [torch.device(device).index] if device.startswith("cuda") else None
        net = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    loader, sampler = _loader(train_set, params, device)
    val_subset = None
    if val_set is not None and rank == 0:
        n = len(val_set) if params.val_images is None else min(params.val_images, len(val_set))
        val_subset = Subset(val_set, range(n))
    bar = progress_bar(total=total, initial=state.iteration, enabled=progress and rank == 0, desc="train", unit="it")
    model.train()
    for epoch in range(resumed_from, params.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):
            train_set.set_epoch(epoch)
        state.epoch = epoch
        train_loss, lr = _train_epoch(model, net, optimizer, loader, params, schedule, state, ignore_index, device, bar)
        state.elapsed += time.perf_counter() - t0
        state.epoch = epoch + 1
        state.row = {
            "epoch": epoch + 1,
            "iteration": state.iteration,
            "wall_time_s": 0.0,
            "cost_passes": state.cost,
            "train_loss": train_loss,
            "val_miou": float("nan"),
            "val_acc": float("nan"),
            "val_robust_miou": float("nan"),
            "lr": lr,
        }
        log_now = (epoch + 1) % params.log_every_epochs == 0 or epoch + 1 == params.epochs
        if rank == 0 and log_now and val_subset is not None:
            t1 = time.perf_counter()
            state.row.update(
                evaluate_segmentation(
                    model,
                    val_subset,
                    num_classes,
                    ignore_index,
                    params.batch_size,
                    device,
                    params.attack_eps / 255,
                    params.robust_val_iter,
                )
            )
            state.elapsed += time.perf_counter() - t1
        state.row["wall_time_s"] = state.elapsed
        if rank == 0 and log_now:
            _append_row(log_path, state.row)
        _checkpoint(state_path, model, optimizer, state, params)
        if world > 1:
            dist.barrier()
        if rank == 0 and callback is not None:
            callback(state.row)
    bar.close()
    model.eval()
    if rank == 0:
        info = {
            "train": dataclasses.asdict(params),
            "epochs": params.epochs,
            "iterations": state.iteration,
            "wall_time_s": state.elapsed,
            "final": state.row,
            **(meta or {}),
        }
        models.save_checkpoint(model, out_dir / MODEL_FILE, info)
        state_path.unlink(missing_ok=True)
    if world > 1:
        dist.barrier()
    return TrainResult(model, out_dir, params.epochs, state.iteration, state.elapsed, resumed_from, state.row)


# --------------------------------------------------------------------------------------------- from params


def build_model(params: ParamSet, name: str, backbone: str | Path | None = None) -> nn.Module:
    """The untrained segmentation model ``name`` of a profile with its backbone initialisation.

    Args:
        params: the profile.
        name: a model of ``params.models``.
        backbone: classifier / ImageNet file for a ``clean`` or ``robust`` backbone init; defaults to the
            model's ``backbone_checkpoint``.

    Raises:
        ParamError: the model needs a backbone and none is given.
    """
    mp = params.model(name)
    tp = params.train_for(name)
    kwargs: dict[str, Any] = {} if tp.drop_path is None else {"drop_path_rate": tp.drop_path}
    torch.manual_seed(tp.seed)
    model = models.create_model(mp.arch, num_classes=params.data.num_classes, **kwargs)
    if mp.init != "random":
        source = backbone if backbone is not None else mp.backbone_checkpoint
        if source is None:
            raise ParamError(
                f"model {name!r} needs a {mp.init} backbone: set backbone_checkpoint in models.yaml or pass "
                "backbone=... (robseg_lib.engines.zoo pre-trains tiny backbones on demand)"
            )
        models.load_backbone(model, source)
    return model


def train_model(
    params: ParamSet,
    name: str,
    out_dir: str | Path,
    *,
    backbone: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    callback: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train model ``name`` of a profile into ``out_dir`` (resuming a previous run there).

    Builds the model (:func:`build_model`), the data sets of ``params.data`` (DigitScenes training images get
    :class:`ShiftAugment` when ``augment`` is set; real data sets augment themselves) and calls :func:`fit`.
    """
    mp = params.model(name)
    tp = params.train_for(name)
    crop = params.data.train_crop
    if crop is not None and (params.data.name != "digitscenes" or crop > params.data.image_size):
        raise ParamError(
            f"{params.source}: data.train_crop={crop} needs DigitScenes with image_size >= {crop} (VOC and ADE20K "
            f"crop with their own training augmentation), got {params.data.name} at {params.data.image_size}"
        )
    model = build_model(params, name, backbone)
    base = dataset_from_params(params.data, "train", augment=tp.augment)
    train_set: Dataset = base
    if params.data.name == "digitscenes" and tp.augment:
        train_set = ShiftAugment(base, seed=tp.seed, crop=params.data.train_crop)
    val_set = dataset_from_params(params.data, "val")
    meta = {
        "name": name,
        "profile": params.profile,
        "model": dataclasses.asdict(mp),
        "data": dataclasses.asdict(params.data),
    }
    return fit(
        model,
        train_set,
        val_set,
        tp,
        out_dir,
        num_classes=params.data.num_classes,
        ignore_index=params.data.ignore_index,
        device=device,
        progress=progress,
        meta=meta,
        callback=callback,
    )

"""MCE-Bal class weights of an evaluation: the profile's option resolved to a (K,) vector, with cached pixel counts."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from robseg_lib._io import atomic_torch_save
from robseg_lib.attacks.losses import class_weights_from_counts, released_class_weights
from robseg_lib.data import dataset_from_params
from robseg_lib.data.class_counts import class_pixel_counts
from robseg_lib.params import CLASS_WEIGHT_OPTIONS, DataParams

if TYPE_CHECKING:
    from robseg_lib.data import IndexedDataset


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
        if option not in CLASS_WEIGHT_OPTIONS:
            raise ValueError(f"unknown class_weights option {option!r}; valid: {', '.join(CLASS_WEIGHT_OPTIONS)}")
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
    dataset: IndexedDataset, n_images: int, num_classes: int, ignore_index: int, data_key: str, cache_dir: Path
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

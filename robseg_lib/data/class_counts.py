"""Pixels per class over a data set's labels: the N_s behind the MCE-Bal class weights (algorithms §3.4).

The paper weighs a pixel of class s by 1/N_s with N_s counted "in the training images". Count on the training
split with the evaluation transform (``augment=False``) so that the labels go through the same mapping as at
evaluation and the count is deterministic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from robseg_lib._progress import progress_bar

if TYPE_CHECKING:
    from robseg_lib.data import IndexedDataset

__all__ = ["class_pixel_counts"]


def class_pixel_counts(
    dataset: IndexedDataset,
    num_classes: int,
    ignore_index: int = 255,
    max_items: int | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Count the labelled pixels of each class over a data set, ignoring ``ignore_index``.

    Args:
        dataset: anything with ``len`` and indexing whose items are ``(image, label, ...)``; the label is an
            integer tensor or array.
        num_classes: number of classes K; every other label value than ``ignore_index`` must lie in [0, K).
        ignore_index: label value that is not counted.
        max_items: count only the first ``max_items`` items (``None``: all).
        progress: show a progress bar.

    Returns:
        int64 tensor (K,) of pixel counts.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 0):
        raise ValueError(f"max_items must be None or a non-negative integer, got {max_items!r}")
    n = len(dataset) if max_items is None else min(max_items, len(dataset))
    counts = torch.zeros(num_classes, dtype=torch.int64)
    for index in progress_bar(range(n), desc="class pixel counts", enabled=progress):
        label = torch.as_tensor(dataset[index][1])
        if label.is_floating_point() or label.is_complex():
            raise ValueError(f"item {index}: labels must be integers, got dtype {label.dtype}")
        valid = label[label != ignore_index].to(torch.int64)
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
            bad = torch.unique(valid[(valid < 0) | (valid >= num_classes)])[:10].tolist()
            raise ValueError(
                f"item {index}: label values {bad} lie outside [0, {num_classes}) and are not the ignore index "
                f"{ignore_index}"
            )
        counts += torch.bincount(valid, minlength=num_classes)
    return counts

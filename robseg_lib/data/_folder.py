"""Shared machinery of the data sets read from a local root (VOC, ADE20K).

Every problem with a root (missing folder or split file, image without mask, mask of another size, label value out
of range) raises an error whose message names the offending path, says what was found there and draws the
expected folder layout, so that a user can fix a download without reading the loader's source.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from robseg_lib.data.transforms import EvalTransform, TrainTransform

__all__ = [
    "IGNORE_INDEX",
    "SegmentationFolder",
    "check_pairs_exist",
    "describe_path",
    "layout_error",
    "read_label_png",
    "read_split",
]

IGNORE_INDEX = 255
_MAX_LISTED = 12


def describe_path(path: str | Path) -> str:
    """Say what exists at ``path`` or, if nothing does, at its nearest existing ancestor (for error messages)."""
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_file():
        return f"{probe} is a file" if probe == path else f"{probe} is a file, not a folder"
    try:
        entries = sorted(e.name + ("/" if e.is_dir() else "") for e in probe.iterdir())
    except OSError as err:
        return f"{probe} cannot be listed ({err})"
    shown = ", ".join(entries[:_MAX_LISTED]) or "(nothing)"
    if len(entries) > _MAX_LISTED:
        shown += f", ... ({len(entries) - _MAX_LISTED} more)"
    if probe == path:
        return f"{path} exists and contains: {shown}"
    return f"{path} does not exist; the nearest existing folder, {probe}, contains: {shown}"


def layout_error(
    error: type[Exception], problem: str, path: str | Path, layout: str, found: str | None = None
) -> Exception:
    """Build an exception whose message shows the problem, the offending path, what was found and the layout."""
    found = describe_path(path) if found is None else found
    return error(f"{problem}\n  offending path: {path}\n  found: {found}\nExpected layout:\n{layout}")


def read_split(path: Path, layout: str) -> list[str]:
    """Read image ids from a split file (one per line, order kept); missing, empty or repeated ids raise."""
    if not path.is_file():
        raise layout_error(FileNotFoundError, "split file not found", path, layout)
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise layout_error(ValueError, "split file lists no image ids", path, layout, found="an empty file")
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise layout_error(
            ValueError, "split file lists image ids more than once", path, layout, found=", ".join(repeated[:5])
        )
    return ids


def read_label_png(path: Path, layout: str) -> np.ndarray:
    """Read a label PNG (indexed colour or 8-bit greyscale) as a uint8 (H, W) array of class indices."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L"):
                raise layout_error(
                    ValueError,
                    "label PNG must store class indices (indexed colour 'P' or greyscale 'L')",
                    path,
                    layout,
                    found=f"image mode {im.mode!r}",
                )
            return np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise layout_error(ValueError, "label file cannot be read", path, layout, found=str(err)) from err


def _read_rgb(path: Path, layout: str) -> Image.Image:
    """Read an image file as RGB (greyscale JPEGs, as found in ADE20K, are expanded to 3 channels)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as err:
        raise layout_error(ValueError, "image file cannot be read", path, layout, found=str(err)) from err


def check_pairs_exist(image_paths: Sequence[Path], label_paths: Sequence[Path], layout: str) -> None:
    """Raise FileNotFoundError for the first image that is missing or has no label file."""
    for kind, paths in (("image", image_paths), ("mask", label_paths)):
        missing = [p for p in paths if not p.is_file()]
        if missing:
            problem = f"{len(missing)} of {len(paths)} listed {kind} files are missing" + (
                " (image without mask)" if kind == "mask" else ""
            )
            raise layout_error(FileNotFoundError, problem, missing[0], layout)


class SegmentationFolder(Dataset):
    """Image/label file pairs, validated on reading, then put through the paper's eval transform or augmentation.

    Subclasses set the class attributes and may override :meth:`_read_label` and :meth:`_prepare_label`.
    Items are ``(image, label)``: float32 (3, c, c) in [0, 1] and int64 (c, c), c = ``crop_size``.

    Augmentation draws from ``numpy.random.default_rng([seed, epoch, index])``, so an item depends only on the
    seed, the epoch (see :meth:`set_epoch`) and its index: reproducible, and the same for any number of
    ``DataLoader`` workers or any batch order.
    """

    num_classes: int
    class_names: tuple[str, ...]
    layout: str
    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        ids: Sequence[str],
        image_paths: Sequence[Path],
        label_paths: Sequence[Path],
        *,
        split: str,
        crop_size: int,
        base_size: int,
        augment: bool,
        seed: int,
        pad_label: int,
    ) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.transform: EvalTransform | TrainTransform = (
            TrainTransform(crop_size, base_size, pad_label=pad_label) if augment else EvalTransform(crop_size)
        )
        check_pairs_exist(image_paths, label_paths, self.layout)
        self.ids = list(ids)
        self.image_paths = list(image_paths)
        self.label_paths = list(label_paths)
        self.split = split
        self.crop_size = crop_size
        self.base_size = base_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before iterating, as with a DistributedSampler)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def _read_label(self, path: Path) -> np.ndarray:
        """Read the raw uint8 (H, W) label of one image."""
        return read_label_png(path, self.layout)

    def _prepare_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        """Validate raw label values and map them to the training/evaluation label space."""
        raise NotImplementedError

    def _out_of_range(self, label: np.ndarray, bad: np.ndarray, path: Path, allowed: str) -> Exception:
        """Error for a label file whose pixels ``bad`` hold values outside ``allowed`` (human-readable)."""
        return layout_error(
            ValueError,
            f"label values out of range (allowed: {allowed})",
            path,
            self.layout,
            found=f"values {np.unique(label[bad])[:20].tolist()} at {int(bad.sum())} of {label.size} pixels",
        )

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index %= len(self)
        image_path, label_path = self.image_paths[index], self.label_paths[index]
        image = _read_rgb(image_path, self.layout)
        label = self._read_label(label_path)
        if label.shape != (image.height, image.width):
            raise layout_error(
                ValueError,
                "mask and image differ in size",
                label_path,
                self.layout,
                found=f"mask {label.shape[1]}x{label.shape[0]}, image {image.width}x{image.height} "
                f"(width x height; image {image_path})",
            )
        label_image = Image.fromarray(self._prepare_label(label, label_path))
        if isinstance(self.transform, TrainTransform):
            return self.transform(image, label_image, np.random.default_rng([self.seed, self.epoch, index]))
        return self.transform(image, label_image)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, images={len(self)}, crop_size={self.crop_size}, "
            f"augment={self.augment}, seed={self.seed})"
        )

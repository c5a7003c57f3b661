"""DigitScenes: a small semantic-segmentation data set composed from scikit-learn's real handwritten digits.

Each image shows a few handwritten digits (the 8x8 UCI scans shipped with scikit-learn), scaled, thickened,
coloured and placed on a smooth textured background. Classes: 0 = background, 1..10 = digits 0..9. The digits sit
in the cells of a 2x2 grid (jittered, each drawn cell holds one digit of 46-58 % of the image side) and their
strokes are dilated by one pixel, so that digits cover about half of the labelled pixels (background 53 % on the
tiny profile's 48x48 validation images, against 87 % for the 1-3 sparse thin digits of an earlier version).
Anti-aliased digit borders are labelled ``ignore_index``: whether such a pixel is digit or background is
ambiguous. The digit samples are split once, stratified by class, so that no validation digit is ever
seen in training (scikit-learn ships no writer ids, so the split is by sample). Everything is a pure
function of the seed, so a profile describes its data exactly.

``DigitCrops`` draws digit-or-background crops from the same split, with the scenes' textures, colours, stroke
width and digit sizes: the classification task on which tiny backbones are (adversarially) pre-trained, as
ImageNet is at paper scale.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["CLASS_NAMES", "DigitCrops", "DigitScenes", "digit_split", "digitscenes_summary", "scene_digit_sides"]

CLASS_NAMES: tuple[str, ...] = ("background", *(f"digit {d}" for d in range(10)))
_SPLIT_SEED = 20240716  # fixed: the train/val digit split must not depend on a profile's seed
_VAL_FRACTION = 0.25
_DIGIT_THRESHOLD = 0.5  # alpha above: digit pixel
_BORDER_THRESHOLD = 0.2  # alpha in (border, digit]: ambiguous, ignored
_SPLIT_OFFSET = {"train": 0, "val": 1_000_003}
_GRID = 2  # digits sit in the cells of a GRID x GRID layout, one digit per drawn cell
_DIGIT_SCALE = (0.46, 0.58)  # digit side as a fraction of the image side
_JITTER = 3  # pixels a digit may move from its cell's centre
_STROKE = 1  # dilation radius (pixels) of the upsampled strokes: thin 8x8 scans become legible, bold digits


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def digit_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The handwritten digits (values in [0,1], shape (n, 8, 8)) and labels of one split.

    The split is stratified by class with a fixed seed; train and val share no sample.
    """
    if split not in _SPLIT_OFFSET:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(_SPLIT_OFFSET)}")
    images, labels = _digits()
    rng = np.random.default_rng(_SPLIT_SEED)
    chosen = []
    for cls in range(10):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_val = round(len(idx) * _VAL_FRACTION)
        chosen.append(idx[:n_val] if split == "val" else idx[n_val:])
    index = np.sort(np.concatenate(chosen))
    return images[index], labels[index]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth coloured texture: low-frequency noise per channel around a random base colour."""
    base = rng.uniform(0.1, 0.9, size=3)
    coarse = torch.from_numpy(rng.normal(0.0, 1.0, size=(1, 3, 4, 4)).astype(np.float32))
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0].numpy()
    fine = rng.normal(0.0, 1.0, size=(3, size, size)).astype(np.float32)
    tex = base[:, None, None] + 0.12 * smooth * rng.uniform(0.3, 1.0) + 0.03 * fine
    return np.clip(tex, 0.0, 1.0).astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A digit colour whose brightness differs clearly from the background's mean."""
    mean = background.mean()
    for _ in range(100):
        colour = rng.uniform(0.0, 1.0, size=3).astype(np.float32)
        if abs(colour.mean() - mean) > 0.3:
            return colour
    return np.full(3, 0.0 if mean > 0.5 else 1.0, dtype=np.float32)


def _scaled_digit(digit: np.ndarray, side: int) -> np.ndarray:
    """An 8x8 digit scan upsampled (bilinear) to ``side`` x ``side`` with strokes dilated by ``_STROKE`` pixels.

    Values stay in [0, 1]; they are the digit's opacity.
    """
    t = torch.from_numpy(digit)[None, None]
    alpha = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False).clamp(0, 1)
    return F.max_pool2d(alpha, 2 * _STROKE + 1, stride=1, padding=_STROKE)[0, 0].numpy()


def scene_digit_sides(image_size: int) -> tuple[int, int]:
    """The inclusive range of digit sides (pixels) in scenes of side ``image_size``."""
    low, high = _DIGIT_SCALE
    return round(low * image_size), round(high * image_size)


def _jittered_start(rng: np.random.Generator, cell: int, side: int, size: int) -> int:
    """First row (or column) of a digit of ``side`` pixels centred in grid cell ``cell``, jittered, inside the image."""
    centre = (cell + 0.5) * size / _GRID
    start = round(centre - side / 2) + int(rng.integers(-_JITTER, _JITTER + 1))
    return int(np.clip(start, 0, size - side))


def _paste_digit(
    image: np.ndarray, rng: np.random.Generator, digit: np.ndarray, side: int, top: int, left: int
) -> np.ndarray:
    """Alpha-blend ``digit`` (scaled to ``side``) in a colour contrasting with the background; returns its alpha."""
    alpha = _scaled_digit(digit, side)
    window = image[:, top : top + side, left : left + side]
    colour = _contrasting_colour(rng, window)
    image[:, top : top + side, left : left + side] = window * (1 - alpha) + colour[:, None, None] * alpha
    return alpha


class DigitScenes(Dataset):
    """Handwritten digits on textured backgrounds, with per-pixel labels.

    Args:
        split: ``"train"`` or ``"val"``; their digit samples are disjoint.
        size: number of images.
        image_size: side of the square images.
        digits_per_image: inclusive range of the number of digits per image (at most the 4 grid cells are drawn).
        seed: generation seed (images of the two splits never coincide for the same seed).
        ignore_index: label of ambiguous anti-aliased border pixels.
    """

    num_classes = 11
    class_names = CLASS_NAMES

    def __init__(
        self,
        split: str = "train",
        size: int = 1000,
        image_size: int = 64,
        digits_per_image: tuple[int, int] = (2, 4),
        seed: int = 0,
        ignore_index: int = 255,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {image_size}")
        low, high = digits_per_image
        if not 1 <= low <= high <= _GRID * _GRID:
            raise ValueError(
                f"digits_per_image must be (min, max) with 1 <= min <= max <= {_GRID * _GRID}, got {digits_per_image}"
            )
        self.split, self.image_size, self.ignore_index = split, image_size, ignore_index
        digits, digit_labels = digit_split(split)
        rng = np.random.default_rng(seed + _SPLIT_OFFSET[split])
        images = np.empty((size, 3, image_size, image_size), dtype=np.float32)
        labels = np.empty((size, image_size, image_size), dtype=np.int64)
        for i in range(size):
            images[i], labels[i] = self._compose(rng, digits, digit_labels, int(rng.integers(low, high + 1)))
        self.images = torch.from_numpy(images)
        self.labels = torch.from_numpy(labels)

    def _compose(
        self, rng: np.random.Generator, digits: np.ndarray, digit_labels: np.ndarray, count: int
    ) -> tuple[np.ndarray, np.ndarray]:
        size = self.image_size
        image = _background(rng, size)
        label = np.zeros((size, size), dtype=np.int64)
        low, high = scene_digit_sides(size)
        for c in rng.permutation(_GRID * _GRID)[:count]:
            row, col = divmod(int(c), _GRID)
            side = int(rng.integers(low, high + 1))
            top, left = (_jittered_start(rng, k, side, size) for k in (row, col))
            k = int(rng.integers(len(digits)))
            alpha = _paste_digit(image, rng, digits[k], side, top, left)
            patch = label[top : top + side, left : left + side]
            patch[alpha > _BORDER_THRESHOLD] = self.ignore_index
            patch[alpha > _DIGIT_THRESHOLD] = digit_labels[k] + 1
        return np.clip(image, 0, 1), label

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


class DigitCrops(Dataset):
    """Digit-or-background crops that look like pieces of the scenes: an 11-class classification set.

    Each crop is a scene texture with, in ``1 - background_share`` of the crops, one digit drawn as in
    :class:`DigitScenes` (same stroke width, colours and pixel sides ``digit_side``) at a random position inside
    the crop; the other crops hold no digit. Targets follow the scenes' labels: 0 = background, 1..10 = digits
    0..9. Uses the same train/val digit split as :class:`DigitScenes`, so a backbone pre-trained here never sees
    a validation digit.

    Args:
        split: ``"train"`` or ``"val"``.
        size: number of crops.
        crop_size: side of the square crops (the zoo's training crop).
        digit_side: inclusive range of digit sides in pixels (the scenes': :func:`scene_digit_sides`).
        seed: generation seed.
        background_share: fraction of crops without a digit (default: one class in eleven).
    """

    num_classes = 11

    def __init__(
        self,
        split: str,
        size: int,
        crop_size: int,
        digit_side: tuple[int, int],
        seed: int = 0,
        background_share: float = 1 / 11,
    ) -> None:
        low, high = digit_side
        if size < 1 or crop_size < 8:
            raise ValueError(f"need size >= 1 and crop_size >= 8, got size={size}, crop_size={crop_size}")
        if not 4 <= low <= high <= crop_size:
            raise ValueError(f"digit_side must be (min, max) with 4 <= min <= max <= crop_size, got {digit_side}")
        if not 0 <= background_share < 1:
            raise ValueError(f"background_share must be in [0, 1), got {background_share}")
        digits, digit_labels = digit_split(split)
        rng = np.random.default_rng(seed + _SPLIT_OFFSET[split] + 7)
        images = np.empty((size, 3, crop_size, crop_size), dtype=np.float32)
        targets = np.zeros(size, dtype=np.int64)
        for i in range(size):
            image = _background(rng, crop_size)
            if rng.uniform() >= background_share:
                side = int(rng.integers(low, high + 1))
                top, left = (int(v) for v in rng.integers(0, crop_size - side + 1, size=2))
                k = int(rng.integers(len(digits)))
                _paste_digit(image, rng, digits[k], side, top, left)
                targets[i] = digit_labels[k] + 1
            images[i] = np.clip(image, 0, 1)
        self.images = torch.from_numpy(images)
        self.targets = torch.from_numpy(targets)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.targets[index]


def digitscenes_summary(train: DigitScenes, val: DigitScenes, ignore_index: int = 255) -> dict[str, object]:
    """Split sizes and per-class pixel shares of a DigitScenes train/val pair, for the book.

    Returns:
        ``{"splits": DataFrame, "class_share": {split: (K,) percentages of labelled pixels}}``.
    """
    import pandas as pd

    rows, shares = [], {}
    for name, ds in (("train", train), ("val", val)):
        labels = ds.labels
        valid = labels != ignore_index
        counts = torch.bincount(labels[valid].flatten(), minlength=DigitScenes.num_classes).double()
        shares[name] = (100 * counts / counts.sum()).tolist()
        rows.append(
            {
                "split": name,
                "images": len(ds),
                "image size": f"{ds.image_size}x{ds.image_size}",
                "digit scans used": len(digit_split(name)[0]),
                "unlabelled pixels (%)": round(100 * float((~valid).double().mean()), 1),
            }
        )
    return {"splits": pd.DataFrame(rows).set_index("split"), "class_share": shares}

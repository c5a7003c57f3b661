"""The paper's evaluation transform and training augmentation for image/label pairs (algorithms §8.5, §9).

Both work on PIL images (RGB image, 8-bit greyscale label) because the paper's pipeline resizes with PIL, whose
bilinear filter antialiases when shrinking; the result is converted once at the end to a float32 CHW tensor in
[0, 1] (``ToTensor`` only, no mean/std normalisation) and an int64 HW label tensor.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter

__all__ = ["EvalTransform", "TrainTransform", "center_crop", "pad_to", "resize_short_side", "to_tensors"]


def _check_pair(image: Image.Image, label: Image.Image) -> None:
    """Raise if the image and label do not cover the same pixels."""
    if image.size != label.size:
        raise ValueError(f"image size {image.size} and label size {label.size} (width, height) differ")


def resize_short_side(image: Image.Image, label: Image.Image, size: int) -> tuple[Image.Image, Image.Image]:
    """Resize so that the short side is ``size``, keeping the aspect ratio.

    The long side becomes ``floor(long * size / short)``, as in the paper's pipeline. The image is resampled
    bilinearly, the label with nearest neighbour (no new label values appear).
    """
    _check_pair(image, label)
    w, h = image.size
    if w >= h:
        new = (w * size // h, size)
    else:
        new = (size, h * size // w)
    return image.resize(new, Image.Resampling.BILINEAR), label.resize(new, Image.Resampling.NEAREST)


def center_crop(image: Image.Image, label: Image.Image, size: int) -> tuple[Image.Image, Image.Image]:
    """Cut the central ``size`` x ``size`` window; offsets ``round((extent - size) / 2)`` (Python rounding)."""
    _check_pair(image, label)
    w, h = image.size
    if w < size or h < size:
        raise ValueError(f"cannot centre-crop {size}x{size} from an image of {w}x{h} (width x height)")
    x0, y0 = round((w - size) / 2), round((h - size) / 2)
    box = (x0, y0, x0 + size, y0 + size)
    return image.crop(box), label.crop(box)


def pad_to(image: Image.Image, label: Image.Image, size: int, pad_label: int) -> tuple[Image.Image, Image.Image]:
    """Pad right and bottom up to ``size`` x ``size`` where smaller: zeros in the image, ``pad_label`` in the label."""
    _check_pair(image, label)
    w, h = image.size
    if w >= size and h >= size:
        return image, label
    canvas = (max(w, size), max(h, size))
    padded_image = Image.new(image.mode, canvas, 0)
    padded_image.paste(image, (0, 0))
    padded_label = Image.new(label.mode, canvas, pad_label)
    padded_label.paste(label, (0, 0))
    return padded_image, padded_label


def to_tensors(image: Image.Image, label: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert to a float32 (3, H, W) image in [0, 1] and an int64 (H, W) label."""
    _check_pair(image, label)
    pixels = torch.from_numpy(np.array(image.convert("RGB"), dtype=np.uint8))
    image_t = pixels.permute(2, 0, 1).contiguous().to(torch.float32).div_(255.0)
    label_t = torch.from_numpy(np.array(label, dtype=np.int64))
    return image_t, label_t


def _positive_int(name: str, value: int) -> int:
    """Return ``value`` if it is a positive integer, else raise a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _probability(name: str, value: float) -> float:
    """Return ``value`` if it lies in [0, 1], else raise a ValueError naming the argument."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return float(value)


class EvalTransform:
    """The paper's evaluation protocol: short side resized to the crop size, then one centre crop (§9).

    The "base size" plays no role at evaluation. Deterministic: one crop per image.

    Args:
        crop_size: side of the square output (473 for VOC, 512 for ADE20K).
    """

    def __init__(self, crop_size: int) -> None:
        self.crop_size = _positive_int("crop_size", crop_size)

    def __call__(self, image: Image.Image, label: Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform one pair; returns (float32 (3, c, c) in [0, 1], int64 (c, c))."""
        image, label = resize_short_side(image, label, self.crop_size)
        return to_tensors(*center_crop(image, label, self.crop_size))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(crop_size={self.crop_size})"


class TrainTransform:
    """The paper's training augmentation (§8.5), drawing every random choice from an explicit generator.

    Steps, in the order of the paper's pipeline: horizontal flip with probability ``flip_p``; rescale so that the
    short side is a uniform integer in ``[int(scale_range[0] * base_size), int(scale_range[1] * base_size)]``;
    pad right/bottom up to the crop (image with zeros, label with ``pad_label``); random ``crop_size`` crop;
    Gaussian blur of the image with probability ``blur_p`` and radius ~ U(0, 1).

    The paper trains padded pixels as class 0 (background on VOC, "other" on ADE20K), hence ``pad_label=0``;
    pass the ignore index (255) to leave them out of the loss instead.

    Args:
        crop_size: side of the square output (473 for VOC, 512 for ADE20K).
        base_size: reference short side of the random rescale (512 for VOC, 520 for ADE20K).
        pad_label: label value of padded pixels, in [0, 255].
        scale_range: short side range as multiples of ``base_size``.
        flip_p: probability of the horizontal flip.
        blur_p: probability of the Gaussian blur.
    """

    def __init__(
        self,
        crop_size: int,
        base_size: int,
        pad_label: int = 0,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip_p: float = 0.5,
        blur_p: float = 0.5,
    ) -> None:
        self.crop_size = _positive_int("crop_size", crop_size)
        self.base_size = _positive_int("base_size", base_size)
        if isinstance(pad_label, bool) or not isinstance(pad_label, int) or not 0 <= pad_label <= 255:
            raise ValueError(f"pad_label must be an integer in [0, 255], got {pad_label!r}")
        self.pad_label = pad_label
        low, high = (int(s * base_size) for s in scale_range)
        if not 1 <= low <= high:
            raise ValueError(
                f"scale_range {scale_range!r} with base_size {base_size} gives short sides [{low}, {high}]; "
                "need 1 <= low <= high"
            )
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.short_side_range = (low, high)
        self.flip_p = _probability("flip_p", flip_p)
        self.blur_p = _probability("blur_p", blur_p)

    def __call__(
        self, image: Image.Image, label: Image.Image, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment one pair with randomness from ``rng``; returns (float32 (3, c, c) in [0, 1], int64 (c, c))."""
        if rng.random() < self.flip_p:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            label = label.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        short = int(rng.integers(self.short_side_range[0], self.short_side_range[1], endpoint=True))
        image, label = resize_short_side(image, label, short)
        image, label = pad_to(image, label, self.crop_size, self.pad_label)
        w, h = image.size
        x0 = int(rng.integers(0, w - self.crop_size, endpoint=True))
        y0 = int(rng.integers(0, h - self.crop_size, endpoint=True))
        box = (x0, y0, x0 + self.crop_size, y0 + self.crop_size)
        image, label = image.crop(box), label.crop(box)
        if rng.random() < self.blur_p:
            image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.random())))
        return to_tensors(image, label)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(crop_size={self.crop_size}, base_size={self.base_size}, "
            f"pad_label={self.pad_label}, scale_range={self.scale_range}, flip_p={self.flip_p}, "
            f"blur_p={self.blur_p})"
        )

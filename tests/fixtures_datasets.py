"""Small fake VOC/SBD and ADE20K trees in the real releases' file formats, for tests of the loaders.

Plain functions (not pytest fixtures) so that notebook and CLI tests can build a root anywhere. Content is
deterministic: a few labelled rectangles on a background, each image coloured after its label plus noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
from PIL import Image

from robseg_lib.data.voc import voc_colormap

__all__ = ["make_fake_ade20k", "make_fake_voc", "voc_boundary"]


def _rectangles(rng: np.random.Generator, size: tuple[int, int], values: np.ndarray, n: int) -> np.ndarray:
    """A uint8 (H, W) map of ``n`` rectangles with values drawn from ``values`` on a 0 background."""
    h, w = size
    seg = np.zeros((h, w), dtype=np.uint8)
    for _ in range(n):
        y0, x0 = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
        y1, x1 = int(rng.integers(y0 + 3, h + 1)), int(rng.integers(x0 + 3, w + 1))
        seg[y0:y1, x0:x1] = rng.choice(values)
    return seg


def voc_boundary(seg: np.ndarray) -> np.ndarray:
    """Pixels of ``seg`` with a 4-neighbour of another class: where VOC's PNG masks carry the 255 label."""
    edge = np.zeros(seg.shape, dtype=bool)
    edge[1:, :] |= seg[1:, :] != seg[:-1, :]
    edge[:-1, :] |= seg[:-1, :] != seg[1:, :]
    edge[:, 1:] |= seg[:, 1:] != seg[:, :-1]
    edge[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    return edge


def _image_from_label(rng: np.random.Generator, seg: np.ndarray, palette: np.ndarray) -> Image.Image:
    """An RGB image coloured after ``seg`` with mild noise, so that images and labels correlate."""
    colours = palette[seg].astype(np.int16) + rng.integers(-20, 21, size=(*seg.shape, 3))
    return Image.fromarray(np.clip(colours, 0, 255).astype(np.uint8), mode="RGB")


def _write_sbd_mat(path: Path, seg: np.ndarray) -> None:
    """Write an SBD ``cls/<id>.mat``: struct GTcls with Boundaries (cell of sparse maps), Segmentation and
    CategoriesPresent, as in the release."""
    boundaries = np.empty((20, 1), dtype=object)
    edge = voc_boundary(seg)
    for k in range(20):
        boundaries[k, 0] = scipy.sparse.csc_matrix((edge & (seg == k + 1)).astype(np.float64))
    present = np.unique(seg[seg > 0]).astype(np.uint8).reshape(-1, 1)
    gtcls = {"Boundaries": boundaries, "Segmentation": seg, "CategoriesPresent": present}
    scipy.io.savemat(path, {"GTcls": gtcls})


def make_fake_voc(
    root: str | Path,
    n_val: int = 3,
    n_train: int = 4,
    size: tuple[int, int] = (40, 56),
    n_overlap: int = 1,
    seed: int = 0,
) -> Path:
    """Write a fake VOC2012 + SBD tree under ``root`` and return ``root`` (the loaders' ``root`` argument).

    Layout: ``VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png (indexed colour, 255 boundaries),
    ImageSets/Segmentation/{train,val}.txt}`` and ``SBD/dataset/{img/*.jpg, cls/*.mat, train.txt}``. The first
    ``n_overlap`` val ids also appear in SBD train (the real splits overlap too). ``size`` is (height, width).
    """
    if not 0 <= n_overlap <= min(n_val, n_train):
        raise ValueError(f"n_overlap must lie in [0, min(n_val, n_train)], got {n_overlap}")
    root = Path(root)
    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "SBD" / "dataset"
    for folder in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation"):
        folder.mkdir(parents=True, exist_ok=True)
    for folder in (sbd / "img", sbd / "cls"):
        folder.mkdir(parents=True, exist_ok=True)
    palette = voc_colormap()
    val_ids = [f"2007_{i:06d}" for i in range(n_val)]
    train_ids = sorted(val_ids[:n_overlap] + [f"2008_{i:06d}" for i in range(n_train - n_overlap)])
    voc_train_ids = [i for i in train_ids if i not in val_ids]
    pairs = {}
    for k, image_id in enumerate(sorted(set(val_ids) | set(train_ids))):
        rng = np.random.default_rng([seed, k])
        seg = _rectangles(rng, size, np.arange(1, 21), n=3)
        pairs[image_id] = (_image_from_label(rng, seg, palette), seg)
    flat_palette = palette.reshape(-1).tolist()
    for image_id in val_ids + voc_train_ids:
        image, seg = pairs[image_id]
        image.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        mask = Image.fromarray(np.where(voc_boundary(seg), 255, seg).astype(np.uint8), mode="P")
        mask.putpalette(flat_palette)
        mask.save(voc / "SegmentationClass" / f"{image_id}.png")
    for image_id in train_ids:
        image, seg = pairs[image_id]
        image.save(sbd / "img" / f"{image_id}.jpg", quality=95)
        _write_sbd_mat(sbd / "cls" / f"{image_id}.mat", seg)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in val_ids))
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("".join(f"{i}\n" for i in voc_train_ids))
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in train_ids))
    return root


def make_fake_ade20k(
    root: str | Path,
    n_val: int = 3,
    n_train: int = 4,
    size: tuple[int, int] = (40, 56),
    seed: int = 0,
) -> Path:
    """Write a fake ADEChallengeData2016 tree under ``root`` and return ``root`` (the loader's ``root``).

    Layout: ``ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_<8 digits>.jpg`` and
    ``annotations/{training,validation}/<same stem>.png`` (greyscale, values 0..150). The first image of each
    split holds both extreme labels 0 and 150 in its middle column. ``size`` is (height, width).
    """
    root = Path(root)
    release = root / "ADEChallengeData2016"
    palette = np.random.default_rng(12345).integers(0, 256, size=(256, 3)).astype(np.uint8)
    for split, prefix, n in (("training", "train", n_train), ("validation", "val", n_val)):
        (release / "images" / split).mkdir(parents=True, exist_ok=True)
        (release / "annotations" / split).mkdir(parents=True, exist_ok=True)
        # Written in reverse name order so that a loader relying on creation order would notice.
        for k in reversed(range(n)):
            rng = np.random.default_rng([seed, int(split == "validation"), k])
            seg = _rectangles(rng, size, np.arange(0, 151), n=4)
            if k == 0:  # extreme labels in the middle column, which any centre crop keeps
                seg[0, size[1] // 2], seg[-1, size[1] // 2] = 0, 150
            stem = f"ADE_{prefix}_{k + 1:08d}"
            _image_from_label(rng, seg, palette).save(release / "images" / split / f"{stem}.jpg", quality=95)
            Image.fromarray(seg, mode="L").save(release / "annotations" / split / f"{stem}.png")
    return root

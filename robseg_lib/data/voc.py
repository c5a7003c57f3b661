"""PASCAL VOC 2012 read from a local root: VOC12 val for evaluation, the SBD-augmented train split for training.

Paper protocol (algorithms §8.6, §9): evaluation on the 1,449 VOC2012 val images, one centre crop per image,
with the boundary/void label 255 mapped to 0 = background (so no pixel is ignored); training on the 8,498 images
of SBD's official ``train.txt`` (Hariharan et al.), whose ``.mat`` class masks carry no boundary label. The
authors' loader read a ``trainval.txt`` instead (defect D19); we use ``train.txt`` and report its overlap with VOC12
val (:func:`voc_val_sbd_train_overlap`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from robseg_lib.data._folder import SegmentationFolder, layout_error, read_split

__all__ = ["VOC_CLASSES", "VOC_LAYOUT", "VOCSegmentation", "read_sbd_mat", "voc_colormap", "voc_val_sbd_train_overlap"]

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

VOC_LAYOUT = """\
<root>/                                    (for split="val", <root> may also be VOCdevkit/ or VOC2012/ itself)
├── VOCdevkit/
│   └── VOC2012/
│       ├── JPEGImages/<id>.jpg
│       ├── SegmentationClass/<id>.png       indexed colour: 0..20, 255 = boundary/void
│       └── ImageSets/Segmentation/val.txt   one id per line (1,449 ids)           split="val"
└── SBD/dataset/                           (or benchmark_RELEASE/dataset/ as unpacked, or sbd_root=...)
    ├── img/<id>.jpg
    ├── cls/<id>.mat                         MATLAB struct GTcls, field Segmentation: 0..20
    └── train.txt                            one id per line (8,498 ids)           split="train"
"""

_BOUNDARY_OPTIONS = ("background", "ignore")


def voc_colormap(n: int = 256) -> np.ndarray:
    """The standard PASCAL VOC palette as an (n, 3) uint8 array (index 255, the boundary, is (224, 224, 192))."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        code, rgb = index, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        cmap[index] = rgb
    return cmap


def _find_voc2012(root: Path) -> Path:
    """The VOC2012 folder: ``root/VOCdevkit/VOC2012``, ``root/VOC2012`` or ``root`` itself."""
    candidates = (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root)
    for candidate in candidates:
        if (candidate / "ImageSets").is_dir() or (candidate / "JPEGImages").is_dir():
            return candidate
    raise layout_error(
        FileNotFoundError,
        f"VOC2012 folder not found: looked for {candidates[0]}, {candidates[1]} and {root} (root itself)",
        candidates[0],
        VOC_LAYOUT,
    )


def _find_sbd(root: Path, sbd_root: Path | None) -> Path:
    """SBD's ``dataset`` folder, under ``sbd_root`` if given, else ``root/SBD`` or ``root/benchmark_RELEASE``."""
    if sbd_root is None:
        candidates = (root / "SBD" / "dataset", root / "benchmark_RELEASE" / "dataset")
    else:
        candidates = (sbd_root / "dataset", sbd_root)
    for candidate in candidates:
        if (candidate / "cls").is_dir() or (candidate / "train.txt").is_file():
            return candidate
    raise layout_error(
        FileNotFoundError,
        "SBD dataset folder (needed by split='train') not found: looked for " + ", ".join(str(c) for c in candidates),
        candidates[0],
        VOC_LAYOUT,
    )


def read_sbd_mat(path: str | Path) -> np.ndarray:
    """Read the class mask ``GTcls.Segmentation`` of an SBD ``cls/<id>.mat`` file as a uint8 (H, W) array."""
    path = Path(path)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, variable_names=["GTcls"])
    except (scipy.io.matlab.MatReadError, ValueError, OSError) as err:
        raise layout_error(ValueError, "SBD .mat file cannot be read", path, VOC_LAYOUT, found=str(err)) from err
    segmentation = getattr(mat.get("GTcls"), "Segmentation", None)
    if segmentation is None:
        variables = [name for name, _, _ in scipy.io.whosmat(path)]
        raise layout_error(
            ValueError,
            "SBD .mat file lacks the struct GTcls with a field Segmentation",
            path,
            VOC_LAYOUT,
            found=f"variables {variables}",
        )
    segmentation = np.asarray(segmentation)
    if (
        segmentation.ndim != 2
        or not np.issubdtype(segmentation.dtype, np.number)
        or not np.array_equal(segmentation, np.round(segmentation))
        or segmentation.min() < 0
        or segmentation.max() > 255
    ):
        raise layout_error(
            ValueError,
            "GTcls.Segmentation must be a 2-D array of class indices in 0..255",
            path,
            VOC_LAYOUT,
            found=f"shape {segmentation.shape}, dtype {segmentation.dtype}",
        )
    return segmentation.astype(np.uint8)


class VOCSegmentation(SegmentationFolder):
    """PASCAL VOC 2012 (21 classes, background first) read from a local root.

    ``split="val"`` lists ``VOCdevkit/VOC2012/ImageSets/Segmentation/val.txt`` (1,449 ids), images from
    ``JPEGImages``, masks from ``SegmentationClass``. ``split="train"`` lists SBD ``dataset/train.txt``
    (8,498 ids), images from SBD ``dataset/img``, masks from ``dataset/cls/<id>.mat``. Split files are read in
    their own order (the official files are sorted); ``ids`` holds that order.

    Args:
        root: folder holding ``VOCdevkit/VOC2012`` and ``SBD/dataset``; for ``split="val"`` it may also be the
            ``VOCdevkit`` or ``VOC2012`` folder itself.
        split: ``"val"`` (VOC12 val) or ``"train"`` (SBD train).
        crop_size: side of the square crops (paper: 473).
        base_size: reference short side of the training rescale (paper: 512); unused at evaluation.
        boundary: what label 255 (VOC boundary/void) becomes: ``"background"`` (0, the paper's protocol) or
            ``"ignore"`` (kept as ``ignore_index`` 255).
        augment: apply the training augmentation; ``None`` means "only for the train split".
        seed: seed of the augmentation (see :class:`~robseg_lib.data._folder.SegmentationFolder`).
        pad_label: label of pixels padded by the augmentation (paper: 0 = background).
        sbd_root: SBD folder (``benchmark_RELEASE`` or its ``dataset``) if it is not under ``root``.
    """

    num_classes = len(VOC_CLASSES)
    class_names = VOC_CLASSES
    layout = VOC_LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        crop_size: int = 473,
        base_size: int = 512,
        boundary: str = "background",
        augment: bool | None = None,
        seed: int = 0,
        pad_label: int = 0,
        sbd_root: str | Path | None = None,
    ) -> None:
        if split not in ("val", "train"):
            raise ValueError(f"split must be 'val' or 'train', got {split!r}")
        if boundary not in _BOUNDARY_OPTIONS:
            raise ValueError(f"boundary must be one of {_BOUNDARY_OPTIONS}, got {boundary!r}")
        self.root = Path(root)
        self.boundary = boundary
        if split == "val":
            voc = _find_voc2012(self.root)
            ids = read_split(voc / "ImageSets" / "Segmentation" / "val.txt", VOC_LAYOUT)
            images = [voc / "JPEGImages" / f"{i}.jpg" for i in ids]
            labels = [voc / "SegmentationClass" / f"{i}.png" for i in ids]
        else:
            sbd = _find_sbd(self.root, None if sbd_root is None else Path(sbd_root))
            ids = read_split(sbd / "train.txt", VOC_LAYOUT)
            images = [sbd / "img" / f"{i}.jpg" for i in ids]
            labels = [sbd / "cls" / f"{i}.mat" for i in ids]
        super().__init__(
            ids,
            images,
            labels,
            split=split,
            crop_size=crop_size,
            base_size=base_size,
            augment=split == "train" if augment is None else bool(augment),
            seed=seed,
            pad_label=pad_label,
        )

    def _read_label(self, path: Path) -> np.ndarray:
        """PNG masks for VOC12, ``.mat`` masks for SBD."""
        return read_sbd_mat(path) if path.suffix == ".mat" else super()._read_label(path)

    def _prepare_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        """Check values 0..20 and 255, then map 255 to background unless ``boundary="ignore"``."""
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if bad.any():
            raise self._out_of_range(label, bad, path, f"0..{self.num_classes - 1} and {self.ignore_index} (boundary)")
        if self.boundary == "background":
            return np.where(label == self.ignore_index, 0, label).astype(np.uint8)
        return label


def voc_val_sbd_train_overlap(root: str | Path, sbd_root: str | Path | None = None) -> list[str]:
    """Image ids listed both in SBD ``train.txt`` and in VOC2012 ``val.txt``, sorted.

    The paper trains on SBD train and evaluates on VOC12 val without discussing their overlap (§8.6); the book
    reports this count.
    """
    root = Path(root)
    val = read_split(_find_voc2012(root) / "ImageSets" / "Segmentation" / "val.txt", VOC_LAYOUT)
    train = read_split(_find_sbd(root, None if sbd_root is None else Path(sbd_root)) / "train.txt", VOC_LAYOUT)
    return sorted(set(val) & set(train))

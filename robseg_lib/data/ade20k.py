"""ADE20K (the ADEChallengeData2016 release of the scene-parsing benchmark) read from a local root.

Paper protocol (algorithms §8.6, §9): 20,210 training and 2,000 validation images; labels 0..150 kept as they
are, 0 = "other" being a real class (151 classes, no ignored pixel). The release's loader listed images in
directory order (defect D18) and carried 150 names for 151 classes (D21); here the listing is sorted and the name
table has "other" at index 0 followed by the 150 benchmark names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robseg_lib.data._folder import SegmentationFolder, layout_error

__all__ = ["ADE20K", "ADE20K_CLASSES", "ADE20K_LAYOUT"]

# The 150 benchmark names in label order (1..150), "|"-separated.
_BENCHMARK_NAMES = """wall|building|sky|floor|tree|ceiling|road|bed|windowpane|grass|cabinet|sidewalk|person|earth|door|
table|mountain|plant|curtain|chair|car|water|painting|sofa|shelf|house|sea|mirror|rug|field|
armchair|seat|fence|desk|rock|wardrobe|lamp|bathtub|railing|cushion|base|box|column|signboard|
chest of drawers|counter|sand|sink|skyscraper|fireplace|refrigerator|grandstand|path|stairs|runway|
case|pool table|pillow|screen door|stairway|river|bridge|bookcase|blind|coffee table|toilet|flower|
book|hill|bench|countertop|stove|palm|kitchen island|computer|swivel chair|boat|bar|arcade machine|
hovel|bus|towel|light|truck|tower|chandelier|awning|streetlight|booth|television receiver|airplane|
dirt track|apparel|pole|land|bannister|escalator|ottoman|bottle|buffet|poster|stage|van|ship|
fountain|conveyer belt|canopy|washer|plaything|swimming pool|stool|barrel|basket|waterfall|tent|bag|
minibike|cradle|oven|ball|food|step|tank|trade name|microwave|pot|animal|bicycle|lake|dishwasher|
screen|blanket|sculpture|hood|sconce|vase|traffic light|tray|ashcan|fan|pier|crt screen|plate|
monitor|bulletin board|shower|radiator|glass|clock|flag"""
ADE20K_CLASSES: tuple[str, ...] = ("other", *(name.strip() for name in _BENCHMARK_NAMES.split("|")))

ADE20K_LAYOUT = """\
<root>/                                  (<root> may also be ADEChallengeData2016/ itself)
└── ADEChallengeData2016/
    ├── images/
    │   ├── training/<name>.jpg            20,210 images    split="train"
    │   └── validation/<name>.jpg          2,000 images     split="val"
    └── annotations/
        ├── training/<name>.png            greyscale, values 0..150 (0 = other), same size as the image
        └── validation/<name>.png
"""

_SUBFOLDER = {"train": "training", "val": "validation"}


def _find_release(root: Path) -> Path:
    """The ADEChallengeData2016 folder: ``root/ADEChallengeData2016`` or ``root`` itself."""
    candidates = (root / "ADEChallengeData2016", root)
    for candidate in candidates:
        if (candidate / "images").is_dir() or (candidate / "annotations").is_dir():
            return candidate
    raise layout_error(
        FileNotFoundError,
        f"ADEChallengeData2016 folder not found: looked for {candidates[0]} and {root} (root itself)",
        candidates[0],
        ADE20K_LAYOUT,
    )


class ADE20K(SegmentationFolder):
    """ADE20K scene parsing (151 classes, 0 = "other") read from a local root, images in sorted name order.

    Args:
        root: folder holding ``ADEChallengeData2016`` (or that folder itself).
        split: ``"val"`` (2,000 images) or ``"train"`` (20,210 images).
        crop_size: side of the square crops (paper: 512).
        base_size: reference short side of the training rescale (paper: 520); unused at evaluation.
        augment: apply the training augmentation; ``None`` means "only for the train split".
        seed: seed of the augmentation (see :class:`~robseg_lib.data._folder.SegmentationFolder`).
        pad_label: label of pixels padded by the augmentation (paper: 0 = "other").
    """

    num_classes = len(ADE20K_CLASSES)
    class_names = ADE20K_CLASSES
    layout = ADE20K_LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        crop_size: int = 512,
        base_size: int = 520,
        augment: bool | None = None,
        seed: int = 0,
        pad_label: int = 0,
    ) -> None:
        if split not in _SUBFOLDER:
            raise ValueError(f"split must be 'val' or 'train', got {split!r}")
        self.root = Path(root)
        release = _find_release(self.root)
        image_dir = release / "images" / _SUBFOLDER[split]
        label_dir = release / "annotations" / _SUBFOLDER[split]
        for folder in (image_dir, label_dir):
            if not folder.is_dir():
                raise layout_error(FileNotFoundError, "folder not found", folder, ADE20K_LAYOUT)
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() == ".jpg" and p.is_file())
        if not images:
            raise layout_error(FileNotFoundError, "no .jpg images found", image_dir, ADE20K_LAYOUT)
        super().__init__(
            [p.stem for p in images],
            images,
            [label_dir / f"{p.stem}.png" for p in images],
            split=split,
            crop_size=crop_size,
            base_size=base_size,
            augment=split == "train" if augment is None else bool(augment),
            seed=seed,
            pad_label=pad_label,
        )

    def _prepare_label(self, label: np.ndarray, path: Path) -> np.ndarray:
        """Check values 0..150 and keep them unchanged (0 = "other" is a class)."""
        bad = label >= self.num_classes
        if bad.any():
            raise self._out_of_range(label, bad, path, f"0..{self.num_classes - 1}")
        return label

"""Data sets: the embedded DigitScenes default, and PASCAL-VOC / ADE20K read from a local root."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

from robseg_lib.data.digitscenes import DigitCrops, DigitScenes, digitscenes_summary

if TYPE_CHECKING:
    from robseg_lib.data._folder import SegmentationFolder

    SegmentationDataset: TypeAlias = DigitScenes | SegmentationFolder
    """What :func:`create_dataset` builds: a torch ``Dataset`` with ``len``, ``num_classes`` and ``class_names``."""

__all__ = [
    "DigitCrops",
    "DigitScenes",
    "IndexedDataset",
    "LabelledDataset",
    "create_dataset",
    "dataset_from_params",
    "digitscenes_summary",
    "list_datasets",
]

_DATASETS = ("digitscenes", "voc", "ade20k")


class IndexedDataset(Protocol):
    """A map-style data set as the evaluation reads it: ``len`` and integer indexing.

    Items are ``(image, label, ...)``. Every data set of this package qualifies, and so does any torch ``Dataset``
    that defines ``__len__``.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


class LabelledDataset(IndexedDataset, Protocol):
    """An :class:`IndexedDataset` that knows its number of classes K."""

    num_classes: int


def list_datasets() -> list[str]:
    """Names accepted by :func:`create_dataset`."""
    return list(_DATASETS)


def create_dataset(name: str, split: str = "val", root: str | None = None, **kwargs: Any) -> SegmentationDataset:
    """Build a data set by name.

    Args:
        name: ``"digitscenes"`` (embedded), ``"voc"`` or ``"ade20k"`` (read from ``root``).
        split: ``"train"`` or ``"val"``.
        root: local folder of a real data set.
        **kwargs: passed to the data set class (e.g. ``size``, ``image_size``, ``crop_size``).
    """
    if name == "digitscenes":
        return DigitScenes(split=split, **kwargs)
    if name in ("voc", "ade20k"):
        if root is None:
            raise ValueError(f"data set {name!r} is read from a local folder: pass root=... (nothing is downloaded)")
        if name == "voc":
            from robseg_lib.data.voc import VOCSegmentation

            return VOCSegmentation(root, split=split, **kwargs)
        from robseg_lib.data.ade20k import ADE20K

        return ADE20K(root, split=split, **kwargs)
    raise ValueError(f"unknown data set {name!r}; valid: {', '.join(_DATASETS)}")


def dataset_from_params(data: Any, split: str, augment: bool | None = None) -> SegmentationDataset:
    """The data set a profile's ``data`` section describes (:class:`robseg_lib.params.DataParams`)."""
    if data.name == "digitscenes":
        size = data.train_size if split == "train" else data.val_size
        return DigitScenes(
            split=split,
            size=size,
            image_size=data.image_size,
            digits_per_image=data.digits_per_image,
            seed=data.seed,
            ignore_index=data.ignore_index,
        )
    extra: dict[str, Any] = {"crop_size": data.image_size}
    if data.base_size is not None:
        extra["base_size"] = data.base_size
    if augment is not None:
        extra["augment"] = augment
    return create_dataset(data.name, split=split, root=data.root, **extra)

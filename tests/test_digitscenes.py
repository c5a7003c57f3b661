"""DigitScenes: determinism, shapes, value ranges and the digit split."""

import numpy as np
import pytest
import torch

from robseg_lib.data import DigitCrops, DigitScenes, create_dataset, dataset_from_params
from robseg_lib.data.digitscenes import digit_split
from robseg_lib.params import load_params


def test_deterministic_given_seed_and_different_across_seeds():
    a = DigitScenes("train", size=6, image_size=32, seed=3)
    b = DigitScenes("train", size=6, image_size=32, seed=3)
    c = DigitScenes("train", size=6, image_size=32, seed=4)
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_shapes_dtypes_and_ranges():
    ds = DigitScenes("val", size=5, image_size=48, digits_per_image=(2, 3), seed=0)
    x, y = ds[0]
    assert x.shape == (3, 48, 48)
    assert x.dtype == torch.float32
    assert y.shape == (48, 48)
    assert y.dtype == torch.int64
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    values = set(ds.labels.unique().tolist())
    assert values <= set(range(11)) | {255}
    assert 0 in values and 255 in values and values & set(range(1, 11))  # background, borders and digits


def test_ignore_index_is_configurable():
    ds = DigitScenes("train", size=3, image_size=32, seed=0, ignore_index=-1)
    assert (ds.labels == -1).any()
    assert not (ds.labels == 255).any()


def test_train_and_val_digit_samples_are_disjoint():
    train, _ = digit_split("train")
    val, _ = digit_split("val")
    train_rows = {r.tobytes() for r in train.reshape(len(train), -1)}
    val_rows = {r.tobytes() for r in val.reshape(len(val), -1)}
    # sklearn's digits contain a few exact duplicate scans; none may straddle the split beyond those.
    assert len(train_rows & val_rows) <= 2
    assert 0.2 < len(val) / (len(train) + len(val)) < 0.3
    _, val_labels = digit_split("val")
    assert set(np.unique(val_labels)) == set(range(10))


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="unknown split"):
        DigitScenes("test", size=2)
    with pytest.raises(ValueError, match="digits_per_image"):
        DigitScenes("train", size=2, digits_per_image=(3, 1))
    with pytest.raises(ValueError, match="unknown data set 'cityscapes'"):
        create_dataset("cityscapes")
    with pytest.raises(ValueError, match="pass root="):
        create_dataset("voc")


def test_digit_crops_cover_all_classes():
    crops = DigitCrops("train", size=200, crop_size=16, seed=0)
    x, _ = crops[0]
    assert x.shape == (3, 16, 16)
    assert set(crops.targets.tolist()) == set(range(10))


def test_profile_builds_its_dataset():
    p = load_params("smoke")
    ds = dataset_from_params(p.data, "val")
    assert len(ds) == p.data.val_size
    assert ds[0][0].shape[-1] == p.data.image_size

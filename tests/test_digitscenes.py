"""DigitScenes: determinism, shapes, value ranges and the digit split."""

import numpy as np
import pytest
import torch

from robseg_lib.data import DigitCrops, DigitScenes, create_dataset, dataset_from_params
from robseg_lib.data.digitscenes import digit_split, scene_digit_sides
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


def test_digit_crops_cover_background_and_every_digit():
    crops = DigitCrops("train", size=300, crop_size=16, digit_side=(10, 12), seed=0)
    x, _ = crops[0]
    assert x.shape == (3, 16, 16)
    assert set(crops.targets.tolist()) == set(range(11))  # 0 = background, as in the scenes' labels
    share = float((crops.targets == 0).double().mean())
    assert 0.04 < share < 0.15  # one class in eleven
    none = DigitCrops("train", size=50, crop_size=16, digit_side=(10, 12), seed=0, background_share=0.0)
    assert (none.targets > 0).all()


def test_digit_crops_draw_digits_of_the_requested_size():
    # Digits contrast with the smooth texture, so the larger the digit, the larger the spread of a crop's values.
    def spread(side: int, background_share: float = 0.0) -> float:
        crops = DigitCrops("val", 40, 32, (side, side), seed=1, background_share=background_share)
        return float(crops.images.mean(1).flatten(1).std(1).mean())

    assert spread(8, background_share=0.999) < spread(8) < spread(16) < spread(28)
    with pytest.raises(ValueError, match="digit_side"):
        DigitCrops("train", size=2, crop_size=16, digit_side=(10, 20))


def test_scene_digits_fill_the_grid_and_background_is_a_minority():
    ds = DigitScenes("val", size=40, image_size=48, digits_per_image=(4, 4), seed=0)
    valid = ds.labels != 255
    assert float((ds.labels[valid] == 0).double().mean()) < 0.6
    low, high = scene_digit_sides(48)
    assert (low, high) == (22, 28)
    with pytest.raises(ValueError, match="<= 4"):
        DigitScenes("train", size=2, digits_per_image=(1, 5))


def test_profile_builds_its_dataset():
    p = load_params("smoke")
    ds = dataset_from_params(p.data, "val")
    assert len(ds) == p.data.val_size
    assert ds[0][0].shape[-1] == p.data.image_size

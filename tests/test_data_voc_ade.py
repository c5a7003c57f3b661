"""Tests of the VOC / ADE20K loaders, the paper's transforms and the class pixel counts, on generated trees."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
import torch.nn.functional as F
from fixtures_datasets import make_fake_ade20k, make_fake_voc
from PIL import Image

from robseg_lib.data.ade20k import ADE20K, ADE20K_CLASSES
from robseg_lib.data.class_counts import class_pixel_counts
from robseg_lib.data.transforms import EvalTransform, TrainTransform, resize_short_side
from robseg_lib.data.voc import VOC_CLASSES, VOCSegmentation, voc_colormap, voc_val_sbd_train_overlap

SIZE = (40, 56)  # (height, width) of the fixture images
CROP = 40  # equal to the short side: the eval transform only centre-crops, offset round((56 - 40) / 2) = 8
COLS = slice(8, 48)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_voc(tmp_path_factory.mktemp("voc"), size=SIZE)


@pytest.fixture(scope="module")
def ade_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fake_ade20k(tmp_path_factory.mktemp("ade"), size=SIZE)


def _copy(root: Path, tmp_path: Path) -> Path:
    """A private copy of a fixture tree that a test may break."""
    return Path(shutil.copytree(root, tmp_path / "copy"))


def _save_indexed_png(path: Path, label: np.ndarray) -> None:
    """Write a VOC-style indexed-colour PNG (with the full palette, so that indices are stored as they are)."""
    mask = Image.fromarray(label.astype(np.uint8), mode="P")
    mask.putpalette(voc_colormap().reshape(-1).tolist())
    mask.save(path)


def _raw_png(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def _raw_rgb(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).float() / 255


def _assert_layout_error(excinfo: pytest.ExceptionInfo, offending: Path, layout_token: str) -> None:
    message = str(excinfo.value)
    assert "Expected layout:" in message
    assert layout_token in message
    assert str(offending) in message


# --------------------------------------------------------------------------------------------- transforms


def _pil_pair(image: np.ndarray, label: np.ndarray) -> tuple[Image.Image, Image.Image]:
    return Image.fromarray(image.astype(np.uint8)), Image.fromarray(label.astype(np.uint8))


@pytest.mark.parametrize(
    ("height", "width", "row0", "col0"),
    [(40, 56, 0, 8), (40, 57, 0, 8), (40, 59, 0, 10), (57, 40, 8, 0), (40, 40, 0, 0)],
)
def test_eval_transform_centre_crop_offsets(height: int, width: int, row0: int, col0: int) -> None:
    # Short side == crop: no resampling, so the surviving pixels are known exactly. Offsets use Python's round
    # (8.5 -> 8, 9.5 -> 10).
    rows, cols = np.mgrid[0:height, 0:width]
    image = np.stack([cols * 4, rows * 4, np.full_like(rows, 7)], axis=-1)
    x, y = EvalTransform(40)(*_pil_pair(image, cols + 100 * (rows % 2)))
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32
    assert y.shape == (40, 40) and y.dtype == torch.int64
    expected_cols = torch.arange(col0, col0 + 40, dtype=torch.float32)
    expected_rows = torch.arange(row0, row0 + 40, dtype=torch.float32)
    torch.testing.assert_close(x[0] * 255 / 4, expected_cols.expand(40, 40))
    torch.testing.assert_close(x[1] * 255 / 4, expected_rows[:, None].expand(40, 40))
    torch.testing.assert_close(x[2], torch.full((40, 40), 7 / 255))
    assert torch.equal(y, (expected_cols.long() + 100 * (expected_rows.long() % 2)[:, None]))


def test_eval_transform_resizes_short_side_then_crops() -> None:
    # 80 x 114 -> short side 40 gives 40 x 57 (exact factor 2), then columns 8..47 survive.
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 21, size=(40, 57))
    label = np.kron(blocks, np.ones((2, 2), dtype=np.int64))
    smooth = F.interpolate(torch.rand(1, 3, 10, 15), size=(80, 114), mode="bilinear", align_corners=False)
    image = (smooth[0].permute(1, 2, 0).numpy() * 255).round()
    x, y = EvalTransform(40)(*_pil_pair(image, label))
    # Label: nearest neighbour of constant 2x2 blocks is the block value.
    assert torch.equal(y, torch.from_numpy(blocks[:, 8:48]))
    # Image: PIL's bilinear shrink antialiases like torch's antialiased bilinear (up to uint8 rounding).
    reference = F.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255,
        size=(40, 57),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )[0, :, :, 8:48]
    torch.testing.assert_close(x, reference, atol=2 / 255, rtol=0)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


@pytest.mark.parametrize(("width", "height", "new"), [(50, 30, (66, 40)), (30, 50, (40, 66)), (40, 40, (40, 40))])
def test_resize_short_side_floors_the_long_side(width: int, height: int, new: tuple[int, int]) -> None:
    image, label = _pil_pair(np.zeros((height, width, 3)), np.zeros((height, width)))
    resized_image, resized_label = resize_short_side(image, label, 40)
    assert resized_image.size == new and resized_label.size == new


def test_eval_transform_rejects_mismatched_pair() -> None:
    with pytest.raises(ValueError, match="differ"):
        EvalTransform(8)(*_pil_pair(np.zeros((10, 12, 3)), np.zeros((10, 10))))


def _noise_pair(height: int, width: int) -> tuple[Image.Image, Image.Image]:
    rng = np.random.default_rng(1)
    return _pil_pair(rng.integers(0, 256, (height, width, 3)), rng.integers(0, 21, (height, width)))


@pytest.mark.parametrize(("height", "width"), [(20, 30), (60, 90), (90, 60)])
def test_train_transform_output_is_crop(height: int, width: int) -> None:
    transform = TrainTransform(crop_size=32, base_size=40)
    assert transform.short_side_range == (20, 80)
    for seed in range(5):
        x, y = transform(*_noise_pair(height, width), np.random.default_rng(seed))
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32
        assert y.shape == (32, 32) and y.dtype == torch.int64
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_train_transform_is_deterministic_given_the_generator() -> None:
    transform = TrainTransform(crop_size=32, base_size=40)
    outputs = [transform(*_noise_pair(50, 70), np.random.default_rng(seed)) for seed in (3, 3, 4, 5, 6)]
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])
    assert any(not torch.equal(outputs[0][0], other[0]) for other in outputs[2:])


@pytest.mark.parametrize("pad_label", [0, 255])
def test_train_transform_pads_image_with_zeros_and_label_with_pad_label(pad_label: int) -> None:
    # 20 x 30 rescaled to short side 10 -> 10 x 15, padded to 32 x 32, the only possible crop.
    image, label = _pil_pair(np.full((20, 30, 3), 200), np.full((20, 30), 7))
    transform = TrainTransform(32, 10, pad_label=pad_label, scale_range=(1.0, 1.0), flip_p=0.0, blur_p=0.0)
    x, y = transform(image, label, np.random.default_rng(0))
    assert torch.all(y[:10, :15] == 7)
    assert torch.all(y[10:, :] == pad_label) and torch.all(y[:, 15:] == pad_label)
    torch.testing.assert_close(x[:, :10, :15], torch.full((3, 10, 15), 200 / 255))
    assert torch.all(x[:, 10:, :] == 0) and torch.all(x[:, :, 15:] == 0)


def test_train_transform_flip_and_blur() -> None:
    image, label = _noise_pair(32, 32)
    expected_x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().flip(-1) / 255
    expected_y = torch.from_numpy(np.array(label)).long().flip(-1)
    # Scale fixed at the image size and crop == image: only the flip acts.
    flip = TrainTransform(32, 32, scale_range=(1.0, 1.0), flip_p=1.0, blur_p=0.0)
    x, y = flip(image, label, np.random.default_rng(0))
    torch.testing.assert_close(x, expected_x)
    assert torch.equal(y, expected_y)
    # Same draws plus a blur (drawn last): the label is unchanged; the image changes unless the radius ~ U(0, 1)
    # is too small to move a uint8 value.
    blur = TrainTransform(32, 32, scale_range=(1.0, 1.0), flip_p=1.0, blur_p=1.0)
    blurred = [blur(image, label, np.random.default_rng(seed)) for seed in range(6)]
    assert all(torch.equal(yb, expected_y) for _, yb in blurred)
    assert any(not torch.equal(xb, expected_x) for xb, _ in blurred)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crop_size": 0, "base_size": 10},
        {"crop_size": 8, "base_size": -1},
        {"crop_size": 8, "base_size": 10, "pad_label": 256},
        {"crop_size": 8, "base_size": 10, "scale_range": (2.0, 1.0)},
        {"crop_size": 8, "base_size": 10, "flip_p": 1.5},
    ],
)
def test_train_transform_validates_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TrainTransform(**kwargs)


# ------------------------------------------------------------------------------------------------------ VOC


def test_voc_class_table_and_colormap() -> None:
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background" and VOC_CLASSES[-1] == "tvmonitor"
    cmap = voc_colormap()
    assert cmap.shape == (256, 3) and cmap.dtype == np.uint8
    assert cmap[1].tolist() == [128, 0, 0] and cmap[15].tolist() == [192, 128, 128]
    assert cmap[255].tolist() == [224, 224, 192]


def test_voc_val_items_follow_the_eval_protocol(voc_root: Path) -> None:
    ds = VOCSegmentation(voc_root, split="val", crop_size=CROP)
    assert (ds.num_classes, ds.ignore_index, ds.augment, len(ds)) == (21, 255, False, 3)
    assert ds.class_names == VOC_CLASSES
    voc = voc_root / "VOCdevkit" / "VOC2012"
    assert ds.ids == (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    for index, image_id in enumerate(ds.ids):
        x, y = ds[index]
        assert x.shape == (3, CROP, CROP) and x.dtype == torch.float32
        assert y.shape == (CROP, CROP) and y.dtype == torch.int64
        torch.testing.assert_close(x, _raw_rgb(voc / "JPEGImages" / f"{image_id}.jpg")[:, :, COLS])
        raw = _raw_png(voc / "SegmentationClass" / f"{image_id}.png")[:, COLS]
        assert (raw == 255).any(), "the fixture should carry boundary pixels"
        assert torch.equal(y, torch.from_numpy(np.where(raw == 255, 0, raw)).long())


def test_voc_boundary_ignore_keeps_255(voc_root: Path) -> None:
    background = VOCSegmentation(voc_root, crop_size=CROP)
    ignore = VOCSegmentation(voc_root, crop_size=CROP, boundary="ignore")
    for index in range(len(ignore)):
        y_bg, y_ig = background[index][1], ignore[index][1]
        assert (y_ig == 255).any() and not (y_bg == 255).any()
        assert torch.equal(y_bg, torch.where(y_ig == 255, torch.zeros_like(y_ig), y_ig))


def test_voc_root_variants(voc_root: Path) -> None:
    reference = VOCSegmentation(voc_root, crop_size=CROP)
    for root in (voc_root / "VOCdevkit", voc_root / "VOCdevkit" / "VOC2012"):
        ds = VOCSegmentation(root, crop_size=CROP)
        assert ds.ids == reference.ids and torch.equal(ds[0][1], reference[0][1])


def test_voc_keeps_split_file_order(voc_root: Path, tmp_path: Path) -> None:
    root = _copy(voc_root, tmp_path)
    split = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    ids = split.read_text().split()
    split.write_text("\n".join(reversed(ids)) + "\n")
    assert VOCSegmentation(root, crop_size=CROP).ids == ids[::-1]


def test_voc_train_reads_sbd_mat(voc_root: Path) -> None:
    ds = VOCSegmentation(voc_root, split="train", crop_size=CROP, augment=False)
    sbd = voc_root / "SBD" / "dataset"
    assert ds.ids == (sbd / "train.txt").read_text().split() and len(ds) == 4
    for index, image_id in enumerate(ds.ids):
        x, y = ds[index]
        mat = scipy.io.loadmat(sbd / "cls" / f"{image_id}.mat")  # record-array reading, independent of the loader
        segmentation = mat["GTcls"][0, 0]["Segmentation"]
        assert torch.equal(y, torch.from_numpy(segmentation[:, COLS].astype(np.int64)))
        torch.testing.assert_close(x, _raw_rgb(sbd / "img" / f"{image_id}.jpg")[:, :, COLS])


def test_voc_train_augmentation_is_seeded(voc_root: Path) -> None:
    ds = VOCSegmentation(voc_root, split="train", crop_size=32, base_size=40, seed=7)
    assert ds.augment
    twin = VOCSegmentation(voc_root, split="train", crop_size=32, base_size=40, seed=7)
    other = VOCSegmentation(voc_root, split="train", crop_size=32, base_size=40, seed=8)
    first = [ds[i] for i in range(len(ds))]
    for (x, y), index in zip(first, range(len(ds)), strict=True):
        assert x.shape == (3, 32, 32) and y.shape == (32, 32)
        assert int(y.max()) < 21
        x_again, y_again = ds[index]
        x_twin, y_twin = twin[index]
        assert torch.equal(x, x_again) and torch.equal(y, y_again)
        assert torch.equal(x, x_twin) and torch.equal(y, y_twin)
    assert any(not torch.equal(first[i][0], other[i][0]) for i in range(len(ds)))
    ds.set_epoch(1)
    assert any(not torch.equal(first[i][0], ds[i][0]) for i in range(len(ds)))
    ds.set_epoch(0)
    assert torch.equal(first[0][0], ds[0][0])


def test_voc_train_augmentation_independent_of_loader_workers(voc_root: Path) -> None:
    ds = VOCSegmentation(voc_root, split="train", crop_size=32, base_size=40, seed=3)
    ds.set_epoch(2)
    runs = []
    for workers in (0, 2):  # batch size 1: with 2 workers the items are split between processes
        batches = list(torch.utils.data.DataLoader(ds, batch_size=1, num_workers=workers))
        runs.append((torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def test_voc_augment_flag(voc_root: Path) -> None:
    assert VOCSegmentation(voc_root, split="val", augment=True, crop_size=32, base_size=40).augment
    assert not VOCSegmentation(voc_root, split="train", augment=False, crop_size=32).augment


def test_voc_overlap_helper(voc_root: Path) -> None:
    assert voc_val_sbd_train_overlap(voc_root) == ["2007_000000"]


@pytest.mark.parametrize("kwargs", [{"split": "test"}, {"boundary": "void"}, {"seed": -1}, {"crop_size": 0}])
def test_voc_validates_arguments(voc_root: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        VOCSegmentation(voc_root, **kwargs)


def test_voc_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as excinfo:
        VOCSegmentation(tmp_path / "nowhere")
    _assert_layout_error(excinfo, tmp_path / "nowhere" / "VOCdevkit" / "VOC2012", "JPEGImages")
    assert "does not exist" in str(excinfo.value)


def test_voc_missing_split_file(voc_root: Path, tmp_path: Path) -> None:
    root = _copy(voc_root, tmp_path)
    split = root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"
    split.unlink()
    with pytest.raises(FileNotFoundError) as excinfo:
        VOCSegmentation(root)
    _assert_layout_error(excinfo, split, "ImageSets/Segmentation/val.txt")
    assert "train.txt" in str(excinfo.value)  # what was found in the folder


def test_voc_missing_sbd(voc_root: Path, tmp_path: Path) -> None:
    root = _copy(voc_root, tmp_path)
    shutil.rmtree(root / "SBD")
    with pytest.raises(FileNotFoundError) as excinfo:
        VOCSegmentation(root, split="train")
    _assert_layout_error(excinfo, root / "SBD" / "dataset", "cls/<id>.mat")
    (root / "SBD" / "dataset").mkdir(parents=True)
    (root / "SBD" / "dataset" / "cls").mkdir()
    with pytest.raises(FileNotFoundError) as excinfo:
        voc_val_sbd_train_overlap(root)
    _assert_layout_error(excinfo, root / "SBD" / "dataset" / "train.txt", "SBD/dataset/")


def test_voc_image_without_mask(voc_root: Path, tmp_path: Path) -> None:
    root = _copy(voc_root, tmp_path)
    mask = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000001.png"
    mask.unlink()
    with pytest.raises(FileNotFoundError, match="image without mask") as excinfo:
        VOCSegmentation(root)
    _assert_layout_error(excinfo, mask, "SegmentationClass/<id>.png")


def test_voc_mask_of_other_size(voc_root: Path, tmp_path: Path) -> None:
    root = _copy(voc_root, tmp_path)
    mask = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000002.png"
    _save_indexed_png(mask, np.zeros((40, 50)))
    ds = VOCSegmentation(root)
    with pytest.raises(ValueError, match="differ in size") as excinfo:
        ds[2]
    _assert_layout_error(excinfo, mask, "SegmentationClass/<id>.png")
    assert "mask 50x40, image 56x40" in str(excinfo.value)


def test_voc_label_out_of_range(voc_root: Path, tmp_path: Path) -> None:
    root = _copy(voc_root, tmp_path)
    mask = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000000.png"
    _save_indexed_png(mask, np.full((40, 56), 30))
    with pytest.raises(ValueError, match="out of range") as excinfo:
        VOCSegmentation(root)[0]
    _assert_layout_error(excinfo, mask, "0..20, 255 = boundary")
    assert "[30]" in str(excinfo.value)


def test_voc_rgb_mask_rejected(voc_root: Path, tmp_path: Path) -> None:
    root = _copy(voc_root, tmp_path)
    mask = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000000.png"
    Image.open(mask).convert("RGB").save(mask)
    with pytest.raises(ValueError, match="class indices") as excinfo:
        VOCSegmentation(root)[0]
    _assert_layout_error(excinfo, mask, "indexed colour")


def test_voc_malformed_mat(voc_root: Path, tmp_path: Path) -> None:
    root = _copy(voc_root, tmp_path)
    mat = root / "SBD" / "dataset" / "cls" / "2008_000000.mat"
    scipy.io.savemat(mat, {"GTinst": {"Segmentation": np.zeros((40, 56), dtype=np.uint8)}})
    ds = VOCSegmentation(root, split="train", augment=False)
    index = ds.ids.index("2008_000000")
    with pytest.raises(ValueError, match="GTcls") as excinfo:
        ds[index]
    _assert_layout_error(excinfo, mat, "cls/<id>.mat")
    assert "GTinst" in str(excinfo.value)
    mat.write_text("not a mat file")
    with pytest.raises(ValueError, match="cannot be read"):
        ds[index]


# --------------------------------------------------------------------------------------------------- ADE20K


def test_ade20k_class_table() -> None:
    assert len(ADE20K_CLASSES) == 151 and len(set(ADE20K_CLASSES)) == 151
    assert ADE20K_CLASSES[0] == "other"
    # Spot checks, including Fig. 1's targets (sky = 3, grass = 10 in the 151-class label space).
    expected = {1: "wall", 3: "sky", 10: "grass", 13: "person", 45: "chest of drawers", 150: "flag"}
    assert {i: ADE20K_CLASSES[i] for i in expected} == expected
    assert ADE20K_CLASSES[142:] == (
        "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag"
    )  # fmt: skip


def test_ade20k_items_sorted_and_labels_kept(ade_root: Path) -> None:
    ds = ADE20K(ade_root, split="val", crop_size=CROP)
    assert (ds.num_classes, ds.augment, len(ds)) == (151, False, 3)
    assert ds.ids == sorted(ds.ids) == [f"ADE_val_{k:08d}" for k in (1, 2, 3)]
    release = ade_root / "ADEChallengeData2016"
    for index, name in enumerate(ds.ids):
        x, y = ds[index]
        assert x.shape == (3, CROP, CROP) and y.shape == (CROP, CROP) and y.dtype == torch.int64
        raw = _raw_png(release / "annotations" / "validation" / f"{name}.png")
        assert torch.equal(y, torch.from_numpy(raw[:, COLS]).long())
        torch.testing.assert_close(x, _raw_rgb(release / "images" / "validation" / f"{name}.jpg")[:, :, COLS])
    # The extreme labels 0 and 150 come through unchanged (no ignore mapping).
    assert {0, 150} <= set(ds[0][1].unique().tolist())


def test_ade20k_train_and_root_variants(ade_root: Path) -> None:
    train = ADE20K(ade_root, split="train", crop_size=32, base_size=40, seed=1)
    assert train.augment and len(train) == 4 and train.ids == sorted(train.ids)
    x, y = train[3]
    assert x.shape == (3, 32, 32) and y.shape == (32, 32)
    assert torch.equal(train[3][0], x)
    direct = ADE20K(ade_root / "ADEChallengeData2016", split="train", crop_size=32, base_size=40, seed=1)
    assert direct.ids == train.ids and torch.equal(direct[3][1], y)


def test_ade20k_greyscale_jpeg_becomes_rgb(ade_root: Path, tmp_path: Path) -> None:
    root = _copy(ade_root, tmp_path)
    image = root / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000002.jpg"
    Image.open(image).convert("L").save(image)
    x, _ = ADE20K(root, crop_size=CROP)[1]
    assert x.shape == (3, CROP, CROP)
    torch.testing.assert_close(x[0], x[1])


def test_ade20k_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as excinfo:
        ADE20K(tmp_path / "nowhere")
    _assert_layout_error(excinfo, tmp_path / "nowhere" / "ADEChallengeData2016", "annotations/")


def test_ade20k_missing_split_folder(ade_root: Path, tmp_path: Path) -> None:
    root = _copy(ade_root, tmp_path)
    folder = root / "ADEChallengeData2016" / "annotations" / "validation"
    shutil.rmtree(folder)
    with pytest.raises(FileNotFoundError) as excinfo:
        ADE20K(root)
    _assert_layout_error(excinfo, folder, "validation/<name>.png")
    assert "training/" in str(excinfo.value)


def test_ade20k_image_without_mask(ade_root: Path, tmp_path: Path) -> None:
    root = _copy(ade_root, tmp_path)
    mask = root / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000003.png"
    mask.unlink()
    with pytest.raises(FileNotFoundError, match="image without mask") as excinfo:
        ADE20K(root, split="train")
    _assert_layout_error(excinfo, mask, "ADEChallengeData2016/")


def test_ade20k_mask_of_other_size_and_out_of_range(ade_root: Path, tmp_path: Path) -> None:
    root = _copy(ade_root, tmp_path)
    annotations = root / "ADEChallengeData2016" / "annotations" / "validation"
    Image.fromarray(np.zeros((30, 56), dtype=np.uint8)).save(annotations / "ADE_val_00000001.png")
    Image.fromarray(np.full((40, 56), 151, dtype=np.uint8)).save(annotations / "ADE_val_00000002.png")
    ds = ADE20K(root, crop_size=CROP)
    with pytest.raises(ValueError, match="differ in size") as excinfo:
        ds[0]
    _assert_layout_error(excinfo, annotations / "ADE_val_00000001.png", "greyscale, values 0..150")
    with pytest.raises(ValueError, match="out of range") as excinfo:
        ds[1]
    _assert_layout_error(excinfo, annotations / "ADE_val_00000002.png", "greyscale, values 0..150")
    assert "[151]" in str(excinfo.value)


def test_ade20k_empty_image_folder(ade_root: Path, tmp_path: Path) -> None:
    root = _copy(ade_root, tmp_path)
    folder = root / "ADEChallengeData2016" / "images" / "validation"
    for path in folder.iterdir():
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no \.jpg images") as excinfo:
        ADE20K(root)
    _assert_layout_error(excinfo, folder, "images/")


# --------------------------------------------------------------------------------------------- class counts


def test_class_pixel_counts_match_numpy(voc_root: Path) -> None:
    ds = VOCSegmentation(voc_root, crop_size=CROP, boundary="ignore")
    labels = [_raw_png(voc_root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{i}.png")[:, COLS] for i in ds.ids]
    stacked = np.concatenate([label.ravel() for label in labels])
    expected = np.bincount(stacked[stacked != 255], minlength=21)
    counts = class_pixel_counts(ds, num_classes=21)
    assert counts.dtype == torch.int64 and counts.shape == (21,)
    assert counts.tolist() == expected.tolist()
    first = np.bincount(labels[0][labels[0] != 255].ravel(), minlength=21)
    assert class_pixel_counts(ds, 21, max_items=1).tolist() == first.tolist()
    # Boundary mapped to background: every pixel counted.
    assert int(class_pixel_counts(VOCSegmentation(voc_root, crop_size=CROP), 21).sum()) == stacked.size


def test_class_pixel_counts_generic_dataset_and_errors() -> None:
    items = [(torch.zeros(3, 2, 2), torch.tensor([[0, 2], [255, 2]])), (None, np.array([[1, 1], [1, 0]]))]
    assert class_pixel_counts(items, num_classes=4).tolist() == [2, 3, 2, 0]
    assert class_pixel_counts([(None, torch.tensor([[0, 2], [2, 1]]))], 3, ignore_index=2).tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="outside"):
        class_pixel_counts(items, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        class_pixel_counts(items, num_classes=0)
    with pytest.raises(ValueError, match="max_items"):
        class_pixel_counts(items, num_classes=4, max_items=-1)
    with pytest.raises(ValueError, match="integers"):
        class_pixel_counts([(None, torch.zeros(2, 2))], num_classes=4)

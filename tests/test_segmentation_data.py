"""Segmentation data: pairing images with masks, decoding index / 0-255 / palette / colour
masks, the errors that name the broken file, mask-aware augmentation, padding collate."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SEGMENT_CLASSES, make_segmentation_set
from PIL import Image

from visiontl.data import DataError
from visiontl.data.seg_transforms import SegmentAugment, SegmentTrain
from visiontl.data.segmentation import MaskSpec, check_pairs, collate, find_pairs, split_folder

SPEC = MaskSpec(3)


def test_pairs_by_name_and_pixel_counts(segmentation_set):
    pairs = find_pairs(*split_folder(segmentation_set))
    assert len(pairs) == 8 and all(i.stem == m.stem for i, m in pairs)
    report = check_pairs(pairs, SPEC, "seg")
    masks = np.stack([np.asarray(Image.open(m)) for _, m in pairs])
    assert report.pixels == np.bincount(masks.ravel(), minlength=3).tolist() and report.void == 0
    assert "background" in report.text(SEGMENT_CLASSES) and "8 image/mask pairs" in report.text(SEGMENT_CLASSES)


def test_mask_suffix_and_tif_masks(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "ma").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "im" / "a.jpg")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(tmp_path / "ma" / "a_mask.tif")
    (pair,) = find_pairs(tmp_path / "im", tmp_path / "ma", suffix="_mask")
    assert pair[1].name == "a_mask.tif" and (SPEC.decode(pair[1]) == 1).all()


def test_missing_mask_names_the_image(segmentation_set):
    (segmentation_set / "masks" / "003.png").unlink()
    with pytest.raises(DataError, match=r"003\.png: no mask for it: expected .*masks/003\.png"):
        find_pairs(segmentation_set / "images", segmentation_set / "masks")


def test_size_mismatch_names_both_files(segmentation_set):
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(segmentation_set / "masks" / "002.png")
    pairs = find_pairs(segmentation_set / "images", segmentation_set / "masks")
    with pytest.raises(DataError, match=r"masks/002\.png: mask is 48×32 but its image .*images/002\.png is 64×64"):
        check_pairs(pairs, SPEC, "seg")


def test_value_outside_classes_names_the_file_and_value(segmentation_set):
    bad = np.asarray(Image.open(segmentation_set / "masks" / "005.png")).copy()
    bad[3, 3] = 7
    Image.fromarray(bad).save(segmentation_set / "masks" / "005.png")
    pairs = find_pairs(segmentation_set / "images", segmentation_set / "masks")
    with pytest.raises(DataError, match=r"005\.png: mask value 7 is outside the 3 classes"):
        check_pairs(pairs, SPEC, "seg")


def test_mask_values_map_raw_values_and_keep_void(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 128, 200], [255, 0, 128]], np.uint8)).save(path)
    spec = MaskSpec(3, mask_values=(0, 128, 200), ignore_index=255)
    assert spec.decode(path).tolist() == [[0, 1, 2], [255, 0, 1]]
    binary = MaskSpec(2, mask_values=(0, 255))  # 0/255 masks: 255 is a class here, not void
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(path)
    assert binary.decode(path).tolist() == [[0, 1]]
    Image.fromarray(np.array([[0, 17]], np.uint8)).save(path)
    with pytest.raises(DataError, match=r"m\.png: mask value 17 is not in data.mask_values \[0, 255\]"):
        binary.decode(path)


def test_palette_png_and_colour_masks(tmp_path):
    indices = np.array([[0, 1], [2, 255]], np.uint8)
    p = Image.frombytes("P", (2, 2), indices.tobytes())
    p.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [9] * (3 * 253))
    p.save(tmp_path / "p.png")
    assert SPEC.decode(tmp_path / "p.png").tolist() == indices.tolist()  # the indices, not the colours
    colours = np.array([[[0, 0, 0], [250, 0, 0]], [[0, 250, 0], [0, 250, 0]]], np.uint8)
    Image.fromarray(colours).save(tmp_path / "rgb.png")
    spec = MaskSpec(3, palette=((0, 0, 0), (250, 0, 0), (0, 250, 0)))
    assert spec.decode(tmp_path / "rgb.png").tolist() == [[0, 1], [2, 2]]
    with pytest.raises(DataError, match="needs data.palette"):
        SPEC.decode(tmp_path / "rgb.png")
    colours[1, 1] = (1, 2, 3)
    Image.fromarray(colours).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match=r"rgb\.png: colour \(1, 2, 3\) at \(x=1, y=1\) is not in data.palette"):
        spec.decode(tmp_path / "rgb.png")


def test_unreadable_mask_is_named(tmp_path):
    (tmp_path / "m.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"m\.png: not a readable mask image"):
        SPEC.decode(tmp_path / "m.png")


@pytest.mark.parametrize("downscale", [1.0, 2.0])  # 96 px at its own scale; scaled down to 64 px first
def test_training_transform_moves_image_and_mask_together(downscale):
    # the image's grey level encodes the class (0, 100, 200): after any flip, rotation, scale
    # and crop, every mask pixel must still sit on its grey level; padding is void
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 3, (6, 6)).repeat(16, 0).repeat(16, 1).astype(np.int64)  # 96², 16-px blocks
    image = np.repeat((mask * 100).astype(np.uint8)[..., None], 3, axis=2)
    aug = SegmentAugment(scale_min=0.5, scale_max=1.5, hflip=0.5, vflip=0.5, rotate90=True, rotate=0.0, color=0.0)
    tf = SegmentTrain(64, aug, ignore_index=255, downscale=downscale)
    torch.manual_seed(0)
    saw_void = False
    for _ in range(20):
        img, m = tf(image, mask)
        assert img.shape == (64, 64, 3) and m.shape == (64, 64)
        void = m == 255
        saw_void |= bool(void.any())
        grey = img[..., 0].astype(int)
        # nearest-neighbour mask vs interpolated image: compare away from block edges only
        # (pixels whose 5×5 neighbourhood in the mask is one class)
        pad = np.pad(m, 2, mode="edge")
        uniform = np.all([pad[2 + dy:66 + dy, 2 + dx:66 + dx] == m for dy in range(-2, 3) for dx in range(-2, 3)], axis=0)
        inside = ~void & uniform
        assert inside.sum() > 200
        assert (np.abs(grey[inside] - m[inside] * 100) <= 10).mean() > 0.95
        assert (img[void] == 0).all()
    assert saw_void  # scale 0.5 of 96 (or 64) px < 64: padded with void


def test_colour_augmentation_leaves_the_mask_alone():
    mask = np.tile(np.array([0, 1, 2]).repeat(32), (96, 1))
    image = np.full((96, 96, 3), 120, np.uint8)
    tf = SegmentTrain(96, SegmentAugment(scale_min=1.0, scale_max=1.0, hflip=0.0, color=0.5))
    torch.manual_seed(1)
    outs = [tf(image, mask) for _ in range(5)]
    assert any(not np.array_equal(img, image) for img, _ in outs)
    assert all(np.array_equal(m, mask) for _, m in outs)


def test_collate_pads_images_with_zero_and_masks_with_void():
    a = (torch.full((3, 4, 6), 9, dtype=torch.uint8), torch.ones(4, 6, dtype=torch.int64))
    b = (torch.full((3, 5, 3), 7, dtype=torch.uint8), torch.zeros(5, 3, dtype=torch.int64))
    images, masks = collate([a, b], ignore_index=255)
    assert images.shape == (2, 3, 5, 6) and masks.shape == (2, 5, 6)
    assert (images[0, :, 4:] == 0).all() and (masks[0, 4:] == 255).all() and (masks[1, :, 3:] == 255).all()
    assert (masks[0, :4] == 1).all() and (images[1, :, :, :3] == 7).all()


def test_missing_classes_and_bad_sizes_are_config_errors(segmentation_set, tmp_path):
    from conftest import tiny_segment_config

    from visiontl.adapters import Segmenter

    cfg = tiny_segment_config(segmentation_set, tmp_path, data__classes=[])
    with pytest.raises(ValueError, match=r"data.classes is not set"):
        Segmenter(config=cfg).datasets()
    cfg = tiny_segment_config(segmentation_set, tmp_path, data__image_size=50)
    with pytest.raises(ValueError, match="multiple of 32"):
        Segmenter(config=cfg).datasets()
    cfg = tiny_segment_config(segmentation_set, tmp_path, data__mask_values=[0, 255])
    with pytest.raises(ValueError, match="mask_values has 2 entries for 3 classes"):
        Segmenter(config=cfg).datasets()
    root = make_segmentation_set(tmp_path / "noimages", n=1)
    (root / "masks").rename(root / "segs")
    cfg = tiny_segment_config(root, tmp_path)
    with pytest.raises(DataError, match="expected images/ and masks/"):
        Segmenter(config=cfg).datasets()

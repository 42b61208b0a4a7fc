"""Inception v3 as a registry backbone: torchvision's file layout with its own [-1, 1]
preprocessing, the 299 px default, the smallest input, and runs of classification,
segmentation and style transfer taps on it."""
from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from conftest import SEGMENT_CLASSES, tiny_config, tiny_segment_config
from torchvision.models.feature_extraction import create_feature_extractor

from visiontl import create_backbone
from visiontl.adapters import Classifier, Segmenter
from visiontl.backbones import WeightsUnavailable, list_backbones
from visiontl.backbones.base import IMAGENET_MEAN, IMAGENET_STD


def test_torchvision_file_loads_with_its_own_preprocessing(tmp_path):
    torch.manual_seed(0)
    reference = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
    for m in reference.modules():  # statistics far from the init's, so a wrong mapping shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3), m.running_var.uniform_(0.5, 2.0)
    path = tmp_path / "inception_v3_google.pth"
    torch.save(reference.state_dict(), path)
    bb = create_backbone("inception_v3", weights=str(path)).eval()
    assert bb.preprocessing.mean == (0.5, 0.5, 0.5) and bb.preprocessing.std == (0.5, 0.5, 0.5)
    # torchvision's own forward with transform_input=True (ImageNet-normalised in, [-1, 1] inside)
    reference.transform_input = True
    taps = create_feature_extractor(reference.eval(), {"Conv2d_2b_3x3": "s0", "Mixed_5d": "s2", "Mixed_7c": "s4"})
    x = torch.rand(2, 3, 299, 299)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        want, got = taps((x - mean) / std), bb(x)
    for name, i in (("s0", 0), ("s2", 2), ("s4", 4)):
        torch.testing.assert_close(got[i], want[name], rtol=1e-4, atol=1e-4)
    assert [f.shape[-1] for f in got] == [147, 71, 35, 17, 8]
    # offline without the file: the clear error naming where it goes
    with pytest.raises(WeightsUnavailable, match="inception_v3_google-0cc3c7bd.pth"):
        create_backbone("inception_v3", weights="imagenet")
    assert {r["name"]: r["input_size"] for r in list_backbones()}["inception_v3"] == 299


def test_image_size_defaults_to_the_backbones_and_too_small_is_refused(image_folder, tmp_path):
    assert Classifier(backbone="inception_v3", weights="none").config.data.image_size == 299
    assert Classifier(backbone="mobilenet_v2", weights="none").config.data.image_size == 224
    clf = Classifier(config=tiny_config(image_folder, tmp_path, model__backbone="inception_v3", data__image_size=64))
    with pytest.raises(ValueError, match="data.image_size=64: backbone 'inception_v3' needs inputs of at least 75 px"):
        clf.fit()


def test_classification_and_segmentation_runs(image_folder, segmentation_set, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(image_folder, tmp_path, model__backbone="inception_v3", data__image_size=80, train__epochs=3,
                      optim__lr=1e-3)
    clf = Classifier(config=cfg)
    history = clf.fit()
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert clf.predict([next(image_folder.rglob("*.png"))])[0]["labels"]
    seg = Segmenter(config=tiny_segment_config(segmentation_set, tmp_path, model__backbone="inception_v3",
                                               data__image_size=96, train__epochs=2))
    history = seg.fit()
    assert all(torch.isfinite(torch.tensor(h["train/loss"])) for h in history)
    masks = seg.predict([next((segmentation_set / "images").glob("*.png"))])
    assert masks[0]["mask"].shape == (64, 64) and set(masks[0]["fractions"]) == set(SEGMENT_CLASSES)


def test_style_transfer_taps_its_stages():
    from visiontl.adapters.style_transfer.taps import FeatureTaps, named_layers

    bb = create_backbone("inception_v3", weights="none")
    assert [n for n, _, _ in named_layers(bb)] == [f"stage{i}" for i in range(5)]
    taps = FeatureTaps(bb, ["stage1", "stage3"])
    out = taps(torch.rand(1, 3, 128, 128))
    assert out["stage1"].shape[1] == 192 and out["stage3"].shape[1] == 768

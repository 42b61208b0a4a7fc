"""Every registered backbone: real feature shapes match feature_info; groups cover it."""
import pytest
import torch

from visiontl import create_backbone
from visiontl.backbones import BACKBONES, Backbone, Preprocessing, input_sizes, list_backbones

REQUIRED = ["mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "resnet18", "resnet34", "resnet50",
            "vgg16", "vgg19", "vgg16_bn", "efficientnet_b0", "convnext_tiny", "inception_v3"]


def test_required_backbones_registered():
    assert set(REQUIRED) <= set(BACKBONES.names())


@pytest.mark.parametrize("name", BACKBONES.names())
def test_feature_info_matches_real_outputs(name):
    bb = create_backbone(name, weights="none").eval()
    input_size, min_size = input_sizes(name)
    size = 64 if min_size <= 64 else input_size  # inception_v3 takes 75 px and up
    with torch.no_grad():
        feats = bb(torch.rand(2, 3, size, size))
    assert len(feats) == len(bb.feature_info)
    for f, info in zip(feats, bb.feature_info):
        assert f.shape[0] == 2 and f.shape[1] == info.channels, (name, info)
        # exact for padded convolutions; unpadded ones (inception_v3) lose a border: 299 px → 8 cells, not 9.3
        assert info.reduction <= size / f.shape[-1] < 1.25 * info.reduction, (name, info, f.shape)
        assert f.shape[-1] == f.shape[-2]
    strides = [i.reduction for i in bb.feature_info]
    assert strides == sorted(strides) and strides[-1] == 32
    # layer groups are ordered, disjoint and cover every parameter
    groups = bb.layer_groups()
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids)) == len(list(bb.parameters()))
    assert isinstance(bb.preprocessing, Preprocessing)


def test_uint8_and_float_inputs_agree():
    bb = create_backbone("resnet18", weights="none").eval()
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(bb(x)[-1], bb(x.float() / 255)[-1])


# timm's own fine-grained groups (group_matcher(coarse=False)), less those of the classifier head
TIMM_GROUPS = {"resnet18": 9, "convnext_nano": 15, "efficientnet_b0": 17, "mobilenetv3_small_100": 13}


@pytest.mark.parametrize("name", ["resnet18", "convnext_nano", "efficientnet_b0", "mobilenetv3_small_100"])
def test_timm_passthrough(name):
    pytest.importorskip("timm")
    bb = create_backbone(f"timm:{name}", weights="none").eval()
    assert isinstance(bb, Backbone) and bb.name == f"timm:{name}"
    with torch.no_grad():
        feats = bb(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [i.channels for i in bb.feature_info]
    assert [64 // f.shape[-1] for f in feats] == [i.reduction for i in bb.feature_info]
    groups = bb.layer_groups()
    assert len(groups) == TIMM_GROUPS[name]  # timm's grouping: the stem, then one per block
    ids = [id(p) for g in groups for p in g.parameters()]
    assert len(ids) == len(set(ids)) == len(list(bb.parameters()))
    stem = next(iter(bb.net.children()))  # the first module runs first, and is in the first group
    assert {id(p) for p in stem.parameters()} <= {id(p) for p in groups[0].parameters()}


def test_timm_local_weights_file(tmp_path):
    timm = pytest.importorskip("timm")
    full = timm.create_model("resnet18")
    torch.save(full.state_dict(), tmp_path / "r18.pth")
    bb = create_backbone("timm:resnet18", weights=str(tmp_path / "r18.pth"))
    assert bb.weights_source.startswith("file:")
    torch.testing.assert_close(bb.net.layer4[0].conv1.weight, full.layer4[0].conv1.weight)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(KeyError, match="valid names: .*mobilenet_v2"):
        create_backbone("mobilenet_v9", weights="none")


def test_list_backbones_reports_shipped_weights_offline():
    rows = {r["name"]: r["weights"] for r in list_backbones()}
    assert rows["mobilenet_v2"].startswith("shipped")
    assert rows["vgg19"].startswith("shipped")
    assert rows["resnet18"] == "not available"  # empty hub cache, VISIONTL_OFFLINE=1


def test_registering_a_backbone_is_one_call_and_everything_knows_it(monkeypatch):
    """A user's backbone: list_backbones, create_backbone (random init, a file, a clear error
    for imagenet) and a task's model.backbone all work with it."""
    import torch
    from torch import nn

    from visiontl.adapters import Classifier
    from visiontl.backbones import BACKBONES, Backbone, FeatureInfo, WeightsUnavailable, register_backbone

    def tiny(*, state_dict=None, preprocessing=None, source=""):
        bb = Backbone([nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU()),
                       nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())],
                      [FeatureInfo(8, 2, "s0"), FeatureInfo(16, 4, "s1")], name="tiny_user")
        if state_dict is not None:
            bb.load_state_dict(state_dict)
        return bb

    monkeypatch.setattr(BACKBONES, "_items", dict(BACKBONES._items))  # the registration ends with the test
    register_backbone("tiny_user", tiny)
    assert {"name": "tiny_user", "weights": "no pretrained weights", "tags": [], "input_size": 224} in list_backbones()
    assert [f.shape[1] for f in create_backbone("tiny_user", weights="none")(torch.rand(1, 3, 32, 32))] == [8, 16]
    with pytest.raises(WeightsUnavailable, match="tiny_user: no pretrained weights are registered"):
        create_backbone("tiny_user", weights="imagenet")
    clf = Classifier(backbone="tiny_user", weights="none", classes=["a", "b"], strategy="full")
    assert clf.model(torch.rand(2, 3, 32, 32)).shape == (2, 2)
    with pytest.raises(KeyError, match="unknown backbone prefix 'nope'; valid names: timm"):
        create_backbone("nope:thing")


def test_random_init_batchnorm_follows_the_data_at_pytorchs_momentum(tmp_path):
    # torchvision builds MobileNetV3 with momentum 0.01; from random init on a few hundred steps its
    # running statistics stay the init's (Fashion-MNIST: validation at chance, RESULTS.md)
    bb = create_backbone("mobilenet_v3_small", weights="none")
    norms = [m for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.1 for m in norms)
    bb.train()
    x = torch.rand(8, 3, 64, 64) * 0.2 + 0.7  # data far from the init's statistics (mean 0, var 1)
    for _ in range(30):
        with torch.no_grad():
            bb(x)
    first = norms[0]
    with torch.no_grad():
        stem = bb.stages[0][0][0](bb.preprocess(x))  # what the first BatchNorm sees
    want = stem.mean((0, 2, 3))
    assert torch.allclose(first.running_mean, want, atol=0.05 * want.abs().max().item())  # 0.01: 26 % of the way

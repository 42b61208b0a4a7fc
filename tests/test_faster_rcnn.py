"""Faster R-CNN (model.architecture=faster_rcnn): every registry backbone, the pyramid sized
from feature_info, FrozenBatchNorm2d, training through the engine, predict, export, load,
torchvision's COCO detector weights, and the refusals (TTA, int8, distillation)."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import DETECT_CLASSES, tiny_detect_config
from torchvision.ops.misc import FrozenBatchNorm2d

from visiontl.adapters import Detector
from visiontl.backbones import BACKBONES, create_backbone, input_sizes
from visiontl.backbones.weights import WeightsUnavailable

pytest.importorskip("ultralytics")
two_stage = pytest.importorskip("visiontl.adapters.detection.two_stage")


def _config(data, out, **overrides):
    return tiny_detect_config(data, out, model__architecture="faster_rcnn", **overrides)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builds_trains_one_step_and_infers(name, detection_set):
    torch.manual_seed(0)
    size = 64 if input_sizes(name)[1] <= 64 else 96  # inception_v3 takes 75 px and up
    det = Detector(config=_config(detection_set, "unused", data__image_size=size, model__backbone=name),
                   classes=DETECT_CLASSES)
    model = det.model
    assert isinstance(model, two_stage.FasterRCNNModel)
    train, _ = det.datasets()
    batch = det.collate([train[i] for i in range(2)])
    model.train()
    out = det.training_step(model, batch)
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    assert {"classifier", "box_reg", "objectness", "rpn_box_reg"} <= set(out)
    out["loss"].backward()
    head = model.roi_heads.box_predictor.cls_score.weight.grad
    assert head is not None and head.abs().sum() > 0
    assert model.rpn.head.conv[0][0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    model.eval()
    model.set_thresholds(conf=0.0, iou=0.5, max_det=20)
    with torch.no_grad():
        found = model(batch["img"])
    assert len(found) == 2 and all(f.shape[1] == 6 and len(f) <= 20 for f in found)
    for f in found:  # boxes inside the image, classes among the dataset's
        assert (f[:, :4] >= 0).all() and (f[:, :4] <= size).all()
        assert set(f[:, 5].long().tolist()) <= set(range(len(DETECT_CLASSES)))


def test_pyramid_and_anchors_size_themselves(detection_set):
    for name in ("mobilenet_v2", "resnet50", "convnext_tiny"):
        backbone = create_backbone(name, weights="none")
        model = two_stage.FasterRCNNModel(backbone, 3, image_size=192)
        chans = [backbone.feature_info[i].channels for i in model.levels]
        assert [b[0].in_channels for b in model.fpn.inner_blocks] == chans
        assert [backbone.feature_info[i].reduction for i in model.levels] == [4, 8, 16, 32]
        assert model.roi_heads.box_predictor.cls_score.out_features == 4  # 3 classes + background
    # torchvision's 32 … 512 at 800 px, scaled to the input; or set from the smallest
    assert two_stage.anchor_sizes(800) == (32, 64, 128, 256, 512)
    assert two_stage.anchor_sizes(192) == (8, 15, 31, 61, 123)
    assert two_stage.anchor_sizes(192, 16) == (16, 32, 64, 128, 256)


def test_pretrained_backbone_gets_frozen_batchnorm(detection_set, tmp_path):
    cfg = _config(detection_set, tmp_path, model__backbone="mobilenet_v2", model__weights="imagenet")
    det = Detector(config=cfg, classes=DETECT_CLASSES)
    norms = [m for m in det.model.backbone.modules() if isinstance(m, (FrozenBatchNorm2d, torch.nn.BatchNorm2d))]
    assert norms and all(isinstance(m, FrozenBatchNorm2d) for m in norms)
    from visiontl.engine.finetune import normalised

    assert normalised(det.model.backbone)  # so the backbone trains at the full LR, as torchvision's does
    reference = create_backbone("mobilenet_v2", weights="imagenet")
    torch.testing.assert_close(norms[0].running_mean, reference.stages[0][0][1].running_mean)
    # the pretrained statistics and affine survive training steps; the convolutions train
    frozen = [m for m in det.model.backbone.modules() if isinstance(m, FrozenBatchNorm2d)]
    convs = [m.weight for m in det.model.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    before = [[t.clone() for t in (m.weight, m.bias, m.running_mean, m.running_var)] for m in frozen]
    conv_before = [w.detach().clone() for w in convs]
    det.fit(epochs=1)
    assert all(torch.equal(a, b) for m, ts in zip(frozen, before)
               for a, b in zip((m.weight, m.bias, m.running_mean, m.running_var), ts))
    assert any(not torch.equal(a, w) for a, w in zip(conv_before, convs))
    # random init, or finetune.bn=train: ordinary BatchNorm that follows the data
    for overrides in ({"model__weights": "none"}, {"finetune__bn": "train"}):
        other = Detector(config=_config(detection_set, tmp_path, model__backbone="mobilenet_v2", **overrides),
                         classes=DETECT_CLASSES)
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in other.model.modules())


def test_trains_through_the_engine_predicts_exports_and_loads(detection_set, tmp_path):
    cfg = _config(detection_set, tmp_path / "runs", train__epochs=6, data__image_size=96,
                  model__backbone="mobilenet_v2", model__weights="imagenet", optim__lr=2e-3)
    det = Detector(config=cfg)
    history = det.fit()
    losses = [h["train/loss"] for h in history]
    assert losses[-1] < 0.6 * losses[0], losses
    assert all(0 <= h["val/mAP50-95"] <= 1 for h in history)
    assert all(h["val/loss"] > 0 for h in history)  # torchvision's four losses on the validation images
    run = det.run_dir
    assert (run / "best.pt").is_file() and (run / "val_predictions.png").is_file()
    config = (run / "config.yaml").read_text()
    assert "faster_rcnn" in config
    # predict: boxes in image pixels, drawn images, JSON
    images = sorted((detection_set.parent / "images" / "val").glob("*.png"))
    results = det.predict(images, conf=0.05, out_dir=tmp_path / "preds")
    assert len(results) == len(images) and (tmp_path / "preds" / "predictions.json").is_file()
    assert len(list((tmp_path / "preds").glob("*_boxes.png"))) == len(images)
    # a loaded checkpoint predicts the same
    loaded = Detector.load(run / "best.pt")
    assert loaded.config.model.architecture == "faster_rcnn"
    again = loaded.predict(images, conf=0.05)
    # the same weights and the same best score per image (a barely trained model scores many boxes
    # alike, and NMS among equal scores may keep other boxes: seen on torch 2.6)
    trained = det.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in loaded.model.state_dict().items())
    assert [max((o["score"] for o in r["objects"]), default=0) for r in again] == \
        [max((o["score"] for o in r["objects"]), default=0) for r in results]
    # ONNX (one image a call, NMS inside), checked against PyTorch by the exporter
    meta = loaded.export(tmp_path / "export")
    assert set(meta["files"]) == {"onnx"} and meta["onnx_max_abs_diff_vs_pytorch"] < 1e-3
    assert meta["input"]["shape"][0] == 1 and set(meta["outputs"]) == {"boxes", "scores", "labels"}
    assert json.loads((tmp_path / "export" / "model.json").read_text())["task"] == "detect"
    # what it does not do, said clearly
    with pytest.raises(ValueError, match="test-time augmentation"):
        loaded.predict(images, tta=True)
    with pytest.raises(ValueError, match="int8"):
        loaded.export(tmp_path / "x", int8=True)
    with pytest.raises(ValueError, match="batch-32"):
        from visiontl.deploy import deployment_report

        deployment_report(run / "best.pt", out=tmp_path / "deploy")
    student = Detector(config=tiny_detect_config(detection_set, tmp_path / "student", data__image_size=96,
                                                 distill__teacher=str(run / "best.pt")))
    with pytest.raises(ValueError, match="cannot teach"):
        student.fit()


def test_validation_loss_changes_nothing(detection_set):
    """The losses torchvision computes in training mode, on validation images: no statistics,
    modes or random stream of the run move."""
    det = Detector(config=_config(detection_set, "unused", data__image_size=64, model__backbone="mobilenet_v2",
                                  model__weights="none"), classes=DETECT_CLASSES)
    model = det.model.eval()
    train, _ = det.datasets()
    batch = det.collate([train[i] for i in range(2)])
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    parts = two_stage.validation_losses(model, batch["img"], two_stage.targets(batch))
    assert set(parts) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in parts.values()) and sum(parts.values()) > 0
    assert all(torch.equal(v, buffers[k]) for k, v in model.state_dict().items())  # BatchNorm statistics too
    assert not any(m.training for m in model.modules())
    assert torch.equal(torch.random.get_rng_state(), rng)
    with torch.no_grad():  # as the engine validates
        out = det.validation_step(model, batch)
    assert torch.isclose(out["loss"] / out["n"], sum(parts.values()))  # the same sampling on the same stream


def test_refusals_before_training(detection_set, tmp_path):
    with pytest.raises(ValueError, match="distillation"):
        Detector(config=_config(detection_set, tmp_path, distill__teacher="t.pt")).check_config()
    with pytest.raises(ValueError, match="model.ultralytics"):
        Detector(config=_config(detection_set, tmp_path, model__ultralytics="yolov8n.yaml")).check_config()
    with pytest.raises(ValueError, match="resnet50"):  # torchvision's COCO detector is on resnet50
        Detector(config=_config(detection_set, tmp_path, model__weights="coco"), classes=DETECT_CLASSES)


def _torchvision_coco_like(size: int):
    """torchvision's fasterrcnn_resnet50_fpn as its COCO file holds it (FrozenBatchNorm2d, 91
    classes), with random weights and BatchNorm statistics, scaled to ``size``."""
    from torchvision.models import resnet50
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor

    torch.manual_seed(0)
    body = resnet50(norm_layer=FrozenBatchNorm2d)
    for m in body.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.uniform_(0.5, 1.5)
    return FasterRCNN(_resnet_fpn_extractor(body, 3), 91, min_size=size, max_size=size).eval()


def test_torchvision_coco_detector_weights_load_all_but_the_class_layer(detection_set, tmp_path, monkeypatch):
    size = 96
    reference = _torchvision_coco_like(size)
    path = tmp_path / "fasterrcnn_resnet50_fpn_coco.pth"
    torch.save(reference.state_dict(), path)
    cfg = _config(detection_set, tmp_path, model__backbone="resnet50", model__weights=str(path), data__image_size=size)
    det = Detector(config=cfg, classes=DETECT_CLASSES)
    model = det.model.eval()
    assert model.backbone.weights_source == f"file:{path}"
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.backbone.modules())  # pretrained: frozen
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():  # the same pyramid (torchvision normalises outside its backbone)
        want = reference.backbone(reference.transform.normalize(x[0])[None])
        got = model.features(x)
    assert list(want) == list(got)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-4)
    for k in ("rpn.head.conv.0.0.weight", "roi_heads.box_head.fc7.weight"):
        torch.testing.assert_close(model.state_dict()[k], reference.state_dict()[k])
    assert model.roi_heads.box_predictor.cls_score.out_features == len(DETECT_CLASSES) + 1  # replaced
    # a backbone's own ImageNet file is not a detector file
    assert not two_stage.is_detector_weights("imagenet")
    # coco offline: the clear error that says where to put the file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-cache"))
    with pytest.raises(WeightsUnavailable, match="fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"):
        Detector(config=_config(detection_set, tmp_path, model__backbone="resnet50", model__weights="coco"),
                 classes=DETECT_CLASSES)

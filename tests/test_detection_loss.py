"""The detection loss: per image at any batch size, and training on it finds the objects."""
from __future__ import annotations

import torch
from conftest import DETECT_CLASSES, tiny_detect_config

from visiontl.adapters import Detector
from visiontl.backbones import create_backbone


def test_the_loss_of_a_batch_is_the_mean_of_its_images_losses(detection_set, tmp_path):
    """Per image, whatever the batch size: a batch's loss (and each term) is the mean of its
    images' own losses weighted by their target scores, so the same images repeated give the
    same loss, and val/loss is the same at any validation batch size."""
    from visiontl.adapters.detection.loss import DetectionLoss
    from visiontl.adapters.detection.model import DetectionModel

    torch.manual_seed(0)
    # eval mode: BatchNorm's batch statistics would tie the images together (the head still
    # returns its raw outputs beside the decoded ones)
    model = DetectionModel(create_backbone("mobilenet_v3_small", weights="none"), num_classes=2).eval()
    det = Detector(config=tiny_detect_config(detection_set, tmp_path / "runs"))
    loss = DetectionLoss(model.head, det.config.loss)
    train, val = det.datasets()
    images = [train[i] for i in range(5)]
    with torch.no_grad():
        def of(samples):
            batch = det.collate(samples)
            return loss(model(batch["img"]), batch)

        alone = [of([im]) for im in images]
        together, parts, weight = of(images)
        repeated, _, weight3 = of(images * 3)
    weights = torch.stack([w for _, _, w in alone])
    assert weights.min() >= 1 and torch.isclose(weight, weights.sum()) and torch.isclose(weight3, 3 * weight)
    mean = lambda values: (torch.stack(values) * weights).sum() / weights.sum()  # noqa: E731
    torch.testing.assert_close(together, mean([t for t, _, _ in alone]), rtol=1e-4, atol=1e-6)
    for name in ("box", "cls", "dfl"):
        torch.testing.assert_close(parts[name], mean([p[name] for _, p, _ in alone]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(repeated, together, rtol=1e-4, atol=1e-6)
    assert len({round(float(t), 3) for t, _, _ in alone}) > 1  # the images differ: the mean is not trivially equal
    # val/loss of one model on one validation set: the same at batch 1, 2 and 4
    det.classes, det.model, det.criterion = DETECT_CLASSES, model, loss
    val_losses = [det._validate(val, batch).metrics["loss"] for batch in (1, 2, 4)]
    assert max(val_losses) - min(val_losses) < 1e-5 * max(val_losses), val_losses


def test_training_lowers_the_loss(detection_set, tmp_path):
    cfg = tiny_detect_config(detection_set, tmp_path / "runs")
    det = Detector(config=cfg)
    train, val = det.datasets()
    det.prepare(train)
    train.transform = val.transform  # the same batch every step: letterbox only
    batch = det.collate([train[i] for i in range(4)])
    seen = train.subset(list(range(4)), transform=val.transform)
    opt = torch.optim.AdamW(det.model.parameters(), lr=2e-3)
    det.model.train()
    losses = []
    for _ in range(48):  # random init: the loss first rises as the assigner finds positives
        loss = det.training_step(det.model, batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * max(losses), losses
    det.model.eval()
    assert det._validate(seen, 4).metrics["mAP50"] > 0.1  # it finds the objects it was shown

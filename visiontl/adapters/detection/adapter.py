"""The detection task adapter: data, model, loss, steps, metrics, predict, plots, export."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import torch
from . import _ultralytics  # noqa: F401,I001  (before ultralytics: offline, its patches undone)
from ultralytics.nn.modules.head import Detect
from ultralytics.utils.nms import non_max_suppression

from ... import draw, plots
from ...files import write_csv
from ...data.detect_transforms import DetectEval, DetectTrain, letterbox, unletterbox
from ...data.detection import (DetectionDataset, coco_samples, collate, print_report, read_data_yaml, yolo_images,
                               yolo_samples)
from ...data.images import DataError, expand_inputs, output_stems, readable
from ...data.split import random_split
from ...engine import Validation, distill
from ...export import ExportGraph
from ..base import TaskAdapter
from ..predictions import write_predictions
from ..tta import DetectAugment
from ...results import DetectResult, Results
from .config import DetectConfig
from .loss import DetectionLoss
from .metrics import match, summarize
from .model import DecodedOnly, DetectionModel
from .native import NativeDetector, build_native
from .two_stage import (FasterRCNNModel, OneImage, faster_rcnn_in, freeze_batchnorm, is_detector_weights,
                        load_detector_weights, targets, validation_losses)


class Detector(TaskAdapter):
    """Object detection on any registry backbone: a YOLO-style head (the default) or
    torchvision's Faster R-CNN (``model.architecture=faster_rcnn``), or a native ultralytics model.

    Example::

        det = Detector(backbone="mobilenet_v2", strategy="two_phase")   # architecture="faster_rcnn": two-stage
        det.fit("data/trees/data.yaml", epochs=30, image_size=320)   # YOLO txt; or a COCO .json
        det.evaluate("data/trees/data.yaml")                          # precision, recall, mAP50, mAP50-95
        det.predict("field/", out_dir="preds")                        # JSON/CSV + images with boxes
        det = Detector.load("runs/detect-…/best.pt")
    """

    task = "detect"
    config_class = DetectConfig
    monitor = ("val/mAP50-95", "max")
    collate = staticmethod(collate)

    def __init__(self, *, backbone: str = "mobilenet_v2", weights: str = "imagenet", strategy: str = "full",
                 architecture: str = "", classes: Sequence[str] | None = None,
                 config: DetectConfig | None = None) -> None:
        super().__init__(config, backbone=backbone, weights=weights, strategy=strategy)
        if architecture:  # yolo or faster_rcnn (model.architecture)
            self.config.model = replace(self.config.model, architecture=architecture)
        self.classes = list(classes) if classes else None
        if self.classes:
            self._build()

    @property
    def uses_backbone(self) -> bool:
        return not self.config.model.ultralytics  # a native ultralytics model brings its own

    @property
    def two_stage(self) -> bool:
        return self.config.model.architecture == "faster_rcnn"

    def check_config(self) -> None:
        m = self.config.model
        if self.two_stage and m.ultralytics:
            raise ValueError("model.ultralytics brings its own architecture; leave model.architecture=yolo")
        if self.two_stage and self.config.distill.teacher:
            raise ValueError("distillation is for the yolo architecture (the student's class scores per anchor); "
                             "faster_rcnn's proposals differ from image to image, so there is nothing to match")
        if m.anchor_size < 0:
            raise ValueError(f"model.anchor_size={m.anchor_size}: a side in pixels, or 0 for the default")
        if m.rois < 1:
            raise ValueError(f"model.rois={m.rois}: at least 1 RoI per training image")
        if not 0 <= self.config.eval.iou < 1:
            raise ValueError(f"eval.iou={self.config.eval.iou}: an IoU in (0, 1), or 0 for the architecture's")
        super().check_config()

    @property
    def nms_iou(self) -> float:
        """``eval.iou``, or the architecture's own: ultralytics validates its YOLO at 0.7; torchvision's
        Faster R-CNN uses 0.5 (tree crowns, 30 epochs: mAP50-95 0.083 at 0.7, 0.094 at 0.5)."""
        return self.config.eval.iou or (0.5 if self.two_stage else 0.7)

    def frozen_batchnorm(self) -> bool:
        """faster_rcnn's backbone BatchNorm is torchvision's FrozenBatchNorm2d (statistics and
        affine fixed) with ``finetune.bn=frozen``, or ``auto`` and pretrained weights, as in
        torchvision's detection models; a pure function of the config, so ``load`` rebuilds it."""
        bn, weights = self.config.finetune.bn, self.config.model.weights
        return self.two_stage and (bn == "frozen" or (bn == "auto" and weights.lower() != "none"))

    def _build(self, weights: str | None = None, preprocessing=None) -> None:
        weights = weights or self.config.model.weights
        if not (self.two_stage and is_detector_weights(weights)):
            return super()._build(weights, preprocessing)
        super()._build("none", preprocessing)  # the detector's architecture, then the whole of its weights
        source = load_detector_weights(self.model, weights, self.config.model.backbone)
        self.model.backbone.weights_source = source

    def make_model(self, backbone):
        m = self.config.model
        if self.two_stage:
            model = FasterRCNNModel(backbone, len(self.classes), image_size=self.config.data.image_size,
                                    width=m.width, anchor_size=m.anchor_size, rois=m.rois)
            if self.frozen_batchnorm():
                freeze_batchnorm(model.backbone)
            self.criterion = None  # torchvision's model computes its own losses
            return model
        if m.ultralytics:
            architecture = (self.checkpoint or {}).get("architecture")  # checked there: it comes from a file
            model = (NativeDetector(architecture, len(self.classes), self.checkpoint["file"]) if architecture
                     else build_native(m.ultralytics, len(self.classes)))
        else:
            model = DetectionModel(backbone, len(self.classes), width=m.width)
        self.criterion = DetectionLoss(model.head, self.config.loss)
        return model

    def checkpoint_meta(self) -> dict:
        meta = super().checkpoint_meta()
        if isinstance(self.model, NativeDetector):  # rebuilt from this, the source file not needed
            meta["architecture"] = self.model.architecture
        return meta

    def describe_model(self) -> str:
        m = self.config.model
        if m.ultralytics:
            return f"ultralytics {m.ultralytics}"
        return ("Faster R-CNN on " if self.two_stage else "") + super().describe_model()

    # -- data -------------------------------------------------------------------------
    def _set_data(self, data, val) -> None:
        if data is not None and str(data).endswith((".yaml", ".yml")):
            self.config.data.yaml, data = str(data), None
        super()._set_data(data, val)

    def read(self, split: str, classes: list[str] | None = None, *,
             source: str | Path | None = None) -> tuple[list, list[str], object] | None:
        """(samples, class names, label report) of ``split`` ('train' or 'val') as the config
        describes it, or of ``source`` (a data.yaml's split, a COCO .json, a YOLO folder); None
        when the config has no such split."""
        d = self.config.data
        yaml_path, entry = d.yaml, getattr(d, split)
        if source is not None:
            is_yaml = str(source).endswith((".yaml", ".yml"))
            yaml_path, entry = (str(source), "") if is_yaml else ("", str(source))
        if yaml_path:
            spec = read_data_yaml(yaml_path)
            entry = entry or spec[split]
            if not entry:
                return None
            samples, report = yolo_samples(yolo_images(spec["root"], entry), spec["names"], f"{yaml_path} ({split})")
            return samples, spec["names"], report
        if not entry:
            if split == "train":
                raise ValueError("no training data: set data.yaml (an ultralytics data.yaml) or data.train "
                                 "(a YOLO images folder with data.names, or a COCO .json)")
            return None
        if entry.endswith(".json"):
            return coco_samples(entry, getattr(d, f"{split}_images"), classes)
        names = classes or list(d.names)
        if not names:
            raise ValueError(f"{entry}: a YOLO folder needs its class names: data.names=[...] or a data.yaml")
        samples, report = yolo_samples(yolo_images(Path("."), entry), names, entry)
        return samples, names, report

    def datasets(self) -> tuple[DetectionDataset, DetectionDataset | None]:
        d = self.config.data
        samples, names, report = self.read("train")
        if d.names and list(d.names) != list(names):
            raise DataError(f"{d.yaml or d.train}: the data's classes ({', '.join(names)}) differ from data.names "
                            f"({', '.join(d.names)}); drop data.names or make it the data's own list")
        print_report(report)
        train = DetectionDataset(samples, names, DetectTrain(d.image_size, d.augment), report)
        val_read = self.read("val", names)
        if val_read is not None:
            if val_read[1] != names:
                raise DataError(f"validation classes {val_read[1]} differ from training classes {names}")
            print_report(val_read[2])
            return train, DetectionDataset(val_read[0], names, DetectEval(d.image_size), val_read[2])
        keep, held_out = random_split(len(train), d.val_fraction, self.config.train.seed, where=str(d.train))
        if not held_out:
            return train, None
        return train.subset(keep), train.subset(held_out, transform=DetectEval(d.image_size))

    # -- what the engine calls ----------------------------------------------------------
    def training_step(self, model, batch) -> dict:
        if self.two_stage:  # torchvision's RPN and RoI-head losses, summed as its references do
            parts = model(batch["img"], targets(batch))
            return {"loss": sum(parts.values()), **{k.removeprefix("loss_"): v.detach() for k, v in parts.items()}}
        raw = model(batch["img"])
        loss, parts, _ = self.criterion(raw, batch)
        if self.teacher is not None:  # distillation of the class scores of every anchor; boxes from the labels
            taught = self.teacher(batch["img"])[1]["scores"]
            if taught.shape != raw["scores"].shape:
                raise ValueError(f"distill.teacher={self.config.distill.teacher}: its anchors/classes "
                                 f"{tuple(taught.shape[1:])} differ from the student's {tuple(raw['scores'].shape[1:])} "
                                 "(another head or other strides)")
            soft = self.config.loss.cls * distill.soft_scores(raw["scores"], taught, self.config.distill.temperature)
            loss = loss + self.config.distill.weight * (soft - parts["cls"])  # the class term, mixed
        return {"loss": loss, **{k: v.detach() for k, v in parts.items()}}

    def detect(self, model, images: torch.Tensor, conf: float) -> tuple[list[torch.Tensor], object]:
        """Per image an (n, 6) tensor (x1 y1 x2 y2 pixels, score, class) after NMS at
        ``nms_iou``, scores ≥ ``conf``; and the YOLO head's raw outputs (None otherwise)."""
        e = self.config.eval
        if self.two_stage:  # the RoI heads apply them: set on the model run (a running average is a copy)
            faster_rcnn_in(model).set_thresholds(conf=conf, iou=self.nms_iou, max_det=e.max_det)
            return model(images), None
        decoded, raw = model(images)
        return non_max_suppression(decoded.float(), conf_thres=conf, iou_thres=self.nms_iou, max_det=e.max_det), raw

    def validation_step(self, model, batch) -> dict:
        detections, raw = self.detect(model, batch["img"], self.config.eval.conf)
        if self.two_stage:  # the sum of torchvision's four losses, as in training_step
            loss, weight = sum(validation_losses(faster_rcnn_in(model), batch["img"], targets(batch)).values()), \
                len(detections)
        elif raw is not None:  # pooled by the images' target scores (DetectionLoss): exact at any batch size
            loss, _, weight = self.criterion(raw, batch)
        else:  # an exported model gives the decoded predictions only (onnx_outputs): no loss
            loss, weight = torch.tensor(float("nan")), len(detections)
        out = {"loss": loss.detach() * weight, "n": weight, "tp": [], "conf": [], "pred_cls": [],
               "target_cls": [], "detections": []}
        for det, boxes, labels in zip(detections, batch["boxes"], batch["labels"]):
            det = det.float()
            out["tp"].append(match(det[:, :4], det[:, 4], det[:, 5], boxes, labels))
            out["conf"].append(det[:, 4].cpu().numpy())
            out["pred_cls"].append(det[:, 5].cpu().numpy())
            out["target_cls"].append(labels.cpu().numpy())
            out["detections"].append(det.cpu())
        return out

    def validation_metrics(self, outputs: list[dict]) -> Validation:
        stats = {k: [x for o in outputs for x in o[k]] for k in ("tp", "conf", "pred_cls", "target_cls")}
        metrics, details = summarize(stats, self.classes)
        n = sum(float(o["n"]) for o in outputs)
        return Validation({"loss": sum(float(o["loss"]) for o in outputs) / max(n, 1e-12), **metrics},
                          details=(details, [d for o in outputs for d in o["detections"]]))

    # -- evaluation and prediction --------------------------------------------------------
    def eval_dataset(self, data: str | Path) -> DetectionDataset:
        """A data.yaml (its val split), a COCO .json or a YOLO folder, letterboxed."""
        samples, names, report = self.read("val", self.classes, source=data)
        print_report(report)
        return DetectionDataset(samples, names, DetectEval(self.config.data.image_size), report)

    def write_evaluation(self, out_dir: Path, data: DetectionDataset, details) -> None:
        details, detections = details
        out_dir.mkdir(parents=True, exist_ok=True)
        per_class = details["per_class"]
        write_csv(out_dir / "per_class.csv", [["class", "instances", "precision", "recall", "mAP50", "mAP50-95"], *(
            [name, m["instances"], *(f"{m[k]:.4f}" for k in ("precision", "recall", "mAP50", "mAP50-95"))]
            for name, m in per_class.items())])
        if details["recall_x"] is not None:
            plots.pr_curves(details["recall_x"], details["precision_curves"], details["classes"],
                            [per_class[c]["mAP50"] for c in details["classes"]], out_dir / "pr_curve.png")
        plots.bars(list(per_class), [m["mAP50-95"] for m in per_class.values()], out_dir / "per_class_ap.png",
                   ylabel="AP50-95", title="AP per class (IoU 0.50:0.95)")
        # the validation images with true boxes (green) and predictions above predict_conf (red)
        images, titles, e = [], [], self.config.eval
        for i in range(min(12, len(data))):
            image, boxes, _ = data[i]
            det = detections[i] if i < len(detections) else torch.zeros(0, 6)
            det = det[det[:, 4] >= e.predict_conf]
            drawn, f = draw.canvas(image.permute(1, 2, 0).numpy())
            drawn = draw.draw_boxes(drawn, boxes.numpy() * f, color=(0, 200, 0))
            drawn = draw.draw_boxes(drawn, det[:, :4].numpy() * f, color=(255, 0, 0),
                                     labels=[f"{self.classes[int(c)]} {s:.2f}" if len(self.classes) > 1 else f"{s:.2f}"
                                             for s, c in det[:, 4:6].tolist()])
            images.append(drawn)
            name = Path(data.samples[i].path).name
            titles.append(f"{name if len(name) <= 30 else '…' + name[-29:]}\n{len(boxes)} true, {len(det)} predicted")
        plots.image_grid(images, titles, out_dir / "val_predictions.png", cols=4,
                         title=f"validation: true boxes green, predictions (score ≥ {e.predict_conf}) red")

    @torch.no_grad()
    def predict(self, inputs, *, conf: float | None = None, tta: bool = False, out_dir: str | Path | None = None,
                batch_size: int = 16) -> Results:
        """Boxes (original image pixels, xyxy) with labels and scores for an image (a file, an
        array or a PIL image), a folder or a list; ``tta``: pooled over scales and a mirror;
        with ``out_dir``, predictions.json/.csv and each image with its boxes drawn."""
        e, size = self.config.eval, self.config.data.image_size
        conf = e.predict_conf if conf is None else conf
        device, out = self._prediction_setup(out_dir)
        net = self.tta_model() if tta else self.model
        paths, results = expand_inputs(inputs), Results()
        stems = output_stems(paths)  # a/x.png and b/x.png: a_x, b_x
        for start in range(0, len(paths), batch_size):
            chunk = []
            for (path, image, error), stem in zip(readable(paths[start:start + batch_size], start),
                                                  stems[start:start + batch_size]):  # unreadable: reported, skipped
                if error:
                    results.append(DetectResult({"path": str(path), "width": 0, "height": 0, "objects": [],
                                                 "error": error}))
                else:
                    chunk.append((path, image, stem))
            if not chunk:
                continue
            boxed = [letterbox(image, size) for _, image, _ in chunk]  # (image, scale, pad) each
            x = torch.stack([torch.from_numpy(b.transpose(2, 0, 1).copy()) for b, _, _ in boxed]).to(device)
            found = self.detect(net, x, conf)[0]
            for (path, image, stem), (_, scale, pad), det in zip(chunk, boxed, found):
                boxes = unletterbox(det[:, :4].cpu(), scale, pad, image.shape[1], image.shape[0])
                objects = [{"label": self.classes[int(c)], "score": round(float(s), 4), "box": [round(v, 1) for v in b]}
                           for b, s, c in zip(boxes.tolist(), det[:, 4].tolist(), det[:, 5].tolist())]
                result = DetectResult({"path": str(path), "width": image.shape[1], "height": image.shape[0],
                                       "objects": objects}, image=None if isinstance(path, Path) else image,
                                      classes=self.classes)
                results.append(result)
                if out is not None:
                    draw.save_image(result.draw_on(image), out / f"{stem}_boxes.png")
        if out is not None:
            write_predictions(out, results)
        return results

    @property
    def supports_tta(self) -> bool:
        return not self.two_stage  # the views are merged from the YOLO head's decoded outputs

    def tta_model(self) -> torch.nn.Module:
        if self.two_stage:
            raise ValueError("test-time augmentation is for model.architecture=yolo (it merges the views from the "
                             "head's decoded outputs); faster_rcnn predicts without it")
        e = self.config.eval  # each view's NMS as the run's own
        return DetectAugment(self.model, stride=int(self.model.head.stride.max()), iou=self.nms_iou,
                             max_det=e.max_det).eval()

    predict_options = ("conf", "tta")

    prediction_files = "predictions.json, predictions.csv and *_boxes.png"

    def describe_prediction(self, result: dict) -> str:
        objects = result["objects"]
        found = ", ".join(f"{o['label']} {o['score']:.2f}" for o in objects[:8])
        more = f" … (+{len(objects) - 8})" if len(objects) > 8 else ""
        return f"{len(objects)} objects" + (f": {found}{more}" if found else "")

    # -- export ---------------------------------------------------------------------------
    def export_graph(self, net: torch.nn.Module) -> ExportGraph:
        e, size = self.config.eval, self.config.data.image_size
        if self.two_stage:  # torchvision's detection export: one image a call, NMS inside, ONNX only
            net.set_thresholds(conf=e.conf, iou=self.nms_iou, max_det=e.max_det)  # every detection; users keep ≥ predict_conf
            return ExportGraph(
                OneImage(net).eval(),
                {"boxes": "(detections, 4): x1 y1 x2 y2 in input pixels", "scores": "(detections,)",
                 "labels": "(detections,): class index into classes"},
                size=size, one_image=True, formats=("onnx",),
                note="one letterboxed image (batch 1): longer side resized to the size, centred, padded with "
                "114/255; the backbone's normalisation, the proposals and the NMS are inside the graph (TorchScript: "
                "torchvision's detection models script but do not trace, so there is no TorchScript file)",
                meta={"nms": {"step": f"inside the graph, at score ≥ {e.conf}; keep scores ≥ conf for predictions",
                              "conf": e.predict_conf, "iou": self.nms_iou, "max_det": e.max_det}})
        return ExportGraph(
            DecodedOnly(net).eval(),
            {"predictions": "(batch, 4 + classes, anchors): box centre x, centre y, width, height in input pixels, "
                            "then one sigmoid score per class"},
            size=size, note="letterboxed: longer side resized to the size, centred, padded with 114/255; the "
            "backbone's normalisation is inside the graph",
            example=torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8).float() / 255,
            # int8 up to the last convolutions: the decoding concatenates boxes in pixels (0…size) with
            # scores (0…1), and one int8 scale for both rounded every score to 0 (tree crowns: 0.181 → 0.000)
            int8_float_tail=True,
            meta={"nms": {"step": "per image: keep anchors whose best class score ≥ conf, then class-wise NMS at iou",
                          "conf": e.predict_conf, "iou": self.nms_iou, "max_det": e.max_det}})

    # faster_rcnn: none of these (its proposals and RoI heads are not a fixed graph of convolutions)
    supports_int8 = property(lambda self: not self.two_stage)
    supports_pruning = property(lambda self: not self.two_stage)
    supports_distillation = property(lambda self: not self.two_stage)
    supports_deploy_report = property(lambda self: not self.two_stage)  # its graph takes one image a call

    def prune_fixed(self, model) -> list[torch.nn.Module]:
        # the box distributions, the class scores and the fixed DFL decoding of the Detect head
        head = next(m for m in model.modules() if isinstance(m, Detect))
        return [head.dfl, *(branch[-1] for branch in (*head.cv2, *head.cv3))]

    def sample_paths(self, data: DetectionDataset) -> list[Path]:
        return [s.path for s in data.samples]

    def onnx_outputs(self, outputs: list[torch.Tensor]):
        return outputs[0], None  # decoded predictions; the raw head maps are not exported

    def export(self, out_dir: str | Path, **kwargs) -> dict:
        if self.two_stage:
            if kwargs.get("int8"):
                raise ValueError("int8 export is for model.architecture=yolo; export faster_rcnn in float")
            return super().export(out_dir, **{"formats": ("onnx",), **kwargs})
        head = self.model.head
        head.dynamic = True  # the head caches its anchor grid; tracing must not leave a traced one behind
        try:
            return super().export(out_dir, **kwargs)
        finally:
            head.dynamic, head.shape = False, None

"""The segmentation task adapter: data, model, loss, steps, metrics, predict, plots, export."""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from statistics import median_high
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ... import draw, plots
from ...files import write_csv
from ...data.images import DataError, expand_inputs, output_stems, readable
from ...data.seg_transforms import SegmentTrain, input_scale
from ...data.segmentation import (MaskSpec, SegmentationDataset, check_pairs, collate, find_pairs, print_report,
                                  split_folder)
from ...data.split import random_split
from ...engine import Validation, distill
from ...export import ExportGraph
from ..base import TaskAdapter
from ..predictions import write_predictions
from ..tta import FlipAverage, flip_views
from ...results import Explanation, Results, SegmentResult
from .config import SegmentConfig
from .loss import SegmentationLoss
from .metrics import confusion, summarize
from .model import SegmentationModel
from .tiling import predict_logits

STRIDE = 32  # the deepest backbone stride: model inputs are padded to multiples of it


class Segmenter(TaskAdapter):
    """Semantic segmentation: a U-Net (or FPN, DeepLabV3+) decoder on a registry backbone.

    Example::

        seg = Segmenter(backbone="mobilenet_v2", classes=["background", "nucleus"])
        seg.config.data.mask_values = [0, 255]                # black/white masks
        seg.fit("data/nuclei", epochs=30, image_size=256)      # data/nuclei/images, data/nuclei/masks
        seg.evaluate("data/nuclei_test")                       # mIoU, mDice, pixel_accuracy
        seg.predict("slides/", out_dir="preds")                # index masks + colour overlays, any size
        seg = Segmenter.load("runs/segment-…/best.pt")
    """

    task = "segment"
    config_class = SegmentConfig
    monitor = ("val/mIoU", "max")
    supports_distillation = True
    supports_pruning = True

    def prune_fixed(self, model) -> list[torch.nn.Module]:
        return [model.head]  # the per-pixel class scores

    def __init__(self, *, backbone: str = "mobilenet_v2", weights: str = "imagenet", strategy: str = "full",
                 architecture: str = "", classes: Sequence[str] | None = None,
                 config: SegmentConfig | None = None) -> None:
        super().__init__(config, backbone=backbone, weights=weights, strategy=strategy)
        if architecture:
            self.config.model.architecture = architecture
        self._class_weights: list[float] | None = None
        if classes:  # as the other adapters: a model to predict with (untrained) or to fit
            self.config.data.classes = list(classes)
            self.classes = list(classes)
            self._build()

    @property
    def collate(self):
        return partial(collate, ignore_index=self.config.data.ignore_index)

    def make_model(self, backbone) -> SegmentationModel:
        m = self.config.model
        if self.checkpoint and self.checkpoint.get("class_weights"):
            self._class_weights = self.checkpoint["class_weights"]
        self._make_criterion()
        return SegmentationModel(backbone, len(self.classes), m.architecture, m.width)

    def _make_criterion(self) -> None:
        w = torch.tensor(self._class_weights, dtype=torch.float32) if self._class_weights else None
        self.criterion = SegmentationLoss(self.config.loss, self.config.data.ignore_index, w)

    def describe_model(self) -> str:
        return f"{self.config.model.architecture} on {super().describe_model()}"

    def checkpoint_meta(self) -> dict:
        return {**super().checkpoint_meta(), "class_weights": self._class_weights}

    # -- data -------------------------------------------------------------------------
    def mask_spec(self) -> MaskSpec:
        d = self.config.data
        if not d.classes:
            raise ValueError("data.classes is not set: name the classes in mask-index order, e.g. "
                             "data.classes=[background,nucleus] (plus data.mask_values=[0,255] for 0/255 masks)")
        for key, values in (("mask_values", d.mask_values), ("palette", d.palette)):
            if values and len(values) != len(d.classes):
                raise ValueError(f"data.{key} has {len(values)} entries for {len(d.classes)} classes")
        if d.image_size % STRIDE:
            raise ValueError(f"data.image_size {d.image_size} must be a multiple of {STRIDE}")
        if d.downscale < 1:
            raise ValueError(f"data.downscale {d.downscale} must be at least 1 (1: larger images keep their scale)")
        return MaskSpec(len(d.classes), tuple(d.mask_values), tuple(tuple(c) for c in d.palette), d.ignore_index)

    def _read(self, images: str, masks: str, spec: MaskSpec, transform) -> SegmentationDataset:
        image_dir, mask_dir = (images, masks) if masks else split_folder(images)
        pairs = find_pairs(image_dir, mask_dir, suffix=self.config.data.mask_suffix)
        report = check_pairs(pairs, spec, str(images))
        print_report(report, self.config.data.classes)
        return SegmentationDataset(pairs, self.config.data.classes, spec, transform, report)

    def datasets(self) -> tuple[SegmentationDataset, SegmentationDataset | None]:
        d = self.config.data
        if not d.train:
            raise ValueError("data.train is not set: a folder with images/ and masks/ (or an images folder "
                             "with data.train_masks)")
        spec = self.mask_spec()
        train = self._read(d.train, d.train_masks, spec,
                           SegmentTrain(d.image_size, d.augment, d.ignore_index, upscale=d.upscale,
                                        downscale=d.downscale))
        self._check_classes_present(train)
        self._say_input_scale(train.report.shorter_sides)
        if d.val:
            return train, self._read(d.val, d.val_masks, spec, None)
        keep, held_out = random_split(len(train), d.val_fraction, self.config.train.seed, where=d.train)
        if not held_out:
            return train, None
        return train.subset(keep), train.subset(held_out, transform=None)

    def _check_classes_present(self, train: SegmentationDataset) -> None:
        """Every class of ``data.classes`` has pixels in the training masks: a recipe's class
        list on other data (4 scene classes on 2-value nucleus masks) stops here, named, instead
        of training a nucleus as a road."""
        d = self.config.data
        absent = [c for c, n in zip(d.classes, train.report.pixels) if n == 0]
        if absent:
            present = [c for c, n in zip(d.classes, train.report.pixels) if n]
            raise DataError(f"{d.train}: data.classes names {len(d.classes)} classes ({', '.join(d.classes)}) but the "
                            f"training masks hold {len(present)} ({', '.join(present) or 'none'}; no pixel of "
                            f"{', '.join(absent)}); set data.classes (and data.mask_values or data.palette) to the "
                            "data's own classes")

    def _say_input_scale(self, shorter_sides: list[int]) -> None:
        """Said before training: what data.image_size does to images of other sizes (the
        decision itself is :func:`input_scale`'s, the one training and prediction use)."""
        d, n = self.config.data, len(shorter_sides)
        small = [s for s in shorter_sides if s < d.image_size]
        large = [s for s in shorter_sides if s > d.image_size]
        shrunk = sum(input_scale(s, s, d.image_size, upscale=d.upscale, downscale=d.downscale) != 1 for s in large)
        lines = []
        if small:
            lines.append(("smaller", small, [
                f"scaled up ×{d.image_size / median_high(small):.2g} for training, validation and prediction "
                "(data.upscale=false keeps their scale)" if d.upscale else
                "kept at their scale and padded with void (data.upscale=false)"]))
        if large:
            parts = [f"{shrunk} scaled down to it whole for training, validation and prediction (shorter side up "
                     f"to data.downscale={d.downscale:g} × image_size; data.downscale=1 keeps their scale)"] if shrunk else []
            if shrunk < len(large):
                parts.append(f"{len(large) - shrunk} kept at their own scale: random crops in training, tiles in "
                             "prediction" + (" (data.downscale=1)" if d.downscale == 1 else ""))
            lines.append(("larger", large, parts))
        for word, sides, parts in lines:
            print(f"{len(sides)} of {n} training images are {word} than data.image_size={d.image_size} (median "
                  f"shorter side {median_high(sides)} px): " + "; ".join(parts), file=sys.stderr)

    def prepare(self, train_set: SegmentationDataset) -> None:
        self._class_weights = self._weights_for(train_set)
        super().prepare(train_set)
        self._make_criterion()

    def _weights_for(self, train_set: SegmentationDataset) -> list[float] | None:
        w, n = self.config.loss.class_weights, len(train_set.classes)
        if w is None:
            return None
        if w == "balanced":  # inverse pixel frequency, as scikit-learn's "balanced"
            counts = np.asarray(train_set.report.pixels, np.float64)
            return (counts.sum() / (n * np.maximum(counts, 1))).round(6).tolist()
        if len(w) != n:
            raise ValueError(f"loss.class_weights has {len(w)} entries for {n} classes")
        return list(map(float, w))

    # -- what the engine calls ----------------------------------------------------------
    def training_step(self, model, batch) -> dict:
        images, masks = batch
        logits = model(images)
        loss, parts = self.criterion(logits, masks)
        if self.teacher is not None:  # knowledge distillation: per-pixel soft targets, void pixels left out
            valid = masks != self.config.data.ignore_index
            return {"loss": distill.mix(loss, logits, self.teacher(images), self.config.distill, valid), **parts}
        return {"loss": loss, **parts}

    def logits(self, model, images: torch.Tensor) -> torch.Tensor:
        """Logits at the images' own size; tiled above ``eval.tile`` pixels (default: the
        training crop size, so the model sees what it was trained on)."""
        e, d = self.config.eval, self.config.data
        h, w = images.shape[-2:]
        f = input_scale(h, w, d.image_size, upscale=d.upscale, downscale=d.downscale)
        if f != 1:  # at the scale the model was trained on, then back to the image's own size
            x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
            images = F.interpolate(x, size=(max(1, round(h * f)), max(1, round(w * f))), mode="bilinear",
                                   align_corners=False, antialias=f < 1)
        logits = predict_logits(model, images, tile=e.tile or d.image_size, overlap=e.overlap,
                                batch_size=self.config.train.batch_size, stride=STRIDE)
        return F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False) if f != 1 else logits

    def validation_step(self, model, batch) -> dict:
        images, masks = batch
        logits = self.logits(model, images)
        loss, _ = self.criterion(logits, masks)
        cm = confusion(logits.argmax(1), masks, len(self.classes), self.config.data.ignore_index)
        return {"loss": loss.detach() * len(images), "n": len(images), "cm": cm}

    def validation_metrics(self, outputs: list[dict]) -> Validation:
        cm = sum(o["cm"] for o in outputs).cpu().numpy()
        headline, per_class = summarize(cm, self.classes)
        n = sum(o["n"] for o in outputs)
        return Validation({"loss": sum(float(o["loss"]) for o in outputs) / max(n, 1), **headline},
                          details=(cm, per_class))

    # -- evaluation and prediction --------------------------------------------------------
    def evaluate(self, data, *, out_dir: str | Path | None = None, batch_size: int = 4,
                 tta: bool = False) -> dict[str, float]:
        """mIoU, mDice, pixel accuracy and loss on ``data`` (a folder with images/ and masks/,
        or a dataset) at the images' own size (``tta``: merged flips); with ``out_dir`` also
        per_class.csv, the per-class IoU chart, the confusion matrix and a prediction grid."""
        return super().evaluate(data, out_dir=out_dir, batch_size=batch_size, tta=tta)

    def eval_dataset(self, data: str | Path) -> SegmentationDataset:
        """A folder with images/ and masks/, at the images' own size."""
        return self._read(str(data), "", self.mask_spec(), None)

    def palette(self) -> np.ndarray:
        return draw.class_palette(len(self.classes), self.config.data.palette)

    def write_evaluation(self, out_dir: Path, data: SegmentationDataset, details) -> None:
        cm, per_class = details
        out_dir.mkdir(parents=True, exist_ok=True)
        write_csv(out_dir / "per_class.csv", [["class", "pixels", "IoU", "Dice", "recall"], *(
            [name, m["pixels"], *(f"{m[k]:.4f}" for k in ("IoU", "Dice", "recall"))] for name, m in per_class.items())])
        plots.bars(list(per_class), [np.nan_to_num(m["IoU"]) for m in per_class.values()], out_dir / "per_class_iou.png",
                   ylabel="IoU", title="IoU per class (validation pixels)")
        plots.confusion(cm, self.classes, out_dir / "confusion_matrix.png", title="pixel confusion (row-normalised)")
        # image | true mask | predicted overlay, for the first validation images
        device, palette = next(self.model.parameters()).device, self.palette()
        images, titles = [], []
        self.model.eval()
        for i in range(min(6, len(data))):
            image, mask = data.raw(i)
            x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)
            with torch.no_grad():
                pred = self.logits(self.model, x).argmax(1)[0].cpu().numpy()
            valid = mask != self.config.data.ignore_index
            acc = float((pred == mask)[valid].mean()) if valid.any() else float("nan")
            name = Path(data.samples[i][0]).name
            images += [image, draw.colorize_mask(mask, palette), draw.overlay_mask(image, pred, palette,
                                                                                   self.config.eval.overlay_alpha)]
            titles += [name if len(name) <= 30 else "…" + name[-29:], "true mask", f"predicted (pixel acc {acc:.3f})"]
        plots.image_grid(images, titles, out_dir / "val_predictions.png", cols=3,
                         title="validation: image | true mask | prediction\ncolours: " + ", ".join(
                             f"{c} {tuple(int(v) for v in palette[k])}" for k, c in enumerate(self.classes[:6])))

    @torch.no_grad()
    def predict(self, inputs, *, tta: bool = False, probabilities: bool = False,
                out_dir: str | Path | None = None) -> Results:
        """Class masks for an image (a file, an array or a PIL image), a folder or a list, at
        each image's own size (tiled above ``eval.tile``). Each result: path, width, height,
        ``mask`` (H, W) uint8 class indices, ``confidence`` (mean top-class probability),
        ``fractions`` per class, and with ``probabilities`` the per-class confidence maps
        (C, H, W) float16. ``tta``: averaged over the flips (and turns) training used. With
        ``out_dir``: ``<name>_mask.png`` (palette PNG: values are class indices),
        ``<name>_overlay.png`` and ``predictions.csv``."""
        device, out = self._prediction_setup(out_dir)
        net = self.tta_model() if tta else self.model
        palette, results = self.palette(), Results()
        style = {"classes": self.classes, "palette": palette, "alpha": self.config.eval.overlay_alpha}
        paths = expand_inputs(inputs)
        for (path, image, error), stem in zip(readable(paths), output_stems(paths)):
            if error:  # reported and skipped: one bad file does not end the run
                results.append(SegmentResult({"path": str(path), "width": 0, "height": 0, "mask": None,
                                              "confidence": float("nan"), "fractions": {}, "error": error}, **style))
                continue
            x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None].to(device)
            probs = self.logits(net, x).softmax(1)[0]
            confidence, mask = probs.max(0)
            mask = mask.to(torch.uint8).cpu().numpy()
            counts = np.bincount(mask.ravel(), minlength=len(self.classes)) / mask.size
            found = {"path": str(path), "width": image.shape[1], "height": image.shape[0], "mask": mask,
                     "confidence": round(float(confidence.mean()), 4),
                     "fractions": {c: round(float(f), 4) for c, f in zip(self.classes, counts)}}
            if probabilities:
                found["probabilities"] = probs.half().cpu().numpy()
            results.append(SegmentResult(found, image=None if isinstance(path, Path) else image, **style))
            if out is not None:
                draw.save_index_mask(mask, palette, out / f"{stem}_mask.png")
                draw.save_image(draw.overlay_mask(image, mask, palette, self.config.eval.overlay_alpha),
                                out / f"{stem}_overlay.png")
        if out is not None:  # the masks are the PNGs: no JSON
            write_predictions(out, results, as_json=False)
        return results

    predict_options = ("tta",)
    supports_tta = True

    def tta_model(self) -> torch.nn.Module:
        a = self.config.data.augment
        views = flip_views(hflip=a.hflip > 0, vflip=a.vflip > 0, rotate90=a.rotate90)
        return FlipAverage(self.model, views, spatial=True).eval()

    supports_explain = True
    explain_methods = ("confidence",)

    def explain(self, inputs, *, method: str = "confidence", target: str | None = None,
                out_dir: str | Path | None = None) -> Results:
        """Per-class confidence maps: each class's per-pixel probability beside the image
        (``target``: that class only); with ``out_dir``, ``<name>_confidence.png`` and explanations.csv."""
        if method != "confidence":
            raise ValueError(f"segmentation explains with per-class confidence maps (method 'confidence'), not {method!r}")
        if target is not None and target not in self.classes:
            raise ValueError(f"target {target!r} is not a class of this model ({', '.join(self.classes)})")
        keep = [self.classes.index(target)] if target is not None else list(range(len(self.classes)))
        results = Results(Explanation({"path": r["path"], "error": r["error"]}) if not r.ok else
                          Explanation({"path": r["path"], "maps": r["probabilities"][keep]}, image=r._image,
                                      classes=[self.classes[k] for k in keep])
                          for r in self.predict(inputs, probabilities=True))
        if out_dir is not None:
            results.save(out_dir, suffix="_confidence")
            results.to_csv(Path(out_dir) / "explanations.csv")
        return results

    prediction_files = "*_mask.png (class indices), *_overlay.png and predictions.csv"

    def describe_prediction(self, result: dict) -> str:
        shares = ", ".join(f"{c} {f:.1%}" for c, f in result["fractions"].items())
        return f"{result['width']}×{result['height']}, {shares} (mean confidence {result['confidence']:.3f})"

    # -- export ---------------------------------------------------------------------------
    supports_int8 = True

    def sample_paths(self, data: SegmentationDataset) -> list[Path]:
        return [image for image, _ in data.samples]

    def export_graph(self, net: torch.nn.Module) -> ExportGraph:
        tile = self.config.eval.tile or self.config.data.image_size
        return ExportGraph(net, {"logits": "(batch, classes, height, width); the mask is the argmax over axis 1"},
                           note=f"height and width multiples of {STRIDE} (pad, then crop the output); visiontl "
                           f"predicts images larger than {tile} px in overlapping tiles of that size; the backbone's "
                           "normalisation is inside the graph", meta={"palette": self.palette().tolist()})

"""The classification task adapter: data, model, loss, steps, metrics, predict, plots."""
from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ... import plots
from ...files import write_csv
from ...backbones import input_sizes
from ...data.classification import csv_dataset, image_folder
from ...data.image_dataset import ImageDataset, collate
from ...data.images import expand_inputs, read_image, readable
from ...data.split import stratified_split
from ...data.transforms import apply, eval_transform, train_transform
from ...engine import Validation, distill
from ...export import ExportGraph
from ..base import TaskAdapter
from ..predictions import write_predictions
from ..explain import METHODS, activation_maps, check_method
from ..tta import FlipAverage, flip_views
from ...results import ClassifyResult, Explanation, Results
from .config import ClassifyConfig
from .deploy import WithProbabilities
from .metrics import confusion_matrix, summarize
from .model import ClassificationModel


class Classifier(TaskAdapter):
    """Image classification by transfer learning.

    Example::

        clf = Classifier(backbone="mobilenet_v2", weights="imagenet")   # strategy="auto": from the data
        clf.fit("data/flowers", epochs=5)           # folder per class; 20 % held out
        clf.evaluate("data/flowers_test")            # accuracy, precision, recall, f1
        clf.predict(["rose.jpg"], topk=3)
        clf = Classifier.load("runs/classify-…/best.pt")
    """

    task = "classify"
    monitor = ("val/accuracy", "max")
    collate = staticmethod(collate)
    supports_distillation = True
    supports_pruning = True

    def prune_fixed(self, model: ClassificationModel) -> list[torch.nn.Module]:
        return [model.head.layers[-1]]  # the class scores

    config_class = ClassifyConfig

    def __init__(self, *, backbone: str = "mobilenet_v2", num_classes: int | None = None,
                 weights: str = "imagenet", strategy: str = "auto", classes: Sequence[str] | None = None,
                 config: ClassifyConfig | None = None) -> None:
        super().__init__(config, backbone=backbone, weights=weights, strategy=strategy)
        self._resolve_image_size()
        self.classes = list(classes) if classes else None
        if self.classes and num_classes and len(self.classes) != num_classes:
            raise ValueError(f"num_classes={num_classes} but {len(self.classes)} class names given")
        self.num_classes = num_classes or (len(self.classes) if self.classes else None)
        if self.num_classes:
            self._build()

    def make_model(self, backbone) -> ClassificationModel:
        m = self.config.model
        if self.classes:  # names known (from the data or a checkpoint): their number rules
            self.num_classes = len(self.classes)
        return ClassificationModel(backbone, self.num_classes, hidden=m.hidden, dropout=m.dropout)

    # -- data -------------------------------------------------------------------------
    def datasets(self) -> tuple[ImageDataset, ImageDataset | None]:
        """Train and validation sets from ``config.data`` (validation split off if not given)."""
        d, seed = self.config.data, self.config.train.seed
        if not d.train:
            raise ValueError("data.train is not set: give a folder of class folders or a CSV (data.train=PATH)")
        train_tf = partial(apply, train_transform(d.image_size, d.augment))
        val_tf = partial(apply, eval_transform(d.image_size))
        full = self._dataset(d.train, None, train_tf)
        if d.val:
            val = self._dataset(d.val, full.classes, val_tf)
            train = full
        elif d.val_fraction > 0:
            counts = Counter(full.targets())
            single = [full.classes[c] for c, n in sorted(counts.items()) if n == 1]
            if single:  # said before training: its accuracy will never be measured
                print(f"warning: {d.train}: class(es) {', '.join(single)} have a single image, which stays in "
                      "training: they can never be validated (add images, or give data.val)", file=sys.stderr)
            tr_idx, va_idx = stratified_split(full.targets(), d.val_fraction, seed)
            train, val = full.subset(tr_idx), full.subset(va_idx, transform=val_tf) if va_idx else None
        else:
            train, val = full, None
        return train, val

    def _dataset(self, path: str, classes, transform) -> ImageDataset:
        d = self.config.data
        path = str(Path(path).expanduser())
        fmt = "csv" if str(path).lower().endswith(".csv") else "folder" if Path(path).is_dir() else d.format
        if fmt == "csv":
            root = Path(d.root).expanduser() if d.root else None
            return csv_dataset(path, root=root, classes=classes, transform=transform, skip_bad=d.skip_bad)
        return image_folder(path, classes=classes, transform=transform, skip_bad=d.skip_bad)

    # -- training ---------------------------------------------------------------------
    def prepare(self, train_set: ImageDataset) -> None:
        if not self.classes and self.num_classes != len(train_set.classes):
            self.model = None  # built for num_classes outputs before the data was seen: rebuilt for the data's
        super().prepare(train_set)
        self._class_weights = self._weights_for(train_set)

    def _weights_for(self, train_set: ImageDataset) -> torch.Tensor | None:
        w = self.config.loss.class_weights
        if w is None:
            return None
        if w == "balanced":
            counts = np.bincount(train_set.targets(), minlength=len(self.classes)).astype(np.float64)
            return torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)
        if len(w) != len(self.classes):
            raise ValueError(f"loss.class_weights has {len(w)} entries for {len(self.classes)} classes")
        return torch.tensor(w, dtype=torch.float32)

    # -- what the engine calls ----------------------------------------------------------
    def training_step(self, model, batch) -> dict:
        images, labels = batch
        logits = model(images)
        weight = self._class_weights.to(logits.device) if getattr(self, "_class_weights", None) is not None else None
        loss = F.cross_entropy(logits.float(), labels, weight=weight, label_smoothing=self.config.loss.label_smoothing)
        if self.teacher is not None:  # knowledge distillation: the teacher's soft targets too
            return {"loss": distill.mix(loss, logits, self.teacher(images), self.config.distill)}
        return {"loss": loss}

    def validation_step(self, model, batch) -> dict:
        images, labels = batch
        logits = model(images).float()
        return {"loss": F.cross_entropy(logits, labels, reduction="sum"), "probs": logits.softmax(1), "labels": labels}

    def validation_metrics(self, outputs: list[dict]) -> Validation:
        probs = torch.cat([o["probs"] for o in outputs]).cpu()
        labels = torch.cat([o["labels"] for o in outputs]).cpu()
        cm = confusion_matrix(probs.argmax(1), labels, len(self.classes))
        loss = sum(o["loss"].item() for o in outputs) / max(len(labels), 1)
        return Validation({"loss": loss, **summarize(cm)}, details=(probs, labels, cm))

    # -- the frozen-feature cache (see visiontl/engine/feature_cache.py) --------------------
    supports_feature_cache = True
    feature_layer = "last stage, global average pooled"

    def feature_encoder(self, model):
        """Images → what the head needs from a frozen backbone: its pooled last stage."""
        def encode(images: torch.Tensor) -> torch.Tensor:
            model.backbone.eval()
            return model.backbone(images)[-1].float().mean((2, 3))
        return encode

    def feature_head(self, model) -> torch.nn.Module:
        return _PooledHead(model.head)

    def cache_sources(self, train_set: ImageDataset, val_set: ImageDataset | None):
        """(dataset, transform description) for: plain training images, augmented training
        images, plain validation images."""
        d = self.config.data
        plain = self._plain(train_set)
        described = json.dumps(asdict(d.augment), sort_keys=True)
        return ((plain, f"eval resize {d.image_size}"), (train_set, f"train {d.image_size} {described}"),
                (val_set, f"eval resize {d.image_size}"))

    def _plain(self, data: ImageDataset) -> ImageDataset:
        """``data`` with the evaluation transform (resize only)."""
        return data.subset(range(len(data)), transform=partial(apply, eval_transform(self.config.data.image_size)))

    def sample_paths(self, data: ImageDataset) -> list[Path]:
        return [p for p, _ in data.samples]

    def sample_labels(self, data: ImageDataset) -> list[int]:
        return [label for _, label in data.samples]

    def _resolve_image_size(self) -> None:
        if self.config.data.image_size == 0:  # the size the backbone's weights were trained at
            self.config.data.image_size = input_sizes(self.config.model.backbone)[0]

    def check_config(self) -> None:
        self._resolve_image_size()
        super().check_config()
        if self.config.eval.worst_cams:
            check_method(self.config.eval.worst_cams)

    # -- evaluation and prediction --------------------------------------------------------
    def eval_dataset(self, data: str | Path) -> ImageDataset:
        """A folder or CSV with the evaluation transform (resize only)."""
        return self._dataset(str(data), self.classes, partial(apply, eval_transform(self.config.data.image_size)))

    def write_evaluation(self, out_dir: Path, data: ImageDataset, details) -> None:
        probs, labels, cm = details
        out_dir.mkdir(parents=True, exist_ok=True)
        plots.confusion(cm.numpy(), self.classes, out_dir / "confusion_matrix.png")
        write_csv(out_dir / "confusion_matrix.csv",
                  [["true\\predicted", *self.classes], *([name, *row] for name, row in zip(self.classes, cm.tolist()))])
        # worst first: wrong predictions by confidence, then right ones by least confidence
        conf, pred = probs.max(1)
        wrong = pred != labels
        order = sorted(range(len(labels)), key=lambda i: (not wrong[i], -conf[i] if wrong[i] else conf[i]))[:24]
        images = [read_image(data.samples[i][0]) for i in order]
        titles = [f"pred {self.classes[pred[i]]} ({conf[i]:.2f})\ntrue {self.classes[labels[i]]}" for i in order]
        colors = ["red" if wrong[i] else "green" for i in order]
        plots.image_grid(images, titles, out_dir / "val_predictions.png", colors=colors,
                         title="validation predictions, worst first")
        method = self.config.eval.worst_cams
        if method:  # where the model looked on the 12 worst: the map of the class it predicted
            cams = self.explain([data.samples[i][0] for i in order[:12]], method=method)
            plots.image_grid([r.plot() for r in cams], titles[:12], out_dir / "val_worst_cams.png", colors=colors,
                             title=f"the worst validation predictions: {method} maps of the predicted class")

    @torch.no_grad()
    def predict(self, inputs, *, topk: int = 5, tta: bool = False, out_dir: str | Path | None = None,
                batch_size: int = 32) -> Results:
        """Top-k labels with scores for an image (a file, an array or a PIL image), a folder,
        or a list of these; ``tta``: averaged over flips; with ``out_dir``, predictions.csv,
        predictions.json and each image drawn with its top labels (``<name>_pred.png``)."""
        paths = expand_inputs(inputs)
        tf = eval_transform(self.config.data.image_size)
        device, out = self._prediction_setup(out_dir)
        net = self.tta_model() if tta else self.model
        k = min(topk, len(self.classes))
        results = Results()
        for start in range(0, len(paths), batch_size):
            chunk = list(readable(paths[start:start + batch_size], start))  # unreadable ones: reported, skipped
            found = [{"path": str(p), "labels": [], "scores": [], "error": error} for p, _, error in chunk]
            good = [n for n, (_, _, error) in enumerate(chunk) if not error]
            if good:
                x = torch.stack([apply(tf, chunk[n][1]) for n in good]).to(device)
                scores, idx = net(x).float().softmax(1).topk(k, dim=1)
                for n, s, i in zip(good, scores.tolist(), idx.tolist()):
                    found[n] = {"path": found[n]["path"], "labels": [self.classes[j] for j in i], "scores": s}
            results += [ClassifyResult(r, image=None if isinstance(p, Path) else image)
                        for r, (p, image, _) in zip(found, chunk)]
        if out is not None:
            write_predictions(out, results)
            results.save(out, suffix="_pred")
        return results

    supports_tta = True

    def tta_model(self) -> torch.nn.Module:
        a = self.config.data.augment
        return FlipAverage(self.model, flip_views(hflip=a.hflip > 0, vflip=a.vflip > 0), spatial=False).eval()

    supports_explain = True
    explain_methods = tuple(METHODS)

    def explain(self, inputs, *, method: str = "gradcam", target: str | None = None,
                out_dir: str | Path | None = None, batch_size: int = 16) -> Results:
        """Class activation maps (explain.py: ``gradcam``, ``gradcam++``, ``layercam``,
        ``eigencam``) on the backbone's last stage, for ``target`` (a class name) or each
        image's predicted class; with ``out_dir``, ``<name>_<method>.png`` and explanations.csv."""
        check_method(method)
        if target is not None and target not in self.classes:
            raise ValueError(f"target {target!r} is not a class of this model ({', '.join(self.classes)})")
        paths = expand_inputs(inputs)
        tf = eval_transform(self.config.data.image_size)
        device, out = self._prediction_setup(out_dir)
        results = Results()
        for start in range(0, len(paths), batch_size):
            chunk = list(readable(paths[start:start + batch_size], start))
            good = [c for c in chunk if not c[2]]
            results += [Explanation({"path": str(p), "error": error}) for p, _, error in chunk if error]
            if not good:
                continue
            x = torch.stack([apply(tf, image) for _, image, _ in good]).to(device)
            with torch.no_grad():
                probs = self.model.eval()(x).float().softmax(1)
            score, pred = probs.max(1)
            wanted = [self.classes.index(target)] * len(good) if target is not None else pred.tolist()
            cams = activation_maps(self.model, self.model.backbone.stages[-1], x, wanted, method)
            for (path, image, _), cam, k, s, p in zip(good, cams, wanted, score.tolist(), pred.tolist()):
                results.append(Explanation({"path": str(path), "label": self.classes[p], "score": s,
                                            "target": self.classes[k], "method": method, "cam": cam},
                                           image=None if isinstance(path, Path) else image))
        if out is not None:
            results.save(out, suffix=f"_{method}")
            results.to_csv(out / "explanations.csv")
        return results

    predict_options = ("topk", "tta")
    prediction_files = "predictions.csv, predictions.json and *_pred.png"

    def describe_prediction(self, result: dict) -> str:
        return ", ".join(f"{lab} {s:.3f}" for lab, s in zip(result["labels"], result["scores"]))

    # -- export ---------------------------------------------------------------------------
    def export_graph(self, net: torch.nn.Module) -> ExportGraph:
        size = self.config.data.image_size
        return ExportGraph(WithProbabilities(net).eval(), {"logits": "(batch, classes)",
                                                           "probabilities": "(batch, classes), softmax of the logits"},
                           size=size, note="the preprocessing below is inside the graph", atol=1e-4,
                           meta={"backbone": self.config.model.backbone,
                                 "preprocessing": self.model.backbone.preprocessing.to_dict()})

    supports_int8 = True


class _PooledHead(torch.nn.Module):
    """The head fed cached pooled features (N, C): as a 1×1 map its pooling is the identity,
    so it computes exactly what it computes on the backbone's output."""

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features[:, :, None, None])

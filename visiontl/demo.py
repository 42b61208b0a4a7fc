"""``visiontl demo``: the whole workflow on a real built-in dataset, offline, in minutes.

Fine-tunes the offline-pretrained mobilenet_v2 on a balanced subset of Fashion-MNIST
(scikit-learn's digits if Fashion-MNIST is not installed), then trains the same model
from random initialisation with the same recipe, and prints both accuracies side by side.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from .adapters import Classifier, ClassifyConfig
from .data.builtin import default_dataset, materialize


def run(*, dataset: str | None = None, backbone: str = "mobilenet_v2", epochs: int = 6, train_per_class: int = 100,
        val_per_class: int = 50, image_size: int = 64, out_dir: str = "runs/demo") -> dict:
    dataset = dataset or default_dataset()
    out_dir = str(Path(out_dir) / time.strftime("%Y%m%d-%H%M%S"))
    train_dir, val_dir, _ = materialize(dataset, train_per_class=train_per_class, val_per_class=val_per_class)
    print(f"demo: {dataset}, {train_per_class}/class for training, {val_per_class}/class for validation "
          f"(images in {train_dir.parent})", file=sys.stderr)
    results = {}
    for weights in ("imagenet", "none"):
        cfg = ClassifyConfig()
        cfg.data.train, cfg.data.val, cfg.data.image_size = str(train_dir), str(val_dir), image_size
        cfg.data.augment.hflip, cfg.data.augment.scale_min = 0.5, 0.7
        cfg.model.backbone, cfg.model.weights, cfg.finetune.strategy = backbone, weights, "full"
        cfg.optim.lr, cfg.optim.warmup_epochs = 2e-3, 0.5
        cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = epochs, 32, 1
        cfg.train.out_dir, cfg.train.name = out_dir, "pretrained" if weights != "none" else "random-init"
        label = "pretrained (ImageNet)" if weights != "none" else "random init"
        print(f"\n== {backbone}, {label} ==", file=sys.stderr)
        clf = Classifier(config=cfg)
        t0 = time.perf_counter()
        history = clf.fit()
        best = max(h["val/accuracy"] for h in history)
        results[label] = {"accuracy": best, "f1": max(h["val/f1"] for h in history), "seconds": time.perf_counter() - t0,
                          "run_dir": clf.run_dir, "weights": clf.model.backbone.weights_source}
    print(f"\nvisiontl demo — {backbone} fine-tuned on {dataset} ({train_per_class * 10} training images, "
          f"{image_size}px, {epochs} epochs, same recipe for both)")
    print(f"{'':24}{'val accuracy':>14}{'macro F1':>10}{'time':>8}  run directory")
    for label, r in results.items():
        print(f"{label:24}{r['accuracy']:>14.3f}{r['f1']:>10.3f}{r['seconds']:>7.0f}s  {r['run_dir']}")
    gain = results["pretrained (ImageNet)"]["accuracy"] - results["random init"]["accuracy"]
    print(f"transfer learning gain: {gain * 100:+.1f} accuracy points")
    print(f"plots (curves.png, confusion_matrix.png, val_predictions.png) and summary.txt: {Path(out_dir).resolve()}/*/")
    return results

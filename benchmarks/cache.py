"""Frozen-feature cache speed-up (issue goal: ≥ 8× end to end, same accuracy ± 0.5 points).

    python -m benchmarks cache                                   # 160 px, 300 images per class
    python -m benchmarks cache --image-size 64 --per-class 1000  # small images: fixed costs weigh more

The same frozen-backbone training twice on Fashion-MNIST: once recomputing the backbone
every epoch (finetune.cache=off), once on cached features, the one-time caching pass
included (an empty cache directory). Augmentation is off in both, so both runs train on
the same inputs; wall time is the whole fit() call.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from visiontl.adapters import Classifier, ClassifyConfig
from visiontl.data.builtin import default_dataset, materialize

from . import harness


def run(train_dir: Path, val_dir: Path, cache: str, cache_dir: Path, out: Path, args) -> dict:
    cfg = ClassifyConfig()
    cfg.data.train, cfg.data.val, cfg.data.image_size = str(train_dir), str(val_dir), args.image_size
    cfg.data.augment.random_resized_crop, cfg.data.augment.hflip, cfg.data.augment.color_jitter = False, 0.0, 0.0
    cfg.model.backbone, cfg.model.weights = args.backbone, "imagenet"
    cfg.finetune.strategy, cfg.finetune.cache, cfg.finetune.cache_dir = "frozen", cache, str(cache_dir)
    cfg.optim.lr = 3e-3
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = args.epochs, 64, 1
    cfg.train.out_dir, cfg.train.progress = str(out), "none"
    t0 = time.perf_counter()
    history = Classifier(config=cfg).fit()
    return {"cache": cache, "seconds": time.perf_counter() - t0,
            "final_accuracy": history[-1]["val/accuracy"], "best_accuracy": max(h["val/accuracy"] for h in history)}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks cache")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--per-class", type=int, default=300)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args()
    dataset = default_dataset()
    train_dir, val_dir, _ = materialize(dataset, train_per_class=args.per_class, val_per_class=args.val_per_class)
    work = Path(tempfile.mkdtemp(prefix="visiontl-cache-bench-"))
    cached = run(train_dir, val_dir, "auto", work / "cache", work / "runs", args)  # empty cache: pass included
    recompute = run(train_dir, val_dir, "off", work / "unused", work / "runs", args)
    speedup = recompute["seconds"] / cached["seconds"]
    result = {"machine": harness.machine(), "dataset": dataset, "args": vars(args), "cached": cached,
              "recompute": recompute, "speedup": speedup,
              "accuracy_diff_points": 100 * (cached["final_accuracy"] - recompute["final_accuracy"])}
    path = harness.save(f"cache-cpu-{args.image_size}px", result)
    print(f"\n{'':12}{'seconds':>10}{'final acc':>11}{'best acc':>10}")
    for name, r in (("recompute", recompute), ("cached", cached)):
        print(f"{name:12}{r['seconds']:>10.1f}{r['final_accuracy']:>11.4f}{r['best_accuracy']:>10.4f}")
    print(f"speed-up {speedup:.1f}x, accuracy difference {result['accuracy_diff_points']:+.2f} points; wrote {path}")


if __name__ == "__main__":
    main()

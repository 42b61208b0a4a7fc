"""Transfer-learning table (after Kornblith et al. 2019, "Do Better ImageNet Models Transfer
Better?"): linear probe vs two_phase vs full fine-tuning vs random init, equal epochs.

    python -m benchmarks strategies [--backbones mobilenet_v2 resnet18 vgg19] [--epochs 5]

Backbones without offline weights are trained from random init only, and labelled so.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from visiontl.adapters import Classifier, ClassifyConfig
from visiontl.backbones import list_backbones
from visiontl.data.builtin import default_dataset, materialize

from . import harness

SETTINGS = [  # (label, weights, strategy)
    ("linear probe (frozen)", "imagenet", "frozen"),
    ("two_phase", "imagenet", "two_phase"),
    ("full fine-tuning", "imagenet", "full"),
    ("random init, full", "none", "full"),
]


def run(backbone: str, weights: str, strategy: str, train_dir: Path, val_dir: Path, args, out: Path) -> dict:
    cfg = ClassifyConfig()
    cfg.data.train, cfg.data.val, cfg.data.image_size = str(train_dir), str(val_dir), args.image_size
    cfg.model.backbone, cfg.model.weights = backbone, weights
    cfg.finetune.strategy, cfg.finetune.head_epochs, cfg.finetune.last_n = strategy, max(1, args.epochs // 2), 2
    cfg.finetune.cache_dir = str(out / "cache")
    # the usual per-setting rates: a probe (and two_phase's head phase) takes a high one,
    # fine-tuning a low one (two_phase's second phase too), training from scratch in between
    cfg.optim.lr = (args.probe_lr if strategy in ("frozen", "two_phase") else
                    args.scratch_lr if weights == "none" else args.finetune_lr)
    cfg.finetune.phase2_lr_factor = args.finetune_lr / args.probe_lr
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = args.epochs, 32, 1
    cfg.train.out_dir, cfg.train.progress = str(out / "runs"), "none"
    t0 = time.perf_counter()
    history = Classifier(config=cfg).fit()
    return {"backbone": backbone, "weights": weights, "strategy": strategy, "seconds": time.perf_counter() - t0,
            "best_accuracy": max(h["val/accuracy"] for h in history)}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks strategies")
    p.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "resnet18", "vgg19"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--val-per-class", type=int, default=50)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--probe-lr", type=float, default=3e-3)
    p.add_argument("--finetune-lr", type=float, default=3e-4)
    p.add_argument("--scratch-lr", type=float, default=1e-3)
    args = p.parse_args()
    dataset = default_dataset()
    train_dir, val_dir = materialize(dataset, train_per_class=args.per_class, val_per_class=args.val_per_class)
    available = {r["name"]: r["weights"] for r in list_backbones()}
    out = Path(tempfile.mkdtemp(prefix="visiontl-strategies-"))
    rows = []
    for backbone in args.backbones:
        pretrained = available.get(backbone, "") in ("cached",) or available.get(backbone, "").startswith("shipped")
        for label, weights, strategy in SETTINGS:
            if weights != "none" and not pretrained:
                rows.append({"backbone": backbone, "setting": label, "best_accuracy": None,
                             "note": "no ImageNet weights offline"})
                continue
            r = run(backbone, weights, strategy, train_dir, val_dir, args, out)
            rows.append({**r, "setting": label})
            print(f"{backbone:14} {label:24} {r['best_accuracy']:.4f}  ({r['seconds']:.0f} s)", flush=True)
    path = harness.save("strategies-cpu", {"machine": harness.machine(), "dataset": dataset, "args": vars(args),
                                           "rows": rows})
    print(f"\n| backbone | {' | '.join(s[0] for s in SETTINGS)} |")
    print("|---|" + "---:|" * len(SETTINGS))
    for backbone in args.backbones:
        cells = []
        for label, _, _ in SETTINGS:
            r = next(x for x in rows if x["backbone"] == backbone and x["setting"] == label)
            cells.append("n/a (no offline weights)" if r["best_accuracy"] is None else f"{r['best_accuracy']:.3f}")
        print(f"| {backbone} | {' | '.join(cells)} |")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Transfer-learning table (after Kornblith et al. 2019, "Do Better ImageNet Models Transfer
Better?"): linear probe vs two_phase vs full fine-tuning vs random init, at equal epochs,
each cell at its own best learning rate.

    python -m benchmarks strategies [--backbones mobilenet_v2 resnet18 vgg19] [--epochs 6]

As in the paper, the learning rate is searched per cell: every setting trains once per rate
of its grid on ``train``, the rate (and epoch) with the best accuracy on ``tune`` (held out
of the official training split) is kept, and that model's accuracy on ``test`` (the
official test split, never looked at before) is reported. Backbones without offline
weights are trained from random init only, and labelled so.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from visiontl.adapters import Classifier, ClassifyConfig
from visiontl.backbones import list_backbones
from visiontl.data.builtin import default_dataset, materialize
from visiontl.plots import save, subplots

from . import harness

SETTINGS = [  # (label, weights, strategy, option holding its learning-rate grid)
    ("linear probe (frozen)", "imagenet", "frozen", "probe_lrs"),
    ("two_phase", "imagenet", "two_phase", "finetune_lrs"),  # grid of the second phase; head phase at --probe-lr
    ("full fine-tuning", "imagenet", "full", "finetune_lrs"),
    ("random init, full", "none", "full", "scratch_lrs"),
]


def run(backbone: str, weights: str, strategy: str, lr: float, splits, args, out: Path) -> dict:
    cfg = ClassifyConfig()
    cfg.data.train, cfg.data.val, cfg.data.image_size = str(splits.train), str(splits.tune), args.image_size
    cfg.model.backbone, cfg.model.weights = backbone, weights
    cfg.finetune.strategy, cfg.finetune.head_epochs = strategy, max(1, args.epochs // 2)
    cfg.finetune.cache_dir = str(out / "cache")
    if strategy == "two_phase":  # the head settles at the probe's rate, then the top blocks and the head at `lr`
        cfg.optim.lr = args.probe_lr
        cfg.finetune.phase2_lr_factor = cfg.finetune.phase2_head_lr_factor = lr / args.probe_lr
    else:
        cfg.optim.lr = lr
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = args.epochs, 32, 1
    cfg.train.out_dir, cfg.train.progress = str(out / "runs"), "none"
    t0 = time.perf_counter()
    clf = Classifier(config=cfg)
    history = clf.fit()  # the model keeps its best epoch on `tune`
    seconds = time.perf_counter() - t0
    return {"lr": lr, "seconds": seconds, "tune_accuracy": max(h["val/accuracy"] for h in history),
            "test_accuracy": clf.evaluate(splits.val)["accuracy"]}


def cell(backbone: str, label: str, weights: str, strategy: str, grid: list[float], splits, args, out: Path) -> dict:
    tries = []
    for lr in grid:
        tries.append(run(backbone, weights, strategy, lr, splits, args, out))
        t = tries[-1]
        print(f"{backbone:14} {label:24} lr {lr:<8g} tune {t['tune_accuracy']:.4f}  test {t['test_accuracy']:.4f}"
              f"  ({t['seconds']:.0f} s)", flush=True)
    best = max(tries, key=lambda t: t["tune_accuracy"])  # first of equals: grids run low to high
    return {"backbone": backbone, "setting": label, "weights": weights, "strategy": strategy,
            "lr": best["lr"], "tune_accuracy": best["tune_accuracy"], "test_accuracy": best["test_accuracy"],
            "tries": tries}


def table(rows: list[dict], backbones: list[str]) -> str:
    lines = [f"| backbone | {' | '.join(s[0] for s in SETTINGS)} |", "|---|" + "---:|" * len(SETTINGS)]
    for backbone in backbones:
        cells = []
        for label, *_ in SETTINGS:
            r = next(x for x in rows if x["backbone"] == backbone and x["setting"] == label)
            cells.append("n/a (no offline weights)" if r.get("test_accuracy") is None
                         else f"{r['test_accuracy']:.3f} (lr {r['lr']:g})")
        lines.append(f"| {backbone} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(rows: list[dict], backbones: list[str], path: Path, title: str) -> None:
    fig, ax = subplots(figsize=(8, 4))
    width = 0.8 / len(SETTINGS)
    for i, (label, *_) in enumerate(SETTINGS):
        values = [next(x for x in rows if x["backbone"] == b and x["setting"] == label).get("test_accuracy")
                  for b in backbones]
        xs = [j + (i - (len(SETTINGS) - 1) / 2) * width for j in range(len(backbones))]
        bars = ax.bar(xs, [v or 0 for v in values], width, label=label)
        for bar, v in zip(bars, values):
            ax.annotate("n/a" if v is None else f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(backbones)), backbones)
    ax.set_ylabel("test accuracy (best lr on tune)")
    ax.set_ylim(0, 1.15)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper center", ncol=len(SETTINGS), frameon=False)
    save(fig, path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks strategies")
    p.add_argument("--backbones", nargs="+", default=["mobilenet_v2", "resnet18", "vgg19"])
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--per-class", type=int, default=100, help="training images per class")
    p.add_argument("--tune-per-class", type=int, default=50, help="held-out images per class for the lr choice")
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--probe-lr", type=float, default=3e-3, help="two_phase's head phase")
    p.add_argument("--probe-lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2])
    p.add_argument("--finetune-lrs", type=float, nargs="+", default=[1e-5, 1e-4, 1e-3])
    p.add_argument("--scratch-lrs", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    args = p.parse_args()
    dataset = default_dataset()
    splits = materialize(dataset, train_per_class=args.per_class, val_per_class=args.test_per_class,
                         tune_per_class=args.tune_per_class)
    available = {r["name"]: r["weights"] for r in list_backbones()}
    out = Path(tempfile.mkdtemp(prefix="visiontl-strategies-"))
    rows = []
    for backbone in args.backbones:
        source = available.get(backbone, "")
        pretrained = source == "cached" or source.startswith("shipped")
        for label, weights, strategy, grid in SETTINGS:
            if weights != "none" and not pretrained:
                rows.append({"backbone": backbone, "setting": label, "test_accuracy": None,
                             "note": "no ImageNet weights offline"})
                continue
            rows.append(cell(backbone, label, weights, strategy, sorted(getattr(args, grid)), splits, args, out))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = {"machine": harness.machine(), "dataset": dataset, "args": vars(args), "rows": rows}
    path = harness.save(f"strategies-{device}", result)
    title = (f"{dataset}: {args.per_class}/class train, {args.epochs} epochs, {args.image_size} px; "
             f"lr chosen on {args.tune_per_class}/class held out; test {args.test_per_class}/class")
    plot(rows, args.backbones, harness.RESULTS / f"strategies-{device}.png", title)
    print("\n" + table(rows, args.backbones))
    print(f"wrote {path} and strategies-{device}.png")


if __name__ == "__main__":
    main()

"""Classification benchmark (CPU or CUDA, whichever is present).

1. Training throughput of visiontl's engine vs a plain hand-written PyTorch loop on the
   same model, dataset object and batch size, interleaved in one process (medians).
2. Pretrained (offline ImageNet weights) vs random-init accuracy on Fashion-MNIST.

    make bench                     # or: python -m benchmarks classification [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from visiontl import create_backbone
from visiontl.adapters import Classifier, ClassifyConfig
from visiontl.adapters.classification.model import ClassificationModel
from visiontl.data.builtin import default_dataset, materialize
from visiontl.data.image_dataset import collate
from visiontl.data.transforms import AugmentConfig, apply, train_transform

from . import harness


def visiontl_epoch(train_dir: Path, args, out: Path, whole_fit: list) -> float:
    """One epoch through visiontl's Trainer; its own images/s over the training loop
    (what the plain loop times too). ``whole_fit`` also gets images/s over the whole
    ``fit()`` call: data scan, model build, run directory, checkpoints and plots included."""
    cfg = ClassifyConfig()
    cfg.data.train, cfg.data.val_fraction, cfg.data.image_size = str(train_dir), 0.0, args.image_size
    cfg.model.backbone, cfg.model.weights, cfg.finetune.strategy = args.backbone, "imagenet", "full"
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = 1, args.batch_size, args.workers
    cfg.train.channels_last, cfg.train.out_dir, cfg.train.progress = True, str(out), "none"
    t0 = time.perf_counter()
    clf = Classifier(config=cfg)
    history = clf.fit()
    whole_fit.append(len(clf.datasets()[0]) / (time.perf_counter() - t0))
    return history[0]["train/images_per_s"]


def plain_epoch(dataset, num_classes: int, args, channels_last: bool) -> float:
    """The loop a person writes from the PyTorch tutorial, on the same model and data."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = ClassificationModel(create_backbone(args.backbone, weights="imagenet"), num_classes).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                        collate_fn=collate, pin_memory=device.type == "cuda")
    use_amp = device.type == "cuda"
    model.train()

    def epoch() -> int:
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return len(dataset)

    return harness.timed(epoch, device)


def accuracy_run(train_dir: Path, val_dir: Path, weights: str, args, out: Path) -> dict:
    cfg = ClassifyConfig()
    cfg.data.train, cfg.data.val, cfg.data.image_size = str(train_dir), str(val_dir), args.image_size
    cfg.data.augment.scale_min = 0.7
    cfg.model.backbone, cfg.model.weights, cfg.finetune.strategy = args.backbone, weights, "full"
    cfg.optim.lr, cfg.optim.warmup_epochs = 2e-3, 0.5
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = args.acc_epochs, args.batch_size, args.workers
    cfg.train.out_dir, cfg.train.progress = str(out), "none"
    t0 = time.perf_counter()
    history = Classifier(config=cfg).fit()
    return {"weights": weights, "best_accuracy": max(h["val/accuracy"] for h in history),
            "best_f1": max(h["val/f1"] for h in history), "seconds": time.perf_counter() - t0,
            "val_accuracy_per_epoch": [h["val/accuracy"] for h in history]}


def plot(result: dict, path: Path) -> None:
    from visiontl.plots import save, subplots

    fig, axes = subplots(1, 2, figsize=(11, 4))
    names = list(result["throughput"]["rates"])
    for i, n in enumerate(names):
        rates = result["throughput"]["rates"][n]
        axes[0].bar(i, harness.median(rates), color="C0" if n == "visiontl" else "C7")
        axes[0].plot([i] * len(rates), rates, "k.", alpha=0.6)
    axes[0].set_xticks(range(len(names)), names, fontsize=8)
    axes[0].set(ylabel="training images / s", title=f"training throughput ({result['device']}, median + rounds)")
    for r in result["accuracy"]:
        acc = r["val_accuracy_per_epoch"]
        axes[1].plot(range(1, len(acc) + 1), acc, marker="o",
                     label="pretrained (ImageNet)" if r["weights"] != "none" else "random init")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy", title=f"{result['dataset']}: transfer value")
    axes[1].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    save(fig, path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks classification")
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--per-class", type=int, default=192, help="training images per class for the throughput runs")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--acc-per-class", type=int, default=500)
    p.add_argument("--acc-val-per-class", type=int, default=100)
    p.add_argument("--acc-epochs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the harness works")
    args = p.parse_args()
    if args.quick:
        args.per_class, args.repeats, args.acc_per_class, args.acc_val_per_class, args.acc_epochs = 16, 2, 16, 8, 1
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dataset_name = default_dataset()
    out = Path(tempfile.mkdtemp(prefix="visiontl-bench-"))
    print(f"classification benchmark on {device}, {dataset_name}, backbone {args.backbone}", file=sys.stderr)

    # 1. throughput, interleaved
    train_dir = materialize(dataset_name, train_per_class=args.per_class, val_per_class=10).train
    reference = Classifier(config=ClassifyConfig())
    reference.config.data.train, reference.config.data.val_fraction = str(train_dir), 0.0
    reference.config.data.image_size = args.image_size
    shared_set, _ = reference.datasets()  # the same dataset object and transform for the plain loops
    shared_set.transform = partial(apply, train_transform(args.image_size, AugmentConfig()))
    whole_fit: list[float] = []
    contenders = {
        "visiontl": partial(visiontl_epoch, train_dir, args, out, whole_fit),
        "plain loop, channels_last": partial(plain_epoch, shared_set, len(shared_set.classes), args, True),
        "plain loop, contiguous": partial(plain_epoch, shared_set, len(shared_set.classes), args, False),
    }
    for fn in contenders.values():  # warm-up round (allocator, caches), not counted
        fn()
    rates = harness.interleaved(contenders, args.repeats)
    whole_fit = whole_fit[1:]  # drop the warm-up round
    medians = {k: harness.median(v) for k, v in rates.items()}
    best_plain = max(v for k, v in medians.items() if k != "visiontl")

    # 2. transfer value: pretrained vs random init, same recipe
    acc_train, acc_val, _ = materialize(dataset_name, train_per_class=args.acc_per_class,
                                     val_per_class=args.acc_val_per_class)
    accuracy = [accuracy_run(acc_train, acc_val, w, args, out) for w in ("imagenet", "none")]

    result = {
        "machine": harness.machine(), "device": device, "dataset": dataset_name, "args": vars(args),
        "throughput": {"rates": rates, "medians": medians, "ratio_vs_best_plain": medians["visiontl"] / best_plain,
                       "visiontl_whole_fit_rates": whole_fit, "visiontl_whole_fit_median": harness.median(whole_fit),
                       "images_per_epoch": len(shared_set)},
        "accuracy": accuracy,
    }
    tag = f"classification-{device}" + ("-quick" if args.quick else "")
    path = harness.save(tag, result)
    plot(result, path.with_suffix(".png"))
    print(f"\n{'contender':30}{'median img/s':>14}")
    for k, v in medians.items():
        print(f"{k:30}{v:>14.1f}")
    print(f"{'visiontl, whole fit() call':30}{harness.median(whole_fit):>14.1f}")
    print(f"visiontl / best plain loop: {result['throughput']['ratio_vs_best_plain']:.3f}")
    for r in accuracy:
        print(f"{'pretrained' if r['weights'] != 'none' else 'random init':12} best val accuracy "
              f"{r['best_accuracy']:.4f}  F1 {r['best_f1']:.4f}  ({r['seconds']:.0f} s)")
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()

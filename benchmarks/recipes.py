"""Recipes on data the defaults were not tuned on: every fine-tuning strategy with its own
defaults, next to the seeds' Keras recipe written in plain PyTorch, on several real datasets.

    python -m benchmarks recipes [--datasets fashion-4000 fashion-300 digits] [--seeds 0 1 2] [--epochs 6]
        [--fastai-python /path/to/env-with-fastai/bin/python]
    python -m benchmarks recipes --task segment [--epochs 10] [--seeds 0 1 2]   (see recipes_segment.py)

Each contender trains ``--epochs`` epochs on ``train``, validates on ``tune`` (held out of
the official training split), and is scored once on ``test`` (the official test split) with
its best epoch (by ``tune``) and with its final epoch. Reported: medians over seeds, the
per-epoch ``tune`` accuracy of every run (to read around each switch), wall time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from visiontl.adapters import Classifier, ClassifyConfig
from visiontl.config import load_config
from visiontl.data.builtin import materialize
from visiontl.engine import load_checkpoint
from visiontl.plots import save, subplots

from . import datasets, harness, recipes_segment

DATASETS = {  # name: (built-in source, train/class, tune/class, test/class)
    "fashion-4000": ("fashion-mnist", 400, 50, 100),
    "fashion-300": ("fashion-mnist", 30, 20, 100),
    "fashion-100": ("fashion-mnist", 10, 10, 100),
    "digits": ("digits", 100, 20, 50),
    "textures": ("textures", 80, 20, 40),  # natural-photo textures, RGB, 10 classes (datasets.py)
    "faces": ("faces", 50, 20, 30),  # LFW faces vs non-faces, 25 px greyscale (datasets.py)
}
VISIONTL = ["frozen", "two_phase", "gradual", "full", "auto"]
CONTENDERS = [f"visiontl {s}" for s in VISIONTL] + ["keras recipe (plain PyTorch)", "fastai fine_tune"]


def visiontl_run(strategy: str, splits, args, seed: int, out: Path) -> dict:
    cfg = load_config(ClassifyConfig, None, args.set)  # --set key=value: a variant of the defaults
    cfg.data.train, cfg.data.val, cfg.data.image_size = str(splits.train), str(splits.tune), args.image_size
    cfg.model.backbone, cfg.finetune.strategy = args.backbone, strategy
    cfg.finetune.cache_dir = str(out / "cache")
    cfg.train.epochs, cfg.train.seed, cfg.train.num_workers = args.epochs, seed, 1
    cfg.train.out_dir, cfg.train.progress = str(out / "runs"), "none"
    t0 = time.perf_counter()
    clf = Classifier(config=cfg)
    history = clf.fit()
    seconds = time.perf_counter() - t0
    best = clf.evaluate(splits.val)["accuracy"]  # the model holds the best epoch
    clf.model.load_state_dict(load_checkpoint(clf.run_dir / "last.pt")["model"])
    final = clf.evaluate(splits.val)["accuracy"]
    return {"seconds": seconds, "tune_per_epoch": [h["val/accuracy"] for h in history],
            "train_loss_per_epoch": [h["train/loss"] for h in history], "test_best": best, "test_final": final}


def resolved_auto(splits, backbone: str, image_size: int) -> str:
    """The strategy ``auto`` picks for this training set and backbone (finetune.choose)."""
    from visiontl.backbones import create_backbone
    from visiontl.engine.finetune import FinetuneConfig, choose, normalised

    classes = [p for p in Path(splits.train).iterdir() if p.is_dir()]
    n_images = sum(1 for c in classes for _ in c.iterdir())
    has_norm = normalised(create_backbone(backbone, weights="none"))
    return choose(FinetuneConfig("auto"), n_images=n_images, n_classes=len(classes), n_groups=1,
                  has_norm=has_norm, image_size=image_size)[0].strategy


def keras_recipe_run(splits, args, seed: int) -> dict:
    """The seeds' recipe as a plain script: GAP + Dense head on a frozen mobilenet_v2 with
    Adam 1e-3 for half the epochs (Keras: base_model(x, training=False) keeps BatchNorm in
    inference mode), then the last blocks unfrozen at 1e-5."""
    import torchvision
    from torchvision import transforms as T

    from visiontl.backbones import create_backbone

    torch.manual_seed(seed)
    bb = create_backbone(args.backbone, weights="imagenet")  # the same offline weights
    classes = sorted(p.name for p in Path(splits.train).iterdir())
    head = torch.nn.Linear(bb.feature_info[-1].channels, len(classes))
    size = args.image_size
    norm = T.Compose([T.Resize((size, size)), T.ToTensor()])  # the backbone normalises itself
    aug = T.Compose([T.Resize((size, size)), T.RandomHorizontalFlip(), T.ToTensor()])
    load = lambda folder, tf, shuffle: torch.utils.data.DataLoader(  # noqa: E731
        torchvision.datasets.ImageFolder(folder, tf, loader=lambda p: __import__("PIL.Image").Image.open(p).convert("RGB")),
        batch_size=32, shuffle=shuffle, num_workers=1, generator=torch.Generator().manual_seed(seed))
    train, tune, test = load(splits.train, aug, True), load(splits.tune, norm, False), load(splits.val, norm, False)

    def forward(x):
        return head(bb(x)[-1].mean((2, 3)))

    def accuracy(loader):
        bb.eval()
        with torch.no_grad():
            hits = sum((forward(x).argmax(1) == y).sum().item() for x, y in loader)
        return hits / len(loader.dataset)

    t0, tune_acc, losses, best, best_state = time.perf_counter(), [], [], -1.0, None
    groups = bb.layer_groups()
    for epoch in range(args.epochs):
        if epoch == 0:
            for p in bb.parameters():
                p.requires_grad_(False)
            opt = torch.optim.Adam(head.parameters(), lr=1e-3)
        if epoch == args.epochs // 2:
            top = [p for g in groups[-2:] for p in g.parameters()]
            for p in top:
                p.requires_grad_(True)
            opt = torch.optim.Adam([*top, *head.parameters()], lr=1e-5)
        bb.eval()  # BatchNorm in inference mode throughout, as Keras's training=False
        total = 0.0
        for x, y in train:
            loss = F.cross_entropy(forward(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total / len(train))
        tune_acc.append(accuracy(tune))
        if tune_acc[-1] > best:
            best = tune_acc[-1]
            best_state = ({k: v.clone() for k, v in bb.state_dict().items()},
                          {k: v.clone() for k, v in head.state_dict().items()})
    seconds = time.perf_counter() - t0
    final = accuracy(test)
    bb.load_state_dict(best_state[0])
    head.load_state_dict(best_state[1])
    return {"seconds": seconds, "tune_per_epoch": tune_acc, "train_loss_per_epoch": losses,
            "test_best": accuracy(test), "test_final": final}


def fastai_run(splits, args, seed: int) -> dict:
    """fastai's ``fine_tune`` in its own interpreter (``--fastai-python``): see fastai_peer.py."""
    import subprocess
    import sys

    cmd = [args.fastai_python, str(Path(__file__).with_name("fastai_peer.py")), str(Path(splits.train).parent),
           "--epochs", str(args.epochs), "--seed", str(seed), "--size", str(args.image_size)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"fastai run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict]) -> dict:
    med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
    worst_drop = max(max(r["tune_per_epoch"]) - r["tune_per_epoch"][-1] for r in runs)
    return {"test_best": med("test_best"), "test_final": med("test_final"), "seconds": med("seconds"),
            "worst_final_below_best_on_tune": worst_drop, "runs": runs}


def switch_changes(results: dict, datasets: list[str], head_epochs: int = 2) -> str:
    """Per run, tune accuracy of the first epoch after each switch minus the epoch before it
    (two_phase: epoch head_epochs + 1; gradual: every epoch from the second), worst per run."""
    lines = []
    for name, first in (("visiontl two_phase", head_epochs), ("visiontl gradual", 1)):
        cells = []
        for d in datasets:
            r = results.get(d, {}).get(name)
            if r is None:
                cells.append("—")
                continue
            worst = []
            for run in r["runs"]:
                tune = run["tune_per_epoch"]
                ends = [first] if name.endswith("two_phase") else range(first, len(tune))
                worst.append(min(tune[e] - tune[e - 1] for e in ends))
            cells.append(" / ".join(f"{100 * w:+.1f}" for w in worst))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    head = "| first epoch after a switch − the one before (tune, points; worst switch per seed) | " + " | ".join(datasets)
    return "\n".join([head + " |", "|---|" + "---:|" * len(datasets), *lines])


def table(results: dict, datasets: list[str]) -> str:
    lines = ["| contender | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
    for name in CONTENDERS:
        cells = []
        for d in datasets:
            r = results.get(d, {}).get(name)
            chosen = f" [{r['resolved']}]" if r and "resolved" in r else ""
            cells.append("—" if r is None else
                         f"{r['test_final']:.3f} / {r['test_best']:.3f}{chosen} ({r['seconds']:.0f} s)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, datasets: list[str], path: Path) -> None:
    fig, axes = subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for name, r in results.get(d, {}).items():
            if "resolved" in r:  # auto: the same runs as the strategy it chose
                continue
            curve = [statistics.median(v) for v in zip(*(run["tune_per_epoch"] for run in r["runs"]))]
            ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=name.replace(" (plain PyTorch)", ""))
        ax.set_title(d, fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("tune accuracy (median of seeds)")
    axes[0][0].legend(fontsize=6)
    save(fig, path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks recipes")
    p.add_argument("--datasets", nargs="+", default=["fashion-4000", "fashion-300", "fashion-100", "digits"],
                   choices=list(DATASETS))
    p.add_argument("--contenders", nargs="+", default=CONTENDERS, choices=CONTENDERS)
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--set", nargs="*", action="extend", default=[], help="config overrides for the visiontl runs (key=value)")
    p.add_argument("--fastai-python", default="", help="a Python with fastai installed (a separate environment): "
                                                       "adds fastai's fine_tune as a contender")
    p.add_argument("--resume", action="store_true", help="keep the cells already in the result file")
    p.add_argument("--task", choices=["classify", "segment"], default="classify")
    p.add_argument("--seg-datasets", nargs="+", default=["nuclei-57x61", "nuclei-128", "crowns-192"],
                   choices=list(recipes_segment.CLASSES))
    p.add_argument("--seg-contenders", nargs="+", default=None)
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="visiontl-recipes-"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.task == "segment":
        if args.image_size == 64:  # the classification default; segmentation trains at 128
            args.image_size = 128
        if args.epochs == 6:
            args.epochs = 10
        args.seg_contenders = args.seg_contenders or recipes_segment.CONTENDERS
        results = recipes_segment.run(args, out)
        harness.save(f"recipes-segment-{device}{args.tag}", {"machine": harness.machine(), "args": vars(args),
                                                              "results": results})
        print("\nvalidation mIoU, final epoch / best epoch (median of seeds)\n")
        print(recipes_segment.table(results))
        return
    name = f"recipes-{args.backbone}-{device}{args.tag}"
    results: dict = {}
    previous = harness.RESULTS / f"{name}.json"
    if args.resume and previous.is_file():  # cells already measured are kept, not re-run
        results = json.loads(previous.read_text())["results"]
    for d in args.datasets:
        source, n_train, n_tune, n_test = DATASETS[d]
        arrays = datasets.LOADERS[source]() if source in datasets.LOADERS else None
        splits = materialize(source, train_per_class=n_train, tune_per_class=n_tune, val_per_class=n_test,
                             arrays=arrays)
        for contender in args.contenders:
            if contender in results.get(d, {}):
                continue
            if contender == "visiontl auto":  # the same seeded run as the strategy it resolves to
                chosen = resolved_auto(splits, args.backbone, args.image_size)
                if f"visiontl {chosen}" in results.get(d, {}):
                    results[d][contender] = {**results[d][f"visiontl {chosen}"], "resolved": chosen}
                    continue
            runs = []
            for seed in args.seeds:
                if contender.startswith("visiontl "):
                    run = visiontl_run(contender.split()[1], splits, args, seed, out)
                elif contender.startswith("fastai"):
                    if not args.fastai_python:
                        continue
                    run = fastai_run(splits, args, seed)
                else:
                    run = keras_recipe_run(splits, args, seed)
                runs.append(run)
                print(f"{d:14} {contender:30} seed {seed}: test final {run['test_final']:.4f} best "
                      f"{run['test_best']:.4f}  tune/epoch {' '.join(f'{a:.3f}' for a in run['tune_per_epoch'])}"
                      f"  ({run['seconds']:.0f} s)", flush=True)
            if runs:
                results.setdefault(d, {})[contender] = summarize(runs)
            harness.save(name, {"machine": harness.machine(), "args": vars(args), "results": results})
    plot(results, args.datasets, harness.RESULTS / f"{name}.png")
    print("\ntest accuracy, final epoch / best epoch (median of seeds), wall time\n")
    print(table(results, args.datasets))
    print("\n" + switch_changes(results, args.datasets))
    print(json.dumps({d: {c: round(r["worst_final_below_best_on_tune"], 4) for c, r in v.items()}
                      for d, v in results.items()}))


if __name__ == "__main__":
    main()

"""Where ``full`` fine-tuning overtakes ``two_phase``: the threshold of ``finetune.strategy=auto``,
measured at the default image size (224 px) on RGB sets the defaults were not tuned on.

    python -m benchmarks threshold [--datasets textures224 crowns nuclei] [--per-class 36 100]
        [--strategies frozen two_phase full] [--seeds 0 1 2 3 4] [--resume]

Each cell trains mobilenet_v2 (ImageNet weights) with the task's defaults (10 epochs, 224 px)
on ``per-class`` images of each class, validates on ``tune`` (another band of the photos)
and scores ``test`` once with its final epoch and its best epoch by ``tune``. Reported per
cell: the median, the worst and the best seed — ``auto`` should pick ``full`` only where it
is ahead on the median *and* no worse in its worst seed.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from visiontl.data.builtin import materialize
from visiontl.plots import save, subplots

from . import datasets, harness
from .recipes import visiontl_run

SETS = {  # name: (tune / class, test / class, the most training images a class has)
    "textures224": (9, 18, 36),
    "photos4": (9, 18, 126),
    "crowns": (120, 220, 380),
    "nuclei": (140, 290, 500),
}


VARIANTS = {  # contender: (finetune.strategy, extra overrides)
    "two_phase+full": ("two_phase", ["finetune.phase2=full"]),  # the head first, then everything at the LR
}


def variant(contender: str, args) -> tuple[str, argparse.Namespace]:
    strategy, extra = VARIANTS.get(contender, (contender, []))
    return strategy, argparse.Namespace(**{**vars(args), "set": [*args.set, *extra]})


def cell(results: dict, d: str, n: int, strategy: str) -> list[dict]:
    return results.setdefault(d, {}).setdefault(str(n), {}).setdefault(strategy, [])


def spread(runs: list[dict], key: str = "test_final") -> tuple[float, float, float]:
    values = [r[key] for r in runs]
    return statistics.median(values), min(values), max(values)


def table(results: dict, strategies: list[str]) -> str:
    lines = ["| set | per class | " + " | ".join(strategies) + " |", "|---|---:|" + "---:|" * len(strategies)]
    for d, by_n in results.items():
        for n, by_s in sorted(by_n.items(), key=lambda kv: int(kv[0])):
            cells = []
            for s in strategies:
                runs = by_s.get(s, [])
                if not runs:
                    cells.append("—")
                    continue
                med, lo, hi = spread(runs)
                cells.append(f"{med:.3f} ({lo:.3f}–{hi:.3f})")
            lines.append(f"| {d} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(results: dict) -> str:
    """Per cell: does ``full`` lead ``two_phase`` on the median and in the worst seed?"""
    lines = []
    for d, by_n in results.items():
        for n, by_s in sorted(by_n.items(), key=lambda kv: int(kv[0])):
            if not by_s.get("full") or not by_s.get("two_phase"):
                continue
            (fm, flo, _), (tm, tlo, _) = spread(by_s["full"]), spread(by_s["two_phase"])
            lead = fm >= tm and flo >= tlo
            lines.append(f"{d} {n}/class: full − two_phase median {100 * (fm - tm):+.1f}, worst seed "
                         f"{100 * (flo - tlo):+.1f} points → {'full' if lead else 'two_phase'}")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    cells = [(d, n) for d, by_n in results.items() for n in sorted(by_n, key=int)]
    cols = min(4, len(cells))
    rows = -(-len(cells) // cols)
    fig, axes = subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(cells):]:
        ax.set_visible(False)
    for ax, (d, n) in zip(axes.flat, cells):
        for s, runs in results[d][n].items():
            for i, r in enumerate(runs):
                ax.plot(range(1, len(r["tune_per_epoch"]) + 1), r["tune_per_epoch"], lw=0.8, alpha=0.7,
                        color={"frozen": "C0", "two_phase": "C1", "full": "C2", "two_phase+full": "C4"}.get(s, "C3"),
                        label=s if i == 0 else None)
        ax.set_title(f"{d}, {n}/class", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel("tune accuracy (each seed)")
    axes[0][0].legend(fontsize=7)
    save(fig, path, dpi=120)


def report(prefix: str, strategies: list[str]) -> None:
    merged: dict = {}
    for path in sorted(harness.RESULTS.glob(f"{prefix}*.json")):
        for d, by_n in json.loads(path.read_text())["results"].items():
            for n, by_s in by_n.items():
                for s, runs in by_s.items():
                    cell(merged, d, int(n), s).extend(runs)
    plot(merged, harness.RESULTS / f"{prefix}.png")
    print("test accuracy, final epoch: median of seeds (worst–best seed)\n")
    print(table(merged, strategies))
    print("\n" + verdict(merged))


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks threshold")
    p.add_argument("--datasets", nargs="+", default=["textures224", "crowns", "nuclei"], choices=list(SETS))
    p.add_argument("--per-class", type=int, nargs="+", default=[36, 100])
    p.add_argument("--strategies", nargs="+", default=["frozen", "two_phase", "full"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--backbone", default="mobilenet_v2")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--set", nargs="*", action="extend", default=[], help="config overrides (key=value)")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--resume", action="store_true", help="keep the runs already in the result file")
    p.add_argument("--report", action="store_true",
                   help="train nothing: merge every threshold-BACKBONE-DEVICE*.json result file into one table and plot")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = f"threshold-{args.backbone}-{device}{args.tag}"
    if args.report:
        return report(f"threshold-{args.backbone}-{device}", args.strategies)
    previous = harness.RESULTS / f"{name}.json"
    results: dict = json.loads(previous.read_text())["results"] if args.resume and previous.is_file() else {}
    out = Path(tempfile.mkdtemp(prefix="visiontl-threshold-"))
    for d in args.datasets:
        n_tune, n_test, most = SETS[d]
        for n in args.per_class:
            if n > most:
                print(f"{d}: {n}/class is more than its {most}; skipped")
                continue
            splits = materialize(d, train_per_class=n, tune_per_class=n_tune, val_per_class=n_test,
                                 arrays=datasets.LOADERS[d]())
            for strategy in args.strategies:
                runs = cell(results, d, n, strategy)
                for seed in args.seeds:
                    if any(r["seed"] == seed for r in runs):
                        continue
                    chosen, settings = variant(strategy, args)
                    run = {"seed": seed, **visiontl_run(chosen, splits, settings, seed, out)}
                    runs.append(run)
                    print(f"{d:12} {n:4}/class {strategy:10} seed {seed}: test final {run['test_final']:.3f} best "
                          f"{run['test_best']:.3f}  tune/epoch {' '.join(f'{a:.3f}' for a in run['tune_per_epoch'])}"
                          f"  ({run['seconds']:.0f} s)", flush=True)
                    harness.save(name, {"machine": harness.machine(), "args": vars(args), "results": results})
    plot(results, harness.RESULTS / f"{name}.png")
    print("\ntest accuracy, final epoch: median of seeds (worst–best seed)\n")
    print(table(results, args.strategies))
    print("\n" + verdict(results))


if __name__ == "__main__":
    main()

"""Compression benchmark: for one task on its built-in real data, a trained model, its int8
model, a pruned copy (2× fewer MACs, fine-tuned 5 epochs) and a small student trained on
the labels alone and distilled from the trained model at the same budget, in one
deployment report; every step runs through the command line, as a user would.

    python -m benchmarks compress --task classify [--seeds 0 1 2] [--work DIR]

Writes ``results/compress-<task>-cpu.json`` (every run's per-epoch metrics and the report),
``.md`` (the report's table) and ``.png`` (metric vs latency and throughput).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from visiontl.deploy import deployment_report, markdown
from visiontl.engine.logger import read_metrics

from . import harness

ROOT = Path(__file__).resolve().parent.parent
TASKS = {  # the task's shipped recipe; the student is mobilenet_v3_small from random init (no offline weights)
    "classify": ("configs/classify/fashion_mnist_mobilenet_v2.yaml", "val/accuracy"),
    "segment": ("configs/segment/nuclei_mobilenet_v2.yaml", "val/mIoU"),
    "detect": ("configs/detect/trees_mobilenet_v2.yaml", "val/mAP50-95"),
}
STUDENT = ["model.backbone=mobilenet_v3_small", "model.weights=none"]


def visiontl(*args: str) -> None:
    print("$ visiontl " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "visiontl", *args], check=True, cwd=ROOT)


def history(run: Path, key: str) -> dict:
    rows = read_metrics(run)
    return {"best": max(r[key] for r in rows), "final": rows[-1][key], "epochs": [r[key] for r in rows]}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks compress")
    p.add_argument("--task", choices=list(TASKS), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="student seeds")
    p.add_argument("--speedup", type=float, default=2.0)
    p.add_argument("--work", help="folder for the runs (default: a temporary one, removed after)")
    p.add_argument("--rounds", type=int, default=7, help="timing rounds of the report")
    args = p.parse_args()
    config, key = TASKS[args.task]
    work = Path(args.work or tempfile.mkdtemp(prefix="visiontl-compress-")).resolve()
    runs = work / "runs"
    out = [f"train.out_dir={runs}"]
    visiontl("train", args.task, "-c", config, "train.name=teacher", *out)
    teacher = runs / "teacher" / "best.pt"
    visiontl("prune", str(teacher), "--speedup", str(args.speedup))
    for seed in args.seeds:
        visiontl("train", args.task, "-c", config, *STUDENT, f"train.seed={seed}", f"train.name=labels-{seed}", *out)
        visiontl("distill", args.task, "--teacher", str(teacher), *STUDENT, f"train.seed={seed}",
                 f"train.name=distilled-{seed}", *out)
    seed = args.seeds[0]
    compare = [runs / "teacher-pruned" / "best.pt", runs / f"distilled-{seed}" / "best.pt",
               runs / f"labels-{seed}" / "best.pt"]
    report = deployment_report(teacher, compare=compare, out=work / "deploy", rounds=args.rounds)
    names = ["teacher", "teacher-pruned", *(f"{kind}-{s}" for s in args.seeds for kind in ("labels", "distilled"))]
    result = {"machine": harness.machine(), "task": args.task, "config": config, "student": STUDENT,
              "speedup_target": args.speedup, "metric": key, "runs": {n: history(runs / n, key) for n in names},
              "report": report}
    path = harness.save(f"compress-{args.task}-cpu", result)
    shutil.copy(work / "deploy" / "deploy_report.md", path.with_suffix(".md"))
    shutil.copy(work / "deploy" / "deploy_report.png", path.with_suffix(".png"))
    print(markdown(report))
    print(f"{'student seed':14}{'labels best/final':>20}{'distilled best/final':>24}")
    for s in args.seeds:
        a, b = result["runs"][f"labels-{s}"], result["runs"][f"distilled-{s}"]
        print(f"{s:<14}{a['best']:>12.4f} / {a['final']:.4f}{b['best']:>16.4f} / {b['final']:.4f}")
    print(f"wrote {path} (.md, .png)")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

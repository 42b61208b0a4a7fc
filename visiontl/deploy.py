"""The deployment report (``visiontl export RUN/best.pt --report --compare …``): the trained
model and its compressed versions side by side, so the trade-off is seen at a glance.

For the run's model and every ``compare`` model (a pruned or distilled run of the same task
and classes, validated on the same images): the float ONNX model and, where the task has
one, the int8 model. Each row gives the size on disk, the parameters, ONNX Runtime latency
at batch 1 and throughput at batch 32 (CPU; rounds interleaved across the models, medians)
and the task metric from the task's own validation code run on ONNX Runtime.

Writes ``deploy_report.json``, ``deploy_report.md`` and ``deploy_report.png`` (metric
against latency, the Pareto front joined).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from . import plots
from .files import write_text
from .bench.measure import median, parameters, timed


def kind_of(adapter) -> str:
    """How a run's model was made, in a word: pruned, distilled or trained."""
    if adapter.pruned:
        return "pruned"
    distill = getattr(adapter.config, "distill", None)
    return "distilled" if distill is not None and distill.teacher else "trained"


def deployment_report(checkpoint: str | Path, *, compare: Sequence[str | Path] = (), out: str | Path,
                      batch: int = 32, rounds: int = 5) -> dict:
    """Export every model into ``out`` and measure it (see the module's docstring); returns
    the report (also written as JSON, Markdown and a plot).

    Example: ``deployment_report("runs/x/best.pt", compare=["runs/x-pruned/best.pt"], out="deploy")``"""
    from .adapters import load

    out = Path(out)
    models = [load(checkpoint), *(load(c) for c in compare)]
    ref = models[0]
    key = ref.monitor[0].split("/", 1)[1]
    rows, sessions, val_images = [], [], None
    for i, adapter in enumerate(models):
        if (adapter.task, adapter.classes) != (ref.task, ref.classes):
            raise ValueError(f"{compare[i - 1]}: a {adapter.task} model of classes {adapter.classes}; the report "
                             f"compares models of {checkpoint}'s task ({ref.task}) and classes {ref.classes}")
        if not adapter.supports_deploy_report:
            raise ValueError(f"{checkpoint if i == 0 else compare[i - 1]}: {adapter.describe_model()} exports one "
                             "image a call with its NMS inside, which the report's batch-32 ONNX Runtime timing and "
                             "scoring do not take; `visiontl export` writes its model.onnx")
        folder = out if i == 0 else out / f"compare{i}-{adapter.run_dir.name}"
        meta = adapter.export(folder, formats=["onnx"], int8=adapter.supports_int8)
        scored = meta.get("int8_vs_float") or _score_float(adapter, folder / "model.onnx")
        if val_images is not None and scored["val_images"] != val_images:
            raise ValueError(f"{adapter.run_dir}: validated on {scored['val_images']} images, {checkpoint} on "
                             f"{val_images}: compare models trained on the same data")
        val_images = scored["val_images"]
        name = adapter.run_dir.name
        for precision, file in (("float", "model.onnx"), ("int8", "model.int8.onnx")):
            if (folder / file).is_file():
                rows.append({"model": f"{name} {precision}", "kind": kind_of(adapter), "precision": precision,
                             "describe": adapter.describe_model(), "onnx": str((folder / file).relative_to(out)),
                             "mb": (folder / file).stat().st_size / 2**20, "params": parameters(adapter.model),
                             "metric": scored[precision][key]})
                sessions.append(folder / file)
    size = ref.config.data.image_size
    latency, throughput = _timings(sessions, size, batch, rounds)
    for row, ms, rate in zip(rows, latency, throughput):
        row.update(latency_ms=ms, images_per_s=rate)
    report = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
              f"{_cores()} CPU threads", "task": ref.task, "metric": key, "higher_is_better": ref.monitor[1] == "max",
              "val_images": val_images, "image_size": size, "batch": batch, "rounds": rounds, "rows": rows}
    write_text(out / "deploy_report.json", json.dumps(report, indent=1))
    write_text(out / "deploy_report.md", markdown(report))
    plot(report, out / "deploy_report.png")
    return report


def _score_float(adapter, path: Path) -> dict:
    """The float model's metrics where the export scored none (a task without int8)."""
    from .export import onnx_metrics

    _, val_set = adapter.datasets()
    if val_set is None:
        raise ValueError(f"{adapter.run_dir}: no validation data to score on; the report needs the run's "
                         "validation images")
    return {"val_images": len(val_set), "float": onnx_metrics(adapter, path, val_set)}


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _timings(paths: list[Path], size: int, batch: int, rounds: int) -> tuple[list[float], list[float]]:
    """ONNX Runtime (CPU) milliseconds at batch 1 and images/s at ``batch`` for each model:
    in each round every model runs once, so a slow moment of the machine hits them all."""
    import onnxruntime as ort

    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    options = ort.SessionOptions()  # idle sessions must not spin on the cores the timed one runs on
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    runs = []
    for path in paths:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(images, session=session, name=name, repeats=1):
            def call() -> int:
                for _ in range(repeats):
                    session.run(None, {name: images})
                return len(images) * repeats
            return call
        one, many = run(x[:1], repeats=5), run(x)
        one(), many()  # warm-up
        runs.append((one, many))
    ones, manys = [[] for _ in paths], [[] for _ in paths]
    for _ in range(rounds):
        for i, (one, many) in enumerate(runs):
            ones[i].append(timed(one))
            manys[i].append(timed(many))
    return [1000.0 / median(r) for r in ones], [median(r) for r in manys]


def markdown(report: dict) -> str:
    """The report's table: one row per model, the metric's best in bold, ratios against the
    run's float model."""
    rows, key = report["rows"], report["metric"]
    best = (max if report["higher_is_better"] else min)(r["metric"] for r in rows)
    base = rows[0]
    lines = [f"# Deployment report: {report['task']} ({report['date']})", "",
             f"{key} on {report['val_images']} validation images (the task's own validation code on ONNX Runtime); "
             f"ONNX Runtime on {report['machine']}, {report['image_size']} px, latency at batch 1 and throughput at "
             f"batch {report['batch']}, medians of {report['rounds']} interleaved rounds.", "",
             f"| model | kind | {key} | size MB | parameters | latency ms | images/s | speed-up |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        metric = f"**{r['metric']:.4f}**" if r["metric"] == best else f"{r['metric']:.4f}"
        lines.append(f"| {r['model']} | {r['kind']}, {r['precision']} | {metric} | {r['mb']:.2f} | "
                     f"{r['params'] / 1e6:.2f} M | {r['latency_ms']:.2f} | {r['images_per_s']:.0f} | "
                     f"{r['images_per_s'] / base['images_per_s']:.2f}× |")
    lines += ["", "speed-up: throughput against the first row. Models: " + "; ".join(
        dict.fromkeys(f"{r['model'].rsplit(' ', 1)[0]}: {r['describe']}" for r in rows))]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path:
    """The task metric against batch-1 latency, and against batch throughput; one colour per run."""
    runs = list(dict.fromkeys(r["model"].rsplit(" ", 1)[0] for r in report["rows"]))
    fig, axes = plots.subplots(1, 2, figsize=(10, 4))
    for ax, x, higher_x, label in ((axes[0], "latency_ms", False, "ONNX Runtime latency, batch 1 (ms)"),
                                   (axes[1], "images_per_s", True, f"ONNX Runtime images/s, batch {report['batch']}")):
        pts = [(r[x], r["metric"], r["model"], f"C{runs.index(r['model'].rsplit(' ', 1)[0]) % 10}")
               for r in report["rows"]]
        plots.pareto(ax, pts, higher_y=report["higher_is_better"], higher_x=higher_x)
        ax.set(xlabel=label, ylabel=report["metric"], title=f"{report['task']}: metric vs speed")
        ax.grid(alpha=0.3)
    return plots.save(fig, path)

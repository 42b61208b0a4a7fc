"""``visiontl report RUN_DIR``: what a run did, from its files alone."""
from __future__ import annotations

from pathlib import Path

import yaml

from .engine.logger import read_metrics


def report(run_dir: str | Path) -> str:
    run = Path(run_dir)
    rows = read_metrics(run)
    if not rows:
        raise FileNotFoundError(f"{run}: no metrics.csv — not a visiontl run directory, or no epoch finished yet")
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
    task, model, ft = cfg.get("task", "?"), cfg.get("model", {}), cfg.get("finetune", {})
    data, optim = cfg.get("data", {}), cfg.get("optim", {})
    monitor = cfg.get("train", {}).get("monitor") or _task_monitor(task)
    if monitor not in rows[0]:
        monitor = "val/loss" if "val/loss" in rows[0] else ""
    best = (min if "loss" in monitor else max)(rows, key=lambda r: r.get(monitor, 0)) if monitor else rows[-1]
    cols = [c for c in rows[0] if c != "epoch" and isinstance(rows[0][c], float)]
    lines = [
        f"run        {run}",
        f"task       {task}: {model.get('backbone', '?')} ({model.get('weights', '?')} weights), "
        f"fine-tuning {ft.get('strategy', '?')}",
        f"data       {data.get('train', '?')}" + (f"  (val: {data['val']})" if data.get("val") else ""),
        f"optimiser  {optim.get('name', '?')}, lr {optim.get('lr', '?')}, {optim.get('schedule', '?')}",
        f"epochs     {len(rows)};  best by {monitor or 'last epoch'}: epoch {int(best['epoch'])}",
        "",
        "epoch " + "".join(f"{c:>{_w(c)}}" for c in cols),
    ]
    for r in rows:
        mark = " *" if r is best else ""
        lines.append(f"{int(r['epoch']):5} " + "".join(f"{r[c]:>{_w(c)}.4g}" for c in cols) + mark)
    files = sorted(p.name for p in run.iterdir() if p.suffix in {".png", ".pt", ".csv", ".yaml", ".txt"})
    lines += ["", "files      " + "  ".join(files)]
    return "\n".join(lines)


def _task_monitor(task: str) -> str:
    """The metric a task's runs keep their best checkpoint by (its adapter's default)."""
    from .adapters import TASKS

    return TASKS[task][0].monitor[0] if task in TASKS else ""


def _w(column: str) -> int:
    return max(11, len(column) + 2)

"""``visiontl report RUN_DIR``: what a run did, from its files alone."""
from __future__ import annotations

from pathlib import Path

from .config import read_yaml
from .engine.logger import read_metrics
from .engine.settings import resolve_monitor
from .files import write_text


def report(run_dir: str | Path) -> str:
    """A run directory's story, or a ``visiontl bench`` folder's table (its results.md)."""
    run = Path(run_dir)
    if (run / "results.json").is_file() and (run / "results.md").is_file():
        return (run / "results.md").read_text()
    rows = read_metrics(run)
    if not rows:
        raise FileNotFoundError(f"{run}: no metrics.csv — not a visiontl run directory, or no epoch finished yet")
    cfg = read_yaml(run / "config.yaml") if (run / "config.yaml").is_file() else {}
    task, model, ft = cfg.get("task", "?"), cfg.get("model", {}), cfg.get("finetune", {})
    data, optim = cfg.get("data", {}), cfg.get("optim", {})
    monitor = cfg.get("train", {}).get("monitor") or _task_monitor(task)
    if monitor not in rows[0]:
        monitor = "val/loss" if "val/loss" in rows[0] else ""
    best, verdict = best_vs_last(rows, *resolve_monitor(monitor, ("", "max"))) if monitor else (rows[-1], "")
    cols = [c for c in rows[0] if c != "epoch" and isinstance(rows[0][c], float)]
    lines = [
        f"run        {run}",
        f"task       {task}: {model.get('backbone', '?')} ({model.get('weights', '?')} weights), "
        f"fine-tuning {ft.get('strategy', '?')}",
        f"data       {data.get('yaml') or data.get('train') or '?'}"
        + (f"  (val: {data['val']})" if data.get("val") else ""),
        f"optimiser  {optim.get('name', '?')}, lr {optim.get('lr', '?')}, {optim.get('schedule', '?')}",
        f"epochs     {len(rows)};  best by {monitor or 'last epoch'}: epoch {int(best['epoch'])}",
        "",
        "epoch " + "".join(f"{c:>{_w(c)}}" for c in cols),
    ]
    for r in rows:
        mark = " *" if r is best else ""
        lines.append(f"{int(r['epoch']):5} " + "".join(f"{r[c]:>{_w(c)}.4g}" for c in cols) + mark)
    if verdict:
        lines += ["", verdict]
    files = sorted(p.name for p in run.iterdir() if p.suffix in {".png", ".pt", ".csv", ".yaml", ".txt"})
    lines += ["", "files      " + "  ".join(files)]
    return "\n".join(lines)


def write_summary(run_dir: Path, lines: list[str]) -> Path:
    """``summary.txt``: ``lines``, then the files the run directory holds (what is there, not a kept list)."""
    written = {p.name for p in run_dir.iterdir() if p.is_file() and not p.name.startswith(".")}
    path = run_dir / "summary.txt"
    write_text(path, "\n".join([*lines, f"files: {' '.join(sorted(written | {path.name}))}"]) + "\n")
    return path


def best_vs_last(rows: list[dict], monitor: str, mode: str) -> tuple[dict, str]:
    """The best epoch's row by ``monitor`` and a sentence saying which epoch ``best.pt``
    holds, flagging a last epoch far below it (more than 2 points of a 0–1 metric, or a
    loss 10 % above the best): training then made the model worse and the final metrics
    printed during training are not the ones the checkpoint has."""
    scored = [r for r in rows if isinstance(r.get(monitor), float) and r[monitor] == r[monitor]]
    if not scored:
        return rows[-1], ""
    best = (min if mode == "min" else max)(scored, key=lambda r: r[monitor])
    last = rows[-1]
    b, n = int(best["epoch"]), int(last["epoch"])
    text = f"best.pt holds epoch {b} of {n}: {monitor} {best[monitor]:.4f}"
    if last is best or monitor not in last:
        return best, text + " (the last epoch)"
    gap = last[monitor] - best[monitor] if mode == "min" else best[monitor] - last[monitor]
    text += f"; the last epoch has {last[monitor]:.4f}"
    far = gap > 0.1 * abs(best[monitor]) if mode == "min" else gap > 0.02
    if far:
        text += (f"\nWARNING: the last epoch is {gap:.3g} worse than epoch {b}: training made the model worse "
                 f"after it (a fine-tuning switch? too high a learning rate? overfitting?). best.pt keeps "
                 f"epoch {b}; last.pt has the last epoch.")
    return best, text


def _task_monitor(task: str) -> str:
    """The metric a task's runs keep their best checkpoint by (its adapter's default)."""
    from .adapters import TASKS

    return TASKS[task][0].monitor[0] if task in TASKS else ""


def _w(column: str) -> int:
    return max(11, len(column) + 2)


def closing_table(best: dict, last: dict) -> str:
    """The end of a run in a few lines: the losses and validation metrics of the epoch
    best.pt holds and of the last one (last.pt), rounded; one row when they are the same."""
    keys = [k for k in last if k.endswith("/loss") or k.startswith("val/")]
    rows = [("best.pt", best), ("last.pt", last)] if best is not last else [("best.pt = last.pt", last)]
    width = max(len(name) for name, _ in rows)
    lines = [" " * width + "  epoch" + "".join(f"  {k:>{max(len(k), 7)}}" for k in keys)]
    for name, row in rows:
        lines.append(f"{name:<{width}}  {int(row['epoch']):>5}" + "".join(
            f"  {row[k]:>{max(len(k), 7)}.4g}" if isinstance(row.get(k), float) else f"  {'':>{max(len(k), 7)}}"
            for k in keys))
    return "\n".join(lines)

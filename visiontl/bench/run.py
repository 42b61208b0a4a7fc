"""``visiontl bench``: every cell of the plan in its own process, resumable, with a
progress bar; then results.json, results.md and the plots (report.py)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from .plan import Plan, task_data
from .report import write_report


def environment() -> dict:
    """The machine and library versions the numbers belong to."""
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "torchvision", "timm", "segmentation-models-pytorch", "ultralytics", "albumentations",
                 "onnxruntime", "numpy", "visiontl"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "versions": versions,
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cell_file(out: Path, task: str, backbone: str) -> Path:
    return out / "cells" / f"{task}__{backbone.replace(':', '-').replace('/', '-')}.json"


def _finished(out: Path, task: str, backbone: str) -> dict | None:
    """The record of a cell an earlier run finished, or None."""
    target = _cell_file(out, task, backbone)
    record = json.loads(target.read_text()) if target.is_file() else None
    return record if record and record.get("status") == "ok" else None


def _prepare(plan: Plan, out: Path) -> dict:
    """The plan and each task's data, written to ``out/plan.json``; a folder that holds
    another plan's cells is refused (its numbers would not be comparable)."""
    path = out / "plan.json"
    if path.is_file():
        before = Plan(**json.loads(path.read_text())["plan"])
        if before.comparable() != plan.comparable():
            changed = [k for k, v in plan.comparable().items() if before.comparable()[k] != v]
            raise ValueError(f"{out}: holds a benchmark with other settings ({', '.join(changed)}); "
                             "choose another --out, or the same settings to resume it")
    data = {}
    for task in plan.tasks:
        print(f"data for {task} …", file=sys.stderr, flush=True)
        data[task] = task_data(plan, task)
    out.mkdir(parents=True, exist_ok=True)
    saved = {"plan": asdict(plan), "data": data}
    path.write_text(json.dumps(saved, indent=1))
    return saved


def run_cell(plan: Plan, out: Path, task: str, backbone: str) -> dict:
    """One cell in a child process; its crash, out-of-memory kill or overrun is its error."""
    target = _cell_file(out, task, backbone)
    target.parent.mkdir(parents=True, exist_ok=True)
    log = target.with_suffix(".log")
    target.unlink(missing_ok=True)  # an earlier failure's record
    cmd = [sys.executable, "-m", "visiontl.bench.cell", str(out / "plan.json"), task, backbone, str(target)]
    t0 = time.perf_counter()
    with open(log, "w") as f:
        try:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=plan.budget_s or None)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    if target.is_file() and code is not None:  # the cell wrote its record, its own error included
        return json.loads(target.read_text())
    if code is None:
        why = f"stopped after --budget-s {plan.budget_s:g} s"
    elif code < 0:
        why = f"killed by signal {-code}" + (" (out of memory?)" if -code == 9 else "")
    else:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
        why = f"exit code {code}: {tail[0][:200]}"
    record = {"task": task, "backbone": backbone, "status": "error", "error": why,
              "cell_seconds": time.perf_counter() - t0}
    target.write_text(json.dumps(record, indent=1))
    return record


def bench(*, backbones: list[str], tasks: list[str] | None = None, data: dict[str, str] | None = None,
          style: str = "", quick: bool = False, epochs: int = 0, budget_s: float = 0.0, out: str | Path = "bench",
          device: str = "auto", compile: bool = False, seed: int = 0, overrides: list[str] | None = None,
          timing_rounds: int = 0, keep_checkpoints: bool = False) -> dict:
    """Benchmark ``backbones`` across ``tasks`` (default all four) at one budget; returns the
    results (also in ``out/results.json``, ``results.md`` and plots). Finished cells of an
    earlier run into ``out`` are kept (resume); failed ones run again.

    Example: ``bench(backbones=["mobilenet_v2", "vgg19"], quick=True, out="bench-cpu")``"""
    from tqdm import tqdm

    plan = Plan(backbones=list(backbones), **({"tasks": list(tasks)} if tasks else {}), data=dict(data or {}),
                style=style, quick=quick, epochs=epochs, budget_s=budget_s, device=device, compile=compile,
                seed=seed, overrides=list(overrides or []), timing_rounds=timing_rounds,
                keep_checkpoints=keep_checkpoints)
    plan.check()
    out = Path(out)
    saved = _prepare(plan, out)
    cells = plan.cells()
    records = {cell: _finished(out, *cell) for cell in cells}  # finished by an earlier run: kept (resume)
    todo = [cell for cell in cells if records[cell] is None]
    if len(todo) < len(cells):
        print(f"resuming {out}: {len(cells) - len(todo)} of {len(cells)} cells already finished", file=sys.stderr)
    # the time left from the cells this run has timed (resumed ones took none)
    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc="bench", unit="cell", file=sys.stderr,
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    spent: list[float] = []
    for i, (task, backbone) in enumerate(todo):
        left = f", ≈{sum(spent) / len(spent) * (len(todo) - i) / 60:.0f} min left" if spent else ""
        bar.set_postfix_str(f"{task} × {backbone}{left}")
        t0 = time.perf_counter()
        record = records[(task, backbone)] = run_cell(plan, out, task, backbone)
        spent.append(time.perf_counter() - t0)
        if record["status"] != "ok":
            tqdm.write(f"{task} × {backbone}: {record['error']} "
                       f"(log: {_cell_file(out, task, backbone).with_suffix('.log')})", file=sys.stderr)
        bar.update()
    bar.close()
    results = {"bench": 1, "plan": saved["plan"], "data": saved["data"], "environment": environment(),
               "cells": [records[cell] for cell in cells]}
    write_report(results, out)
    return results

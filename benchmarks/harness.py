"""Benchmark harness: side-by-side interleaved timing, machine facts, result files.

Every entry runs its contenders in alternation (A B A B …) within one process, so that
a noisy machine slows both alike, and reports medians and the ratio of medians. The timing
itself (a timed call, medians) is visiontl's own (``visiontl.bench.measure``, which
``visiontl bench`` uses too).
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import torch

from visiontl.bench import measure

timed, median = measure.timed, measure.median  # the entries' timing, written once

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def interleaved(contenders: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each contender ``repeats`` times in alternation; each call returns a rate
    (items per second) it measured around its own work."""
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(repeats):
        for name, fn in contenders.items():
            rates[name].append(fn())
            print(f"  round {r + 1}/{repeats} {name}: {rates[name][-1]:.1f}/s", flush=True)
    return rates


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=1, default=str))
    return path


def plot_curves(rows: list[dict], metric: str, path: Path, *, title: str, ylabel: str,
                reference: dict | None = None, reference_value: float | None = None) -> Path:
    """``metric`` against epochs for every row with a ``history``; ``reference`` (a row
    without one) as a dashed line at ``reference_value``."""
    from visiontl.plots import save, subplots

    fig, ax = subplots(figsize=(7, 4))
    for r in rows:
        if "history" in r:
            ax.plot([h["epoch"] for h in r["history"]], [h[metric] for h in r["history"]], marker="o", ms=3,
                    label=r["model"])
    if reference is not None:
        ax.axhline(reference_value, color="gray", ls="--", label=f"{reference['model']} (final)")
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save(fig, path, dpi=120)
    return path

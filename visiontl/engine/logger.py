"""Where a run reports: progress bar or log lines, ``metrics.csv``, optional TensorBoard."""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

from tqdm.auto import tqdm


def progress(items: Iterable, *, total: int, desc: str, mode: str = "auto") -> Iterator:
    """A tqdm bar on a terminal; plain log lines (about 4 per epoch) otherwise."""
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
        yield from tqdm(items, total=total, desc=desc, leave=False, dynamic_ncols=True)
        return
    every = max(total // 4, 1)
    start = time.perf_counter()
    for i, item in enumerate(items):
        yield item
        if mode != "none" and ((i + 1) % every == 0 or i + 1 == total):
            rate = (i + 1) / max(time.perf_counter() - start, 1e-9)
            print(f"{desc} {i + 1}/{total} ({rate:.1f} it/s)", file=sys.stderr, flush=True)


class MetricsLogger:
    """Appends one row per epoch to ``metrics.csv`` (and TensorBoard when asked)."""

    def __init__(self, run_dir: Path, tensorboard: bool = False) -> None:
        self.path = run_dir / "metrics.csv"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                print("tensorboard is not installed; pip install tensorboard. Logging to CSV only.", file=sys.stderr)

    def log(self, row: dict) -> None:
        exists = self.path.is_file() and self.path.stat().st_size > 0
        fields = list(row)
        if exists:
            with open(self.path, newline="") as f:
                fields = next(csv.reader(f))
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            if not exists:
                w.writeheader()
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        if self.writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.writer.add_scalar(k, v, row["epoch"])
            self.writer.flush()

    def truncate(self, epochs: int) -> None:
        """On resume, drop rows past the checkpoint's epoch (written after it, then lost)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= epochs]
        with open(self.path, "w", newline="") as f:
            csv.writer(f).writerows(keep)


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: _num(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _num(v: str):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v

"""Where a run reports: progress bar or log lines, ``metrics.csv``, optional TensorBoard."""
from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

from tqdm.auto import tqdm


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: a time span as people read it."""
    s = max(int(round(seconds)), 0)
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Iterate ``items`` with a tqdm bar on a terminal, or plain log lines (about four per
    epoch) otherwise; ``show(loss=…)`` puts running values on the bar / in the lines. With
    ``epochs_after`` (the epochs still to come after this one) the bar and the lines also say
    how long the whole run has left: this epoch's rest at its current pace, then the later
    epochs at ``epoch_seconds`` each (the finished epochs' mean; this one's pace until then)."""

    def __init__(self, items: Iterable, *, total: int, desc: str, mode: str = "auto", epochs_after: int = 0,
                 epoch_seconds: float | None = None) -> None:
        self.items, self.total, self.desc, self.values = items, total, desc, {}
        self.bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self.quiet = mode == "none"
        self.epochs_after, self.epoch_seconds = epochs_after, epoch_seconds

    def run_left(self, done: int, elapsed: float) -> str:
        """The whole run's time left after ``done`` of this epoch's items in ``elapsed`` s."""
        per_item = elapsed / max(done, 1)
        later = self.epoch_seconds if self.epoch_seconds is not None else per_item * self.total
        return duration(per_item * (self.total - done) + later * self.epochs_after)

    def show(self, **values: float) -> None:
        self.values = values
        if self.bar and hasattr(self, "_tqdm"):
            t = self._tqdm
            run = {"run left": self.run_left(t.n, t.format_dict["elapsed"])} if self.epochs_after else {}
            t.set_postfix({**{k: f"{v:.4g}" for k, v in values.items()}, **run}, refresh=False)

    def __iter__(self) -> Iterator:
        if self.bar:
            self._tqdm = tqdm(self.items, total=self.total, desc=self.desc, leave=False, dynamic_ncols=True)
            yield from self._tqdm
            return
        every, start = max(self.total // 4, 1), time.perf_counter()
        for i, item in enumerate(self.items):
            yield item
            if not self.quiet and ((i + 1) % every == 0 or i + 1 == self.total):
                elapsed = max(time.perf_counter() - start, 1e-9)
                extra = "".join(f"  {k} {v:.4g}" for k, v in self.values.items())
                run = f", run: ~{self.run_left(i + 1, elapsed)} left" if self.epochs_after else ""
                print(f"{self.desc} {i + 1}/{self.total} ({(i + 1) / elapsed:.1f} it/s{run}){extra}", file=sys.stderr,
                      flush=True)


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
                print("tensorboard is not installed (pip install tensorboard). Logging to CSV only.", file=sys.stderr)

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

    def start_afresh(self) -> Path | None:
        """A new run in a folder where an earlier attempt (stopped before its first
        checkpoint) left rows: they are kept aside as ``metrics.previous-<time>.csv``, and this
        run's ``metrics.csv`` starts empty. Returns where the old rows went."""
        if not self.path.is_file():
            return None
        aside = self.path.with_name(f"metrics.previous-{time.strftime('%Y%m%d-%H%M%S')}.csv")
        os.replace(self.path, aside)
        return aside

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

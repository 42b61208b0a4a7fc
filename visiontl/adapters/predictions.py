"""The tables ``predict`` writes with ``out_dir``, one writer for every task."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Iterable


def write_predictions(out: Path, results: list[dict], header: list[str], rows: Callable[[dict], Iterable[list]],
                      *, as_json: bool = True) -> list[Path]:
    """``predictions.csv`` (``header``, then ``rows(result)`` for each result; an unreadable
    input is one row with its ``error`` in the last column) and, with ``as_json``, the
    results as ``predictions.json``."""
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*header, "error"])
        for r in results:
            if r.get("error"):
                w.writerow([r["path"], *[""] * (len(header) - 1), r["error"]])
            else:
                w.writerows([*row, ""] for row in rows(r))
    written = [out / "predictions.csv"]
    if as_json:
        (out / "predictions.json").write_text(json.dumps(results, indent=1))
        written.append(out / "predictions.json")
    return written

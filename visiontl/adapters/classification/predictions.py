"""Prediction outputs: CSV, JSON and text."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def write_predictions(results: list[dict], out: str | Path) -> list[Path]:
    """Write ``predictions.csv`` and ``predictions.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        k = max((len(r["labels"]) for r in results), default=0)
        w.writerow(["path", *[c for j in range(1, k + 1) for c in (f"label{j}", f"score{j}")], "error"])
        for r in results:
            cells = [c for lab, s in zip(r["labels"], r["scores"]) for c in (lab, f"{s:.5f}")]
            w.writerow([r["path"], *cells, *[""] * (2 * k - len(cells)), r.get("error") or ""])
    return [out / "predictions.csv", out / "predictions.json"]


def print_predictions(results: list[dict], file=sys.stdout) -> None:
    for r in results:
        tops = ", ".join(f"{lab} {s:.3f}" for lab, s in zip(r["labels"], r["scores"]))
        print(f"{r['path']}: {tops or 'skipped (unreadable)'}", file=file)

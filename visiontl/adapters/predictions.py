"""The tables ``predict`` writes with ``out_dir``, one writer for every task."""
from __future__ import annotations

from pathlib import Path

from ..results import Results


def write_predictions(out: Path, results: Results, *, as_json: bool = True) -> list[Path]:
    """``predictions.csv`` (the results' table: a row per result, or per object for
    detection; an unreadable input is one row with its ``error`` in the last column) and,
    with ``as_json``, the results as ``predictions.json``."""
    written = [results.to_csv(out / "predictions.csv")]
    if as_json:
        results.to_json(out / "predictions.json", indent=1)
        written.append(out / "predictions.json")
    return written

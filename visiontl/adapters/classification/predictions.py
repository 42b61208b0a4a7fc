"""Prediction inputs and outputs: images, folders and lists in; CSV, JSON and text out."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ...data.images import list_images


def expand_inputs(inputs) -> list[Path]:
    """An image, a folder (recursively), a ``.txt`` list of paths, or a list of these."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    paths: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise FileNotFoundError(f"{item}: folder has no images")
            paths += found
        elif item.suffix.lower() == ".txt" and item.is_file():
            paths += [Path(line.strip()) for line in item.read_text().splitlines() if line.strip()]
        elif item.is_file():
            paths.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such image or folder")
    return paths


def write_predictions(results: list[dict], out: str | Path) -> list[Path]:
    """Write ``predictions.csv`` and ``predictions.json`` into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "predictions.json").write_text(json.dumps(results, indent=1))
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        k = max((len(r["labels"]) for r in results), default=0)
        w.writerow(["path", *[c for j in range(1, k + 1) for c in (f"label{j}", f"score{j}")]])
        for r in results:
            w.writerow([r["path"], *[c for lab, s in zip(r["labels"], r["scores"]) for c in (lab, f"{s:.5f}")]])
    return [out / "predictions.csv", out / "predictions.json"]


def print_predictions(results: list[dict], file=sys.stdout) -> None:
    for r in results:
        tops = ", ".join(f"{lab} {s:.3f}" for lab, s in zip(r["labels"], r["scores"]))
        print(f"{r['path']}: {tops}", file=file)

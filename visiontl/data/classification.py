"""Classification data: ImageFolder (one folder per class) and CSV (``path,label``)."""
from __future__ import annotations

import csv
from pathlib import Path

from .image_dataset import ImageDataset
from .images import DataError, list_images


def image_folder(root: str | Path, *, classes: list[str] | None = None, transform=None,
                 skip_bad: bool = False) -> ImageDataset:
    """``root/<class>/<image>``; class names are the sorted folder names."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found:
        raise DataError(f"{root}: no class folders (expected {root}/<class>/<image>)")
    classes = classes or found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{root}: class folder(s) {unknown} are not among the training classes {classes}")
    samples = []
    for idx, name in enumerate(classes):
        if not (root / name).is_dir():
            continue  # a validation split may lack a class
        files = list_images(root / name)
        if not files:
            raise DataError(f"{root / name}: class folder has no images")
        samples += [(p, idx) for p in files]
    return ImageDataset(samples, classes, transform, skip_bad=skip_bad, source=str(root))


def csv_dataset(csv_path: str | Path, *, root: str | Path | None = None, classes: list[str] | None = None,
                transform=None, skip_bad: bool = False) -> ImageDataset:
    """A CSV with a header ``path,label``; relative paths are relative to ``root`` (default:
    the CSV's folder). Labels are class names (or integers)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: CSV file not found")
    base = Path(root) if root else csv_path.parent
    rows = []
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
            raise DataError(f"{csv_path}: header must have columns 'path' and 'label', found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            if not row["path"] or row["label"] in (None, ""):
                raise DataError(f"{csv_path}:{line}: empty path or label")
            path = Path(row["path"]) if Path(row["path"]).is_absolute() else base / row["path"]
            if not path.is_file():
                raise DataError(f"{csv_path}:{line}: image {row['path']!r} not found (looked at {path})")
            rows.append((path, row["label"].strip()))
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    classes = classes or sorted({label for _, label in rows}, key=_natural)
    index = {c: i for i, c in enumerate(classes)}
    bad = sorted({label for _, label in rows if label not in index})
    if bad:
        raise DataError(f"{csv_path}: label(s) {bad[:5]} are not among the classes {classes}")
    return ImageDataset([(p, index[label]) for p, label in rows], classes, transform, skip_bad=skip_bad,
                        source=str(csv_path))


def _natural(s: str):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)

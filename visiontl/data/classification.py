"""Classification data: ImageFolder (one folder per class) and CSV (``path,label``)."""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .images import BadImageError, DataError, check_image, list_images, read_image


class ImageDataset(Dataset):
    """(path, label) samples → (CHW uint8 tensor, label). ``transform`` maps an RGB
    uint8 array to a tensor (see :func:`visiontl.data.transforms.apply`)."""

    def __init__(self, samples: Sequence[tuple[Path, int]], classes: list[str],
                 transform: Callable | None = None, *, skip_bad: bool = False, source: str = "") -> None:
        self.classes, self.transform, self.source = list(classes), transform, source
        self.samples, self.skipped = scan(samples, skip_bad=skip_bad, source=source)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        try:
            image = read_image(path)
        except BadImageError as e:  # the header scan passed, the pixels did not (a truncated file)
            raise BadImageError(f"{e}; data.skip_bad=true decodes every file before training and skips such ones") from None
        if self.transform is not None:
            image = self.transform(image)
        return image, label

    def targets(self) -> list[int]:
        return [label for _, label in self.samples]

    def subset(self, indices: Sequence[int], transform: Callable | None = None) -> "ImageDataset":
        ds = ImageDataset.__new__(ImageDataset)
        ds.classes, ds.source, ds.skipped = self.classes, self.source, []
        ds.transform = transform if transform is not None else self.transform
        ds.samples = [self.samples[i] for i in indices]
        return ds


def scan(samples: Sequence[tuple[Path, int]], *, skip_bad: bool, source: str) -> tuple[list, list]:
    """Check every image before training starts (its header; with ``skip_bad`` a full
    decode, so that nothing fails later). A bad file is an error naming it, or — with
    ``skip_bad`` — a counted, reported skip."""
    good, skipped = [], []
    for path, label in samples:
        try:
            read_image(path) if skip_bad else check_image(path)
            good.append((Path(path), label))
        except BadImageError as e:
            if not skip_bad:
                raise BadImageError(f"{e} (set data.skip_bad=true to skip unreadable files)") from None
            skipped.append((str(path), str(e)))
    if skipped:
        print(f"{source}: skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for _, why in skipped[:10]:
            print(f"  {why}", file=sys.stderr)
    if not good:
        raise DataError(f"{source}: no usable images")
    return good, skipped


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


def collate(batch):
    images, labels = zip(*batch)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)

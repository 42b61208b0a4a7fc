"""Images with one label each: what classification trains on, and style transfer's photos.
Every image is checked before training starts (``scan``)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from .images import KEEP, BadImageError, DataError, check_image, read_image


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

    def subset(self, indices: Sequence[int], transform: Callable | None = KEEP) -> "ImageDataset":
        """The samples at ``indices``, with ``transform`` (KEEP: this dataset's; None: none)."""
        ds = ImageDataset.__new__(ImageDataset)
        ds.classes, ds.source, ds.skipped = self.classes, self.source, []
        ds.transform = self.transform if transform is KEEP else transform
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


def collate(batch):
    images, labels = zip(*batch)
    return torch.stack(images), torch.tensor(labels, dtype=torch.long)

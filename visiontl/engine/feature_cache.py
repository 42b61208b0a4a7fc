"""Frozen-feature cache: while the backbone is frozen, compute each image's features once,
keep them on disk, and train the head on them.

A cache directory holds one *feature space* per key — backbone name, a hash of its weights,
its preprocessing, the feature layer, and the image transform (with the view number for
augmented views) — and inside it one row per image, addressed by a hash of the image
file's bytes. A second run with the same data and backbone reads everything back; a changed
image gets a new row, a changed preprocessing or transform a new feature space. Rows are
float16, memory-mapped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..backbones.weights import file_sha256



def default_dir() -> Path:
    return Path(os.environ.get("VISIONTL_CACHE", Path.home() / ".cache" / "visiontl")) / "features"


def content_hash(path: str | Path) -> str:
    """The key of an image in the cache: the hash of its bytes, not its name."""
    return file_sha256(path)


def weights_hash(module: torch.nn.Module) -> str:
    h = hashlib.sha1()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


class _Seeded(Dataset):
    """Item ``i`` of ``data`` drawn with torch's RNG seeded from (image, view): the same
    augmented view every time it is computed, in any process."""

    def __init__(self, data: Dataset, ids: Sequence[str], view: int) -> None:
        self.data, self.ids, self.view = data, ids, view

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        torch.manual_seed(int(self.ids[i][:12], 16) + 1_000_003 * self.view)
        return self.data[i]


class FeatureSpace:
    """One feature space on disk: ``features.npy`` (rows, float16) + ``index.json`` (hash → row)."""

    def __init__(self, root: Path, key: dict) -> None:
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = root / digest
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "key.json").is_file():
            (self.dir / "key.json").write_text(json.dumps(key, indent=1, sort_keys=True))
        index_file = self.dir / "index.json"
        self.index: dict[str, int] = json.loads(index_file.read_text()) if index_file.is_file() else {}

    def read(self, ids: Sequence[str]) -> np.ndarray:
        """The stored rows of ``ids``, in order (all must be present)."""
        table = np.load(self.dir / "features.npy", mmap_mode="r")
        return table[[self.index[h] for h in ids]]

    def rows(self, ids: Sequence[str], data: Dataset, encode: Callable, *, view: int, batch_size: int,
             num_workers: int, collate: Callable | None) -> tuple[np.ndarray, int]:
        """Features for ``ids`` (computing the missing ones); returns (array, number computed)."""
        missing, queued = [], set()
        for i, h in enumerate(ids):  # identical files are computed once
            if h not in self.index and h not in queued:
                missing.append(i)
                queued.add(h)
        if missing:
            subset = torch.utils.data.Subset(_Seeded(data, ids, view), missing)
            loader = DataLoader(subset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
            new = []
            with torch.no_grad():
                for images, _ in loader:
                    new.append(encode(images).float().cpu().numpy().astype(np.float16))
            self._append(np.concatenate(new), [ids[i] for i in missing])
        return self.read(ids), len(missing)

    def _append(self, rows: np.ndarray, hashes: list[str]) -> None:
        path = self.dir / "features.npy"
        old = np.load(path) if path.is_file() else np.zeros((0, rows.shape[1]), np.float16)
        start = len(old)
        tmp = self.dir / "features.tmp.npy"
        np.save(tmp, np.concatenate([old, rows]))
        os.replace(tmp, path)  # rows first, then the index that points at them
        self.index.update({h: start + k for k, h in enumerate(hashes)})
        tmp_index = self.dir / "index.tmp.json"
        tmp_index.write_text(json.dumps(self.index))
        os.replace(tmp_index, self.dir / "index.json")


class CachedFeatures(Dataset):
    """(feature, label) pairs; with several views, each epoch draws one view per image."""

    def __init__(self, views: list[np.ndarray], labels: Sequence[int]) -> None:
        self.table = torch.stack([torch.from_numpy(np.asarray(v, dtype=np.float32)) for v in views])  # (V, N, D)
        self.labels = torch.as_tensor(list(labels), dtype=torch.long)
        self.choice = torch.zeros(len(self.labels), dtype=torch.long)

    def new_epoch(self) -> None:
        """Pick this epoch's view per image (from torch's RNG, which the engine seeds per epoch)."""
        if len(self.table) > 1:
            self.choice = torch.randint(len(self.table), (len(self.labels),))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.table[self.choice[i], i], self.labels[i]

    def __getitems__(self, indices: list[int]):
        """A whole batch by one gather (the DataLoader calls this instead of N __getitem__)."""
        idx = torch.as_tensor(indices)
        return list(zip(self.table[self.choice[idx], idx], self.labels[idx]))


def size(root: Path | None = None) -> tuple[int, int, int]:
    """(bytes, feature spaces, rows) under ``root``."""
    root = Path(root or default_dir())
    if not root.is_dir():
        return 0, 0, 0
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    spaces = [d for d in root.iterdir() if (d / "key.json").is_file()]
    rows = sum(len(json.loads((d / "index.json").read_text())) for d in spaces if (d / "index.json").is_file())
    return total, len(spaces), rows


def clear(root: Path | None = None) -> int:
    root = Path(root or default_dir())
    freed = size(root)[0]
    if root.is_dir():
        shutil.rmtree(root)
    return freed


def report(stats: dict, file=sys.stderr) -> None:
    print(f"feature cache {stats['dir']}: {stats['computed']} computed, {stats['reused']} reused "
          f"({stats['views']} view(s)); {stats['bytes'] / 2**20:.1f} MB on disk", file=file)

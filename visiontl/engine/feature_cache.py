"""Frozen-feature cache: while the backbone is frozen, compute each image's features once,
keep them on disk, and train the head on them.

A cache directory holds one *feature space* per key — backbone name, a hash of its weights,
its preprocessing, the feature layer, and the image transform (with the view number for
augmented views) — and inside it one row per image, addressed by a hash of the image
file's bytes. A second run with the same data and backbone reads everything back; a changed
image gets a new row, a changed preprocessing or transform a new feature space. Rows are
float16, in append-only chunk files checked against their sha256 (see ``FeatureSpace``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import uuid
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..backbones.weights import file_sha256
from . import distributed as dist
from ..files import write_atomic


def root_dir(configured: str = "") -> Path:
    """``finetune.cache_dir`` if set, else the default folder."""
    return Path(configured).expanduser() if configured else default_dir()


def auto_views(fine_tuning_follows: bool, frozen_epochs: int) -> int:
    """``finetune.cache_views: -1``: when a fine-tuning phase follows the frozen one, the
    head trains on augmented views (one per frozen epoch, at most 4), so the switch does
    not change what its inputs look like; a frozen-only run caches one plain view (0)."""
    return max(1, min(frozen_epochs, 4)) if fine_tuning_follows else 0


def cached_features(adapter, model, train_set, val_set, *, root: Path, views: int, encode_device: torch.device,
                    channels_last: bool, batch_size: int, num_workers: int):
    """``(train features, val features or None, stats)`` for a task that supports the cache
    (``adapter.supports_feature_cache``): ``views`` augmented views of the training images
    (0: one plain view) and the plain validation images, each read from the cache or
    computed once. Under DDP rank 0 computes what is missing, the other ranks then read it."""
    backbone = model.backbone
    base = {"backbone": backbone.name, "weights": weights_hash(backbone),
            "preprocessing": backbone.preprocessing.to_dict(), "layer": adapter.feature_layer}
    encode = partial(_encode, adapter.feature_encoder(model), encode_device, channels_last)
    loading = {"batch_size": batch_size, "num_workers": num_workers, "collate": adapter.collate}
    stats = {"dir": str(root), "computed": 0, "reused": 0, "views": 0, "bytes": 0}

    def features(data, wanted: list[tuple[Dataset, int, str]]) -> CachedFeatures:
        ids = [content_hash(p) for p in adapter.sample_paths(data)]
        out = []
        for view_data, view, transform in wanted:
            space = {**base, "transform": transform, "view": view}
            if dist.is_main():
                rows, computed = FeatureSpace(root, space).rows(ids, view_data, encode, view=view, **loading)
                stats["computed"] += computed
                stats["reused"] += len(ids) - computed
            dist.barrier()
            if not dist.is_main():  # a fresh FeatureSpace reads the index rank 0 has just written
                rows, _ = FeatureSpace(root, space).rows(ids, view_data, encode, view=view, **loading)
            out.append(rows)
        return CachedFeatures(out, adapter.sample_labels(data))

    plain, augmented, val_plain = adapter.cache_sources(train_set, val_set)
    wanted = [(augmented[0], v, augmented[1]) for v in range(views)] or [(plain[0], 0, plain[1])]
    stats["views"] = len(wanted)
    train_cached = features(plain[0], wanted)
    val_cached = features(val_plain[0], [(val_plain[0], 0, val_plain[1])]) if val_set is not None else None
    stats["bytes"] = size(root)[0]
    if dist.is_main():
        report(stats)
    return train_cached, val_cached, stats


def _encode(encoder: Callable, device: torch.device, channels_last: bool, images) -> torch.Tensor:
    """Images → features, in the memory format training uses."""
    return encoder(dist.to_device(images, device, channels_last))


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


def read_index(path: Path) -> dict:
    """A feature space's ``index.json`` (empty if there is none); ValueError if it is not one."""
    if not path.is_file():
        return {"chunks": {}, "rows": {}}
    index = json.loads(path.read_text())  # bad JSON or bytes: a ValueError too
    if not (isinstance(index, dict) and isinstance(index.get("chunks"), dict) and isinstance(index.get("rows"), dict)):
        raise ValueError("not a feature-cache index")
    return index


class _Locked:
    """An exclusive lock on ``path`` across processes (flock; msvcrt on Windows)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        self.f = open(self.path, "a+b")
        if os.name == "nt":  # pragma: no cover - exercised on Windows only
            import msvcrt

            self.f.seek(0)
            msvcrt.locking(self.f.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(self.f.fileno(), fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if os.name != "nt":
            import fcntl

            fcntl.flock(self.f.fileno(), fcntl.LOCK_UN)
        self.f.close()


class FeatureSpace:
    """One feature space on disk, safe for concurrent processes and checked on every read.

    Rows are appended as new chunk files (``rows-<id>.npy``, written under a unique temp name
    and renamed) and never rewritten; ``index.json`` maps image hash → (chunk, row) and each
    chunk to its sha256, and is merged and replaced under a lock (``lock``), so concurrent
    runs add to it without losing each other's entries. A chunk that does not match its
    checksum, cannot be read or holds non-finite values, and an index that cannot be read,
    are reported (naming the file) and their rows computed again.
    """

    FORMAT = 2

    def __init__(self, root: Path, key: dict) -> None:
        key = {**key, "format": self.FORMAT}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
        self.dir = root / digest
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "key.json").is_file():
            write_atomic(self.dir / "key.json", lambda f: f.write(json.dumps(key, indent=1, sort_keys=True).encode()))
        self._checked: dict[str, np.ndarray] = {}  # chunks read and verified by this process

    # -- the index ------------------------------------------------------------------------
    def _load_index(self) -> dict:
        path = self.dir / "index.json"
        try:
            return read_index(path)
        except ValueError as e:
            print(f"warning: feature cache {path}: unreadable ({e}); its features will be computed again",
                  file=sys.stderr)
            return {"chunks": {}, "rows": {}}

    def _update_index(self, add: dict[str, list] | None = None, chunk: tuple[str, str] | None = None,
                      drop_chunks: Sequence[str] = ()) -> None:
        """Under the lock: the index as on disk now, plus ``add`` rows (first writer wins), plus
        ``chunk`` (name, sha256), minus ``drop_chunks`` and their rows; written back atomically."""
        with _Locked(self.dir / "lock"):
            index = self._load_index()
            if chunk:
                index["chunks"][chunk[0]] = chunk[1]
            for name in drop_chunks:
                index["chunks"].pop(name, None)
            index["rows"] = {h: loc for h, loc in index["rows"].items() if loc[0] in index["chunks"]}
            for h, loc in (add or {}).items():
                index["rows"].setdefault(h, loc)
            write_atomic(self.dir / "index.json", lambda f: f.write(json.dumps(index).encode()))

    # -- chunks ---------------------------------------------------------------------------
    def _chunk(self, name: str, sha: str) -> np.ndarray | None:
        """The rows of chunk ``name`` if its bytes match ``sha`` and its values are finite; else
        None, with a warning naming the file."""
        if name in self._checked:
            return self._checked[name]
        path = self.dir / name
        try:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() != sha:
                raise ValueError("its checksum does not match the index (damaged or changed)")
            table = np.load(io.BytesIO(data), allow_pickle=False)
            if table.ndim != 2 or not np.isfinite(table).all():
                raise ValueError("it holds non-finite or misshapen rows")
        except (OSError, ValueError, EOFError) as e:
            print(f"warning: feature cache {path}: {e}; its features will be computed again", file=sys.stderr)
            return None
        self._checked[name] = table
        return table

    def _valid_rows(self, ids: Sequence[str], index: dict) -> tuple[dict[str, np.ndarray], list[str]]:
        """(hash → row) for the ids stored in sound chunks, and the damaged chunks' names."""
        found, bad = {}, []
        for h in dict.fromkeys(ids):
            loc = index["rows"].get(h)
            if loc is None or loc[0] in bad:
                continue
            table = self._chunk(loc[0], index["chunks"].get(loc[0], ""))
            if table is None or not 0 <= loc[1] < len(table):
                bad.append(loc[0])
                continue
            found[h] = table[loc[1]]
        return found, bad

    def read(self, ids: Sequence[str]) -> np.ndarray:
        """The stored rows of ``ids``, in order (all must be present and sound)."""
        found, _ = self._valid_rows(ids, self._load_index())
        missing = [h for h in ids if h not in found]
        if missing:
            raise KeyError(f"feature cache {self.dir}: {len(missing)} image(s) not stored")
        return np.stack([found[h] for h in ids])

    def rows(self, ids: Sequence[str], data: Dataset, encode: Callable, *, view: int, batch_size: int,
             num_workers: int, collate: Callable | None) -> tuple[np.ndarray, int]:
        """Features for ``ids`` (computing the missing or damaged ones); returns (array, number computed)."""
        index = self._load_index()
        found, bad = self._valid_rows(ids, index)
        if bad:  # forget the damaged chunks (``found`` has none of their rows; files stay until cleared)
            self._update_index(drop_chunks=bad)
        missing, queued = [], set()
        for i, h in enumerate(ids):  # identical files are computed once
            if h not in found and h not in queued:
                missing.append(i)
                queued.add(h)
        if missing:
            subset = torch.utils.data.Subset(_Seeded(data, ids, view), missing)
            loader = DataLoader(subset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate)
            new = []
            with torch.no_grad():
                for images, _ in loader:
                    new.append(encode(images).float().cpu().numpy().astype(np.float16))
            table = np.concatenate(new)
            if not np.isfinite(table).all():
                raise ValueError(f"the backbone gave non-finite features for {len(missing)} image(s); "
                                 "check the weights (model.weights) and the images")
            self._append(table, [ids[i] for i in missing])
            found.update({ids[i]: table[k] for k, i in enumerate(missing)})
        return np.stack([found[h] for h in ids]), len(missing)

    def _append(self, rows: np.ndarray, hashes: list[str]) -> None:
        name = f"rows-{uuid.uuid4().hex[:16]}.npy"
        buffer = io.BytesIO()
        np.save(buffer, rows, allow_pickle=False)
        data = buffer.getvalue()
        write_atomic(self.dir / name, lambda f: f.write(data))  # the rows first, then the index that points at them
        self._checked[name] = rows
        self._update_index({h: [name, k] for k, h in enumerate(hashes)}, (name, hashlib.sha256(data).hexdigest()))


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
    rows = 0
    for d in spaces:  # a damaged index counts as empty here (a run reports and rebuilds it)
        try:
            rows += len(read_index(d / "index.json")["rows"])
        except (OSError, ValueError):
            pass
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

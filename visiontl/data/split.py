"""Validation held out from the training data: one rule for every task.

At least one image is held out, and at least one is kept for training; a set too small for
both trains without validation and says so (``data.val`` gives one)."""
from __future__ import annotations

import random
import sys
from typing import Sequence

import torch


def random_split(n: int, fraction: float, seed: int, *, where: str = "data.train") -> tuple[list[int], list[int]]:
    """Indices (train, val) of ``n`` samples, ``fraction`` of them (rounded, at least one) in
    val, in a random order fixed by ``seed``; val is empty when ``fraction`` is 0 or ``n`` < 2."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    if fraction <= 0:
        return order, []
    if n < 2:
        _too_few(n, fraction, where)
        return order, []
    n_val = min(max(1, round(fraction * n)), n - 1)
    return order[n_val:], order[:n_val]


def stratified_split(targets: Sequence[int], fraction: float, seed: int = 0, *,
                     where: str = "data.train") -> tuple[list[int], list[int]]:
    """Indices (train, val) with ``fraction`` of each class in val (at least one where a
    class has two or more images)."""
    by_class: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_class.setdefault(t, []).append(i)
    rng = random.Random(seed)
    train, val = [], []
    for idx in by_class.values():
        rng.shuffle(idx)
        k = max(1, round(len(idx) * fraction)) if len(idx) > 1 and fraction > 0 else 0
        val += idx[:k]
        train += idx[k:]
    if fraction > 0 and not val:
        _too_few(len(train), fraction, where)
    return sorted(train), sorted(val)


def _too_few(n: int, fraction: float, where: str) -> None:
    print(f"{where}: {n} image(s) is too few to hold out data.val_fraction={fraction:g} for validation; "
          "training without validation (give data.val to validate)", file=sys.stderr)

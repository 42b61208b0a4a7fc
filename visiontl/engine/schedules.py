"""Learning-rate schedules as pure functions of the optimiser step."""
from __future__ import annotations

import math


def get_lr(step: int, *, total_steps: int, base_lr: float, schedule: str = "cosine",
           warmup_steps: int = 0, min_lr_ratio: float = 0.01) -> float:
    """Learning rate at optimiser step ``step`` (0-based) of ``total_steps``.

    - ``cosine``: linear warmup, then cosine decay to ``base_lr * min_lr_ratio``;
    - ``onecycle``: Smith's one-cycle, as ``torch.optim.lr_scheduler.OneCycleLR``'s defaults
      (cosine up from ``base_lr/25`` over ``warmup_steps`` — 30 % if 0 — then down to ``base_lr/1e4``);
    - ``constant``: linear warmup, then ``base_lr``.
    """
    total_steps = max(total_steps, 1)
    if schedule == "onecycle":
        up = warmup_steps or max(int(0.3 * total_steps), 1)
        start, end = base_lr / 25.0, base_lr / 25.0 / 1e4
        if step < up:  # 1) anneal up to the peak
            return _cos(start, base_lr, step / up)
        return _cos(base_lr, end, min((step - up) / max(total_steps - up, 1), 1.0))  # 2) and down
    # 1) linear warmup
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    if schedule != "cosine":
        raise ValueError(f"unknown schedule {schedule!r}; valid: cosine, onecycle, constant")
    # 2) cosine from base_lr down to the floor over the remaining steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return _cos(base_lr, base_lr * min_lr_ratio, progress)


def _cos(start: float, end: float, t: float) -> float:
    """Cosine interpolation from ``start`` (t=0) to ``end`` (t=1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))

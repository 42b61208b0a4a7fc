"""What the engine's ``optim`` and ``train`` settings (config.py) decide: the checks that name
an impossible value by its key before any work starts, the batch size for a tiny dataset,
the monitored metric, the optimiser."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from . import distributed as dist
from .config import OptimConfig, TrainConfig


def resolve_monitor(configured: str, default: tuple[str, str]) -> tuple[str, str]:
    """``train.monitor`` with its direction (a loss is minimised), or the task's default."""
    return (configured, "min" if "loss" in configured else "max") if configured else default


def fit_batch_size(cfg: "TrainConfig", n_images: int) -> tuple[int, str]:
    """``train.batch_size``, lowered when the data would give fewer than
    ``train.min_steps_per_epoch`` optimiser steps an epoch (24 images at batch 32 is one
    step an epoch: the schedule and the fine-tuning phases then mean nothing), and the line
    that says so ("" when the batch size stands); the trainer prints it, the dry-run shows it."""
    want = cfg.min_steps_per_epoch * cfg.accumulate
    size = min(max(2, n_images // want), cfg.batch_size) if want else cfg.batch_size
    if size == cfg.batch_size:
        return size, ""
    return size, (f"train.batch_size {cfg.batch_size} → {size}: {n_images} training images would give "
                  f"{math.ceil(n_images / cfg.batch_size / cfg.accumulate)} optimiser step(s) an epoch; "
                  f"train.min_steps_per_epoch={cfg.min_steps_per_epoch} (0 keeps the batch size)")


def check_run_name(name: str) -> str:
    """``train.name`` as one folder under ``train.out_dir``: never a path that leaves it."""
    if name and (name in (".", "..") or "/" in name or "\\" in name or Path(name).name != name or len(name) > 100
                 or not name.isprintable() or name != name.strip()):
        raise ValueError(f"train.name={name[:120]!r}: a run directory name is one folder under train.out_dir "
                         "(no / or \\, not . or .., no control characters such as a newline, no spaces at either "
                         "end, at most 100 characters)")
    return name


def check_task_config(c) -> None:
    """Every key with declared allowed values (``RANGES``, :func:`~visiontl.config.check_ranges`),
    then the keys several tasks share: ``data.image_size``, ``data.val_fraction``,
    ``loss.label_smoothing`` and the ``distill`` section, where the task has them."""
    from ..config import check_ranges
    from .distill import check_distill

    check_ranges(c)
    d = c.data
    if not d.image_size > 0:
        raise ValueError(f"data.image_size={d.image_size}: must be a positive number of pixels")
    if d.image_size > 8192:
        raise ValueError(f"data.image_size={d.image_size}: larger than 8192 pixels; is that meant?")
    if not 0 <= d.val_fraction < 1:
        raise ValueError(f"data.val_fraction={d.val_fraction}: must be in [0, 1) (0: no validation split)")
    smoothing = getattr(getattr(c, "loss", None), "label_smoothing", None)
    if smoothing is not None and not 0 <= smoothing < 1:
        raise ValueError(f"loss.label_smoothing={smoothing}: must be in [0, 1)")
    if getattr(c, "distill", None) is not None:
        check_distill(c.distill)


def check_settings(train: TrainConfig, optim: OptimConfig) -> None:
    """Values no run can use, named by their key before any data is read."""
    for key, value, low in (("train.epochs", train.epochs, 1), ("train.batch_size", train.batch_size, 1),
                            ("train.accumulate", train.accumulate, 1), ("train.num_workers", train.num_workers, 0),
                            ("train.min_steps_per_epoch", train.min_steps_per_epoch, 0),
                            ("train.early_stop_patience", train.early_stop_patience, 0),
                            ("train.grad_clip", train.grad_clip, 0), ("optim.weight_decay", optim.weight_decay, 0),
                            ("optim.warmup_epochs", optim.warmup_epochs, 0)):
        if not value >= low:  # also NaN
            raise ValueError(f"{key}={value}: must be at least {low}")
    if optim.lr != "auto" and not (0 <= optim.lr < float("inf")):
        raise ValueError(f"optim.lr={optim.lr}: must be a finite number ≥ 0 (or auto)")
    if not 0 <= optim.min_lr_ratio <= 1:
        raise ValueError(f"optim.min_lr_ratio={optim.min_lr_ratio}: must be in [0, 1]")
    check_run_name(train.name)
    dist.select_device(train.device)  # a device this machine does not have fails now, named


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """All parameters, frozen ones included (they have no gradient, so no update and no
    state), so the optimiser is the same object across fine-tuning phases and resumes."""
    groups = [dict(g, lr=cfg.lr * g.get("lr_scale", 1.0)) for g in groups if g["params"]]
    for g in groups:
        g.setdefault("lr_scale", 1.0)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True)
    opt = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return opt(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

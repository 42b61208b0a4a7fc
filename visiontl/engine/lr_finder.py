"""Learning-rate range test (Smith 2015; fastai's ``lr_find``): train for a few batches with
the LR growing exponentially, record the loss, suggest the LR where the smoothed loss is
halfway down its fall to the minimum (:func:`suggest`), then put the model back as it was.

The test runs on the first phase of the fine-tuning plan (the groups that train from epoch
1, at their LR scales), so its suggestion is the ``optim.lr`` that phase starts from.
"""
from __future__ import annotations

import copy
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

from . import distributed as dist
from .finetune import Finetuner
from .distributed import amp_dtype, to_device
from .config import OptimConfig, TrainConfig
from .settings import build_optimizer, fit_batch_size


@dataclass
class LRFinderResult:
    lrs: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)  # the loss of each step
    losses: list[float] = field(default_factory=list)  # smoothed (centred, :func:`smooth`)
    suggestion: float = float("nan")
    stopped_early: bool = False

    def plot(self, path: str | Path) -> Path:
        from ..plots import save, subplots

        fig, ax = subplots(figsize=(6, 3.6))
        ax.plot(self.lrs, self.losses)
        if math.isfinite(self.suggestion):
            i = min(range(len(self.lrs)), key=lambda j: abs(math.log(self.lrs[j] / self.suggestion)))
            ax.plot([self.suggestion], [self.losses[i]], "o", color="red", label=f"suggested lr {self.suggestion:.2g}")
            ax.legend()
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss (smoothed)")
        ax.set_title("learning-rate range test", fontsize=9)
        return save(fig, path, dpi=120)


def smooth(values: list[float], sigma: float) -> list[float]:
    """A centred Gaussian moving average (``sigma`` in steps): no lag, unlike a running
    average, whose delay of ~1/(1-β) steps put fastai's 0.98 a third of a 40-step sweep late."""
    x = np.asarray(values, np.float64)
    k = np.arange(len(x))
    w = np.exp(-0.5 * ((k[:, None] - k[None, :]) / sigma) ** 2)
    return (w @ x / w.sum(1)).tolist()


def suggest(lrs: list[float], losses: list[float]) -> tuple[list[float], int]:
    """(the smoothed losses, the index of the suggested LR): the last point before the
    minimum where the smoothed loss is still above halfway between the plateau (its median
    before the minimum) and the minimum — the middle of the final descent, where a curve that
    falls as a slope is steepest. fastai's ``valley`` (two thirds down the longest decreasing
    subsequence) starts that subsequence on the noise of the plateau and landed at its edge
    (7e-5 for a descent from 1e-4 to 1e-2 in 40 steps). A curve with no descent (flat, then
    diverging) gets a tenth of the LR where it leaves the plateau."""
    smoothed = smooth(losses, max(1.0, len(losses) / 30))
    low = int(np.argmin(smoothed))
    top = float(np.median(smoothed[:low + 1]))  # the plateau (the highest point would be its noise)
    noise = float(np.median(np.abs(np.subtract(losses, smoothed)))) * 3
    if low == 0 or top - smoothed[low] <= noise:  # no descent to speak of
        flat = [i for i, v in enumerate(losses) if v <= smoothed[0] + max(noise, 0.05 * abs(smoothed[0]))]
        end = flat[-1] if flat else 0
        return smoothed, int(np.argmin([abs(math.log(lr / (lrs[end] / 10))) for lr in lrs]))
    half = (top + smoothed[low]) / 2
    above = [i for i in range(low) if smoothed[i] >= half]
    return smoothed, above[-1] if above else 0


def lr_find(adapter, train_set, *, train: TrainConfig, optim: OptimConfig, finetuner: Finetuner,
            start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100, diverge: float = 4.0) -> LRFinderResult:
    """Run the range test on ``adapter.model`` over ``train_set``; the model, its
    ``requires_grad`` flags and the RNG are restored afterwards."""
    device = dist.select_device(train.device)
    model = adapter.model.to(device)
    saved = copy.deepcopy(model.state_dict())
    grads = [p.requires_grad for p in model.parameters()]
    rng = torch.get_rng_state()
    optimizer = build_optimizer(finetuner.param_groups(), optim)
    finetuner.apply(0, optimizer)
    generator = torch.Generator().manual_seed(train.seed)
    batch_size, _ = fit_batch_size(train, len(train_set))
    loader = DataLoader(train_set, batch_size=batch_size, drop_last=True,
                        sampler=RandomSampler(train_set, replacement=True, num_samples=steps * batch_size,
                                              generator=generator),
                        num_workers=train.num_workers, collate_fn=adapter.collate)
    dtype = amp_dtype(train.amp, device)
    result, avg, best = LRFinderResult(), 0.0, float("inf")
    try:
        adapter.train_mode(model)
        finetuner.set_bn_mode()
        for i, batch in enumerate(loader):  # exactly `steps` batches (drawn with replacement)
            lr = start_lr * (end_lr / start_lr) ** (i / max(steps - 1, 1))
            for g in optimizer.param_groups:
                g["lr"] = lr * g["lr_scale"]
            batch = to_device(batch, device, train.channels_last)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = adapter.training_step(model, batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            if not math.isfinite(value):
                result.stopped_early = True
                break
            avg = 0.98 * avg + 0.02 * value  # a running average, for the stop on divergence only
            smoothed = avg / (1 - 0.98 ** (i + 1))
            result.lrs.append(lr)
            result.raw.append(value)
            best = min(best, smoothed)
            if i > 10 and smoothed > diverge * best:  # diverged: the rest says nothing
                result.stopped_early = True
                break
    finally:
        model.load_state_dict(saved)
        for p, g in zip(model.parameters(), grads):
            p.requires_grad_(g)
        torch.set_rng_state(rng)
    if len(result.raw) >= 3:
        result.losses, at = suggest(result.lrs, result.raw)
        result.suggestion = result.lrs[at]
    else:
        print("lr_find: the loss diverged at once; try a smaller start_lr", file=sys.stderr)
    return result

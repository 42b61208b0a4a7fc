"""A running average of the weights from a fine-tuning switch on (``finetune.ema``).

Why: after the switch the newly trainable blocks and the head move at a restarted learning
rate, and the model's accuracy swings by several points from one optimiser step to the
next (measured on sklearn's digits: 0.64 – 0.86 on the tune split within one epoch), while
the frozen phase ended at a low, decayed LR. An epoch that happens to end on a low swing
reads as a "dip" at the switch even though training is fine. Averaging the weights with a
short half-life (an exponential moving average, as ultralytics and timm keep for every run)
starts at the frozen phase's model and follows the fine-tuning smoothly: validation,
``best.pt`` and ``last.pt``'s ``model`` are the average; the raw weights the optimiser
trains are kept in ``last.pt``'s ``train_model`` for an exact resume.
Measured in benchmarks/RESULTS.md (recipes, "the switch dip").

The average is torch's own :class:`~torch.optim.swa_utils.AveragedModel` with
:func:`~torch.optim.swa_utils.get_ema_multi_avg_fn`; BatchNorm statistics are averaged too.
"""
from __future__ import annotations

from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def decay_for(half_life_epochs: float, steps_per_epoch: int) -> float:
    """Per-step decay whose half-life is ``half_life_epochs`` epochs (at least one step)."""
    return 0.5 ** (1.0 / max(half_life_epochs * steps_per_epoch, 1.0))


def start(model: nn.Module, decay: float, state: dict | None = None) -> AveragedModel:
    """An average that starts at ``model``'s current weights (or at ``state``, a resumed
    checkpoint's averaged weights)."""
    average = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    average.update_parameters(model)  # the first update copies: the average starts here
    if state is not None:
        average.module.load_state_dict(state)
    for p in average.parameters():
        p.requires_grad_(False)
    return average

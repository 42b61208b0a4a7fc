"""Fine-tuning strategies, one mechanism for every task.

The backbone's ordered layer groups (``Backbone.layer_groups()``) and the task head form
the optimiser's parameter groups once, for the whole run; a strategy only decides, per
epoch, which groups train and at what learning-rate scale. Because that decision is a pure
function of the epoch, a resume in any phase lands in the right one, and the optimiser's
state survives every switch.

Strategies (``finetune.strategy``):

- ``frozen``: feature extraction — backbone frozen, its BatchNorm in eval mode, head trains;
- ``last_n``: the last ``finetune.last_n`` backbone groups train with the head;
- ``full``: everything trains;
- ``two_phase``: ``head_epochs`` epochs frozen, then the last ``last_n`` groups unfreeze and
  the learning rate is multiplied by ``phase2_lr_factor``;
- ``gradual``: one more group (from the top) unfreezes at each epoch in ``milestones``
  (default: every epoch after the first);
- ``auto``: chosen from the dataset size and number of classes (:func:`choose`), with the reason.

Discriminative learning rates: with ``group_lr_decay`` = d < 1 the top backbone group gets
d × the head's LR, the next d², and so on down to the stem.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from torch import nn

from ..backbones.base import freeze


@dataclass
class FinetuneConfig:
    strategy: Literal["frozen", "last_n", "full", "two_phase", "gradual", "auto"] = "frozen"
    last_n: int = 2  # backbone groups that train (last_n; two_phase after the switch)
    head_epochs: int = 2  # two_phase: epochs with the backbone frozen
    phase2_lr_factor: float = 0.01  # two_phase: LR multiplier once the backbone trains
    milestones: list[int] = field(default_factory=list)  # gradual: epochs (0-based) that unfreeze one more group
    group_lr_decay: float = 1.0  # discriminative LRs: top backbone group × d, the next × d², …
    cache: Literal["auto", "off"] = "auto"  # auto: train the head on cached features while the backbone is frozen
    cache_views: int = 0  # 0: one plain view per image; K > 0: K augmented views, one drawn per epoch
    cache_dir: str = ""  # default ~/.cache/visiontl/features (VISIONTL_CACHE moves it)


def trainable_groups(cfg: FinetuneConfig, n_groups: int, epoch: int) -> int:
    """How many backbone groups, counted from the top, train during ``epoch`` (0-based)."""
    s = cfg.strategy
    if s == "frozen":
        return 0
    if s == "full":
        return n_groups
    if s == "last_n":
        return min(cfg.last_n, n_groups)
    if s == "two_phase":
        return 0 if epoch < cfg.head_epochs else min(cfg.last_n, n_groups)
    if s == "gradual":
        milestones = cfg.milestones or list(range(1, n_groups + 1))
        return min(sum(1 for m in milestones if m <= epoch), n_groups)
    raise ValueError(f"finetune.strategy {s!r} must be resolved first (auto → choose())")


def lr_factor(cfg: FinetuneConfig, epoch: int) -> float:
    """Multiplier on the whole learning rate in ``epoch`` (two_phase lowers it after the switch)."""
    return cfg.phase2_lr_factor if cfg.strategy == "two_phase" and epoch >= cfg.head_epochs else 1.0


def choose(cfg: FinetuneConfig, *, n_images: int, n_classes: int, n_groups: int) -> tuple[FinetuneConfig, str]:
    """``auto``: little data → a frozen backbone; more data → more groups fine-tuned.

    Rules of thumb from the transfer-learning literature (Yosinski 2014; Kornblith 2019):
    fine-tuning pays once there are a few hundred images per class, and deeper fine-tuning
    needs more of them.
    """
    if cfg.strategy != "auto":
        return cfg, f"finetune.strategy={cfg.strategy} (as configured)"
    per_class = n_images / max(n_classes, 1)
    if n_images < 1000 or per_class < 50:
        return (replace(cfg, strategy="frozen"),
                f"auto → frozen: {n_images} images ({per_class:.0f}/class) is little data; a linear probe overfits least")
    if per_class < 300:
        return (replace(cfg, strategy="two_phase", last_n=min(2, n_groups)),
                f"auto → two_phase, last 2 groups: {n_images} images ({per_class:.0f}/class) — enough to adapt "
                "the top of the backbone after the head has settled")
    if per_class < 1000:
        n = max(2, n_groups // 2 + 1)
        return (replace(cfg, strategy="two_phase", last_n=n),
                f"auto → two_phase, last {n} groups: {n_images} images ({per_class:.0f}/class)")
    return (replace(cfg, strategy="full", group_lr_decay=min(cfg.group_lr_decay, 0.5)),
            f"auto → full with discriminative LRs (decay 0.5): {n_images} images ({per_class:.0f}/class) is plenty")


class Finetuner:
    """Applies a (resolved) strategy to a model with a ``backbone`` attribute; every other
    parameter of the model is the head."""

    def __init__(self, cfg: FinetuneConfig, model: nn.Module) -> None:
        self.cfg, self.model = cfg, model
        backbone = getattr(model, "backbone", None)  # a model without one is all head
        self.groups = list(backbone.layer_groups()) if backbone is not None else []
        in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
        self.head = [p for p in model.parameters() if id(p) not in in_backbone]

    def param_groups(self) -> list[dict]:
        """One optimiser group per backbone layer group, plus the head; all parameters, all
        the time, so the optimiser's state is stable across phases and resumes."""
        groups = [{"params": list(g.parameters()), "name": f"backbone.{i}", "lr_scale": 0.0}
                  for i, g in enumerate(self.groups)]
        return [*groups, {"params": self.head, "name": "head", "lr_scale": 1.0}]

    def scales(self, epoch: int) -> list[float]:
        """LR scale per optimiser group (backbone groups in order, then the head) in ``epoch``."""
        n = len(self.groups)
        k = trainable_groups(self.cfg, n, epoch)
        factor = lr_factor(self.cfg, epoch)
        backbone = [factor * self.cfg.group_lr_decay ** (n - i) if i >= n - k else 0.0 for i in range(n)]
        return [*backbone, factor]

    def apply(self, epoch: int, optimizer=None) -> bool:
        """Set ``requires_grad`` and the optimiser's LR scales for ``epoch``. Returns True when
        the set of trainable parameters changed (DDP and compiled models must be re-wrapped)."""
        before = [p.requires_grad for p in self.model.parameters()]
        scales = self.scales(epoch)
        for group, scale in zip(self.groups, scales):
            freeze(group, scale == 0.0)
        if optimizer is not None:
            by_name = dict(zip([f"backbone.{i}" for i in range(len(self.groups))] + ["head"], scales))
            for pg in optimizer.param_groups:
                pg["lr_scale"] = by_name[pg["name"]]
        return before != [p.requires_grad for p in self.model.parameters()]

    def backbone_frozen(self, epoch: int) -> bool:
        return trainable_groups(self.cfg, len(self.groups), epoch) == 0

    def phase_starts(self, epochs: int) -> list[int]:
        """Epochs at which the plan changes (always including 0)."""
        starts, last = [], None
        for e in range(epochs):
            s = self.scales(e)
            if s != last:
                starts.append(e)
                last = s
        return starts

    def table(self, epochs: int, base_lr: float) -> str:
        """The dry-run: every layer group, trainable or frozen, BN mode, LR and size, per phase."""
        lines = []
        for start in self.phase_starts(epochs):
            scales = self.scales(start)
            lines.append(f"from epoch {start + 1} ({self.cfg.strategy}):")
            lines.append(f"  {'group':14}{'params':>12}  {'trainable':11}{'BatchNorm':15}{'lr':>10}")
            for i, group in enumerate(self.groups):
                n = sum(p.numel() for p in group.parameters())
                has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in group.modules())
                on = scales[i] > 0
                bn = ("train" if on else "eval (frozen)") if has_bn else "-"
                lines.append(f"  {f'backbone.{i}':14}{n:>12,}  {'yes' if on else 'no':11}{bn:15}{base_lr * scales[i]:>10.3g}")
            n_head = sum(p.numel() for p in self.head)
            lines.append(f"  {'head':14}{n_head:>12,}  {'yes':11}{'-':15}{base_lr * scales[-1]:>10.3g}")
        return "\n".join(lines)

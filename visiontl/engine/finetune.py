"""Fine-tuning strategies, one mechanism for every task.

The backbone's ordered layer groups (``Backbone.layer_groups()``: one per block, so "the
last N" means N blocks) and the task head form the optimiser's parameter groups once, for
the whole run; a strategy only decides, per epoch, which groups train, at what learning
rate, and how the backbone's BatchNorm behaves. Because that decision is a pure function
of the epoch, a resume in any phase lands in the right one, and the optimiser's state
survives every switch.

Strategies (``finetune.strategy``):

- ``frozen``: feature extraction — backbone frozen, its BatchNorm in eval mode, head trains;
- ``last_n``: the last ``finetune.last_n`` backbone groups train with the head;
- ``full``: everything trains;
- ``two_phase``: ``head_epochs`` epochs frozen, then the last ``last_n`` groups unfreeze
  (``phase2: gentle``) or everything trains as in ``full`` (``phase2: full``, fastai's ``fine_tune``);
- ``gradual``: one more group (from the top) unfreezes at each epoch in ``milestones``
  (default: every epoch after the first);
- ``auto``: chosen from the dataset size and number of classes (:func:`choose`), with the reason.

Once a frozen phase has ended (``two_phase``, ``gradual``), the backbone groups train at
``phase2_lr_factor`` × the LR and the head at ``phase2_head_lr_factor`` × the LR (fastai's
``fine_tune`` halves the head's), so a small backbone LR never starves the head; with
``phase2: full`` (segmentation's default: a U-Net's decoder is most of the model and starts
from scratch) two_phase's second phase is ``full``, every group at the LR. Each phase
gets its own warmup and decay (:meth:`Finetuner.phase_of`): the schedule restarts at a
switch instead of carrying on from a decayed value. From the switch on, the model that is
validated and saved is a running average of the weights (``finetune.ema``, see ema.py): the
first epochs after a switch swing from step to step, the average does not.

BatchNorm (``finetune.bn``): ``frozen`` keeps every backbone BatchNorm layer in inference
mode with its pretrained statistics even while its weights train (Keras's transfer-learning
guide; a batch of augmented images from a new domain otherwise replaces ImageNet's
statistics at the switch, and the trained head sees features it has never seen);
``train`` lets the trainable groups' BatchNorm use and update batch statistics; ``auto``
is ``frozen`` for pretrained weights fine-tuned gently after a frozen phase (``two_phase``,
``gradual`` at ``phase2_lr_factor`` ≤ 0.1), and ``train`` where the backbone trains faster:
``full`` and ``last_n`` (the full LR from the first step), a phase 2 above 0.1 × the LR or
``phase2: full``, and random init.

A backbone without normalisation layers (VGG) has no BatchNorm to absorb the scale of its
weights' updates: where it trains from the first step (``full``, ``last_n``) its groups get
``backbone_lr_factor`` × the LR, by default (-1) 0.1 for such a backbone and 1 otherwise.

Discriminative learning rates: with ``group_lr_decay`` = d < 1 the top backbone group gets
d × its LR, the next d², and so on down to the stem.
"""
from __future__ import annotations

import math
from dataclasses import replace

from torch import nn

from ..backbones.base import NORMS, FrozenBatchNorm2d, freeze, set_bn_eval
from .config import FinetuneConfig


TOP_FRACTION = 0.4  # last_n = -1: the top 40 % of the blocks (measured: benchmarks/RESULTS.md, recipes)


def top_blocks(cfg: FinetuneConfig, n_groups: int) -> int:
    """``finetune.last_n`` in blocks: as given, ``all`` of them, or (``-1``) the top 40 % of them."""
    if cfg.last_n == "all":
        return n_groups
    n = cfg.last_n if cfg.last_n >= 0 else max(1, round(TOP_FRACTION * n_groups))
    return min(n, n_groups)


def trainable_groups(cfg: FinetuneConfig, n_groups: int, epoch: int) -> int:
    """How many backbone groups, counted from the top, train during ``epoch`` (0-based)."""
    s = cfg.strategy
    if s == "frozen":
        return 0
    if s == "full":
        return n_groups
    if s == "last_n":
        return top_blocks(cfg, n_groups)
    if s == "two_phase":
        return 0 if epoch < cfg.head_epochs else top_blocks(cfg, n_groups)
    if s == "gradual":
        milestones = cfg.milestones or list(range(1, n_groups + 1))
        return min(sum(1 for m in milestones if m <= epoch), n_groups)
    raise ValueError(f"finetune.strategy {s!r} must be resolved first (auto → choose())")


def full_after_switch(cfg: FinetuneConfig) -> bool:
    """Whether two_phase's second phase is ``full`` (``phase2: full``; gradual is always gentle)."""
    return cfg.strategy == "two_phase" and cfg.phase2 == "full"


def phase2_knobs(cfg: FinetuneConfig) -> FinetuneConfig:
    """``phase2: full`` written in the gentle phase 2's own settings — every block, the backbone
    at ``full``'s rate (``backbone_lr_factor``), the head at the LR — so one mechanism runs both."""
    if not full_after_switch(cfg):
        return cfg
    backbone = cfg.backbone_lr_factor if cfg.backbone_lr_factor >= 0 else 1.0
    return replace(cfg, last_n="all", phase2_lr_factor=backbone, phase2_head_lr_factor=1.0)


def switched(cfg: FinetuneConfig, epoch: int) -> bool:
    """Whether ``epoch`` comes after a frozen phase (two_phase's second phase, gradual's
    unfrozen epochs): the phase whose LRs are ``phase2_*_lr_factor``."""
    if cfg.strategy == "two_phase":
        return epoch >= cfg.head_epochs
    if cfg.strategy == "gradual":
        return epoch >= min(cfg.milestones or [1])
    return False


def averages(cfg: FinetuneConfig, epoch: int) -> bool:
    """Whether ``epoch`` keeps a running average of the weights (``finetune.ema``)."""
    return cfg.ema > 0 and (cfg.ema_from == "start" or switched(cfg, epoch))


def lr_factors(cfg: FinetuneConfig, epoch: int) -> tuple[float, float]:
    """(backbone, head) LR multipliers in ``epoch``."""
    if switched(cfg, epoch):
        return cfg.phase2_lr_factor, cfg.phase2_head_lr_factor
    return (cfg.backbone_lr_factor if cfg.backbone_lr_factor >= 0 else 1.0), 1.0


GENTLE_FACTOR = 0.1  # bn=auto keeps pretrained statistics after a switch up to this phase2_lr_factor
UNNORMALISED_LR_FACTOR = 0.1  # backbone_lr_factor -1 for a backbone without normalisation layers (VGG)


def normalised(backbone: nn.Module | None) -> bool:
    """Whether ``backbone`` has normalisation layers (BatchNorm, GroupNorm, LayerNorm …).
    Without them (VGG) every weight's scale reaches the output: AdamW at 1e-3 on the whole
    backbone drove VGG19 to chance (benchmarks/RESULTS.md, recipes)."""
    return backbone is None or any(isinstance(m, NORMS) for m in backbone.modules())


def follows_switch(cfg: FinetuneConfig, epochs: int) -> bool:
    """Whether a run of ``epochs`` has a frozen phase followed by a fine-tuning one."""
    return cfg.strategy in ("two_phase", "gradual") and any(switched(cfg, e) for e in range(epochs))


def choose(cfg: FinetuneConfig, *, n_images: int, n_classes: int, n_groups: int,
           has_norm: bool = True, epochs: int | None = None, image_size: int | None = None) -> tuple[FinetuneConfig, str]:
    """``auto``, measured (benchmarks/RESULTS.md). At the default 224 px (``python -m
    benchmarks threshold``: mobilenet_v2, 5 seeds, four RGB sets the defaults were not tuned
    on — photo textures, an ImageNet-like four-class set, aerial crowns, microscopy nuclei)
    ``two_phase`` led ``full`` on three of the four at 36 images per class, and on the
    ImageNet-like set at 100 per class by 8 points; ``full`` led on the crowns, and from 100
    per class on the nuclei (by 4 points: a smaller loss than the photos' 8). So from
    ``SMALL_INPUT`` px up, ``full`` waits for ``FULL_FROM`` per class (where it led on the one
    set measured that large, Fashion-MNIST). Below ``SMALL_INPUT`` (``python -m benchmarks
    recipes`` at 64 px, six sets, 3 seeds) ``full`` led or tied from ``FULL_FROM_SMALL_INPUT``
    per class on every set: at 64 px ImageNet's features see objects at a scale they were not
    learned at. Below 10 per class the backbone stays frozen. A backbone without
    normalisation layers (``has_norm`` False: VGG) never gets ``full``: VGG19 on fashion-300
    (30/class) scored 0.10 with it at the full LR, 0.71 at 0.1× (one seed of three 0.54), 0.72
    with ``two_phase`` (medians of 3 seeds). ``image_size`` None: the default, 224.

    With ``epochs`` (the run's length) the plan said is the plan run: ``auto``'s ``two_phase``
    keeps at least one fine-tuning epoch (``head_epochs`` shortened to half a short run; one
    epoch is ``frozen``), and a configured ``two_phase`` whose head epochs fill the run says so.
    """
    if cfg.strategy != "auto":
        why = f"finetune.strategy={cfg.strategy} (as configured)"
        if cfg.strategy == "two_phase" and epochs is not None and epochs <= cfg.head_epochs:
            why += (f" — warning: finetune.head_epochs={cfg.head_epochs} ≥ train.epochs={epochs}, so no fine-tuning "
                    "epoch is left: the backbone stays frozen for the whole run")
        return cfg, why
    per_class = n_images / max(n_classes, 1)
    if per_class < MIN_PER_CLASS:
        return (replace(cfg, strategy="frozen"),
                f"auto → frozen: {n_images} images ({per_class:.0f}/class) is too little to adapt the backbone; "
                "a linear probe overfits least")
    small_input = image_size is not None and image_size < SMALL_INPUT
    full_from = FULL_FROM_SMALL_INPUT if small_input else FULL_FROM
    if per_class < full_from or not has_norm:
        why = ("a backbone without BatchNorm — full fine-tuning of VGG19 fell far below two_phase in the benchmark"
               if per_class >= full_from else
               f"the head settles on the frozen backbone for {cfg.head_epochs} epochs, then the top blocks adapt "
               f"gently" + ("" if small_input else
                            f" (at {image_size or 224} px full fine-tuning trailed it by 3–8 points on photos at 36 and "
                            "100/class; it led on aerial crowns, and on microscopy from 100/class: "
                            "finetune.strategy=full to choose it)"))
        chosen = replace(cfg, strategy="two_phase")
        if epochs is not None and epochs <= chosen.head_epochs:  # the head's epochs would fill the run
            if epochs < 2:
                return (replace(cfg, strategy="frozen"),
                        f"auto → frozen: {n_images} images ({per_class:.0f}/class) would get two_phase, but "
                        f"train.epochs={epochs} leaves no epoch to fine-tune in after the head's")
            chosen = replace(chosen, head_epochs=epochs // 2)
            why = why.replace(f"for {cfg.head_epochs} epochs", f"for {chosen.head_epochs} of the {epochs} epochs")
        return (chosen,
                f"auto → two_phase, the last {top_blocks(phase2_knobs(chosen), n_groups)} of {n_groups} blocks: "
                f"{n_images} images ({per_class:.0f}/class) — {why}")
    return (replace(cfg, strategy="full"),
            f"auto → full: {n_images} images ({per_class:.0f}/class) — enough to adapt the whole backbone "
            f"(measured ahead of two_phase from {full_from}/class" + (f" below {SMALL_INPUT} px)" if small_input else ")"))


MIN_PER_CLASS = 10  # auto: below this many images per class the backbone stays frozen
FULL_FROM = 400  # auto: from this many images per class, full fine-tuning (benchmarks/threshold.py: not below)
SMALL_INPUT = 128  # auto: inputs smaller than this (measured at 64 px) get full fine-tuning sooner …
FULL_FROM_SMALL_INPUT = 30  # … from this many images per class (benchmarks/recipes.py)


def is_pretrained(backbone: nn.Module | None) -> bool:
    """Whether ``backbone`` carries learned weights (not a random init)."""
    source = str(getattr(backbone, "weights_source", "none") or "none")
    return source != "none" and not source.endswith((".yaml", ".yml"))


class Finetuner:
    """Applies a (resolved) strategy to a model with a ``backbone`` attribute; every other
    parameter of the model is the head."""

    def __init__(self, cfg: FinetuneConfig, model: nn.Module) -> None:
        if full_after_switch(cfg):  # a gentle phase 2's settings would be ignored without a word
            unused = [k for k in ("last_n", "phase2_lr_factor", "phase2_head_lr_factor")
                      if getattr(cfg, k) != getattr(FinetuneConfig(), k)]
            if unused:
                raise ValueError(f"finetune.phase2=full (segmentation's default) trains every block and the head "
                                 f"at the LR after the switch, so finetune.{' / '.join(unused)} would be ignored; "
                                 "set finetune.phase2=gentle to unfreeze the last last_n blocks at phase2_lr_factor")
        backbone = getattr(model, "backbone", None)  # a model without one is all head
        self.normalised = normalised(backbone)
        if cfg.backbone_lr_factor < 0:  # auto: gentler for a backbone without normalisation layers
            cfg = replace(cfg, backbone_lr_factor=1.0 if self.normalised else UNNORMALISED_LR_FACTOR)
        cfg = phase2_knobs(cfg)
        self.cfg, self.model = cfg, model
        self.groups = list(backbone.layer_groups()) if backbone is not None else []
        in_backbone = {id(p) for p in backbone.parameters()} if backbone is not None else set()
        self.head = [p for p in model.parameters() if id(p) not in in_backbone]
        # auto: pretrained statistics kept where the backbone trains gently (after a frozen
        # phase, at phase2_lr_factor ≤ 0.1 × the LR); a backbone trained faster needs its
        # statistics to follow its weights — with them kept, full fine-tuning at 1e-3 diverged
        # to chance, and a U-Net encoder at 0.2 × fell for single epochs from 0.85 to 0.38 mIoU
        # (benchmarks/RESULTS.md, recipes and small mask datasets)
        gentle = cfg.strategy == "frozen" or (cfg.strategy in ("two_phase", "gradual")
                                              and cfg.phase2_lr_factor <= GENTLE_FACTOR)
        self.freeze_bn = cfg.bn == "frozen" or (cfg.bn == "auto" and gentle and is_pretrained(backbone))

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
        backbone, head = lr_factors(self.cfg, epoch)
        groups = [backbone * self.cfg.group_lr_decay ** (n - i) if i >= n - k else 0.0 for i in range(n)]
        return [*groups, head]

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

    def set_bn_mode(self) -> None:
        """After ``model.train()``: BatchNorm of frozen groups (``set_bn_eval``) and, with
        ``bn: frozen``, of every backbone group in inference mode, keeping its statistics."""
        for group in self.groups:
            if self.freeze_bn:
                group.apply(lambda m: m.eval() if isinstance(m, nn.modules.batchnorm._BatchNorm) else None)
            else:
                set_bn_eval(group)

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

    def schedule_starts(self, epochs: int) -> list[int]:
        """Epochs at which the LR schedule starts again: every change of the plan, except
        gradual with ``gradual_schedule: once`` (one schedule after the frozen epochs, blocks
        joining it as it goes; segmentation's default: a decoder restarted at every block
        swung from epoch to epoch)."""
        starts = self.phase_starts(epochs)
        if self.cfg.strategy == "gradual" and self.cfg.gradual_schedule == "once":
            starts = starts[:1] if switched(self.cfg, 0) else starts[:2]
        return starts

    def phase_of(self, epoch: int, epochs: int) -> tuple[int, int]:
        """(first epoch, number of epochs) of the schedule ``epoch`` is in (see
        :meth:`schedule_starts`): warmup and decay run once in it."""
        starts = [*self.schedule_starts(epochs), epochs]
        start = max(s for s in starts[:-1] if s <= epoch)
        return start, starts[starts.index(start) + 1] - start

    def warmup_steps(self, phase_start: int, phase_steps: int, configured: int) -> int:
        """The first phase warms up as configured; a phase after a switch at least
        ``phase_warmup`` of its steps (the newly trainable groups start with empty optimiser
        state, and a cold start at the peak LR is what wrecks a trained head)."""
        if phase_start == 0:
            return configured
        return max(configured, math.ceil(self.cfg.phase_warmup * phase_steps))

    def table(self, epochs: int, base_lr: float, *, steps_per_epoch: int | None = None) -> str:
        """The dry-run: layer groups (consecutive alike ones folded), trainable or frozen, BN
        mode, peak LR and size, per phase, with each phase's schedule."""
        fixed = any(isinstance(m, FrozenBatchNorm2d) for g in self.groups for m in g.modules())
        if fixed:
            first = ("BatchNorm of the backbone: torchvision's FrozenBatchNorm2d, statistics and affine fixed, as in its "
                     "detection models (finetune.bn=train keeps ordinary BatchNorm)")
        elif not self.normalised:
            first = (f"the backbone has no BatchNorm; full / last_n train it at {self.cfg.backbone_lr_factor:g} × "
                     "the LR (finetune.backbone_lr_factor)")
        elif self.freeze_bn:
            first = "BatchNorm of the backbone: pretrained statistics kept, also in trainable groups (finetune.bn)"
        else:
            first = "BatchNorm of the backbone: batch statistics in trainable groups (finetune.bn)"
        lines = [first]
        averaged = [e for e in range(epochs) if averages(self.cfg, e)]
        if averaged:
            when = "from the first step" if self.cfg.ema_from == "start" else "after the switch"
            lines.append(f"validation and checkpoints use a running average of the weights {when} "
                         f"(epoch {averaged[0] + 1} on; half-life {self.cfg.ema:g} epoch, finetune.ema)")
        plan = [*self.phase_starts(epochs), epochs]
        restarts = self.schedule_starts(epochs)
        for start, end in zip(plan, plan[1:]):
            scales = self.scales(start)
            sched = f"epoch {end}" if end - start == 1 else f"epochs {start + 1}–{end}"
            _, length = self.phase_of(start, epochs)
            if start not in restarts:
                sched += "; the LR schedule carries on"
            elif steps_per_epoch:
                warm = self.warmup_steps(start, length * steps_per_epoch, 0)
                sched += f", {length * steps_per_epoch} optimiser steps"
                if length != end - start:
                    sched += f" in one schedule to epoch {start + length}"
                if start:
                    sched += f"; the LR schedule restarts (warmup {warm} steps, then decays)"
            lines.append(f"from epoch {start + 1} ({self.cfg.strategy}): {sched}")
            lines.append(f"  {'group':18}{'params':>12}  {'trainable':11}{'BatchNorm':15}{'peak lr':>10}")
            rows = []
            for i, group in enumerate(self.groups):
                n = sum(p.numel() for p in group.parameters())
                has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in group.modules())
                on = scales[i] > 0
                bn = ("-" if not has_bn else "eval (frozen)" if not on else "eval (kept)" if self.freeze_bn
                      else "train")
                if any(isinstance(m, FrozenBatchNorm2d) for m in group.modules()):
                    bn = "fixed"
                rows.append([i, i, n, "yes" if on else "no", bn, base_lr * scales[i]])
            folded = []
            for row in rows:  # consecutive groups alike (trainable, BatchNorm, LR) fold into one line
                prev = folded[-1] if folded else None
                if prev and prev[3:] == row[3:]:
                    prev[1], prev[2] = row[1], prev[2] + row[2]
                else:
                    folded.append(row)
            for first, last, n, on, bn, lr in folded:
                name = f"backbone.{first}" if first == last else f"backbone.{first}-{last}"
                lines.append(f"  {name:18}{n:>12,}  {on:11}{bn:15}{lr:>10.3g}")
            n_head = sum(p.numel() for p in self.head)
            lines.append(f"  {'head':18}{n_head:>12,}  {'yes':11}{'-':15}{base_lr * scales[-1]:>10.3g}")
        return "\n".join(lines)

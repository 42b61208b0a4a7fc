"""The engine's config sections, shared by every task: ``optim``, ``train`` and ``finetune``.

Plain dataclasses with no heavy imports, so a task's config (and ``visiontl train TASK
--help``) loads without torch. Each field's trailing comment is its documentation."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union


@dataclass
class OptimConfig:
    name: Literal["adamw", "adam", "sgd"] = "adamw"  # optimiser
    lr: Union[float, Literal["auto"]] = 1e-3  # auto: a learning-rate range test before training
    weight_decay: float = 1e-4  # decoupled for adamw; not applied to norms and biases
    momentum: float = 0.9  # sgd only
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"  # learning-rate schedule over all steps
    warmup_epochs: float = 0.0  # linear warmup from 0 (fractions allowed)
    min_lr_ratio: float = 0.01  # the schedule's final LR as a fraction of optim.lr


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training set
    batch_size: int = 32  # images per optimiser step (× accumulate)
    num_workers: int = 2  # data-loading processes; 0 = in the training process
    device: str = "auto"  # auto | cpu | cuda | cuda:1
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 (or fp16 + scaler) on CUDA, off on CPU
    channels_last: bool = True  # NHWC memory layout (faster convolutions on CPU and CUDA)
    compile: bool = False  # torch.compile the model
    grad_clip: float = 0.0  # max global grad norm; 0 = off
    accumulate: int = 1  # optimiser step every N batches
    min_steps_per_epoch: int = 4  # a tiny dataset gets a smaller batch so an epoch has at least this many steps
    monitor: str = ""  # metric for best.pt and early stopping, e.g. val/f1 or val/loss; "" = the task's default
    early_stop_patience: int = 0  # epochs without improvement of the monitored metric; 0 = off
    seed: int = 0  # seeds initialisation, the split, shuffling and augmentation
    out_dir: str = "runs"  # folder that holds the run directories
    name: str = ""  # run directory name; default <task>-<date>-<time>
    resume: str = ""  # a last.pt to continue from (into its run directory)
    tensorboard: bool = False  # also write TensorBoard event files
    progress: Literal["auto", "bar", "log", "none"] = "auto"  # auto: a bar in a terminal, a line per epoch otherwise


@dataclass
class DistillConfig:
    teacher: str = ""  # a trained model's best.pt of the same task and classes; "" = no distillation
    temperature: float = 4.0  # softens both class distributions (Hinton et al.)
    weight: float = 0.5  # share of the teacher's soft term in the loss; the labels' term gets 1 - weight


@dataclass
class FinetuneConfig:
    strategy: Literal["frozen", "last_n", "full", "two_phase", "gradual", "auto"] = "frozen"  # what trains, when
    last_n: Union[int, Literal["all"]] = -1  # backbone blocks that train (last_n; two_phase after the switch); -1: the top 40 %; all: every block
    head_epochs: int = 2  # two_phase: epochs with the backbone frozen
    phase2: Literal["gentle", "full"] = "gentle"  # two_phase after the switch: gentle (last_n blocks at phase2_lr_factor, head at phase2_head_lr_factor) or full (all at the LR)
    phase2_lr_factor: float = 0.05  # after a frozen phase (gentle): the backbone groups' LR multiplier
    phase2_head_lr_factor: float = 0.5  # after a frozen phase (gentle): the head's LR multiplier
    gradual_schedule: Literal["per_block", "once"] = "per_block"  # gradual: an LR schedule (warmup, decay) per unfrozen block, or one for all of them
    phase_warmup: float = 0.3  # fraction of each phase after a switch spent warming the LR up
    ema: float = 0.25  # half-life (epochs) of the weight average validated and saved (from ema_from on); 0 = off
    ema_from: Literal["switch", "start"] = "switch"  # when the average begins: after a switch, or at the first step
    backbone_lr_factor: float = -1.0  # full / last_n: the backbone's LR multiplier; -1: auto (1, or 0.1 without BatchNorm)
    bn: Literal["auto", "frozen", "train"] = "auto"  # backbone BatchNorm; auto: frozen if pretrained and trained gently (frozen, or a gentle phase 2 at phase2_lr_factor ≤ 0.1), else train
    milestones: list[int] = field(default_factory=list)  # gradual: epochs (0-based) that unfreeze one more group
    group_lr_decay: float = 1.0  # discriminative LRs: top backbone group × d, the next × d², …
    cache: Literal["auto", "off"] = "auto"  # auto: train the head on cached features while the backbone is frozen
    cache_views: int = -1  # -1: auto (augmented views when a fine-tuning phase follows); 0: one plain view; K: K views
    cache_dir: str = ""  # default ~/.cache/visiontl/features (VISIONTL_CACHE moves it)

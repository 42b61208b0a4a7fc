"""Knowledge distillation (Hinton et al. 2015): a student trains on a frozen teacher's soft
targets beside the labels. The loss math is a pure function; :class:`Teacher` holds the
frozen teacher a task's ``training_step`` asks for its outputs.

``loss = (1 - w) · task loss + w · T² · KL(softmax(teacher / T) ‖ softmax(student / T))``,
the T² keeping the soft term's gradients on the scale of the hard one's.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .config import DistillConfig


def check_distill(cfg: DistillConfig) -> None:
    if not cfg.temperature > 0:
        raise ValueError(f"distill.temperature={cfg.temperature}: must be positive")
    if not 0 <= cfg.weight <= 1:
        raise ValueError(f"distill.weight={cfg.weight}: must be in [0, 1]")
    if cfg.teacher and not Path(cfg.teacher).expanduser().is_file():
        raise FileNotFoundError(f"distill.teacher={cfg.teacher}: no such checkpoint")


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """T² · KL(teacher ‖ student) of the class distributions at ``temperature``, averaged
    over samples (and pixels where ``mask`` is True).

    Shape: logits (N, C) or (N, C, H, W); mask (N, H, W) for the latter.
    """
    t = temperature
    log_p = F.log_softmax(student.float() / t, dim=1)
    log_q = F.log_softmax(teacher.float() / t, dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum(1)  # per sample (and pixel)
    if mask is not None:
        kl = kl[mask]
    return kl.mean() * t * t if kl.numel() else student.sum() * 0.0


def soft_scores(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """For independent sigmoid class scores (a YOLO-style detector's): T² · the Bernoulli
    KL(teacher ‖ student) of every score at ``temperature``, summed and divided by the sum of
    the teacher's scores, as the detector's own class term is divided by its targets'.

    Shape: logits (N, C, A), A anchors.
    """
    t = temperature
    s, q_logits = student.float() / t, teacher.float() / t
    q = torch.sigmoid(q_logits)
    kl = F.binary_cross_entropy_with_logits(s, q, reduction="sum") - \
        F.binary_cross_entropy_with_logits(q_logits, q, reduction="sum")  # cross-entropy − entropy
    return kl * t * t / torch.sigmoid(teacher.float()).sum().clamp(min=1.0)


def mix(task_loss: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor, cfg: DistillConfig,
        mask: torch.Tensor | None = None) -> torch.Tensor:
    """The student's loss: the task's, and the soft term at weight ``cfg.weight``."""
    return (1 - cfg.weight) * task_loss + cfg.weight * soft_loss(student, teacher, cfg.temperature, mask)


def verdict(student: dict[str, float], teacher: dict[str, float], monitor: str, mode: str) -> str:
    """One line comparing the student's best epoch with its teacher on the same validation
    images, and what to do when the student has caught up: from then on the soft targets pull
    it back toward the teacher (benchmarks/RESULTS.md, compression: on Fashion-MNIST a student
    that reached its teacher alone ended below the labels-only run; on textures, a teacher far
    ahead of the student lifted it by 5.5 points)."""
    key = monitor.removeprefix("val/")
    if key not in student or key not in teacher:
        return ""
    s, t = student[key], teacher[key]
    line = f"teacher on the same validation images: {monitor} {t:.4f}; the student's best epoch: {s:.4f}"
    if (s >= t) if mode == "max" else (s <= t):
        line += (" -- the student has caught up with its teacher, whose soft targets now hold it back: "
                 "a stronger teacher, or the student trained on the labels alone (visiontl train), may do better")
    return line


class Teacher:
    """A trained model (``distill.teacher``, a visiontl checkpoint) kept frozen and in eval
    mode; ``teacher(images)`` runs it on the images' device without gradients. It must be
    of the student's task and classes."""

    def __init__(self, checkpoint: str, task: str, classes: list[str]) -> None:
        from ..adapters import load

        adapter = load(checkpoint)
        if adapter.task != task or adapter.classes != list(classes):
            raise ValueError(f"distill.teacher={checkpoint}: a {adapter.task} model of classes {adapter.classes}; "
                             f"the student is a {task} model of classes {list(classes)}")
        if not adapter.supports_distillation:  # a teacher must give what a student of its kind can match
            raise ValueError(f"distill.teacher={checkpoint}: {adapter.describe_model()} cannot teach (no "
                             "distillation for this kind of model)")
        self.model = adapter.model.eval().requires_grad_(False)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if next(self.model.parameters()).device != images.device:
            self.model.to(images.device)
        return self.model(images)

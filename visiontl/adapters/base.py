"""What every task adapter shares: loading a checkpoint, ``fit`` through the engine, the
fine-tuning plan and its dry-run, BatchNorm handling, checkpoint metadata.

A task adapter subclasses :class:`TaskAdapter` and supplies its data (``datasets``), its
model (``_build``), its steps and metrics, ``on_fit_end``, ``evaluate``, ``predict`` and
``export``. The engine (``visiontl.engine.Trainer``) only calls the adapter.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..backbones import BACKBONES, Preprocessing, set_bn_eval
from ..config import from_dict, to_dict
from ..engine import FinetuneConfig, Finetuner, Trainer, load_checkpoint
from ..engine.finetune import choose


class TaskAdapter:
    task = ""
    config_class: type = object
    monitor: tuple[str, str] = ("val/loss", "min")

    def __init__(self, config) -> None:
        self.config = config
        backbone = config.model.backbone
        if backbone and not backbone.startswith("timm:"):
            BACKBONES.get(backbone)  # an unknown name fails now, listing the valid ones
        self.classes: list[str] | None = None
        self.model = None
        self.run_dir: Path | None = None
        self._val_set = None

    @classmethod
    def from_config(cls, config) -> "TaskAdapter":
        return cls(config=config)

    @classmethod
    def load(cls, checkpoint: str | Path) -> "TaskAdapter":
        """A trained model from a ``last.pt``/``best.pt`` (no weights download needed)."""
        ckpt = load_checkpoint(checkpoint)
        meta = ckpt.get("meta", {})
        if meta.get("task") != cls.task:
            raise ValueError(f"{checkpoint}: a {meta.get('task')!r} checkpoint, not a {cls.task!r} one")
        obj = cls(config=from_dict(cls.config_class, meta["config"]))
        obj.classes = list(meta["classes"])
        preprocessing = Preprocessing(**meta["preprocessing"]) if meta.get("preprocessing") else None
        obj._build(weights="none", preprocessing=preprocessing)
        obj.model.load_state_dict(ckpt["model"])
        obj.model.eval()
        obj.run_dir = Path(checkpoint).resolve().parent
        return obj

    # -- what a task supplies ---------------------------------------------------------
    def datasets(self):
        raise NotImplementedError

    def _build(self, weights: str | None = None, preprocessing: Preprocessing | None = None) -> None:
        raise NotImplementedError

    def _num_outputs(self) -> int:
        """Classes the current model predicts (to rebuild it when the data has others)."""
        raise NotImplementedError

    def _set_data(self, data, val) -> None:
        if data is not None:
            self.config.data.train = str(data)
        if val is not None:
            self.config.data.val = str(val)

    def prepare(self, train_set) -> None:
        """Take the classes from the training data; build the model if it has none yet."""
        if self.classes and self.classes != train_set.classes and self.model is not None:
            raise ValueError(f"{self.config.data.train}: classes {train_set.classes} differ from the model's "
                             f"{self.classes}")
        self.classes = list(train_set.classes)
        if self.model is None or self._num_outputs() != len(self.classes):
            self._build()

    # -- training ---------------------------------------------------------------------
    def fit(self, data: str | Path | None = None, *, val: str | Path | None = None, epochs: int | None = None,
            lr: float | None = None, batch_size: int | None = None, image_size: int | None = None,
            out_dir: str | None = None, callbacks: tuple = ()) -> list[dict]:
        """Train on ``data``; returns the per-epoch metrics. The model keeps the best epoch's
        weights; the run directory is ``self.run_dir``."""
        c = self.config
        self._set_data(data, val)
        for section, key, value in (("train", "epochs", epochs), ("optim", "lr", lr), ("train", "batch_size", batch_size),
                                    ("data", "image_size", image_size), ("train", "out_dir", out_dir)):
            if value is not None:
                setattr(getattr(c, section), key, value)
        train_set, val_set = self.datasets()
        self.prepare(train_set)
        self._val_set = val_set
        finetune, why = self.resolve_finetune(len(train_set))
        if c.finetune.strategy == "auto":
            print(why, file=sys.stderr)
        trainer = Trainer(self, c.train, c.optim, finetune=finetune, callbacks=callbacks)
        history = trainer.fit(train_set, val_set)
        self.run_dir = trainer.run_dir
        return history

    def resolve_finetune(self, n_images: int) -> tuple[FinetuneConfig, str]:
        """The configured strategy, with ``auto`` decided from the data, and why."""
        return choose(self.config.finetune, n_images=n_images, n_classes=len(self.classes),
                      n_groups=len(Finetuner(self.config.finetune, self.model).groups))

    def plan(self, data: str | Path | None = None) -> str:
        """The dry-run: the fine-tuning plan per phase (groups, trainable, BN mode, LR, size),
        without training. Example: ``print(Classifier(strategy="two_phase").plan("data/"))``"""
        self._set_data(data, None)
        train_set, _ = self.datasets()
        self.prepare(train_set)
        ft, why = self.resolve_finetune(len(train_set))
        header = (f"{self.describe_model()}, {len(train_set)} training images, {len(self.classes)} classes; {why}; "
                  f"optim.lr {self.config.optim.lr:g} (before the schedule)")
        return header + "\n" + Finetuner(ft, self.model).table(self.config.train.epochs, self.config.optim.lr)

    def describe_model(self) -> str:
        return f"{self.config.model.backbone} ({self.model.backbone.weights_source})"

    # -- what the engine calls ----------------------------------------------------------
    def train_mode(self, model) -> None:
        model.train()
        set_bn_eval(model)  # frozen BatchNorm keeps its running statistics

    def checkpoint_meta(self) -> dict:
        backbone = getattr(self.model, "backbone", None)
        return {"task": self.task, "config": to_dict(self.config), "classes": self.classes,
                "backbone": self.config.model.backbone,
                "preprocessing": backbone.preprocessing.to_dict() if backbone is not None else None,
                "weights_source": backbone.weights_source if backbone is not None else None}

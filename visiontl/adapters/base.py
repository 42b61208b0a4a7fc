"""What every task adapter shares: loading a checkpoint, ``fit`` through the engine, the
fine-tuning plan and its dry-run, BatchNorm handling, checkpoint metadata.

A task adapter subclasses :class:`TaskAdapter` and supplies its data (``datasets``), its
model (``_build``), its steps and metrics, ``on_fit_end``, ``evaluate``, ``predict`` and
``export``. The engine (``visiontl.engine.Trainer``) only calls the adapter.
"""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .. import plots
from ..backbones import BACKBONES, Preprocessing, set_bn_eval
from ..config import from_dict, to_dict
from ..engine import FinetuneConfig, Finetuner, Trainer, load_checkpoint
from ..engine.finetune import choose
from ..engine.trainer import to_device


class TaskAdapter:
    task = ""
    config_class: type = object
    monitor: tuple[str, str] = ("val/loss", "min")

    def __init__(self, config=None, *, backbone: str = "", weights: str = "", strategy: str = "") -> None:
        """``config`` as given, or the task's defaults with the keyword arguments applied."""
        if config is None:
            config = self.config_class()
            config.model = replace(config.model, **({"backbone": backbone} if backbone else {}),
                                   **({"weights": str(weights)} if weights else {}))
            if strategy:
                config.finetune = replace(config.finetune, strategy=strategy)
        self.config = config
        backbone = config.model.backbone
        if backbone and not backbone.startswith("timm:"):
            BACKBONES.get(backbone)  # an unknown name fails now, listing the valid ones
        self.classes: list[str] | None = None
        self.model = None
        self.run_dir: Path | None = None
        self._val_set = None
        self.checkpoint: dict | None = None

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
        obj.checkpoint = meta  # what _build may need besides the config (e.g. an architecture)
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

    def eval_dataset(self, data):
        """A dataset of ``data`` (a path in one of the task's formats) with the evaluation transform."""
        raise NotImplementedError

    def _write_eval(self, out_dir: Path, data) -> None:
        """The task's evaluation plots and tables of the last validation pass."""
        raise NotImplementedError

    summary_files = "config.yaml last.pt best.pt metrics.csv curves.png"

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
        t = self.config.train
        steps = math.ceil(math.ceil(len(train_set) / t.batch_size) / t.accumulate)
        return header + "\n" + Finetuner(ft, self.model).table(t.epochs, self.config.optim.lr, steps_per_epoch=steps)

    def describe_model(self) -> str:
        return f"{self.config.model.backbone} ({self.model.backbone.weights_source})"

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, data, *, out_dir: str | Path | None = None, batch_size: int = 32) -> dict[str, float]:
        """The task's metrics on ``data`` (a path or a dataset); with ``out_dir`` also its
        plots and tables (confusion matrix or PR curve, per-class numbers, a prediction grid)."""
        if isinstance(data, (str, Path)):
            data = self.eval_dataset(data)
        device = next(self.model.parameters()).device
        self.model.eval()
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, collate_fn=self.collate,
                                             num_workers=min(2, self.config.train.num_workers))
        metrics = self.validation_metrics([self.validation_step(self.model, to_device(b, device, False))
                                           for b in loader])
        if out_dir is not None:
            self._write_eval(Path(out_dir), data)
        return metrics

    def on_fit_end(self, run_dir: Path, history: list[dict], elapsed: float, final: dict | None = None) -> None:
        """Plots, numbers and ``summary.txt``. The engine has restored the best epoch's weights
        and validated them (``final``), so the evaluation plots need no new pass."""
        plots.curves(history, run_dir / "curves.png")
        lines = [f"visiontl {self.task} run: {run_dir}",
                 f"model {self.describe_model()}, fine-tuning {self.config.finetune.strategy}, "
                 + (f"{len(self.classes)} classes, " if self.classes else "") + f"{self.config.data.image_size} px", f"epochs {len(history)}, {elapsed:.1f} s"]
        if self._val_set is not None:
            metrics = final if final is not None else self.evaluate(self._val_set)
            self._write_eval(run_dir, self._val_set)
            lines.append("best checkpoint on validation: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            lines.append(self.best_vs_last(history)[1])
        lines.append(f"files: {self.summary_files}")
        (run_dir / "summary.txt").write_text("\n".join(lines) + "\n")

    def best_vs_last(self, history: list[dict]) -> tuple[dict, str]:
        """Which epoch ``best.pt`` holds, with a warning when the last epoch is far below it."""
        from ..report import best_vs_last

        monitor = self.config.train.monitor
        monitor, mode = (monitor, "min" if "loss" in monitor else "max") if monitor else self.monitor
        return best_vs_last(history, monitor, mode)

    # -- what the engine calls ----------------------------------------------------------
    def train_mode(self, model) -> None:
        model.train()
        set_bn_eval(model)  # frozen BatchNorm keeps its running statistics

    def checkpoint_meta(self) -> dict:
        backbone = getattr(self.model, "backbone", None)
        preprocessing = getattr(backbone, "preprocessing", None)  # None: the model normalises itself
        return {"task": self.task, "config": to_dict(self.config), "classes": self.classes,
                "backbone": self.config.model.backbone,
                "preprocessing": preprocessing.to_dict() if preprocessing is not None else None,
                "weights_source": getattr(backbone, "weights_source", None)}

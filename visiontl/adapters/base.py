"""What every task adapter shares: loading a checkpoint, ``fit`` through the engine, the
fine-tuning plan and its dry-run, BatchNorm handling, checkpoint metadata.

A task adapter subclasses :class:`TaskAdapter` and implements the contract declared below
(its data, its model on a backbone, its steps and metrics, its plots, predict and export).
The engine (``visiontl.engine.Trainer``) only calls the adapter.
"""
from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from .. import export, plots
from ..backbones import Preprocessing, check_backbone_name, check_input_size, create_backbone, set_bn_eval
from ..config import from_dict, to_dict
from ..export import ExportGraph
from .compress import Compression
from .viewing import Viewing
from ..results import Results
from ..engine import (Finetuner, Trainer, Validation, check_settings, evaluate, load_checkpoint,
                      seeded)
from ..engine import distill, prune
from ..engine.distill import Teacher
from ..engine.finetune import choose, normalised
from ..engine.lr_finder import LRFinderResult, lr_find
from ..engine.settings import check_task_config, fit_batch_size, resolve_monitor
from ..report import best_vs_last, write_summary


class TaskAdapter(Compression, Viewing):
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
        if backbone:
            check_backbone_name(backbone)  # an unknown name fails now, listing the valid ones
        self.classes: list[str] | None = None
        self.model = None
        self.run_dir: Path | None = None
        self._val_set = None
        self.checkpoint: dict | None = None
        self.teacher = None  # distillation's frozen teacher, set by prepare when distill.teacher is given
        self.pruned: dict | None = None  # a pruned model's record (engine/prune.py), kept in its checkpoints

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
        obj.checkpoint = {**meta, "file": str(checkpoint)}  # what _build may need besides the config
        obj.pruned = meta.get("pruned")
        preprocessing = Preprocessing(**meta["preprocessing"]) if meta.get("preprocessing") else None
        obj._build(weights="none", preprocessing=preprocessing)
        obj.model.load_state_dict(ckpt["model"])
        if getattr(obj.model, "backbone", None) is not None and meta.get("weights_source"):
            obj.model.backbone.weights_source = meta["weights_source"]  # where its training started
        obj.model.eval()
        obj.run_dir = Path(checkpoint).resolve().parent
        return obj

    def check_config(self) -> None:
        """Values no run can use, named by their key, before any data is read: the engine's
        and the data, loss and distillation keys tasks share (``check_task_config``)."""
        check_settings(self.config.train, self.config.optim)
        check_task_config(self.config)
        if self.uses_backbone and self.config.model.backbone:
            check_input_size(self.config.model.backbone, self.config.data.image_size)

    # -- the task contract: everything the engine and the command line call ---------------
    # A task implements the hooks that raise NotImplementedError; the others have defaults.
    # Optional capabilities are declared by a flag, never detected with hasattr.
    def datasets(self):
        """``(train, val or None)`` from ``config.data``; each has ``classes`` (names)."""
        raise NotImplementedError

    uses_backbone = True  # make_model gets a registry backbone (False: it builds its own network)

    def make_model(self, backbone) -> torch.nn.Module:
        """The task's model for ``self.classes`` on ``backbone`` (None where ``uses_backbone``
        is False); also sets up the task's loss if it depends on the model."""
        raise NotImplementedError

    collate = None  # how the DataLoader batches samples; None: torch's default

    def training_step(self, model, batch) -> dict:
        """One batch → ``{"loss": scalar, ...}``; the engine calls ``backward()`` on the loss."""
        raise NotImplementedError

    def validation_step(self, model, batch) -> dict:
        """One batch → whatever ``validation_metrics`` needs (sums, counts, predictions)."""
        raise NotImplementedError

    def validation_metrics(self, outputs: list[dict]) -> Validation:
        """All ``validation_step`` outputs → the metrics and the details the plots need."""
        raise NotImplementedError

    def eval_dataset(self, data):
        """A dataset of ``data`` (a path in one of the task's formats) with the evaluation transform."""
        raise NotImplementedError

    def write_evaluation(self, out_dir: Path, data, details) -> None:
        """The task's evaluation plots and tables from a validation pass's ``details`` (what
        its ``validation_metrics`` returned beside the numbers)."""
        raise NotImplementedError

    predict_options: tuple[str, ...] = ()  # keyword options of predict_to the CLI passes on

    def predict(self, inputs, *, out_dir: str | Path | None = None, **options) -> Results:
        """Predictions for an image (a file, an array, a PIL image), a folder, or a list of
        these: one result per input (visiontl/results.py: a dict with ``path``, and the
        task's numbers, or an ``error`` for an unreadable input). With ``out_dir``, the task's
        files (``prediction_files``) are written there."""
        raise NotImplementedError

    prediction_files = ""  # what predict writes into out_dir, in words

    def describe_prediction(self, result: dict) -> str:
        """One input's prediction on one line, for ``visiontl predict``."""
        raise NotImplementedError

    def export_graph(self, net: torch.nn.Module) -> ExportGraph:
        """``net`` (the model on the CPU, in eval mode) as the graph ``export`` writes, with
        what its outputs hold."""
        raise NotImplementedError

    supports_int8 = False  # export(int8=True): a static int8 ONNX model, scored against the float one
    supports_deploy_report = True  # export --report: its ONNX graph is timed at batch 32 and scored by the task
    # (calibrated on sample_paths of the training data; scored by validation_step through onnx_outputs)

    def onnx_outputs(self, outputs: list[torch.Tensor]):
        """The exported graph's outputs as the task's model returns them (its first, by default)."""
        return outputs[0]

    def export(self, out_dir: str | Path, *, formats=("onnx", "torchscript"), int8: bool = False) -> dict:
        """``model.onnx`` (checked with onnxruntime against PyTorch), ``model.torchscript.pt``
        and ``model.json`` saying what goes in and what comes out; with ``int8`` (where the task
        has it) also ``model.int8.onnx``. Returns the metadata."""
        return export.export_task(self, out_dir, formats=formats, int8=int8)

    # optional: distillation and pruning, declared in compress.Compression (supports_distillation,
    # supports_pruning and their hooks)

    # optional: the frozen-feature cache (visiontl/engine/feature_cache.py). A task that sets
    # supports_feature_cache lets the engine train its head on cached backbone features
    # while the backbone is frozen; it then implements the five hooks below.
    supports_feature_cache = False
    feature_layer = ""  # which features are cached, in words (part of the cache key)

    def feature_encoder(self, model):
        """Images → the features the head needs from the frozen backbone."""
        raise NotImplementedError

    def feature_head(self, model) -> torch.nn.Module:
        """The part of ``model`` that trains on cached features."""
        raise NotImplementedError

    def cache_sources(self, train_set, val_set):
        """(dataset, transform description) for plain training, augmented training and plain
        validation images."""
        raise NotImplementedError

    def sample_paths(self, data) -> list[Path]:
        """The image file of each sample of ``data`` (feature-cache keys, int8 calibration)."""
        raise NotImplementedError

    def sample_labels(self, data) -> list:
        raise NotImplementedError

    def _set_data(self, data, val) -> None:
        if data is not None:
            self.config.data.train = str(data)
        if val is not None:
            self.config.data.val = str(val)

    def prepare(self, train_set) -> None:
        """Take the classes from the training data (``[]`` for a task without classes); build
        the model if there is none yet. A task extends it with what depends on the data
        (class weights, its loss) around ``super().prepare``."""
        if self.classes and self.classes != train_set.classes and self.model is not None:
            raise ValueError(f"{self.config.data.train}: classes {train_set.classes} differ from the model's "
                             f"{self.classes}")
        self.classes = list(train_set.classes)
        if self.model is None:
            if self.config.train.resume and self.pruned is None:  # resuming a pruned run: its shapes
                self.pruned = load_checkpoint(self.config.train.resume).get("meta", {}).get("pruned")
            self._build()
        self.teacher = None
        if self.supports_distillation and self.config.distill.teacher:  # its outputs in training_step
            self.teacher = Teacher(self.config.distill.teacher, self.task, self.classes)
        if (self.teacher or self.pruned) and self.config.finetune.cache != "off":
            # the teacher needs the images; a pruned backbone's features are not the cached ones
            self.config.finetune = replace(self.config.finetune, cache="off")

    def _build(self, weights: str | None = None, preprocessing: Preprocessing | None = None) -> None:
        """The one place a model is made: seeded by ``train.seed`` (the caller's random state
        is kept), on the registry backbone with ``weights`` (default ``model.weights``) and the
        checkpoint's ``preprocessing``, and frozen as its first epoch will train it."""
        m = self.config.model
        with seeded(self.config.train.seed):
            backbone = None
            if self.uses_backbone:
                backbone = create_backbone(m.backbone, weights=weights or m.weights)
                if preprocessing is not None:
                    backbone.preprocess.set(preprocessing)
            self.model = self.make_model(backbone)
        if self.pruned:
            prune.reshape(self.model, self.pruned["structure"])
            prune.refresh_feature_info(self.model)
        if self.config.finetune.strategy != "auto":
            Finetuner(self.config.finetune, self.model).apply(0)

    # -- training ---------------------------------------------------------------------
    def fit(self, data: str | Path | None = None, *, val: str | Path | None = None, epochs: int | None = None,
            lr: float | str | None = None, batch_size: int | None = None, image_size: int | None = None,
            out_dir: str | None = None, callbacks: tuple = ()) -> list[dict]:
        """Train on ``data``; returns the per-epoch metrics. The model keeps the best epoch's
        weights; the run directory is ``self.run_dir``."""
        c = self.config
        self._set_data(data, val)
        # each argument is the config key of the same name; the run's config.yaml records it
        if epochs is not None:
            c.train.epochs = epochs
        if batch_size is not None:
            c.train.batch_size = batch_size
        if out_dir is not None:
            c.train.out_dir = str(out_dir)
        if lr is not None:
            c.optim.lr = lr
        if image_size is not None:
            c.data.image_size = image_size
        self.check_config()
        train_set, val_set = self.datasets()
        self.prepare(train_set)
        self._val_set = val_set
        finetuner, why = self.resolve_finetune(len(train_set))  # the run's one plan: lr_find and the engine share it
        strategy = finetuner.cfg.strategy
        if c.finetune.strategy == "auto" or "warning:" in why:
            print(why, file=sys.stderr)
        self._strategy = strategy if c.finetune.strategy == strategy else f"auto → {strategy}"
        found = None
        if c.optim.lr == "auto":  # a range test picks it, on the first phase of the plan
            found = self._lr_find(train_set, finetuner)
            if not math.isfinite(found.suggestion):
                raise ValueError("optim.lr=auto: the learning-rate range test found no descent; set optim.lr")
            c.optim.lr = float(f"{found.suggestion:.3g}")
            print(f"optim.lr=auto → {c.optim.lr:g} (learning-rate range test, {len(found.lrs)} steps)", file=sys.stderr)
        trainer = Trainer(self, c.train, c.optim, finetuner=finetuner, callbacks=callbacks)
        try:
            history = trainer.fit(train_set, val_set)
        except BaseException:
            trainer.discard_unstarted()
            raise
        self.run_dir = trainer.run_dir
        if found is not None and trainer.run_dir is not None:
            found.plot(trainer.run_dir / "lr_find.png")
        return history

    def lr_find(self, data: str | Path | None = None, *, image_size: int | None = None,
                batch_size: int | None = None, start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
                out_dir: str | Path | None = None) -> LRFinderResult:
        """Learning-rate range test (fastai's ``lr_find``) on the first phase of the
        fine-tuning plan; the model is left as it was. ``result.suggestion`` is the LR,
        ``result.plot(path)`` draws loss against LR (written to ``out_dir/lr_find.png``).

        Example: ``Classifier().lr_find("data/flowers", out_dir=".").suggestion``"""
        self._set_data(data, None)
        if image_size is not None:
            self.config.data.image_size = image_size
        if batch_size is not None:
            self.config.train.batch_size = batch_size
        train_set, _ = self.datasets()
        self.prepare(train_set)
        finetuner, _ = self.resolve_finetune(len(train_set))
        result = self._lr_find(train_set, finetuner, start_lr=start_lr, end_lr=end_lr, steps=steps)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            result.plot(Path(out_dir) / "lr_find.png")
        return result

    def _lr_find(self, train_set, finetuner: Finetuner, **kwargs) -> LRFinderResult:
        c = self.config
        return lr_find(self, train_set, train=c.train, optim=replace(c.optim, lr=1.0), finetuner=finetuner, **kwargs)

    def resolve_finetune(self, n_images: int) -> tuple[Finetuner, str]:
        """The fine-tuning plan for ``self.model``: the configured strategy, with ``auto``
        decided from the data, and why."""
        backbone = getattr(self.model, "backbone", None)  # a model without one is all head
        cfg, why = choose(self.config.finetune, n_images=n_images, n_classes=len(self.classes or ()),
                          n_groups=len(list(backbone.layer_groups())) if backbone is not None else 0,
                          has_norm=normalised(backbone), epochs=self.config.train.epochs,
                          image_size=getattr(getattr(self.config, "data", None), "image_size", None) or None)
        return Finetuner(cfg, self.model), why

    def plan(self, data: str | Path | None = None) -> str:
        """The dry-run: the fine-tuning plan per phase (groups, trainable, BN mode, LR, size),
        without training. Example: ``print(Classifier(strategy="two_phase").plan("data/"))``"""
        self._set_data(data, None)
        self.check_config()
        train_set, _ = self.datasets()
        self.prepare(train_set)
        finetuner, why = self.resolve_finetune(len(train_set))
        classes = f", {plots.counted(len(self.classes), 'class')}" if self.classes else ""
        header = (f"{self.describe_model()}, {len(train_set)} training images{classes}; {why}; "
                  f"optim.lr {self.config.optim.lr} (before the schedule)")
        t = self.config.train
        batch, why = fit_batch_size(t, len(train_set))
        if why:
            header += "\n" + why
        steps = math.ceil(math.ceil(len(train_set) / batch) / t.accumulate)
        lr = self.config.optim.lr
        if lr == "auto":
            header += " — found by a range test before training; the peak LRs below are for lr 1"
        return header + "\n" + finetuner.table(t.epochs, 1.0 if lr == "auto" else lr, steps_per_epoch=steps)

    def describe_model(self) -> str:
        pruned = f", pruned to {self.pruned['macs'][1] / self.pruned['macs'][0]:.0%} of its MACs" if self.pruned else ""
        return f"{self.config.model.backbone} ({self.model.backbone.weights_source}{pruned})"

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, data, *, out_dir: str | Path | None = None, batch_size: int = 32,
                 tta: bool = False) -> dict[str, float]:
        """The task's metrics on ``data`` (a path or a dataset), with ``tta`` over the merged
        views of tta.py; with ``out_dir`` also its plots and tables (confusion matrix or PR
        curve, per-class numbers, a prediction grid)."""
        if isinstance(data, (str, Path)):
            data = self.eval_dataset(data)
        result = self._validate(data, batch_size, self.tta_model() if tta else None)
        if out_dir is not None:
            self.write_evaluation(Path(out_dir), data, result.details)
        return result.metrics

    def _validate(self, data, batch_size: int = 32, model: torch.nn.Module | None = None) -> Validation:
        """One pass of the engine's evaluation loop over the dataset ``data``, with this
        adapter's model or ``model`` (an exported one: export.OnnxModel, on the CPU)."""
        model = model if model is not None else self.model
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, collate_fn=self.collate,
                                             num_workers=min(2, self.config.train.num_workers))
        device = next(model.parameters(), torch.empty(0)).device  # a model without parameters: the CPU
        return evaluate(self, model, loader, device=device, amp=self.config.train.amp)

    def on_fit_end(self, run_dir: Path, history: list[dict], elapsed: float, final: Validation | None = None) -> None:
        """Plots, numbers and ``summary.txt``. The engine has restored the best epoch's weights
        and validated them (``final``), so the evaluation plots need no new pass."""
        plots.curves(history, run_dir / "curves.png")
        lines = [f"visiontl {self.task} run: {run_dir}",
                 f"model {self.describe_model()}, fine-tuning {getattr(self, '_strategy', self.config.finetune.strategy)}, "
                 + (f"{plots.counted(len(self.classes), 'class')}, " if self.classes else "") + f"{self.config.data.image_size} px", f"epochs {len(history)}, {elapsed:.1f} s"]
        if self._val_set is not None:
            final = final if final is not None else self._validate(self._val_set)
            self.write_evaluation(run_dir, self._val_set, final.details)
            lines.append("best checkpoint on validation: " + ", ".join(f"{k} {v:.4f}" for k, v in final.metrics.items()))
            lines.append(self.best_vs_last(history)[1])
            if self.teacher is not None:  # is the teacher still ahead? (else it holds the student back)
                taught = distill.verdict(final.metrics, self._validate(self._val_set, model=self.teacher.model).metrics,
                                         *resolve_monitor(self.config.train.monitor, self.monitor))
                if taught:
                    print(taught)
                    lines.append(taught)
        write_summary(run_dir, lines)

    def best_vs_last(self, history: list[dict]) -> tuple[dict, str]:
        """Which epoch ``best.pt`` holds, with a warning when the last epoch is far below it."""
        return best_vs_last(history, *resolve_monitor(self.config.train.monitor, self.monitor))

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
                "weights_source": getattr(backbone, "weights_source", None), "pruned": self.pruned}

"""The shared training loop. The task adapter says *what* (model, step, metrics); this
file says *how* (device, precision, DDP, schedule, checkpoints, logging)."""
from __future__ import annotations

import contextlib
import math
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from ..config import save_config
from . import distributed as dist
from .distributed import amp_dtype, to_device
from . import ema
from .finetune import FinetuneConfig, Finetuner, averages, follows_switch
from .checkpoint import link_atomic, load_checkpoint, rng_state, save_atomic, seed_everything, set_rng_state
from .logger import MetricsLogger, Progress, duration, read_metrics
from .schedules import get_lr
from .config import OptimConfig, TrainConfig
from .settings import build_optimizer, check_run_name, check_settings, fit_batch_size, resolve_monitor


class Trainer:
    """Runs ``adapter`` on data: ``Trainer(adapter, train_cfg, optim_cfg).fit(train_set, val_set)``.

    ``callbacks`` are called as ``cb(trainer, metrics)`` after each epoch's checkpoint.
    """

    def __init__(self, adapter, train: TrainConfig, optim: OptimConfig, *, finetuner: Finetuner | None = None,
                 callbacks: tuple[Callable, ...] = ()) -> None:
        check_settings(train, optim)
        self.adapter, self.cfg, self.optim_cfg, self.callbacks = adapter, train, optim, callbacks
        # the run's fine-tuning plan over adapter.model (default: everything trains)
        self.finetuner = finetuner or Finetuner(FinetuneConfig(strategy="full"), adapter.model)
        self.device = dist.select_device(train.device)
        self.run_dir: Path | None = None
        self.history: list[dict] = []
        self.batch_size = train.batch_size  # fit() may lower it for a tiny dataset (fit_batch_size)
        self.average = self._average_state = None  # the weights' running average after a switch (ema.py)
        self._cached = None  # (head, train loader, val loader) over cached features, once computed
        self._made_run_dir = False  # this run created its directory (so it may remove it unused)

    # -- set-up -----------------------------------------------------------------------
    def _run_dir(self) -> Path:
        if self.cfg.resume:
            return Path(self.cfg.resume).resolve().parent
        name = check_run_name(self.cfg.name) or f"{self.adapter.task}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = Path(self.cfg.out_dir) / name
        if dist.world_size() > 1:  # every rank must agree on rank 0's directory
            box = [str(path)]
            torch.distributed.broadcast_object_list(box, src=0)
            path = Path(box[0])
        if dist.is_main():
            n = 1
            while path.exists() and not self.cfg.name:  # two runs in the same second
                path, n = Path(self.cfg.out_dir) / f"{name}-{n}", n + 1
            self._made_run_dir = not path.exists()
            if self.cfg.name and (path / "last.pt").exists():
                raise FileExistsError(f"{path}: a run is already there; choose another train.name, "
                                      f"or continue it with train.resume={path / 'last.pt'}")
            path.mkdir(parents=True, exist_ok=True)
        return path

    def discard_unstarted(self) -> None:
        """After a failure before the first checkpoint: the run directory this run created
        held only what it wrote at the start (config.yaml, an empty metrics.csv), so it goes
        rather than stay half made. Anything else in it (a checkpoint, a user's file) keeps it."""
        run = self.run_dir
        if run is None or not self._made_run_dir or not dist.is_main() or not run.is_dir():
            return
        started = {"config.yaml", "metrics.csv"}
        if {p.name for p in run.iterdir()} <= started and not any(read_metrics(run)):
            for name in started:
                (run / name).unlink(missing_ok=True)
            run.rmdir()
            print(f"{run}: removed (the run stopped before its first epoch was saved)", file=sys.stderr)

    def _ran(self, config):
        """The config as it runs: ``finetune.strategy: auto`` written as what it resolved to, so
        config.yaml re-runs the same plan and the summary names it (as ``optim.lr: auto``)."""
        return replace(config, finetune=self.finetuner.cfg) if hasattr(config, "finetune") else config

    def _loader(self, data: Dataset, train: bool, workers: int | None = None) -> DataLoader:
        distributed = train and dist.world_size() > 1
        if distributed:
            sampler = DistributedSampler(data, shuffle=True, seed=self.cfg.seed)
        else:
            sampler = RandomSampler(data, generator=self.generator) if train else SequentialSampler(data)
        # a last training batch of one sample breaks BatchNorm in train mode: drop only that one
        drop_last = train and len(sampler) % self.batch_size == 1
        return DataLoader(
            data, batch_size=self.batch_size, sampler=sampler, drop_last=drop_last,
            num_workers=self.cfg.num_workers if workers is None else workers,
            collate_fn=self.adapter.collate, pin_memory=self.device.type == "cuda",
            generator=self.generator, persistent_workers=False,
        )

    # -- the loop ---------------------------------------------------------------------
    def fit(self, train_set: Dataset, val_set: Dataset | None = None) -> list[dict]:
        cfg, ocfg, adapter, device = self.cfg, self.optim_cfg, self.adapter, self.device
        distributed = dist.setup(device)
        main = dist.is_main()
        seed_everything(cfg.seed)
        self.generator = torch.Generator()
        model = adapter.model.to(device)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.run_dir = run_dir = self._run_dir()
        self.optimizer = optimizer = build_optimizer(self.finetuner.param_groups(), ocfg)
        dtype = amp_dtype(cfg.amp, device)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.batch_size, why = fit_batch_size(cfg, len(train_set) // dist.world_size())
        if why and main:
            print(why, file=sys.stderr)
        train_loader = self._loader(train_set, train=True)
        val_loader = self._loader(val_set, train=False) if val_set is not None else None
        steps_per_epoch = math.ceil(len(train_loader) / cfg.accumulate)
        warmup = int(ocfg.warmup_epochs * steps_per_epoch)
        monitor, mode = resolve_monitor(cfg.monitor, adapter.monitor)
        start_epoch, step, best, stale = 0, 0, None, 0

        if cfg.resume:
            start_epoch, step, best, stale = self._restore(model, optimizer, scaler)
        logger = MetricsLogger(run_dir, cfg.tensorboard) if main else None
        if main:
            for tmp in [*run_dir.glob(".last.pt.*.tmp"), *run_dir.glob(".best.pt.*.tmp")]:
                tmp.unlink(missing_ok=True)  # left by a run killed mid-write: never a finished checkpoint
            if cfg.resume:
                logger.truncate(start_epoch)
                self._catch_up_best(start_epoch, stale)
            elif aside := logger.start_afresh():
                print(f"{run_dir}: an earlier attempt's metrics.csv (no checkpoint) moved to {aside.name}; "
                      "this run starts afresh", file=sys.stderr)
            save_config(self._ran(adapter.config), run_dir / "config.yaml")
        start_time = time.perf_counter()

        phase = None  # what the epochs train: the whole model, or its head on cached features
        epoch_seconds: list[float] = []  # each finished epoch's wall time (training and validation): the run's ETA
        for epoch in range(start_epoch, cfg.epochs):
            # the fine-tuning plan is a function of the epoch: which groups train, at what LR
            changed = self.finetuner.apply(epoch, optimizer)
            # while the backbone is frozen, the head may train on cached features
            use_cache = self.finetuner.cfg.cache != "off" and self.finetuner.backbone_frozen(epoch) \
                and adapter.supports_feature_cache
            if phase is None or changed or phase.cached != use_cache:
                phase = self._phase(model, use_cache, (train_loader, val_loader), train_set, val_set, distributed)
            net, step_model, epoch_train, epoch_val = phase.net, phase.step_model, phase.train, phase.val
            if self.average is None and averages(self.finetuner.cfg, epoch):  # from the switch on
                decay = ema.decay_for(self.finetuner.cfg.ema, steps_per_epoch)
                self.average = ema.start(model, decay, self._average_state)
            # seeding per epoch makes shuffling, augmentation and dropout of an epoch
            # independent of whether the run was resumed
            seed_everything(cfg.seed + epoch)
            self.generator.manual_seed(cfg.seed + epoch)
            if distributed:
                epoch_train.sampler.set_epoch(epoch)
            adapter.train_mode(model)
            self.finetuner.set_bn_mode()
            # each phase has its own warmup and decay: a switch restarts the schedule
            phase_start, phase_epochs = self.finetuner.phase_of(epoch, cfg.epochs)
            phase_steps = phase_epochs * steps_per_epoch
            phase_step = (epoch - phase_start) * steps_per_epoch
            phase_warmup = self.finetuner.warmup_steps(phase_start, phase_steps, warmup)
            # the loss and its named parts (box, cls, dice, …), summed over the epoch's batches
            sums, n_batches, lr, t0 = {"loss": torch.zeros((), device=device)}, 0, ocfg.lr, time.perf_counter()
            if use_cache:
                epoch_train.dataset.new_epoch()  # which augmented view of each image, from this epoch's seed
            batches = Progress(epoch_train, total=len(epoch_train), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                               mode=cfg.progress if main else "none", epochs_after=cfg.epochs - epoch - 1,
                               epoch_seconds=statistics.mean(epoch_seconds) if epoch_seconds else None)
            for i, batch in enumerate(batches):
                batch = to_device(batch, device, cfg.channels_last)
                last_micro = (i + 1) % cfg.accumulate == 0 or i + 1 == len(epoch_train)
                sync = contextlib.nullcontext() if last_micro or not distributed else step_model.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                        out = adapter.training_step(step_model, batch)
                    scaler.scale(out["loss"] / cfg.accumulate).backward()
                if last_micro:
                    lr = get_lr(phase_step, total_steps=phase_steps, base_lr=ocfg.lr, schedule=ocfg.schedule,
                                warmup_steps=phase_warmup, min_lr_ratio=ocfg.min_lr_ratio)
                    self._optimizer_step(model, optimizer, scaler, lr)
                    if self.average is not None:
                        self.average.update_parameters(model)
                    step, phase_step = step + 1, phase_step + 1
                for k, v in out.items():
                    if torch.is_tensor(v) and v.ndim == 0:
                        sums[k] = sums.get(k, 0.0) + v.detach().float()
                n_batches += 1
                if n_batches % 10 == 0:  # reading the loss waits for the device: not every step
                    batches.show(loss=sums["loss"].item() / n_batches, lr=lr)
            if distributed:
                for total in sums.values():
                    torch.distributed.all_reduce(total)
                    total /= dist.world_size()
                for buffer in model.buffers():  # BN statistics: rank 0's, so every rank validates the same model
                    torch.distributed.broadcast(buffer, src=0)
            seen = min(len(epoch_train.sampler), len(epoch_train) * self.batch_size) * dist.world_size()
            lr = max(g["lr"] for g in optimizer.param_groups)  # the head's: what the strategy made of the schedule
            metrics = {"epoch": epoch + 1, "lr": lr,
                       **{f"train/{k}": float(v) / max(n_batches, 1) for k, v in sums.items()},
                       "train/images_per_s": seen / (time.perf_counter() - t0)}
            if epoch_val is not None:
                val = self.evaluate(self._validated(net), epoch_val).metrics
                metrics.update({f"val/{k}": v for k, v in val.items()})
            self.history.append(metrics)

            value = metrics.get(monitor)
            if value is None and val_loader is not None:
                raise KeyError(f"train.monitor: no metric {monitor!r}; this run logs {', '.join(metrics)}")
            improved = value is not None and (best is None or (value > best if mode == "max" else value < best))
            best, stale = (value, 0) if improved else (best, stale + 1)
            if main:
                logger.log(metrics)
                state = {"epoch": epoch + 1, "step": step, "best": best, "stale": stale}
                self._save(model, optimizer, scaler, state, best_too=improved or val_loader is None)
                epoch_seconds.append(time.perf_counter() - t0)
                left = statistics.mean(epoch_seconds) * (cfg.epochs - epoch - 1)
                print(_line(metrics) + (f"  ({duration(epoch_seconds[-1])}; run ~{duration(left)} left)"
                                        if epoch + 1 < cfg.epochs else ""), file=sys.stderr, flush=True)
            dist.barrier()
            for cb in self.callbacks:
                cb(self, metrics)
            if cfg.early_stop_patience and stale >= cfg.early_stop_patience:
                if main:
                    print(f"early stop: {monitor} has not improved for {stale} epochs", file=sys.stderr)
                break

        dist.barrier()
        if (run_dir / "best.pt").is_file():  # every rank ends with the best epoch's weights
            model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
        final = None
        if main and val_loader is not None and phase is not None:  # validate them (cached if possible)
            final = self.evaluate(phase.net, phase.val)
        if main:
            adapter.on_fit_end(run_dir, self.history, elapsed=time.perf_counter() - start_time, final=final)
        dist.barrier()
        return self.history

    def _phase(self, model, use_cache: bool, loaders, train_set, val_set, distributed: bool) -> "_Phase":
        """The network an epoch steps (the model, or its head when the features are cached;
        wrapped for DDP / compile again because which parameters train has changed) and its
        loaders. Cached features are computed once, at the first epoch that uses them."""
        if use_cache and self._cached is None:
            self._cached = self._feature_cache(model, train_set, val_set)
        net, train, val = self._cached if use_cache else (model, *loaders)
        return _Phase(net, self._wrap(net, distributed), train, val, use_cache)

    def _feature_cache(self, model, train_set, val_set):
        """(head module, train loader, val loader) over cached features (feature_cache.py)."""
        from . import feature_cache as fc

        ft = self.finetuner.cfg
        frozen_epochs = sum(1 for e in range(self.cfg.epochs) if self.finetuner.backbone_frozen(e))
        views = ft.cache_views if ft.cache_views >= 0 else fc.auto_views(follows_switch(ft, self.cfg.epochs),
                                                                       frozen_epochs)
        train_cached, val_cached, self.cache_stats = fc.cached_features(
            self.adapter, model, train_set, val_set, root=fc.root_dir(ft.cache_dir), views=views,
            encode_device=self.device, channels_last=self.cfg.channels_last, batch_size=self.cfg.batch_size,
            num_workers=self.cfg.num_workers)
        # features are in memory already: worker processes would only add start-up time
        val_loader = self._loader(val_cached, train=False, workers=0) if val_cached is not None else None
        return self.adapter.feature_head(model), self._loader(train_cached, train=True, workers=0), val_loader

    def _wrap(self, model, distributed: bool):
        """DDP (and torch.compile) see which parameters train only when they wrap the model:
        wrap again whenever the fine-tuning plan changes that."""
        device = self.device
        if distributed:
            model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        return torch.compile(model) if self.cfg.compile else model

    def _optimizer_step(self, model, optimizer, scaler, lr: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        if self.cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def _validated(self, model):
        """The weights that are validated and saved: the running average after a switch."""
        return self.average.module if self.average is not None else model

    def _save(self, model, optimizer, scaler, state: dict, best_too: bool) -> None:
        """``last.pt`` (and ``best.pt``): everything an exact resume needs, written atomically.
        ``model`` holds the weights that were validated: the running average after a switch,
        with the optimiser's own weights beside it (``train_model``)."""
        ckpt = {"model": self._validated(model).state_dict(),
                **({"train_model": model.state_dict()} if self.average is not None else {}),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None, **state,
                "history": self.history, "rng": rng_state(), "meta": self.adapter.checkpoint_meta()}
        save_atomic(ckpt, self.run_dir / "last.pt")
        if best_too:
            link_atomic(self.run_dir / "last.pt", self.run_dir / "best.pt")

    def _catch_up_best(self, epoch: int, stale: int) -> None:
        """A run killed between writing ``last.pt`` and linking ``best.pt`` left ``best.pt`` an
        epoch behind: when ``last.pt`` is the best epoch (nothing stale), link it now."""
        best = self.run_dir / "best.pt"
        if stale == 0 and epoch > 0 and (not best.is_file() or load_checkpoint(best).get("epoch") != epoch):
            link_atomic(self.cfg.resume, best)
            print(f"{best}: now epoch {epoch} (the run stopped before linking it)", file=sys.stderr)

    def _restore(self, model, optimizer, scaler) -> tuple[int, int, float | None, int]:
        """Exact resume: weights, optimiser, scaler, counters and RNG from ``train.resume``."""
        ckpt = load_checkpoint(self.cfg.resume)
        meta, mine = ckpt.get("meta", {}), self.adapter.checkpoint_meta()
        for key in ("task", "backbone"):
            if meta.get(key) != mine.get(key):
                raise ValueError(f"train.resume={self.cfg.resume}: a checkpoint of {key} {meta.get(key)!r}, and this "
                                 f"run's {key} is {mine.get(key)!r}; resume with the run's own config.yaml "
                                 f"(-c {Path(self.cfg.resume).parent / 'config.yaml'})")
        try:
            model.load_state_dict(ckpt.get("train_model", ckpt["model"]))
        except RuntimeError as e:  # same task and backbone, another head or width: name it, not 300 keys
            first = str(e).strip().splitlines()[1:2] or [""]
            raise ValueError(f"train.resume={self.cfg.resume}: its weights do not fit this run's model "
                             f"({first[0].strip()[:200]} …); resume with the run's own config.yaml") from None
        self._average_state = ckpt["model"] if "train_model" in ckpt else None
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except ValueError as e:  # another plan of optimiser groups (another strategy, an older visiontl)
            raise ValueError(f"train.resume={self.cfg.resume}: its optimiser state does not fit this run's "
                             f"parameter groups ({e}); resume with the run's own config.yaml, or start a new run "
                             "from its weights (model.weights=<that .pt>)") from None
        if ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        self.history = list(ckpt.get("history", []))
        set_rng_state(ckpt["rng"])
        print(f"resuming {self.cfg.resume} at epoch {ckpt['epoch'] + 1}/{self.cfg.epochs}", file=sys.stderr)
        return ckpt["epoch"], ckpt["step"], ckpt["best"], ckpt.get("stale", 0)

    def evaluate(self, model: torch.nn.Module, loader: DataLoader) -> Validation:
        return evaluate(self.adapter, model, loader, device=self.device, amp=self.cfg.amp,
                        channels_last=self.cfg.channels_last)


@dataclass
class _Phase:
    net: torch.nn.Module  # the model, or its head on cached features
    step_model: torch.nn.Module  # net as the optimiser steps it (DDP / compiled)
    train: DataLoader
    val: DataLoader | None
    cached: bool


@dataclass
class Validation:
    """What a validation pass returns (``TaskAdapter.validation_metrics``): the numbers, and
    whatever the task's evaluation plots need (a confusion matrix, the detections, …)."""
    metrics: dict[str, float]
    details: Any = None


@torch.no_grad()
def evaluate(adapter, model: torch.nn.Module, loader, *, device: torch.device, amp: str = "auto",
             channels_last: bool = False) -> Validation:
    """The one evaluation loop (training's validation, ``evaluate`` and ``val``): the task's
    ``validation_step`` per batch under the run's autocast, then ``validation_metrics``."""
    model.eval()
    dtype = amp_dtype(amp, device)
    outputs = []
    for batch in loader:
        batch = to_device(batch, device, channels_last)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs.append(adapter.validation_step(model, batch))
    return adapter.validation_metrics(outputs)


def _line(metrics: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
                     if not isinstance(v, (list, dict)))

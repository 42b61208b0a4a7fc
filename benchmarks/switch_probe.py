"""What happens inside the epochs around a fine-tuning switch: tune accuracy of the raw
weights every few optimiser steps (a diagnostic, not a contender).

    python -m benchmarks switch_probe [--dataset digits] [--seed 2] [--every 4] [--set finetune.ema=0 ...]

The recipes benchmark's dataset and settings (mobilenet_v2, 64 px, 6 epochs, two_phase);
prints one line per probe: step, tune accuracy of the weights the optimiser holds, the
schedule's LR. benchmarks/RESULTS.md (section 6) used it to find why epochs right after a
switch read low.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from visiontl.adapters import Classifier, ClassifyConfig
from visiontl.adapters import base as adapter_base
from visiontl.config import load_config
from visiontl.data.builtin import materialize
from visiontl.engine import trainer as engine

from . import datasets
from .recipes import DATASETS


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks switch_probe")
    p.add_argument("--dataset", default="digits", choices=list(DATASETS))
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--every", type=int, default=4, help="probe every N optimiser steps")
    p.add_argument("--set", nargs="*", action="extend", default=[], help="config overrides (key=value)")
    args = p.parse_args()
    source, n_train, n_tune, n_test = DATASETS[args.dataset]
    arrays = datasets.LOADERS[source]() if source in datasets.LOADERS else None
    splits = materialize(source, train_per_class=n_train, tune_per_class=n_tune, val_per_class=n_test, arrays=arrays)
    out = Path(tempfile.mkdtemp(prefix="visiontl-probe-"))
    cfg = load_config(ClassifyConfig, None, ["finetune.strategy=two_phase", *args.set])
    cfg.data.train, cfg.data.val, cfg.data.image_size = str(splits.train), str(splits.tune), 64
    cfg.finetune.cache_dir = str(out / "cache")
    cfg.train.epochs, cfg.train.seed, cfg.train.num_workers = 6, args.seed, 1
    cfg.train.out_dir, cfg.train.progress = str(out / "runs"), "none"

    class Probe(engine.Trainer):
        steps = 0
        tune_loader = None

        def _loader(self, data, train, workers=None):
            loader = super()._loader(data, train, workers)
            if not train and self.tune_loader is None:  # the first: images, not cached features
                self.tune_loader = loader
            return loader

        def _optimizer_step(self, model, optimizer, scaler, lr):
            super()._optimizer_step(model, optimizer, scaler, lr)
            self.steps += 1
            if self.steps % args.every == 0:
                acc = self.evaluate(model, self.tune_loader)["accuracy"]
                self.adapter.train_mode(model)
                self.finetuner.set_bn_mode()
                print(f"step {self.steps:4d}  tune {acc:.3f}  lr {lr:.2e}", flush=True)

    adapter_base.Trainer = Probe  # the adapter's fit() builds this Trainer
    history = Classifier(config=cfg).fit()
    print("per epoch (validated weights):", " ".join(f"{h['val/accuracy']:.3f}" for h in history))


if __name__ == "__main__":
    main()

"""The optional compression capabilities every task adapter declares (mixed into
:class:`~visiontl.adapters.base.TaskAdapter`): knowledge distillation into a smaller model
and structured channel pruning. int8 lives with export (``supports_int8``).

A task turns one on with its flag and the hook that goes with it; the machinery is in
``engine/distill.py`` and ``engine/prune.py``.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import torch

from ..engine import prune
from ..engine.prune import PruneResult


class Compression:
    # knowledge distillation: a task that sets it has a ``distill`` config section and mixes
    # self.teacher's outputs into its training_step loss
    supports_distillation = False

    def distill(self, teacher, data: str | Path | None = None, **fit_options) -> list[dict]:
        """Train this (smaller) model on ``teacher``'s soft targets and the labels: ``teacher``
        is a trained adapter of the same task and classes, or its checkpoint. Example:
        ``Classifier(backbone="mobilenet_v3_small").distill("runs/big/best.pt", "data/")``"""
        path = Path(teacher.run_dir) / "best.pt" if isinstance(teacher, Compression) else Path(teacher)
        self.config.distill = replace(self.config.distill, teacher=str(path))
        return self.fit(data, **fit_options)

    # structured pruning: a task that sets it names the layers whose output channels it fixes
    supports_pruning = False

    def prune_fixed(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """The layers of ``model`` whose output channels are the task's (class scores, box
        coordinates, the output image): pruning keeps them whole."""
        raise NotImplementedError

    def prune(self, *, speedup: float | None = None, keep_params: float | None = None) -> PruneResult:
        """Remove whole channels from the trained model (torch-pruning's dependency graph,
        smallest L2 norms first) until its forward MACs at ``data.image_size`` fall by
        ``speedup``, or its parameters to the fraction ``keep_params``. Fine-tune it after
        with ``fit``: a normal run, whose checkpoints ``load`` rebuilds at the pruned size.

        Example: ``m = load("runs/x/best.pt"); print(m.prune(speedup=2).describe()); m.fit(epochs=3)``"""
        if not self.supports_pruning:
            raise ValueError(f"the {self.task} task has no pruning")
        if self.model is None:
            raise ValueError("nothing to prune: load a trained model (visiontl.adapters.load) or fit one first")
        size = self.config.data.image_size
        model = self.model.cpu().to(memory_format=torch.contiguous_format)
        result = prune.prune_channels(model, torch.rand(1, 3, size, size), self.prune_fixed(model),
                                      speedup=speedup, keep_params=keep_params)
        prune.refresh_feature_info(model)
        before = self.pruned or {"structure": {}, "macs": result.macs, "params": result.params}
        self.pruned = {"structure": {**before["structure"], **result.structure},
                       "macs": (before["macs"][0], result.macs[1]), "params": (before["params"][0], result.params[1])}
        return result


def prune_run(checkpoint: str | Path, *, speedup: float | None = None, keep_params: float | None = None,
              epochs: int = 5, overrides: list[str] = ()):
    """``visiontl prune``'s set-up: the trained model at ``checkpoint`` pruned, configured to
    fine-tune with the run's recipe and learning rate (every group training) as a new run
    ``RUN-pruned`` beside it; call ``fit`` on the result. Prints the validation metric before
    and right after pruning. A quarter of the LR was measured too: 0.768 vs 0.810 on textures,
    0.816 vs 0.812 on Fashion-MNIST (RESULTS.md)."""
    from ..config import apply_overrides, from_dict, to_dict
    from . import load

    model = load(checkpoint)
    run = Path(checkpoint).resolve().parent
    defaults = [f"train.name={run.name}-pruned", f"train.out_dir={run.parent}", "finetune.strategy=full",
                f"train.epochs={epochs}", "train.resume="]
    model.config = from_dict(type(model.config), apply_overrides(to_dict(model.config), [*defaults, *overrides]))
    _, val_set = model.datasets()
    key = model.monitor[0].split("/", 1)[1]

    def scored() -> str:  # the pruned model's drop, before fine-tuning recovers it
        return f"{key} {model._validate(val_set).metrics[key]:.4f}" if val_set is not None else "no validation data"

    before = (model.describe_model(), scored())
    print(model.prune(speedup=speedup, keep_params=keep_params).describe(), file=sys.stderr)
    print(f"validation before pruning ({before[0]}): {before[1]}\n"
          f"after pruning, before fine-tuning ({model.describe_model()}): {scored()}", file=sys.stderr)
    return model

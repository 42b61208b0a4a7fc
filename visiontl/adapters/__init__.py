"""Task adapters, one per task. ``TASKS`` maps a task name to (adapter, config class).

Adapters import on first use: ultralytics, say, loads only when detection is asked for. A new
task implements :class:`visiontl.adapters.base.TaskAdapter` and is added with one call,
``register_task("regress", Regressor, RegressConfig)``; the command line then trains it.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping

_WHERE = {  # task → (module, adapter class, config class)
    "classify": (".classification", "Classifier", "ClassifyConfig"),
    "detect": (".detection", "Detector", "DetectConfig"),
    "segment": (".segmentation", "Segmenter", "SegmentConfig"),
    "stylize": (".style_transfer", "Stylizer", "StylizeConfig"),
}


_REGISTERED: dict[str, tuple[type, type]] = {}  # tasks added at run time


def register_task(name: str, adapter: type, config: type) -> None:
    """Make task ``name`` known to ``TASKS`` and the command line."""
    if name in _WHERE or name in _REGISTERED:
        raise ValueError(f"task {name!r} is already registered")
    adapter.task = name
    _REGISTERED[name] = (adapter, config)


class _Tasks(Mapping):
    def __getitem__(self, task: str) -> tuple[type, type]:
        if task in _REGISTERED:
            return _REGISTERED[task]
        if task not in _WHERE:
            raise KeyError(f"unknown task {task!r}; valid tasks: {', '.join(self)}")
        module, adapter, config = _WHERE[task]
        m = importlib.import_module(module, __name__)
        return getattr(m, adapter), getattr(m, config)

    def __iter__(self):
        return iter([*_WHERE, *_REGISTERED])

    def __len__(self) -> int:
        return len(_WHERE) + len(_REGISTERED)


TASKS = _Tasks()


def config_class(task: str) -> type:
    """The config dataclass of ``task``, imported without its adapter (no torch): what
    ``visiontl train TASK --help`` lists."""
    if task in _REGISTERED:
        return _REGISTERED[task][1]
    if task not in _WHERE:
        raise KeyError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    module, _, config = _WHERE[task]
    return getattr(importlib.import_module(module + ".config", __name__), config)


def load(checkpoint):
    """A trained model of any task from its ``best.pt``/``last.pt``; the task is read from
    the checkpoint. Example: ``load("runs/segment-…/best.pt").predict("cells/")``"""
    from ..engine import load_checkpoint

    task = load_checkpoint(checkpoint).get("meta", {}).get("task")
    if task not in TASKS:
        raise ValueError(f"{checkpoint}: unknown task {task!r} in the checkpoint; valid tasks: {', '.join(TASKS)}")
    return TASKS[task][0].load(checkpoint)


def __getattr__(name: str):
    if name == "stylize":  # style transfer by per-image optimisation (no training)
        return importlib.import_module(".style_transfer", __name__).stylize
    for task, (_, adapter, config) in _WHERE.items():
        if name in (adapter, config):
            return TASKS[task][0 if name == adapter else 1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TASKS", "config_class", "load", "register_task", "stylize", *(n for _, a, c in _WHERE.values() for n in (a, c))]

"""What a benchmark runs: the cells (task × backbone), the data of each task, and the one
set of settings every cell of a task shares (data, epochs, image size, seed).

Two budgets: ``quick`` (2 CPU cores, two backbones × four tasks in about 15 minutes; small
subsets and few epochs, so the metrics rank backbones only roughly) and the default one,
meant for a GPU. Any task setting can be changed with ``TASK.key=value`` overrides.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

TASKS = ("classify", "detect", "segment", "stylize")


def metric(task: str) -> tuple[str, bool]:
    """The task's headline metric (its adapter's ``monitor``, what best.pt keeps) and whether
    higher is better."""
    from ..adapters import TASKS

    key, mode = TASKS[task][0].monitor
    return key.split("/", 1)[1], mode == "max"

# (quick, default) settings per task, as config overrides
BUDGETS = {
    "classify": ({"data.image_size": 64, "train.epochs": 3, "train.batch_size": 32},
                 {"data.image_size": 128, "train.epochs": 10, "train.batch_size": 64}),
    "detect": ({"data.image_size": 128, "train.epochs": 3, "train.batch_size": 8},
               {"data.image_size": 192, "train.epochs": 30, "train.batch_size": 16}),
    "segment": ({"data.image_size": 128, "train.epochs": 3, "train.batch_size": 8},
                {"data.image_size": 128, "train.epochs": 20, "train.batch_size": 16}),
    "stylize": ({"data.image_size": 128, "train.epochs": 2, "train.batch_size": 4, "data.crops_per_image": 4},
                {"data.image_size": 256, "train.epochs": 4, "train.batch_size": 8, "data.crops_per_image": 32}),
}
QUICK_CLASSIFY = (20, 20)  # images per class for training and validation in the quick budget
FULL_CLASSIFY = (100, 50)


@dataclass
class Plan:
    backbones: list[str]
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    data: dict[str, str] = field(default_factory=dict)  # task → the user's data (else built-in)
    style: str = ""  # style image for the stylize task's user data
    quick: bool = False
    epochs: int = 0  # 0: the budget's
    seed: int = 0
    overrides: list[str] = field(default_factory=list)  # TASK.key=value
    device: str = "auto"
    compile: bool = False
    budget_s: float = 0.0  # a cell running longer is stopped and recorded as an error; 0: no limit
    timing_rounds: int = 0  # 0: 3 (quick) or 5
    keep_checkpoints: bool = False  # keep each run's best.pt/last.pt (else only its metrics and plots stay)

    def check(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task {unknown[0]!r}; valid: {', '.join(TASKS)}")
        if not self.backbones:
            raise ValueError("no backbones given (--backbones mobilenet_v2 vgg19 …)")
        from ..backbones import check_backbone_name

        for b in self.backbones:
            check_backbone_name(b)
        for t, path in self.data.items():
            if t not in TASKS:
                raise ValueError(f"--data {t}={path}: unknown task; valid: {', '.join(TASKS)}")
            if not Path(path).exists():
                raise FileNotFoundError(f"--data {t}={path}: not found")
        for o in self.overrides:
            task = o.split(".", 1)[0]
            if task not in TASKS or "=" not in o:
                raise ValueError(f"--set {o}: expected TASK.key=value, e.g. classify.data.image_size=96")

    def cells(self) -> list[tuple[str, str]]:
        return [(t, b) for t in self.tasks for b in self.backbones]

    def comparable(self) -> dict:
        """What every cell of a column must share: a re-run into the same folder must match it."""
        d = asdict(self)
        return {k: d[k] for k in ("data", "style", "quick", "epochs", "seed", "overrides", "compile")}

    def rounds(self) -> int:
        return self.timing_rounds or (3 if self.quick else 5)


def task_overrides(plan: Plan, task: str, data: dict[str, str]) -> list[str]:
    """The config overrides every cell of ``task`` runs with (before backbone and weights)."""
    settings = dict(BUDGETS[task][0 if plan.quick else 1])
    if plan.epochs:
        settings["train.epochs"] = plan.epochs
    settings.update({"train.seed": plan.seed, "train.compile": plan.compile, "train.device": plan.device})
    if task != "stylize":
        settings["finetune.strategy"] = "full"  # the same recipe for pretrained and random init
    out = [f"{k}={v}" for k, v in {**data, **settings}.items()]
    return out + [o.split(".", 1)[1] for o in plan.overrides if o.split(".", 1)[0] == task]


def task_data(plan: Plan, task: str) -> dict[str, str]:
    """The data keys of ``task``: the user's (``--data``) or a built-in real dataset, written
    once from installed packages."""
    given = plan.data.get(task)
    if task == "classify":
        if given:
            return {"data.train": given}
        from ..data.builtin import default_dataset, materialize

        train_n, val_n = QUICK_CLASSIFY if plan.quick else FULL_CLASSIFY
        splits = materialize(default_dataset(), train_per_class=train_n, val_per_class=val_n)
        return {"data.train": str(splits.train), "data.val": str(splits.val)}
    if task == "detect":
        if given:
            return {"data.yaml": given} if given.endswith((".yaml", ".yml")) else {"data.train": given}
        from ..data.trees import materialize_trees

        return {"data.yaml": str(materialize_trees(192))}
    if task == "segment":
        if given:
            return {"data.train": given}
        from ..data.nuclei import materialize_nuclei

        root = materialize_nuclei()
        return {"data.train": str(root / "train"), "data.val": str(root / "val"), "data.classes": "[background,nucleus]"}
    from ..data.photos import materialize_photos

    train, val, style = materialize_photos()
    if given:
        return {"data.train": given, "data.style": plan.style or str(style)}
    return {"data.train": str(train), "data.val": str(val), "data.style": plan.style or str(style)}


def data_name(plan: Plan, task: str) -> str:
    """The data of ``task`` in words, for the table."""
    if task in plan.data:
        return plan.data[task]
    if task == "classify":
        from ..data.builtin import default_dataset

        n = QUICK_CLASSIFY if plan.quick else FULL_CLASSIFY
        return f"{default_dataset()} ({n[0]}/class train, {n[1]}/class val)"
    return {"detect": "tree crowns (deepforest, 192 px crops)", "segment": "cell nuclei (stardist, 128 px tiles)",
            "stylize": "scikit-image photos → Starry Night"}[task]

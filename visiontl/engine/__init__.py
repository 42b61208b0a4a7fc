"""The shared engine: one loop for every task adapter. Names load on first use (the config
sections in ``engine.config`` need no torch)."""
from .._lazy import exports

_WHERE = {
    "DistillConfig": ".config", "FinetuneConfig": ".config", "OptimConfig": ".config", "TrainConfig": ".config",
    "load_checkpoint": ".checkpoint", "save_atomic": ".checkpoint", "seed_everything": ".checkpoint",
    "seeded": ".checkpoint", "Finetuner": ".finetune", "get_lr": ".schedules", "check_settings": ".settings",
    "Trainer": ".trainer", "Validation": ".trainer", "evaluate": ".trainer",
}
__getattr__, __dir__ = exports(__name__, _WHERE)
__all__ = sorted(_WHERE)

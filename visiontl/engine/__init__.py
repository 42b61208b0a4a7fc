"""The shared engine: one loop for every task adapter."""
from .checkpoint import load_checkpoint, save_atomic, seed_everything, seeded
from .finetune import FinetuneConfig, Finetuner
from .schedules import get_lr
from .settings import OptimConfig, TrainConfig, check_settings
from .trainer import Trainer, Validation, evaluate

__all__ = ["FinetuneConfig", "Finetuner", "OptimConfig", "TrainConfig", "Trainer", "Validation", "check_settings", "evaluate", "get_lr", "load_checkpoint", "save_atomic", "seed_everything", "seeded"]

"""The shared engine: one loop for every task adapter."""
from .checkpoint import load_checkpoint, save_atomic, seed_everything
from .finetune import FinetuneConfig, Finetuner
from .schedules import get_lr
from .trainer import OptimConfig, TrainConfig, Trainer, check_settings

__all__ = ["FinetuneConfig", "Finetuner", "OptimConfig", "TrainConfig", "Trainer", "check_settings", "get_lr", "load_checkpoint", "save_atomic", "seed_everything"]

"""Task adapters, one per task. ``TASKS`` maps a task name to (adapter, config class)."""
from .classification import Classifier, ClassifyConfig

TASKS = {
    "classify": (Classifier, ClassifyConfig),
}

__all__ = ["TASKS", "Classifier", "ClassifyConfig"]

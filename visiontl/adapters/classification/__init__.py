from .adapter import Classifier, expand_inputs, print_predictions, write_predictions
from .config import ClassifyConfig

__all__ = ["Classifier", "ClassifyConfig", "expand_inputs", "print_predictions", "write_predictions"]

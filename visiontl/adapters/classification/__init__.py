from .adapter import Classifier
from .predictions import expand_inputs, print_predictions, write_predictions
from .config import ClassifyConfig

__all__ = ["Classifier", "ClassifyConfig", "expand_inputs", "print_predictions", "write_predictions"]

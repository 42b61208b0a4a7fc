from .adapter import Classifier
from .predictions import print_predictions, write_predictions
from .config import ClassifyConfig

__all__ = ["Classifier", "ClassifyConfig", "print_predictions", "write_predictions"]

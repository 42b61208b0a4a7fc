"""Datasets, data formats and augmentation pipelines. Names load on first use."""
from .._lazy import exports

_WHERE = {
    "csv_dataset": ".classification", "image_folder": ".classification", "BadImageError": ".images",
    "DataError": ".images", "read_image": ".images", "random_split": ".split", "stratified_split": ".split",
}
__getattr__, __dir__ = exports(__name__, _WHERE)
__all__ = sorted(_WHERE)

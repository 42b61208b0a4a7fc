"""Datasets and augmentation pipelines."""
from .classification import DataError, csv_dataset, image_folder, stratified_split
from .images import BadImageError, read_image

__all__ = ["BadImageError", "DataError", "csv_dataset", "image_folder", "read_image", "stratified_split"]

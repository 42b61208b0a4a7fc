"""Datasets and augmentation pipelines."""
from .classification import csv_dataset, image_folder
from .images import BadImageError, DataError, read_image
from .split import random_split, stratified_split

__all__ = ["BadImageError", "DataError", "csv_dataset", "image_folder", "random_split", "read_image", "stratified_split"]

"""Built-in real datasets for the demo and benchmarks, written once as image folders.

- ``fashion-mnist``: Zalando's Fashion-MNIST (70k 28×28 photos of clothes, 10 classes),
  from Debian's ``dataset-fashion-mnist`` package (``apt-get install dataset-fashion-mnist``)
  or any folder holding the four ``*-ubyte.gz`` files (``VISIONTL_FASHION_MNIST``).
- ``digits``: scikit-learn's 1,797 handwritten 8×8 digits (ships with scikit-learn), the
  fallback when Fashion-MNIST is not installed.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
FASHION_DIRS = ["/usr/share/datasets/fashion-mnist"]


def cache_dir() -> Path:
    return Path(os.environ.get("VISIONTL_CACHE", Path.home() / ".cache" / "visiontl"))


def fashion_mnist_dir() -> Path | None:
    for d in [os.environ.get("VISIONTL_FASHION_MNIST", ""), *FASHION_DIRS]:
        if d and (Path(d) / "train-images-idx3-ubyte.gz").is_file():
            return Path(d)
    return None


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_arrays(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """((train images, labels), (test images, labels), class names) as uint8 arrays."""
    if name == "fashion-mnist":
        d = fashion_mnist_dir()
        if d is None:
            raise FileNotFoundError("Fashion-MNIST not found: apt-get install dataset-fashion-mnist, or set "
                                    "VISIONTL_FASHION_MNIST to a folder with its *-ubyte.gz files")
        train = (_idx(d / "train-images-idx3-ubyte.gz"), _idx(d / "train-labels-idx1-ubyte.gz"))
        test = (_idx(d / "t10k-images-idx3-ubyte.gz"), _idx(d / "t10k-labels-idx1-ubyte.gz"))
        return train, test, FASHION_CLASSES
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ImportError("the built-in 'digits' dataset needs scikit-learn (pip install 'visiontl[datasets]'); "
                              "or install Fashion-MNIST: apt-get install dataset-fashion-mnist") from None

        digits = load_digits()
        images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
        labels = digits.target.astype(np.uint8)
        rng = np.random.default_rng(0)
        order = rng.permutation(len(labels))
        cut = int(0.7 * len(order))
        tr, te = order[:cut], order[cut:]
        return (images[tr], labels[tr]), (images[te], labels[te]), [str(i) for i in range(10)]
    raise KeyError(f"unknown built-in dataset {name!r}; valid: fashion-mnist, digits")


def default_dataset() -> str:
    return "fashion-mnist" if fashion_mnist_dir() is not None else "digits"


class Splits(NamedTuple):
    train: Path
    val: Path  # from the official test split
    tune: Path | None  # held out of the official training split (hyperparameter choice), or None


def materialize(name: str, *, train_per_class: int, val_per_class: int, tune_per_class: int = 0, seed: int = 0,
                root: Path | None = None, arrays: tuple | None = None) -> Splits:
    """Write a balanced subset as ``<root>/{train,val[,tune]}/<class>/<n>.png`` (once; reused
    after). Validation images come from the official test split; ``tune`` images (when
    ``tune_per_class`` > 0) from the official training split, disjoint from ``train``, for
    choosing hyperparameters without looking at ``val``. ``arrays``: another dataset as
    :func:`load_arrays` returns it, optionally with a fourth item, its own tune pool."""
    tag = f"-t{tune_per_class}" if tune_per_class else ""
    root = root or cache_dir() / "datasets" / f"{name}-{train_per_class}-{val_per_class}{tag}-s{seed}"
    splits = Splits(root / "train", root / "val", root / "tune" if tune_per_class else None)
    done = root / ".complete"
    if done.is_file():
        return splits
    (train_x, train_y), (test_x, test_y), classes, *tune_pool = arrays or load_arrays(name)
    rng = np.random.default_rng(seed)

    def write(split: str, x: np.ndarray, idx: np.ndarray, cname: str) -> None:
        folder = root / split / cname
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx:
            Image.fromarray(x[i]).save(folder / f"{i:05d}.png")

    tune_x, tune_y = tune_pool[0] if tune_pool else (train_x, train_y)  # its own pool: another region of the photos
    for c, cname in enumerate(classes):
        pool = np.flatnonzero(train_y == c)
        if tune_pool:
            train_idx = rng.choice(pool, size=min(train_per_class, len(pool)), replace=False)
            own = np.flatnonzero(tune_y == c)
            tune_idx = rng.choice(own, size=min(tune_per_class, len(own)), replace=False) if tune_per_class else own[:0]
        else:
            idx = rng.choice(pool, size=min(train_per_class + tune_per_class, len(pool)), replace=False)
            train_idx, tune_idx = idx[:train_per_class], idx[train_per_class:]
        write("train", train_x, train_idx, cname)
        if tune_per_class:
            write("tune", tune_x, tune_idx, cname)
    for c, cname in enumerate(classes):
        pool = np.flatnonzero(test_y == c)
        write("val", test_x, rng.choice(pool, size=min(val_per_class, len(pool)), replace=False), cname)
    done.touch()
    return splits

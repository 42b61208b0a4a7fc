"""Shared fixtures. Tests run offline, on small data they make themselves, on the CPU."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

_tmp = Path(tempfile.mkdtemp(prefix="visiontl-tests-"))
os.environ["VISIONTL_OFFLINE"] = "1"
os.environ["TORCH_HOME"] = str(_tmp / "torch")  # an empty hub cache: weights come from packages only
os.environ["VISIONTL_CACHE"] = str(_tmp / "cache")
os.environ.setdefault("MPLCONFIGDIR", str(_tmp / "mpl"))
os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(2)

COLORS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}


def make_image_folder(root: Path, per_class: int = 8, size: int = 40, seed: int = 0) -> Path:
    """Three classes of noisy coloured squares — separable, so a few steps can learn them."""
    rng = np.random.default_rng(seed)
    for name, color in COLORS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3)) + np.array(color) * 0.7
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data")


def tiny_config(train: Path, out: Path, **overrides):
    """A classification config that trains in seconds: mobilenet_v3_small, 32 px, batch 4."""
    from visiontl.adapters import ClassifyConfig

    cfg = ClassifyConfig()
    cfg.data.train, cfg.data.image_size, cfg.data.val_fraction = str(train), 32, 0.25
    cfg.model.backbone, cfg.model.weights, cfg.finetune.strategy = "mobilenet_v3_small", "none", "full"
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = 2, 4, 0
    cfg.train.out_dir, cfg.train.progress = str(out), "none"
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(cfg, section), name, value)
    return cfg

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
os.environ["YOLO_OFFLINE"] = "true"  # ultralytics: no network, no settings in the home folder, no installs
os.environ["YOLO_AUTOINSTALL"] = "False"
os.environ["YOLO_CONFIG_DIR"] = str(_tmp / "ultralytics")
os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"

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
    return _override(cfg, overrides)


DETECT_CLASSES = ["square", "bar"]


def make_detection_set(root: Path, n_train: int = 8, n_val: int = 4, size: int = 64, seed: int = 0) -> Path:
    """A YOLO dataset (data.yaml, images/, labels/) of red squares and green bars on dark
    noise; returns the data.yaml. Every image has one to three objects."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            lines = []
            for _ in range(int(rng.integers(1, 4))):
                c = int(rng.integers(0, 2))
                w = int(rng.integers(size // 5, size // 2))
                h = w if c == 0 else max(4, w // 3)
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                img[y:y + h, x:x + w] = (220, 40, 40) if c == 0 else (40, 220, 40)
                lines.append(f"{c} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}")
            Image.fromarray(img).save(root / "images" / split / f"{i:03d}.png")
            (root / "labels" / split / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: {DETECT_CLASSES}\n")
    return root / "data.yaml"


@pytest.fixture
def detection_set(tmp_path) -> Path:
    return make_detection_set(tmp_path / "det")


def tiny_detect_config(data_yaml: Path, out: Path, **overrides):
    """A detection config that trains in seconds: mobilenet_v3_small, 64 px, batch 4."""
    from visiontl.adapters import DetectConfig

    cfg = DetectConfig()
    cfg.data.yaml, cfg.data.image_size = str(data_yaml), 64
    cfg.model.backbone, cfg.model.weights, cfg.finetune.strategy = "mobilenet_v3_small", "none", "full"
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = 1, 4, 0
    cfg.train.out_dir, cfg.train.progress = str(out), "none"
    return _override(cfg, overrides)


def _override(cfg, overrides: dict):
    """``section__name=value`` keyword arguments set ``cfg.section.name`` (any depth)."""
    for key, value in overrides.items():
        *path, name = key.split("__")
        target = cfg
        for part in path:
            target = getattr(target, part)
        setattr(target, name, value)
    return cfg


SEGMENT_CLASSES = ["background", "disc", "bar"]


def make_segmentation_set(root: Path, n: int = 8, size: int = 64, seed: int = 0, *, values=(0, 1, 2)) -> Path:
    """``root/images`` and ``root/masks`` (index PNGs storing ``values`` for background /
    disc / bar): a bright disc and a dark-green bar on noise; returns root."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = rng.integers(0, 70, (size, size, 3)).astype(np.uint8)
        mask = np.full((size, size), values[0], np.uint8)
        cx, cy, r = rng.integers(size // 4, 3 * size // 4, 2).tolist() + [int(rng.integers(size // 8, size // 4))]
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        img[disc], mask[disc] = (230, 60, 60), values[1]
        y0, x0 = int(rng.integers(0, size - 8)), int(rng.integers(0, size // 2))
        img[y0:y0 + 6, x0:x0 + size // 2], mask[y0:y0 + 6, x0:x0 + size // 2] = (40, 200, 40), values[2]
        Image.fromarray(img).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    return root


@pytest.fixture
def segmentation_set(tmp_path) -> Path:
    return make_segmentation_set(tmp_path / "seg")


def tiny_segment_config(train: Path, out: Path, **overrides):
    """A segmentation config that trains in seconds: U-Net on mobilenet_v3_small, 64 px, batch 4."""
    from visiontl.adapters import SegmentConfig

    cfg = SegmentConfig()
    cfg.data.train, cfg.data.classes, cfg.data.image_size, cfg.data.val_fraction = str(train), SEGMENT_CLASSES, 64, 0.25
    cfg.data.augment.color = 0.0
    cfg.model.backbone, cfg.model.weights, cfg.finetune.strategy = "mobilenet_v3_small", "none", "full"
    cfg.optim.lr = 3e-3
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = 2, 4, 0
    cfg.train.out_dir, cfg.train.progress = str(out), "none"
    return _override(cfg, overrides)


@pytest.fixture(scope="session")
def classifier(tmp_path_factory):
    """One small pretrained classifier for every test that only uses a trained model (fit once a session)."""
    from visiontl.adapters import Classifier

    root = tmp_path_factory.mktemp("cls")
    model = Classifier(config=tiny_config(make_image_folder(root / "data"), root / "runs",
                                          model__backbone="mobilenet_v2", model__weights="imagenet",
                                          finetune__strategy="frozen", train__epochs=4, optim__lr=0.01,
                                          data__image_size=64))
    model.fit()
    return model, root / "data"


def write_video(path: Path, frames: list[np.ndarray], fps: int = 5) -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    return path

"""Segmentation recipes on small real mask datasets of different image sizes (``python -m
benchmarks recipes --task segment``): visiontl's defaults and ``two_phase`` against a plain
smp U-Net loop on the same encoder weights.

Datasets (all offline, from installed packages; written once):
- ``nuclei-57x61``: stardist's fluorescence nuclei cut into 57×61 slices — smaller than the
  128 px training size; 24 of the 48 slices of the top three quarters for training, the 8
  slices wholly inside the bottom quarter for validation;
- ``nuclei-128``: the same image in 128 px tiles, 12 training tiles (of 117), 4 validation;
- ``crowns-192``: deepforest's aerial tiles, 192 px crops, tree crowns drawn as filled
  ellipses inside their boxes (a mask derived from box annotations), 40 training crops;
- ``crowns-128``: the same crops shrunk to 128 px beforehand (image bilinear, mask nearest),
  as the plain loop sees them (validated at 128 px): for ablations of the recipe, not scale.

The plain loop (the issue's reference): ``smp.Unet("mobilenet_v2")`` with the same offline
ImageNet file, images and masks resized to the training size, Adam 1e-3, flips,
cross-entropy, batch 8, validation at each image's own size (logits resized back). All are
scored by the same confusion-matrix mIoU.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from visiontl.adapters.segmentation.metrics import confusion, summarize
from visiontl.data.builtin import cache_dir
from visiontl.data.nuclei import load_nuclei, materialize_nuclei
from visiontl.data.trees import materialize_trees

CLASSES = {"nuclei-57x61": ["background", "nucleus"], "nuclei-128": ["background", "nucleus"],
           "crowns-192": ["background", "crown"], "crowns-128": ["background", "crown"]}
CONTENDERS = ["visiontl defaults", "visiontl two_phase", "plain smp loop"]


def _write(root: Path, split: str, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    for sub in ("images", "masks"):
        (root / split / sub).mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(root / split / "images" / f"{name}.png")
    Image.fromarray(mask).save(root / split / "masks" / f"{name}.png")


def _subset(root: Path, split: str, n: int, seed: int = 0) -> Path:
    """A folder of ``n`` random pairs of ``root/split`` (symlinks)."""
    names = sorted(p.name for p in (root / split / "images").glob("*.png"))
    keep = [names[i] for i in np.random.default_rng(seed).permutation(len(names))[:n]]
    out = root / f"{split}-{n}"
    for sub in ("images", "masks"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for name in keep:
            if not (out / sub / name).exists():
                (out / sub / name).symlink_to(root / split / sub / name)
    return out


def dataset(name: str) -> tuple[Path, Path]:
    """(train folder, val folder), each with images/ and masks/."""
    if name == "nuclei-128":
        root = materialize_nuclei(128, 32)
        return _subset(root, "train", 12), root / "val"
    if name == "crowns-128":
        return tuple(_shrunk(folder, folder.parent.parent / "crowns-128-v1" / folder.name, 128)
                     for folder in dataset("crowns-192"))
    root = cache_dir() / "datasets" / f"{name}-v1"
    if not (root / ".complete").is_file():
        if name == "nuclei-57x61":
            image, mask = load_nuclei()
            for y in range(0, 512 - 61 + 1, 61):
                for x in range(0, 512 - 57 + 1, 57):
                    split = "train" if y + 61 <= 384 else "val" if y >= 384 else None
                    if split:
                        _write(root, split, f"n_{y:03d}_{x:03d}", image[y:y + 61, x:x + 57], mask[y:y + 61, x:x + 57])
        else:  # crowns-192: ellipses in the YOLO boxes of the tree-crown crops
            data = materialize_trees(192).parent
            for split in ("train", "val"):
                for img in sorted((data / "images" / split).glob("*.png")):
                    mask = Image.new("L", (192, 192), 0)
                    draw = ImageDraw.Draw(mask)
                    for line in (data / "labels" / split / f"{img.stem}.txt").read_text().split("\n"):
                        if line.strip():
                            _, cx, cy, w, h = map(float, line.split())
                            draw.ellipse([(cx - w / 2) * 192, (cy - h / 2) * 192, (cx + w / 2) * 192,
                                          (cy + h / 2) * 192], fill=1)
                    _write(root, split, img.stem, np.asarray(Image.open(img).convert("RGB")), np.asarray(mask))
        (root / ".complete").touch()
    n_train = 24 if name == "nuclei-57x61" else 40
    return _subset(root, "train", n_train), root / "val"


def _shrunk(src: Path, out: Path, size: int) -> Path:
    """``src``'s pairs resized to ``size``² (image bilinear, mask nearest) under ``out``."""
    for p in sorted((src / "images").glob("*.png")):
        for sub, resample in (("images", Image.BILINEAR), ("masks", Image.NEAREST)):
            (out / sub).mkdir(parents=True, exist_ok=True)
            if not (out / sub / p.name).exists():
                Image.open(src / sub / p.name).resize((size, size), resample).save(out / sub / p.name)
    return out


def visiontl_run(name: str, strategy: str, train: Path, val: Path, args, seed: int, out: Path) -> dict:
    from visiontl.adapters import SegmentConfig, Segmenter
    from visiontl.config import load_config

    cfg = load_config(SegmentConfig, None, args.set)
    cfg.data.train, cfg.data.val, cfg.data.classes = str(train), str(val), CLASSES[name]
    cfg.data.image_size = args.image_size
    if strategy != "defaults":
        cfg.finetune.strategy = strategy
    cfg.train.epochs, cfg.train.seed, cfg.train.num_workers = args.epochs, seed, 0
    cfg.train.out_dir, cfg.train.progress = str(out), "none"
    t0 = time.perf_counter()
    history = Segmenter(config=cfg).fit()
    curve = [h["val/mIoU"] for h in history]
    return {"seconds": time.perf_counter() - t0, "miou_per_epoch": curve, "final": curve[-1], "best": max(curve)}


def _pairs(folder: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.asarray(Image.open(p).convert("RGB")), np.asarray(Image.open(folder / "masks" / p.name)))
            for p in sorted((folder / "images").glob("*.png"))]


def plain_run(name: str, train: Path, val: Path, args, seed: int) -> dict:
    """The plain smp loop: resize to the training size, Adam 1e-3, flips, CE, batch 8."""
    import segmentation_models_pytorch as smp

    from visiontl.backbones import BACKBONES
    from visiontl.backbones.weights import resolve

    torch.manual_seed(seed)
    size, n_classes = args.image_size, len(CLASSES[name])
    model = smp.Unet("mobilenet_v2", encoder_weights=None, classes=n_classes)
    state, _, _ = resolve("mobilenet_v2", list(BACKBONES.get("mobilenet_v2").weights), "imagenet")
    model.encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")})
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    norm = lambda x: (x.float() / 255 - mean) / std  # noqa: E731
    images = torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i, _ in _pairs(train)]).float()
    masks = torch.stack([torch.from_numpy(m.astype(np.int64)) for _, m in _pairs(train)])
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    masks = F.interpolate(masks[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    val_pairs = _pairs(val)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    curve, t0 = [], time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(images)).split(8):
            x, y = images[idx], masks[idx]
            if torch.rand(()) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if torch.rand(()) < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            loss = F.cross_entropy(model(norm(x)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        cm = 0
        with torch.no_grad():
            for image, mask in val_pairs:
                x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
                logits = model(norm(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)))
                pred = F.interpolate(logits, size=mask.shape, mode="bilinear", align_corners=False).argmax(1)
                cm = cm + confusion(pred, torch.from_numpy(mask.astype(np.int64))[None], n_classes)
        curve.append(summarize(cm.numpy(), CLASSES[name])[0]["mIoU"])
    return {"seconds": time.perf_counter() - t0, "miou_per_epoch": curve, "final": curve[-1], "best": max(curve)}


def run(args, out: Path) -> dict:
    results: dict = {}
    for name in args.seg_datasets:
        train, val = dataset(name)
        for contender in args.seg_contenders:
            runs = []
            for seed in args.seeds:
                if contender == "plain smp loop":
                    r = plain_run(name, train, val, args, seed)
                else:
                    r = visiontl_run(name, contender.split()[1], train, val, args, seed, out)
                runs.append(r)
                print(f"{name:14} {contender:20} seed {seed}: mIoU final {r['final']:.4f} best {r['best']:.4f}  "
                      f"per epoch {' '.join(f'{v:.3f}' for v in r['miou_per_epoch'])}  ({r['seconds']:.0f} s)",
                      flush=True)
            results.setdefault(name, {})[contender] = {
                "final": statistics.median(r["final"] for r in runs), "best": statistics.median(r["best"] for r in runs),
                "seconds": statistics.median(r["seconds"] for r in runs), "runs": runs}
    return results


def table(results: dict) -> str:
    names = list(results)
    lines = ["| contender | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for c in CONTENDERS:
        cells = [f"{results[n][c]['final']:.3f} / {results[n][c]['best']:.3f}" if c in results[n] else "—"
                 for n in names]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

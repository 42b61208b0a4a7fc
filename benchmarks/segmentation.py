"""Segmentation transfer value and speed on a real microscopy image (stardist's nuclei):

    python -m benchmarks segmentation [--epochs 20] [--image-size 128]

Same tiles, crops, augmentation, loss (cross-entropy + Dice), optimiser (AdamW, cosine
with one warmup epoch), batch size and epochs for all three:
1. visiontl U-Net on mobilenet_v2 with the offline ImageNet weights, trained by the engine;
2. a plain hand-written loop (the one below, ~30 lines) around smp's own ``smp.Unet`` with
   the mobilenet_v2 encoder, the same ImageNet file loaded into it — the same architecture
   and parameter count; channels_last like visiontl's default, so the two differ by their
   loops only. Its epochs run interleaved with visiontl's (one visiontl epoch, then one of
   the plain loop, from the engine's epoch callback), so a noisy machine slows both alike;
3. visiontl's U-Net from random init (what the pretrained encoder is worth).

All are scored by the same code (confusion-matrix IoU, checked against scikit-learn and smp
in the tests) on the validation tiles, which share no pixels with the training tiles.
Throughput counts training only (no validation): images/s per epoch, median over epochs.
"""
from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from visiontl.data.nuclei import CLASSES, materialize_nuclei

from . import harness


def config(root: Path, weights: str, args, out: Path):
    from visiontl.adapters import SegmentConfig

    cfg = SegmentConfig()
    cfg.data.train, cfg.data.val, cfg.data.classes = str(root / "train"), str(root / "val"), CLASSES
    cfg.data.image_size = args.image_size
    a = cfg.data.augment
    a.scale_min, a.scale_max, a.hflip, a.vflip, a.rotate90, a.color = 0.75, 1.25, 0.5, 0.5, True, 0.2
    cfg.model.backbone, cfg.model.weights, cfg.model.architecture = "mobilenet_v2", weights, "unet"
    cfg.finetune.strategy = "full"
    cfg.optim.lr, cfg.optim.warmup_epochs = args.lr, 1.0
    cfg.train.epochs, cfg.train.batch_size, cfg.train.num_workers = args.epochs, args.batch_size, 0
    cfg.train.out_dir, cfg.train.progress, cfg.train.name = str(out), "log", f"visiontl-mobilenet_v2-{weights}"
    if args.train_tiles:  # a list of the chosen tiles' images, and their masks folder
        tiles = sorted((root / "train" / "images").glob("*.png"))
        keep = torch.randperm(len(tiles), generator=torch.Generator().manual_seed(0))[:args.train_tiles].tolist()
        subset = out / f"train-{args.train_tiles}"
        for sub in ("images", "masks"):
            (subset / sub).mkdir(parents=True, exist_ok=True)
            for k in keep:
                target = subset / sub / tiles[k].name
                if not target.exists():
                    target.symlink_to(root / "train" / sub / tiles[k].name)
        cfg.data.train = str(subset)
    return cfg


class PlainLoop:
    """A hand-written smp training loop, advanced one epoch per call."""

    def __init__(self, train_set, val_set, args, device: torch.device) -> None:
        import segmentation_models_pytorch as smp

        from visiontl.backbones.weights import resolve
        from visiontl.backbones import BACKBONES

        torch.manual_seed(0)
        self.model = smp.Unet("mobilenet_v2", encoder_weights=None, classes=len(CLASSES))
        state, _, self.source = resolve("mobilenet_v2", list(BACKBONES.get("mobilenet_v2").weights), "imagenet")  # the same file
        self.model.encoder.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")})
        self.model = self.model.to(device, memory_format=torch.channels_last)
        self.device, self.args = device, args
        self.mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1) * 255
        self.loader = torch.utils.data.DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
        self.val_set = val_set
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=1e-4)
        self.ce = torch.nn.CrossEntropyLoss(ignore_index=255)  # 255: crops padded past the tile edge
        self.dice = smp.losses.DiceLoss("multiclass", from_logits=True, ignore_index=255)
        self.total, self.warmup = args.epochs * len(self.loader), len(self.loader)
        self.step, self.history = 0, []
        self.amp = torch.bfloat16 if device.type == "cuda" else None

    def lr(self) -> float:  # linear warmup, then cosine to 1 % of the peak
        if self.step < self.warmup:
            return self.args.lr * (self.step + 1) / self.warmup
        t = (self.step - self.warmup) / max(self.total - self.warmup, 1)
        floor = self.args.lr * 0.01
        return floor + (self.args.lr - floor) * 0.5 * (1 + math.cos(math.pi * t))

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(self.device, non_blocking=True).float()
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def epoch(self) -> dict:
        self.model.train()
        t0 = time.perf_counter()
        seen = 0
        for images, masks in self.loader:
            for g in self.optimizer.param_groups:
                g["lr"] = self.lr()
            masks = masks.to(self.device)
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                logits = self.model(self.normalise(images))
            loss = self.ce(logits.float(), masks) + self.dice(logits.float(), masks)
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            seen += len(images)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        rate = seen / (time.perf_counter() - t0)
        self.history.append({"epoch": len(self.history) + 1, "train/images_per_s": rate, "val/mIoU": self.miou()})
        return self.history[-1]

    @torch.no_grad()
    def miou(self) -> float:
        from visiontl.adapters.segmentation.metrics import confusion, summarize

        self.model.eval()
        cm = 0
        for images, masks in torch.utils.data.DataLoader(self.val_set, batch_size=self.args.batch_size):
            pred = self.model(self.normalise(images)).argmax(1).cpu()
            cm = cm + confusion(pred, masks, len(CLASSES))
        return summarize(cm.numpy(), CLASSES)[0]["mIoU"]


def strip_figure(seg, path: Path) -> Path:
    """The validation quarter of the image (128 × 512, never trained on): image, true mask,
    and the kept model's prediction, tiled as ``predict`` does."""
    from PIL import Image

    from visiontl import draw, plots
    from visiontl.data.nuclei import TRAIN_ROWS, load_nuclei

    image, mask = load_nuclei()
    strip = path.with_suffix(".input.png")
    Image.fromarray(image[TRAIN_ROWS:]).save(strip)
    pred = seg.predict(strip)[0]["mask"]
    strip.unlink()
    rgb, truth, palette = np.repeat(image[TRAIN_ROWS:, :, None], 3, axis=2), mask[TRAIN_ROWS:], seg.palette()
    iou = ((pred == 1) & (truth == 1)).sum() / max(((pred == 1) | (truth == 1)).sum(), 1)
    panels = [(rgb, "validation strip: the bottom quarter of img2d.tif, never trained on"),
              (draw.overlay_mask(rgb, truth, palette), "true nuclei (mask2d.tif)"),
              (draw.overlay_mask(rgb, pred, palette), f"predicted, in overlapping tiles (nucleus IoU {iou:.3f})")]
    fig, axes = plots.subplots(3, 1, figsize=(10, 8.2))
    for ax, (img, title) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"U-Net, {seg.config.model.backbone} encoder (ImageNet), 20 epochs on 117 tiles")
    plots.save(fig, path, dpi=110)
    return path


def visiontl_row(seg, history: list[dict], seconds: float, label: str) -> dict:
    final = seg.evaluate(seg.datasets()[1])
    return {"model": label, "weights": seg.model.backbone.weights_source, "seconds": seconds,
            "train_images_per_s": statistics.median(h["train/images_per_s"] for h in history),
            "best_epoch_mIoU": max(h["val/mIoU"] for h in history), "last_epoch_mIoU": history[-1]["val/mIoU"],
            "kept_checkpoint_mIoU": final["mIoU"], "mDice": final["mDice"], "run_dir": str(seg.run_dir),
            "history": history}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks segmentation")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--image-size", type=int, default=128, help="training crop (tiles are 128 px)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--train-tiles", type=int, default=0,
                   help="train on this many of the 117 training tiles (a seeded random subset; 0 = all)")
    p.add_argument("--only", nargs="+", choices=["pretrained", "plain", "random"], default=["pretrained", "plain", "random"],
                   help="plain runs interleaved with pretrained, so it needs it")
    args = p.parse_args()
    if "plain" in args.only and "pretrained" not in args.only:
        p.error("--only plain needs pretrained too: their epochs run interleaved")
    from visiontl.adapters import Segmenter

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = materialize_nuclei()
    out = Path(tempfile.mkdtemp(prefix="visiontl-seg-bench-"))
    print(f"segmentation benchmark on {device.type}: {root}", flush=True)
    rows = []
    if "pretrained" in args.only:
        seg = Segmenter(config=config(root, "imagenet", args, out))
        train_set, val_set = seg.datasets()
        plain = PlainLoop(train_set, val_set, args, device) if "plain" in args.only else None

        def plain_epoch(trainer, metrics):  # one plain-loop epoch after each visiontl epoch
            h = plain.epoch()
            print(f"  plain smp loop epoch {h['epoch']}: {h['train/images_per_s']:.1f} images/s, "
                  f"val mIoU {h['val/mIoU']:.4f}", flush=True)

        t0 = time.perf_counter()
        history = seg.fit(callbacks=(plain_epoch,) if plain else ())
        seconds = time.perf_counter() - t0
        rows.append(visiontl_row(seg, history, seconds, "visiontl U-Net mobilenet_v2 (ImageNet)"))
        if not args.train_tiles:
            strip_figure(seg, harness.RESULTS / f"segmentation-{device.type}-predictions.png")
    if "plain" in args.only:
        ph = plain.history
        rows.append({"model": "plain smp loop, smp.Unet mobilenet_v2 (ImageNet)", "weights": plain.source,
                     "train_images_per_s": statistics.median(h["train/images_per_s"] for h in ph),
                     "best_epoch_mIoU": max(h["val/mIoU"] for h in ph), "last_epoch_mIoU": ph[-1]["val/mIoU"],
                     "kept_checkpoint_mIoU": ph[-1]["val/mIoU"], "history": ph,
                     "params": sum(q.numel() for q in plain.model.parameters()),
                     "visiontl_params": sum(q.numel() for q in seg.model.parameters())})
        rows[0]["throughput_vs_plain"] = rows[0]["train_images_per_s"] / rows[1]["train_images_per_s"]
        # per-epoch ratios, each from an adjacent pair of epochs
        rows[0]["epoch_ratios"] = [a["train/images_per_s"] / b["train/images_per_s"] for a, b in zip(history, ph)]
        rows[0]["epoch_ratio_median"] = statistics.median(rows[0]["epoch_ratios"])
    if "random" in args.only:
        seg = Segmenter(config=config(root, "none", args, out))
        t0 = time.perf_counter()
        history = seg.fit()
        rows.append(visiontl_row(seg, history, time.perf_counter() - t0, "visiontl U-Net mobilenet_v2 (random init)"))
    result = {"machine": harness.machine(), "device": device.type, "data": str(root), "args": vars(args),
              "rows": [{k: v for k, v in r.items() if k != "history"} for r in rows],
              "val_mIoU_per_epoch": {r["model"]: [round(h["val/mIoU"], 4) for h in r["history"]] for r in rows}}
    name = f"segmentation-{device.type}" + (f"-{args.train_tiles}-tiles" if args.train_tiles else "")
    path = harness.save(name, result)
    harness.plot_curves(rows, "val/mIoU", harness.RESULTS / f"{name}.png", ylabel="validation mIoU",
                        title=f"stardist nuclei, {args.train_tiles or 117} training tiles, {args.image_size} px crops, "
                              f"{device.type}")
    print("\n| model | mIoU (kept) | best epoch mIoU | last epoch mIoU | train images/s | vs plain loop |\n"
          "|---|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['throughput_vs_plain']:.3f}×" if "throughput_vs_plain" in r else "-"
        print(f"| {r['model']} | {r['kept_checkpoint_mIoU']:.4f} | {r['best_epoch_mIoU']:.4f} | "
              f"{r['last_epoch_mIoU']:.4f} | {r['train_images_per_s']:.1f} | {ratio} |")
    if "plain" in args.only:
        print(f"per-epoch throughput ratios visiontl / plain: median {statistics.median(rows[0]['epoch_ratios']):.3f} "
              f"(min {min(rows[0]['epoch_ratios']):.3f}, max {max(rows[0]['epoch_ratios']):.3f}); "
              f"parameters {rows[1]['visiontl_params']:,} vs {rows[1]['params']:,}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

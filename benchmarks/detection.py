"""Detection transfer value and speed on real images: deepforest's aerial tree crowns, or
(``--data nuclei``) stardist's fluorescence microscopy nuclei as boxes:

    python -m benchmarks detection [--data trees|nuclei] [--epochs 30] [--image-size 192]

Side by side, same crops, image size, epochs and batch size:
1. visiontl detector, mobilenet_v2 with the offline ImageNet weights;
2. the same from random init (the value of the pretrained backbone);
3. ultralytics YOLOv8n from its yaml (no pretrained weights exist offline), trained by
   ultralytics' own trainer with its default recipe.

All three are scored by the same code (visiontl's COCO-style metrics, checked against
pycocotools in the tests) on the same validation crops; ultralytics' own number for
YOLOv8n is kept beside it. Training throughput counts training epochs only (no
validation): visiontl's per-epoch images/s, and ultralytics' epochs timed by callbacks.
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml

from visiontl.data.nuclei import materialize_nuclei_boxes
from visiontl.data.trees import materialize_trees

from . import harness

CONFIG_KEYS = ("train.batch_size", "optim.lr", "optim.warmup_epochs", "finetune.strategy", "finetune.ema",
               "finetune.ema_from", "data.augment.mosaic")
IMAGE_SIZES = {"trees": 192, "nuclei": 256, "galaxies": 320, "digits": 320}  # the default --image-size
TITLES = {"trees": "tree crowns", "nuclei": "nuclei", "galaxies": "Hubble galaxies", "digits": "digit pages"}


def visiontl_run(data_yaml: Path, weights: str, args, out: Path, architecture: str = "yolo") -> dict:
    from visiontl.adapters import DetectConfig, Detector
    from visiontl.config import load_config

    cfg = load_config(DetectConfig, None, args.set)  # --set key=value: a variant
    cfg.model.architecture = architecture
    cfg.data.yaml, cfg.data.image_size = str(data_yaml), args.image_size
    cfg.model.backbone, cfg.model.weights = "mobilenet_v2", weights
    if not args.defaults:  # the benchmark's settings; --defaults: the task's own
        cfg.data.augment.vflip, cfg.data.augment.mosaic = 0.5, args.mosaic
        cfg.finetune.strategy, cfg.finetune.bn = args.strategy, args.bn
        cfg.optim.lr = args.frcnn_lr if architecture == "faster_rcnn" and args.frcnn_lr else args.lr
        cfg.optim.warmup_epochs = 1.0
        cfg.train.batch_size = args.batch_size
    cfg.train.epochs, cfg.train.num_workers = args.epochs, args.workers
    cfg.train.out_dir, cfg.train.progress, cfg.train.seed = str(out / "runs"), "log", args.seed
    cfg.train.name = (f"visiontl-{architecture}-mobilenet_v2-{weights}-{cfg.finetune.strategy}-bn-{cfg.finetune.bn}"
                      f"-seed{args.seed}")
    det = Detector(config=cfg)
    t0 = time.perf_counter()
    history = det.fit()
    seconds = time.perf_counter() - t0
    final = det.evaluate(det.datasets()[1])
    model = "visiontl Faster R-CNN on" if architecture == "faster_rcnn" else "visiontl"
    speed = infer_images_per_s(det, det.datasets()[1])
    return {"model": f"{model} mobilenet_v2 ({'ImageNet' if weights != 'none' else 'random init'}, "
                     f"{'the task defaults, ' if args.defaults else ''}{cfg.finetune.strategy}, "
                     f"finetune.bn={cfg.finetune.bn}, lr {cfg.optim.lr:g}{''.join(', ' + s for s in args.set)})", "architecture": architecture, "infer_images_per_s": speed,
            "weights": det.model.backbone.weights_source, "seconds": seconds,
            "train_images_per_s": statistics.median(h["train/images_per_s"] for h in history),
            "mAP50-95": final["mAP50-95"], "mAP50": final["mAP50"], "run_dir": str(det.run_dir),
            "config": {k: functools.reduce(getattr, k.split("."), cfg) for k in CONFIG_KEYS},  # what ran
            "curve": {k: [h[f"val/{k}"] for h in history] for k in ("mAP50-95", "mAP50")},  # per epoch
            "history": history}


def infer_images_per_s(det, val, batch: int = 16, rounds: int = 5) -> float:
    """Inference images/s of the trained model on validation images (batches of ``batch``,
    NMS included, median of ``rounds`` after a warm-up), as predict runs it."""
    model = det.model.eval()
    images = torch.stack([val[i % len(val)][0] for i in range(batch)]).to(next(model.parameters()).device)
    times = []
    with torch.no_grad():
        det.detect(model, images, det.config.eval.predict_conf)
        for _ in range(rounds):
            t0 = time.perf_counter()
            det.detect(model, images, det.config.eval.predict_conf)
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def speed_side_by_side(data_yaml: Path, args, rounds: int = 7) -> list[dict]:
    """Training steps and inference of both architectures on mobilenet_v2, interleaved round
    by round on the same batches of real training images (medians): images/s."""
    from visiontl.adapters import DetectConfig, Detector

    detectors = {}
    for architecture in ("yolo", "faster_rcnn"):
        cfg = DetectConfig()
        cfg.data.yaml, cfg.data.image_size = str(data_yaml), args.image_size
        cfg.model.architecture, cfg.model.backbone, cfg.finetune.strategy = architecture, "mobilenet_v2", "full"
        detectors[architecture] = Detector(config=cfg)
    first = detectors["yolo"]
    train, val = first.datasets()
    batch = first.collate([train[i] for i in range(args.batch_size)])
    images = torch.stack([val[i % len(val)][0] for i in range(args.batch_size)])
    times = {a: {"train": [], "infer": []} for a in detectors}
    optimizers = {}
    for a, det in detectors.items():
        det.classes = list(train.classes)
        det._build()
        optimizers[a] = torch.optim.AdamW(det.model.parameters(), lr=1e-4)
    for r in range(rounds + 1):  # round 0 warms up
        for a, det in detectors.items():
            det.model.train()
            t0 = time.perf_counter()
            det.training_step(det.model, batch)["loss"].backward()
            optimizers[a].step()
            optimizers[a].zero_grad()
            t1 = time.perf_counter()
            det.model.eval()
            with torch.no_grad():
                det.detect(det.model, images, det.config.eval.predict_conf)
            t2 = time.perf_counter()
            if r:
                times[a]["train"].append(t1 - t0)
                times[a]["infer"].append(t2 - t1)
    rows = []
    for a in detectors:
        rows.append({"architecture": a, "train_images_per_s": args.batch_size / statistics.median(times[a]["train"]),
                     "infer_images_per_s": args.batch_size / statistics.median(times[a]["infer"]),
                     "params": sum(p.numel() for p in detectors[a].model.parameters())})
        print(f"{a}: training {rows[-1]['train_images_per_s']:.1f} images/s, inference "
              f"{rows[-1]['infer_images_per_s']:.1f} images/s, {rows[-1]['params'] / 1e6:.2f} M parameters", flush=True)
    return rows


def ultralytics_run(data_yaml: Path, args, out: Path) -> dict:
    os.environ.setdefault("YOLO_CONFIG_DIR", str(out / "ultralytics-settings"))
    font = Path(os.environ["YOLO_CONFIG_DIR"]) / "Arial.ttf"  # else ultralytics fetches one
    if not font.exists():
        import matplotlib

        font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
    from ultralytics import YOLO

    from visiontl.adapters import DetectConfig, Detector

    n_train = len(list((data_yaml.parent / "images" / "train").glob("*.png")))
    epoch_seconds: list[float] = []
    model = YOLO("yolov8n.yaml")
    marks = {}
    model.add_callback("on_train_epoch_start", lambda trainer: marks.__setitem__("t", time.perf_counter()))
    model.add_callback("on_train_epoch_end", lambda trainer: epoch_seconds.append(time.perf_counter() - marks["t"]))
    t0 = time.perf_counter()
    model.train(data=str(data_yaml), epochs=args.epochs, imgsz=args.image_size, batch=args.batch_size,
                workers=args.workers, device="cuda:0" if torch.cuda.is_available() else "cpu", pretrained=False,
                project=str(out / "ultralytics"), name="yolov8n", plots=False, seed=0, deterministic=False,
                verbose=False, amp=torch.cuda.is_available())
    seconds = time.perf_counter() - t0
    best = Path(model.trainer.best)
    own = model.trainer.metrics
    # the same scorer as the visiontl rows: YOLOv8n's best weights in visiontl's evaluation
    cfg = DetectConfig()
    cfg.data.yaml, cfg.data.image_size, cfg.model.ultralytics = str(data_yaml), args.image_size, str(best)
    det = Detector(config=cfg, classes=args.classes)
    final = det.evaluate(det.datasets()[1])
    return {"model": "ultralytics YOLOv8n (from yolov8n.yaml, its own trainer)", "weights": "random init",
            "seconds": seconds, "train_images_per_s": statistics.median(n_train / s for s in epoch_seconds[1:] or epoch_seconds),
            "mAP50-95": final["mAP50-95"], "mAP50": final["mAP50"],
            "ultralytics_own_mAP50-95": float(own.get("metrics/mAP50-95(B)", float("nan"))),
            "ultralytics_own_mAP50": float(own.get("metrics/mAP50(B)", float("nan"))), "run_dir": str(best.parent.parent)}


def variants_report(sets: list[str], variants: list[str], device: str) -> None:
    """The task's defaults and one change at a time (``--variants``): a markdown table of the
    final and the best epoch's validation mAP per set and variant (medians over the seeds whose
    result files exist: ``detection-DEVICE-SET-VARIANT[-sSEED].json``), and the per-epoch
    curves, one panel a set."""
    import json

    from visiontl.plots import save, subplots

    fig, axes = subplots(1, len(sets), figsize=(5 * len(sets), 3.8), squeeze=False)
    print("| variant | " + " | ".join(f"{s}: mAP50-95 / mAP50 (best epoch's mAP50-95), seeds" for s in sets) + " |")
    print("|---|" + "---:|" * len(sets))
    table = {v: [] for v in variants}
    for ax, name in zip(axes[0], sets):
        for v in variants:
            files = sorted(harness.RESULTS.glob(f"detection-{device}-{name}-{v}.json")) + \
                sorted(harness.RESULTS.glob(f"detection-{device}-{name}-{v}-s[0-9].json"))
            rows = [json.loads(f.read_text())["rows"][0] for f in files]
            if not rows:
                table[v].append("-")
                continue
            med = statistics.median
            table[v].append(f"{med(r['mAP50-95'] for r in rows):.3f} / {med(r['mAP50'] for r in rows):.3f} "
                            f"({med(max(r['curve']['mAP50-95']) for r in rows):.3f}), {len(rows)}")
            for i, r in enumerate(rows):
                ax.plot(range(1, len(r["curve"]["mAP50-95"]) + 1), r["curve"]["mAP50-95"], lw=1.2,
                        color=f"C{variants.index(v)}", alpha=0.9 if i == 0 else 0.5, label=v if i == 0 else None)
        ax.set(title=TITLES.get(name.rstrip("0123456789"), name) + f" ({name})", xlabel="epoch",
               ylabel="val mAP50-95")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for v in variants:
        print(f"| {v} | " + " | ".join(table[v]) + " |")
    path = harness.RESULTS / f"detection-{device}-variants.png"
    save(fig, path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks detection")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--data", choices=["trees", "nuclei", "galaxies", "digits"], default="trees",
                   help="trees: deepforest's aerial crowns (192 px crops); nuclei: stardist's nuclei (128 px crops); "
                        "galaxies: the Hubble deep field (64 px crops); digits: handwritten digits on 320 px pages, "
                        "10 classes (the last two: benchmarks/datasets.py)")
    p.add_argument("--image-size", type=int, default=0,
                   help="default: 192 for trees, 256 for nuclei (2× the crops), 320 for galaxies and digits")
    p.add_argument("--defaults", action="store_true",
                   help="visiontl with the detection task's defaults (only the image size, epochs and seed set)")
    p.add_argument("--set", nargs="*", action="extend", default=[], help="visiontl config overrides (key=value)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3, help="visiontl (AdamW, cosine)")
    p.add_argument("--frcnn-lr", type=float, default=0.0, help="visiontl's Faster R-CNN (default: --lr)")
    p.add_argument("--mosaic", type=float, default=0.5, help="visiontl's mosaic probability")
    p.add_argument("--workers", type=int, default=0,
                   help="loader processes for both (0: in the training process, fastest on 2 cores)")
    p.add_argument("--strategy", default="full", help="visiontl's finetune.strategy")
    p.add_argument("--bn", default="auto", choices=["auto", "frozen", "train"], help="visiontl's finetune.bn")
    p.add_argument("--seed", type=int, default=0, help="visiontl's train.seed (the augmentation draws, the head's init)")
    p.add_argument("--tag", default="", help="suffix of the result files")
    p.add_argument("--speed", action="store_true",
                   help="only the side-by-side speed of the two architectures (training steps and inference, interleaved)")
    p.add_argument("--only", nargs="+", choices=["pretrained", "random", "yolov8n", "faster_rcnn"],
                   default=["pretrained", "random", "yolov8n"])
    p.add_argument("--variants", nargs="+", metavar="VARIANT",
                   help="no training: tabulate and plot the result files detection-DEVICE-SET-VARIANT[-sSEED].json "
                        "of --sets (the tags of runs with --defaults and one --set change each)")
    p.add_argument("--sets", nargs="+", default=["digits", "galaxies", "trees320", "trees192"],
                   help="with --variants: the SET part of the result files' names")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.variants:
        variants_report(args.sets, args.variants, device)
        return
    args.image_size = args.image_size or IMAGE_SIZES[args.data]
    if args.data == "trees":
        data_yaml, args.classes = materialize_trees(args.image_size), ["tree"]
    elif args.data == "nuclei":
        data_yaml, args.classes = materialize_nuclei_boxes(), ["nucleus"]
    elif args.data == "galaxies":
        from .datasets import galaxies

        data_yaml, args.classes = galaxies(), ["galaxy"]
    else:
        from .datasets import digit_pages

        data_yaml = digit_pages()
        args.classes = yaml.safe_load(data_yaml.read_text())["names"]
    if args.speed:
        rows = speed_side_by_side(data_yaml, args)
        path = harness.save(f"detection-{device}-speed{args.tag}", {"machine": harness.machine(), "device": device,
                                                                   "data": str(data_yaml), "args": vars(args), "rows": rows})
        print(f"wrote {path}")
        return
    out = Path(tempfile.mkdtemp(prefix="visiontl-det-bench-"))
    print(f"detection benchmark on {device}: {data_yaml.parent}", flush=True)
    rows = []
    if "pretrained" in args.only:
        rows.append(visiontl_run(data_yaml, "imagenet", args, out))
    if "random" in args.only:
        rows.append(visiontl_run(data_yaml, "none", args, out))
    if "faster_rcnn" in args.only:
        rows.append(visiontl_run(data_yaml, "imagenet", args, out, architecture="faster_rcnn"))
    if "yolov8n" in args.only:
        rows.append(ultralytics_run(data_yaml, args, out))
    reference = next((r for r in rows if "YOLOv8n" in r["model"]), None)
    for r in rows:
        if reference is not None:
            r["throughput_vs_yolov8n"] = r["train_images_per_s"] / reference["train_images_per_s"]
    result = {"machine": harness.machine(), "device": device, "data": str(data_yaml), "args": vars(args), "rows": rows}
    path = harness.save(f"detection-{device}{args.tag}", {**result, "rows": [{k: v for k, v in r.items() if k != "history"}
                                                                   for r in rows]})
    if any("history" in r for r in rows):
        harness.plot_curves(rows, "val/mAP50-95", harness.RESULTS / f"detection-{device}{args.tag}.png", ylabel="val mAP50-95",
                            title=f"{TITLES[args.data]}, {args.image_size} px, {device}", reference=reference,
                            reference_value=reference["mAP50-95"] if reference else None)
    print("\n| model | mAP50-95 | mAP50 | train images/s | inference images/s | vs YOLOv8n | wall s |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['throughput_vs_yolov8n']:.2f}×" if "throughput_vs_yolov8n" in r else "-"
        infer = f"{r['infer_images_per_s']:.1f}" if "infer_images_per_s" in r else "-"
        print(f"| {r['model']} | {r['mAP50-95']:.3f} | {r['mAP50']:.3f} | {r['train_images_per_s']:.1f} | {infer} | "
              f"{ratio} | {r['seconds']:.0f} |")
    if reference is not None:
        print(f"(ultralytics' own scoring of YOLOv8n: mAP50-95 {reference['ultralytics_own_mAP50-95']:.3f}, "
              f"mAP50 {reference['ultralytics_own_mAP50']:.3f})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Seeing what a model does, measured: for each task's shipped recipe on its built-in real
data, the validation metric without and with test-time augmentation (the task's own
validation code, ``evaluate(tta=...)``), video prediction frames/s (a clip made of the
validation images, through ``predict_video``: prediction, drawing and encoding), and a
grid of drawn results.

    python -m benchmarks viewing --task classify [--checkpoint RUN/best.pt] [--epochs N]

Without ``--checkpoint`` the recipe is trained first (``--epochs`` shortens it; the
result says so). Writes ``results/viewing-<task>-cpu.json`` and ``viewing-<task>-grid.png``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import harness

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"classify": "configs/classify/fashion_mnist_mobilenet_v2.yaml",
           "segment": "configs/segment/nuclei_mobilenet_v2.yaml",
           "detect": "configs/detect/trees_mobilenet_v2.yaml",
           "stylize": "configs/stylize/starry_night_vgg19.yaml"}  # on the built-in photos (visiontl.data.photos)


def _clip(paths: list[Path], out: Path, frames: int, size: tuple[int, int]) -> Path:
    import cv2

    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
    for k in range(frames):
        writer.write(cv2.resize(cv2.imread(str(paths[k % len(paths)])), size))
    writer.release()
    return out


def screenshot(model, image: Path, path: Path) -> Path | None:
    """``visiontl serve``'s page in headless Chromium after ``image`` was dropped on it (None
    where Chromium or Playwright is missing)."""
    import shutil
    import socket

    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        print("no Chromium / Playwright: no screenshot of the page", file=sys.stderr)
        return None
    from visiontl.serve import serve

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    app = serve(model, port=port, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#source input[type=file]").set_input_files(str(image))
            page.locator("#result img").wait_for(timeout=120_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(path), full_page=True)
            browser.close()
    finally:
        app.close()
    return path


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks viewing")
    p.add_argument("--task", choices=list(RECIPES), required=True)
    p.add_argument("--checkpoint", help="a trained run's best.pt (default: train the recipe)")
    p.add_argument("--epochs", type=int, help="train the recipe this many epochs instead of its own")
    p.add_argument("--frames", type=int, default=96)
    args = p.parse_args()
    from visiontl.adapters import load
    from visiontl.draw import save_image

    work = Path(tempfile.mkdtemp(prefix="visiontl-viewing-"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        cmd = [sys.executable, "-m", "visiontl", "train", args.task, "-c", RECIPES[args.task],
               f"train.out_dir={work}", "train.name=run", "train.progress=none"]
        cmd += [f"train.epochs={args.epochs}"] if args.epochs else []
        if args.task == "stylize":
            from visiontl.data.photos import materialize_photos

            train, val, style = materialize_photos()
            cmd += [f"data.train={train}", f"data.val={val}", f"data.style={style}", "data.image_size=128",
                    "data.crops_per_image=8"]
        print("$ " + " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
        checkpoint = str(work / "run" / "best.pt")
    model = load(checkpoint)
    val = model.datasets()[1]
    t0 = time.perf_counter()
    plain = model.evaluate(val)
    t1 = time.perf_counter()
    tta = model.evaluate(val, tta=True) if model.supports_tta else None  # style transfer has none
    t2 = time.perf_counter()
    paths = [Path(s[0] if isinstance(s, tuple) else getattr(s, "path", s)) for s in val.samples]
    size = {"classify": (128, 128), "segment": (256, 256), "detect": (384, 384), "stylize": (256, 256)}[args.task]
    clip = _clip(paths, work / "clip.mp4", args.frames, size)
    video = model.predict_video(clip, out_dir=work / "video", progress=False)
    results = model.predict(paths[::max(1, len(paths) // 8)][:8])  # spread over the set (it is sorted by class)
    grid = ROOT / "benchmarks" / "results" / f"viewing-{args.task}-grid.png"
    save_image(results.grid(cols=4, tile=256), grid)
    out = {"machine": harness.machine(), "task": args.task, "checkpoint": checkpoint if args.checkpoint else
           f"{RECIPES[args.task]}" + (f" with train.epochs={args.epochs}" if args.epochs else ""),
           "val_images": len(val), "metrics": plain, "metrics_tta": tta,
           "val_seconds": t1 - t0, "val_seconds_tta": t2 - t1,
           "video": {"frames": video["frames"], "frame_size": list(size), "fps": video["fps"]}, "grid": grid.name}
    page = screenshot(model, paths[0], ROOT / "benchmarks" / "results" / f"viewing-{args.task}-page.png")
    out["page"] = page.name if page else None
    path = ROOT / "benchmarks" / "results" / f"viewing-{args.task}-cpu.json"
    path.write_text(json.dumps(out, indent=1, default=float))
    key = {"classify": "accuracy", "segment": "mIoU", "detect": "mAP50-95", "stylize": "loss"}[args.task]
    effect = f" → TTA {tta[key]:.4f}" if tta else ""
    print(f"{args.task}: {key} {plain[key]:.4f}{effect} ({len(val)} validation images; {t1 - t0:.1f} s"
          f"{f' → {t2 - t1:.1f} s' if tta else ''}); video {size[0]}×{size[1]}: {video['fps']:.1f} frames/s → {path}")

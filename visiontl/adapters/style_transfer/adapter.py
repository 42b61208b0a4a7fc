"""The fast style-transfer adapter (Johnson et al. 2016): a transformation network trained
through the shared engine on a folder of content photos for one style image, with the
perceptual loss of a frozen registry backbone; then one forward pass per image, any size."""
from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import albumentations as A
import torch

from ... import draw, export, plots
from ...backbones import create_backbone
from ...data.image_dataset import ImageDataset, collate
from ...data.images import DataError, expand_inputs, list_images, output_stems, read_image, readable
from ...data.split import random_split
from ...data.transforms import apply
from ...engine import Validation
from ...export import ExportGraph
from ..base import TaskAdapter
from ...results import Results, StyleResult
from .config import StylizeConfig
from .loss import content_loss, gram, layer_weights, style_loss, total_variation
from .model import TransformerNet
from .optimize import load_rgb, to_uint8
from .taps import FeatureTaps

SHORT_TRAINING = 500  # optimiser steps below which the result is mostly a colour shift


class Stylizer(TaskAdapter):
    """A fast style model: train once per style, then stylise any image in one pass.

    Example::

        st = Stylizer(style="starry_night.jpg")
        st.fit("photos/", epochs=2, image_size=256)          # a folder of content photos
        st.predict("holiday/", out_dir="starry")              # any size, <name>_stylized.png
        st = Stylizer.load("runs/stylize-…/best.pt")
    """

    task = "stylize"
    config_class = StylizeConfig
    monitor = ("val/loss", "min")
    collate = staticmethod(collate)

    def __init__(self, *, style: str | Path = "", backbone: str = "vgg19", weights: str = "imagenet",
                 config: StylizeConfig | None = None) -> None:
        super().__init__(config, backbone=backbone, weights=weights)
        if style:
            self.config.data.style = str(style)
        self._loss_net: FeatureTaps | None = None
        self._style_grams: dict | None = None
        self._style_weights: dict | None = None

    uses_backbone = False  # the backbone is the loss network (loss_net), not part of the model

    def make_model(self, backbone) -> TransformerNet:
        return TransformerNet(self.config.model.width, self.config.model.blocks)

    def describe_model(self) -> str:
        m = self.config.model
        return (f"fast style model (width {m.width}, {m.blocks} residual blocks) for {Path(self.config.data.style).name}, "
                f"loss network {m.backbone} ({m.weights})")

    def prepare(self, train_set) -> None:
        super().prepare(train_set)
        t = self.config.train
        steps = t.epochs * -(-len(train_set) // (t.batch_size * t.accumulate))
        if steps < SHORT_TRAINING:
            print(f"note: optimiser steps = {steps} ({len(train_set)} crops × epochs {t.epochs} / batch {t.batch_size}); "
                  f"a fast style model needs about {SHORT_TRAINING}+ to show the style (Johnson et al.: 40,000): "
                  "raise train.epochs or data.crops_per_image", file=sys.stderr)

    # -- data -------------------------------------------------------------------------
    def _content(self, folder: str, train: bool) -> ImageDataset:
        size = self.config.data.image_size
        files = list_images(folder) if Path(folder).is_dir() else []
        if not files:
            raise DataError(f"{folder}: no content images (a folder of photos, any subfolders)")
        ops = [A.SmallestMaxSize(max_size=size), A.RandomCrop(size, size) if train else A.CenterCrop(size, size)]
        if train:
            ops.append(A.HorizontalFlip(p=0.5))
        return ImageDataset([(p, 0) for p in files], [], partial(apply, A.Compose(ops)), source=folder)

    def datasets(self) -> tuple[ImageDataset, ImageDataset | None]:
        d = self.config.data
        if not d.train:
            raise ValueError("data.train is not set: a folder of content photos")
        if not d.style:
            raise ValueError("data.style is not set: the style image")
        if d.crops_per_image < 1:
            raise ValueError(f"data.crops_per_image must be at least 1, not {d.crops_per_image}")
        read_image(d.style)  # an unreadable style image fails now, naming the file
        train = self._content(d.train, train=True)
        if d.val:
            order, val = list(range(len(train))), self._content(d.val, train=False)
        else:
            order, held_out = random_split(len(train), d.val_fraction, self.config.train.seed, where=d.train)
            val = self._content(d.train, train=False).subset(held_out) if held_out else None
        # each photo crops_per_image times per epoch: different random crops and flips of it
        return train.subset(order * d.crops_per_image), val

    # -- the loss -------------------------------------------------------------------------
    def loss_net(self, device: torch.device) -> FeatureTaps:
        """The frozen backbone's taps and the style image's Gram matrices, on ``device``."""
        if self._loss_net is None:
            lc, d = self.config.loss, self.config.data
            backbone = create_backbone(self.config.model.backbone, weights=self.config.model.weights)
            self._style_weights = layer_weights(lc.style_layers, lc.style_layer_weights)
            self._loss_net = FeatureTaps(backbone, [*lc.content_layers, *lc.style_layers])
            style = load_rgb(d.style, d.style_size or 2 * d.image_size)
            with torch.no_grad():
                self._style_grams = {k: gram(v) for k, v in self._loss_net(style, lc.style_layers).items()}
        if next(self._loss_net.parameters()).device != device:
            self._loss_net.to(device)
            self._style_grams = {k: v.to(device) for k, v in self._style_grams.items()}
        return self._loss_net

    def losses(self, model, images: torch.Tensor) -> dict[str, torch.Tensor]:
        lc = self.config.loss
        taps = self.loss_net(images.device)
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        out = model(x)
        with torch.no_grad():
            targets = taps(x, lc.content_layers)  # relu2_2: a fraction of the network
        feats = taps(out)
        parts = {"content": content_loss(feats, targets).mean(),
                 "style": style_loss(feats, self._style_grams, self._style_weights).mean(),
                 "tv": total_variation(out.float()).mean()}
        total = lc.content_weight * parts["content"] + lc.style_weight * parts["style"] + lc.tv_weight * parts["tv"]
        return {"loss": total, **parts}

    # -- what the engine calls ----------------------------------------------------------
    def training_step(self, model, batch) -> dict:
        out = self.losses(model, batch[0])
        return {"loss": out["loss"], **{k: v.detach() for k, v in out.items() if k != "loss"}}

    def validation_step(self, model, batch) -> dict:
        n = len(batch[0])
        return {"n": n, **{k: v.detach().float() * n for k, v in self.losses(model, batch[0]).items()}}

    def validation_metrics(self, outputs: list[dict]) -> Validation:
        n = max(sum(o["n"] for o in outputs), 1)
        return Validation({k: sum(float(o[k]) for o in outputs) / n for k in ("loss", "content", "style", "tv")})

    # -- outputs --------------------------------------------------------------------------
    def eval_dataset(self, data: str | Path) -> ImageDataset:
        return self._content(str(data), train=False)

    def write_evaluation(self, out_dir: Path, data: ImageDataset, details=None) -> None:
        """content | style | result for the first validation images."""
        out_dir.mkdir(parents=True, exist_ok=True)
        device = next(self.model.parameters()).device
        style = read_image(self.config.data.style)
        images, titles = [], []
        self.model.eval()
        for i in range(min(4, len(data))):
            content = read_image(data.samples[i][0])
            x = load_rgb(content, self.config.data.image_size * 2).to(device)
            with torch.no_grad():
                result = to_uint8(self.model(x))
            images += [content, style, result]
            titles += [Path(data.samples[i][0]).name, "style", "result"]
        plots.image_grid(images, titles, out_dir / "stylized.png", cols=3, title=self.describe_model())

    @torch.no_grad()
    def predict(self, inputs, *, out_dir: str | Path | None = None, size: int = 0) -> Results:
        """Stylise images (a file, an array or a PIL image, a folder or a list) at their own
        size, or with the longer side resized to ``size``; with ``out_dir`` write
        ``<name>_stylized.png``."""
        device, out = self._prediction_setup(out_dir)
        results = Results()
        paths = expand_inputs(inputs)
        for (path, image, error), stem in zip(readable(paths), output_stems(paths)):
            if error:  # reported and skipped: one bad file does not end the run
                results.append(StyleResult({"path": str(path), "image": None, "seconds": 0.0, "error": error}))
                continue
            x = load_rgb(image, size).to(device)
            t0 = time.perf_counter()
            styled = to_uint8(self.model(x))
            results.append(StyleResult({"path": str(path), "image": styled, "seconds": time.perf_counter() - t0},
                                       image=None if isinstance(path, Path) else image))
            if out is not None:
                draw.save_image(styled, out / f"{stem}_stylized.png")
        return results

    prediction_files = "*_stylized.png"

    def describe_prediction(self, result: dict) -> str:
        h, w = result["image"].shape[:2]
        return f"{w}×{h} stylised in {result['seconds']:.2f} s"

    supports_int8 = True  # judged by the loss network (content and style losses) and by eye: int8_grid.png

    def sample_paths(self, data: ImageDataset) -> list[Path]:
        return [Path(p) for p, _ in data.samples]

    def export(self, out_dir: str | Path, *, formats=("onnx", "torchscript"), int8: bool = False) -> dict:
        """As every task's, and with ``int8`` also ``int8_grid.png``: photos, the float model's
        and the int8 model's results side by side, to see whether int8 keeps the look."""
        meta = super().export(out_dir, formats=formats, int8=int8)
        if int8:
            path = self._int8_grid(Path(out_dir))
            meta["files"]["int8_grid"] = {"path": path.name, "bytes": path.stat().st_size}
            export.write_meta(Path(out_dir) / "model.json", meta)
        return meta

    def _int8_grid(self, out: Path, n: int = 3) -> Path:
        train_set, val_set = self.datasets()
        data = val_set if val_set is not None else train_set
        models = {kind: export.OnnxModel(out / f, self.onnx_outputs)
                  for kind, f in (("float", "model.onnx"), ("int8", "model.int8.onnx"))}
        images, titles = [], []
        for path in sorted(dict.fromkeys(self.sample_paths(data)))[:n]:
            x = load_rgb(read_image(path), 2 * self.config.data.image_size)
            images += [read_image(path), *(to_uint8(m(x)) for m in models.values())]
            titles += [path.name, "float ONNX", "int8 ONNX"]
        return plots.image_grid(images, titles, out / "int8_grid.png", cols=3,
                                title="fast style model: float vs int8 ONNX")

    def export_graph(self, net: torch.nn.Module) -> ExportGraph:
        size = self.config.data.image_size
        return ExportGraph(net, {"stylized": "(batch, 3, height, width), RGB in [0, 1]"},
                           # batch 2: a batch of 1 would be fixed into the graph by older exporters (torch 2.6)
                           example=torch.rand(2, 3, size, size), meta={"style": self.config.data.style})

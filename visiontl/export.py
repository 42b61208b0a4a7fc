"""Export for deployment, shared by every task: ONNX (checked with onnxruntime),
TorchScript, an int8 ONNX model (static quantisation, calibrated on real images), and a
JSON file beside them saying what goes in and what comes out.

The exported graph starts with the backbone's own preprocessing, so it takes RGB images
in [0, 1] (N, 3, H, W, float32) whatever the weights expect.
"""
from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from .files import replacing, write_text


@dataclass
class ExportGraph:
    """What a task exports (its ``export_graph``): the graph, which takes RGB images in [0, 1]
    (N, 3, H, W float32) with the backbone's preprocessing inside, its outputs (name → what
    each holds), and what ``model.json`` says beside them."""
    net: nn.Module
    outputs: dict[str, str]
    size: int | None = None  # the input side the graph is fixed to; None: any height and width
    note: str = ""  # about the input: letterboxing, multiples of 32 …
    example: torch.Tensor | None = None  # what is traced; default two random images at data.image_size
    atol: float = 1e-3  # the largest onnxruntime-vs-PyTorch difference accepted
    int8_float_tail: bool = False  # int8: keep the nodes after the last convolutions in float (float_tail)
    meta: dict = field(default_factory=dict)  # more for model.json: preprocessing, NMS settings, palette …
    one_image: bool = False  # the graph takes one image at a time and its outputs have a varying length
    formats: tuple[str, ...] = ("onnx", "torchscript")  # what this graph can be written as


def export_task(adapter, out_dir: str | Path, *, formats: Iterable[str] = ("onnx", "torchscript"),
                int8: bool = False) -> dict:
    """Every task's ``export``: the adapter's graph (``adapter.export_graph``) written as
    ONNX (checked with onnxruntime) and TorchScript, with ``int8`` also a static int8 ONNX
    model scored against the float one (:func:`int8_vs_float`), and ``model.json``; returns
    that metadata."""
    net, out = prepare(adapter.model, out_dir, int8=int8 and not adapter.supports_int8,
                       name=f"the {adapter.task} model")
    g = adapter.export_graph(net)
    size = adapter.config.data.image_size
    side = [g.size, g.size] if g.size else ["height", "width"]
    meta: dict = {"task": adapter.task, **({"classes": adapter.classes} if adapter.classes else {}),
                  "model": adapter.describe_model(),
                  "input": {"name": "images", "shape": ["batch", 3, *side], "dtype": "float32", "color": "RGB",
                            "range": [0, 1], **({"note": g.note} if g.note else {})},
                  **g.meta, "outputs": g.outputs}
    example = g.example if g.example is not None else torch.rand(1 if g.one_image else 2, 3, size, size)
    wanted = {*formats, *(["onnx"] if int8 else [])}
    if not wanted & set(g.formats):
        raise ValueError(f"{adapter.describe_model()}: exports as {', '.join(g.formats)} only, not {', '.join(wanted)}")
    if g.one_image:
        meta["input"]["shape"][0] = 1
    write_models(g.net, example, out, meta, formats=wanted & set(g.formats), output_names=list(g.outputs),
                 atol=g.atol, one_image=g.one_image)
    if int8:
        int8_vs_float(adapter, out, meta, g.int8_float_tail)
    write_meta(out / "model.json", meta)
    return meta


def prepare(model: nn.Module, out_dir: str | Path, *, int8: bool = False,
            name: str = "this model") -> tuple[nn.Module, Path]:
    """The export preamble: ``model`` on the CPU in the default memory format and eval mode
    (what tracing and onnxruntime want), and ``out_dir`` made. ``int8`` is refused: a task
    whose int8 model is not checked (``supports_int8`` False) exports in float."""
    if int8:
        raise ValueError(f"int8 export is not available for {name}; export it in float")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return model.cpu().to(memory_format=torch.contiguous_format).eval(), out


def to_onnx(model: nn.Module, example: torch.Tensor, path: Path, *, output_names: list[str],
            one_image: bool = False) -> Path:
    """ONNX with a dynamic batch axis (and dynamic height/width); ``one_image``: one image of
    the example's size in, outputs of a varying length (torchvision's detection export)."""
    with replacing(path) as tmp:  # never through a file or link already at path
        _to_onnx(model.eval(), example, tmp, output_names=output_names, one_image=one_image)
    return path


def _to_onnx(model: nn.Module, example: torch.Tensor, path: Path, *, output_names: list[str],
             one_image: bool) -> None:
    if one_image:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's tracer warnings about its size arithmetic
            torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=output_names,
                              dynamic_axes={n: {0: "detections"} for n in output_names}, dynamo=False,
                              opset_version=17)
        return
    try:
        batch, h, w = torch.export.Dim("batch"), torch.export.Dim("height"), torch.export.Dim("width")
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=output_names,
                                    dynamic_shapes=({0: batch, 2: h, 3: w},), verbose=False)
        program.save(str(path))
    except Exception:  # models torch.export cannot trace yet: the TorchScript-based exporter
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            axes = {"images": {0: "batch", 2: "height", 3: "width"}, **{n: {0: "batch"} for n in output_names}}
            torch.onnx.export(model, (example,), str(path), input_names=["images"], output_names=output_names,
                              dynamic_axes=axes, dynamo=False)


def to_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> Path:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is in maintenance, still widely deployed
        traced = torch.jit.trace(model.eval(), example)
    with replacing(path) as tmp:
        traced.save(str(tmp))
    return path


def check_onnx(model: nn.Module, path: Path, example: torch.Tensor, *, atol: float = 1e-4) -> dict:
    """Run ``path`` with onnxruntime on ``example`` and compare with PyTorch: first every
    output's shape, then its values. Returns what was compared (``max_abs_diff``, the
    ``shapes``, and a ``note`` where some outputs were empty, e.g. a detector that finds
    nothing in the example). ``atol`` holds for outputs up to 1 in size and scales with larger
    ones (float32 rounding is relative: a random-init inception_v3's logits of ~10 differ by
    1.5e-4)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": example.numpy()})
    with torch.no_grad():
        want = model.eval()(example)
    want = [w.numpy() for w in (want if isinstance(want, (tuple, list)) else (want,))]
    names = [o.name for o in session.get_outputs()]
    for name, g, w in zip(names, got, want):
        if g.shape != w.shape:
            raise AssertionError(f"{path}: output {name!r} has shape {list(g.shape)} in onnxruntime but "
                                 f"{list(w.shape)} in PyTorch")
    filled = [(g, w) for g, w in zip(got, want) if w.size]
    diff = max((float(np.abs(g - w).max()) for g, w in filled), default=0.0)
    scale = max([1.0, *(float(np.abs(w).max()) for _, w in filled)])
    if diff > atol * scale:
        raise AssertionError(f"{path}: onnxruntime differs from PyTorch by {diff:.2e} (> {atol:g} × {scale:.3g}, "
                             "the outputs' largest size)")
    check = {"max_abs_diff": diff, "shapes": {n: list(w.shape) for n, w in zip(names, want)}}
    empty = [n for n, w in zip(names, want) if not w.size]
    if empty:
        check["note"] = (f"{', '.join(empty)} empty for the example in both runtimes: only "
                         f"{'shapes' if len(empty) == len(want) else 'their shapes and the other outputs'} compared")
    return check


def float_tail(path: Path) -> list[str]:
    """The nodes between the graph's last convolutions and its outputs (a detector's box
    decoding): where values of different ranges meet, which one int8 scale cannot hold."""
    import onnx

    graph = onnx.load(str(path)).graph
    producer = {out: node for node in graph.node for out in node.output}
    tail, stack = set(), [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.op_type == "Conv" or node.name in tail:
            continue
        tail.add(node.name)
        stack.extend(node.input)
    return sorted(tail)


def quantize_int8(float_path: Path, int8_path: Path, calibration: Iterable[np.ndarray],
                  keep_tail: bool = False) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) calibrated on real images; with
    ``keep_tail`` the nodes after the last convolutions stay in float (:func:`float_tail`)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"images": batch}

    with tempfile.TemporaryDirectory(dir=int8_path.parent, prefix=".int8-") as work, replacing(int8_path) as tmp:
        prepared = Path(work) / "prep.onnx"
        try:
            quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
            source = prepared
        except Exception:
            source = float_path
        quantize_static(str(source), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_tail(source) if keep_tail else None)
    return int8_path


class OnnxModel(nn.Module):
    """An exported ONNX file run by ONNX Runtime (CPU) behind ``model(images)``, so the task's
    own validation code scores it. ``adapt`` turns the graph's outputs into what the task's
    model returns (its ``onnx_outputs``)."""

    def __init__(self, path: Path, adapt) -> None:
        super().__init__()
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input, self.adapt = self.session.get_inputs()[0].name, adapt

    def forward(self, images: torch.Tensor):
        x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
        outputs = self.session.run(None, {self.input: x.contiguous().cpu().numpy()})
        return self.adapt([torch.from_numpy(o) for o in outputs])


def calibration_batches(adapter, train_set, n: int = 128, batch: int = 16) -> list[np.ndarray]:
    """Up to ``n`` training images resized to ``data.image_size``: RGB [0, 1] NCHW batches."""
    from PIL import Image

    from .data.images import read_image

    size = adapter.config.data.image_size
    images = [np.asarray(Image.fromarray(read_image(p)).resize((size, size), Image.BILINEAR))
              for p in adapter.sample_paths(train_set)[:n]]
    x = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32) / 255
    return [x[i:i + batch] for i in range(0, len(x), batch)]


def onnx_metrics(adapter, path: Path, data, batch_size: int = 16) -> dict[str, float]:
    """The task's validation metrics of the ONNX model at ``path`` on ``data``: the engine's
    evaluation loop and the task's own steps, as ``val`` scores the PyTorch model."""
    return adapter._validate(data, batch_size, model=OnnxModel(path, adapter.onnx_outputs)).metrics


def int8_vs_float(adapter, out: Path, meta: dict, keep_tail: bool = False) -> None:
    """``model.int8.onnx`` from ``model.onnx`` (static, calibrated on the run's training
    images; ``keep_tail``: see :func:`quantize_int8`) and, where there is validation data,
    the task's metrics of both: in ``meta``."""
    train_set, val_set = adapter.datasets()
    path = quantize_int8(out / "model.onnx", out / "model.int8.onnx", calibration_batches(adapter, train_set),
                         keep_tail)
    meta["files"]["int8"] = {"path": path.name, "bytes": path.stat().st_size}
    if val_set is not None:
        meta["int8_vs_float"] = {
            "val_images": len(val_set), "metric": adapter.monitor[0].split("/", 1)[1],
            "float": onnx_metrics(adapter, out / "model.onnx", val_set), "int8": onnx_metrics(adapter, path, val_set),
            "float_mb": round((out / "model.onnx").stat().st_size / 2**20, 2),
            "int8_mb": round(path.stat().st_size / 2**20, 2)}


def write_models(net: nn.Module, example: torch.Tensor, out: Path, meta: dict, *, formats: Iterable[str],
                 output_names: list[str], atol: float = 1e-4, one_image: bool = False) -> dict:
    """``model.onnx`` (checked with onnxruntime) and/or ``model.torchscript.pt`` of ``net``
    in ``out``; records the files and the ONNX check in ``meta`` (returned)."""
    meta.setdefault("files", {})
    if "onnx" in formats:
        path = to_onnx(net, example, out / "model.onnx", output_names=output_names, one_image=one_image)
        check = check_onnx(net, path, example, atol=atol)
        meta["onnx_max_abs_diff_vs_pytorch"], meta["onnx_check"] = check["max_abs_diff"], check
        meta["files"]["onnx"] = {"path": path.name, "bytes": path.stat().st_size}
    if "torchscript" in formats:
        path = to_torchscript(net, example, out / "model.torchscript.pt")
        meta["files"]["torchscript"] = {"path": path.name, "bytes": path.stat().st_size}
    return meta


def write_meta(path: Path, meta: dict) -> Path:
    return write_text(path, json.dumps(meta, indent=1))

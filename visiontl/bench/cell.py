"""One benchmark cell, one task × one backbone, run in its own process
(``python -m visiontl.bench.cell PLAN.json TASK BACKBONE OUT.json``) so a crash or an
out-of-memory ends only this cell.

The cell trains the task twice with the same settings, from the backbone's pretrained
weights and from random init, and measures the pretrained model: inference images/s
(PyTorch, and ONNX Runtime where the task exports), latency at batch 1, peak memory,
parameters and GFLOPs at the task's input size.
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from ..engine.distributed import amp_dtype, select_device
from . import measure
from .plan import Plan, metric, task_overrides


def weights_record(backbone: str) -> dict:
    """Which pretrained weights the backbone would get now (source, sha256), or why none."""
    from ..backbones import BACKBONES, WeightsUnavailable, create_backbone
    from ..backbones.weights import file_sha256, locate

    try:
        net = create_backbone(backbone, weights="imagenet")
    except (WeightsUnavailable, OSError, RuntimeError) as e:
        return {"available": False, "why": str(e).splitlines()[0].removesuffix(" To get them:")}
    record = {"available": True, "source": net.weights_source}
    if backbone in BACKBONES:
        found = locate(BACKBONES.get(backbone).weights)
        if found is not None and found[2] is not None:
            record["sha256"] = file_sha256(found[2])
    return record


def _style_layers(backbone: str) -> list[str]:
    """The loss-network taps: Gatys et al.'s VGG layers, or the stage outputs of other backbones."""
    from ..adapters.style_transfer.taps import named_layers
    from ..backbones import create_backbone

    names = {n for n, _, _ in named_layers(create_backbone(backbone, weights="none"))}
    if "relu4_1" in names:
        return []
    return ["loss.content_layers=[stage2]", "loss.style_layers=[stage0,stage1,stage2,stage3]"]


def build(task: str, backbone: str, weights: str, overrides: list[str], out: Path):
    from ..adapters import TASKS
    from ..config import load_config

    adapter_cls, config_cls = TASKS[task]
    keys = [*overrides, f"model.backbone={backbone}", f"model.weights={weights}", f"train.out_dir={out}",
            f"train.name={'pretrained' if weights != 'none' else 'random-init'}", "train.progress=log"]
    if task == "stylize":
        keys += _style_layers(backbone)
    return adapter_cls.from_config(load_config(config_cls, None, keys))


def train(task: str, adapter, device: torch.device) -> dict:
    """Fit; the best epoch's metrics (what best.pt holds), the final epoch's, and the engine's
    training images/s (median over the epochs after the first, the warm-up)."""
    key = metric(task)[0]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    history = adapter.fit()
    seconds = time.perf_counter() - t0
    best, _ = adapter.best_vs_last(history)
    speeds = [h["train/images_per_s"] for h in history]
    return {"metric": best[f"val/{key}"], "final": history[-1][f"val/{key}"], "best_epoch": best["epoch"],
            "metrics": {k[4:]: v for k, v in best.items() if k.startswith("val/")},
            "train_images_per_s": measure.median(speeds[1:] or speeds), "seconds": seconds,
            "history": history, "run_dir": str(adapter.run_dir)}


def judged(adapter, pretrained_adapter) -> dict:
    """Style transfer: a model trained with a random-init loss network, scored by the
    pretrained loss network (its own losses live in another feature space)."""
    pretrained_adapter.model, keep = adapter.model, pretrained_adapter.model
    try:
        return pretrained_adapter.evaluate(pretrained_adapter.datasets()[1])
    finally:
        pretrained_adapter.model = keep


def speed(adapter, plan: Plan, tmp: Path) -> dict:
    """Inference images/s and batch-1 latency (PyTorch and ONNX Runtime), parameters, GFLOPs
    and peak memory of the trained model."""
    device = select_device(plan.device)
    size = adapter.config.data.image_size
    batch = 8 if plan.quick and device.type == "cpu" else 32 if device.type == "cpu" else 64
    model = adapter.model.eval()
    out = {"batch": batch, "input": [3, size, size], "params_m": measure.parameters(model) / 1e6,
           "gflops": measure.gflops(model.cpu(), torch.rand(1, 3, size, size))}
    model = model.to(device).to(memory_format=torch.channels_last)
    if plan.compile:
        model = torch.compile(model)
    example = torch.rand(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    amp = amp_dtype("auto", device)
    rounds = plan.rounds()
    out["infer_images_per_s"] = measure.inference(model, example, rounds=rounds, amp=amp)
    out["latency_ms"] = measure.latency_ms(model, example, rounds=2 * rounds, amp=amp)
    try:
        adapter.export(tmp / "export", formats=["onnx"])
        ort, ort_ms = measure.onnx_inference(tmp / "export" / "model.onnx", example.float().contiguous(),
                                             rounds=rounds)
        out.update(ort_images_per_s=ort, ort_latency_ms=ort_ms)
    except Exception as e:  # recorded, not fatal: the PyTorch numbers stand
        out["ort_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    out["peak_memory_mb"] = measure.peak_memory_mb(device)
    out["memory_kind"] = "max_memory_allocated" if device.type == "cuda" else "process peak RSS"
    return out


def run(plan: Plan, task: str, backbone: str, data: dict[str, str], out_dir: Path) -> dict:
    device = select_device(plan.device)
    overrides = task_overrides(plan, task, data)
    record: dict = {"task": task, "backbone": backbone, "overrides": overrides, "weights": weights_record(backbone)}
    adapters = {}
    for label, weights in (("pretrained", "imagenet"), ("random", "none")):
        if label == "pretrained" and not record["weights"]["available"]:
            record[label] = {"error": "no pretrained weights offline: " + record["weights"]["why"]}
            continue
        adapters[label] = build(task, backbone, weights, overrides, out_dir)
        record[label] = train(task, adapters[label], device)
    if task == "stylize" and "pretrained" in adapters:
        record["random"]["judged_by_pretrained"] = judged(adapters["random"], adapters["pretrained"])
    with tempfile.TemporaryDirectory() as tmp:
        record["speed"] = speed(adapters.get("pretrained") or adapters["random"], plan, Path(tmp))
    if not plan.keep_checkpoints:  # a bench of many backbones would fill the disk; metrics and plots stay
        for adapter in adapters.values():
            for name in ("best.pt", "last.pt"):
                (adapter.run_dir / name).unlink(missing_ok=True)
    return record


def main(argv: list[str] | None = None) -> int:
    plan_file, task, backbone, out_file = argv or sys.argv[1:]
    saved = json.loads(Path(plan_file).read_text())
    plan = Plan(**saved["plan"])
    out = Path(out_file)
    t0 = time.perf_counter()
    try:
        record = run(plan, task, backbone, saved["data"][task], out.parent / out.stem)
        record["status"] = "ok"
    except Exception as e:
        traceback.print_exc()
        record = {"task": task, "backbone": backbone, "status": "error",
                  "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    record["cell_seconds"] = time.perf_counter() - t0
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    tmp.replace(out)
    return 0 if record["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())

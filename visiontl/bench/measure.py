"""What a benchmark measures, written once: throughput and latency as medians of timed
rounds after a warm-up, peak memory, parameters, FLOPs, and ONNX Runtime speed.

Used by ``visiontl bench`` and by the scripts in ``benchmarks/``.
"""
from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn


def sync(device: torch.device | str | None = None) -> None:
    """Wait for queued CUDA work, so a clock read after it counts it."""
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], int], device: torch.device | str | None = None) -> float:
    """Run ``fn`` (which returns how many items it processed) once; items per second."""
    sync(device)
    t0 = time.perf_counter()
    n = fn()
    sync(device)
    return n / (time.perf_counter() - t0)


def rates(fn: Callable[[], int], *, rounds: int = 5, warmup: int = 1,
          device: torch.device | str | None = None) -> list[float]:
    """``fn``'s items per second in ``rounds`` timed calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return [timed(fn, device) for _ in range(rounds)]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the peak of ``max_memory_allocated`` since the last reset; CPU: the process's
    peak resident set size (Linux and macOS)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def gflops(model: nn.Module, example: torch.Tensor) -> float:
    """Forward FLOPs for ``example`` in billions, counted by torch's own FLOP counter
    (``torch.utils.flop_counter``: 2 per multiply-add, convolutions and matrix products)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(example)
    return counter.get_total_flops() / 1e9


def inference(model: nn.Module, example: torch.Tensor, *, rounds: int = 5, repeats: int = 1,
              amp: torch.dtype | None = None) -> float:
    """Median images per second of ``model`` (already on ``example``'s device, in eval mode)
    on the batch ``example``; each timed round runs it ``repeats`` times."""
    device = example.device

    @torch.no_grad()
    def run() -> int:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            for _ in range(repeats):
                model(example)
        return len(example) * repeats

    return median(rates(run, rounds=rounds, device=device))


def latency_ms(model: nn.Module, example: torch.Tensor, *, rounds: int = 10,
               amp: torch.dtype | None = None) -> float:
    """Median milliseconds for one image (``example`` of batch 1)."""
    return 1000.0 / inference(model, example[:1], rounds=rounds, amp=amp)


def onnx_inference(path: Path, example: torch.Tensor, *, rounds: int = 5) -> tuple[float, float]:
    """(images per second on the batch ``example``, milliseconds at batch 1) of the ONNX model
    at ``path`` with ONNX Runtime on the CPU, medians after a warm-up."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch, one = example.cpu().numpy(), example[:1].cpu().numpy()

    def run(x):
        def call() -> int:
            session.run(None, {name: x})
            return len(x)
        return call

    throughput = median(rates(run(batch), rounds=rounds))
    return throughput, 1000.0 / median(rates(run(one), rounds=2 * rounds))

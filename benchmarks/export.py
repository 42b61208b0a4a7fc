"""Deployment benchmark: float vs int8 ONNX (onnxruntime, CPU) of a trained model of any
task that has an int8 export (classify, detect, segment).

    python -m benchmarks export RUN_DIR/best.pt [--batch 32] [--tag nuclei]

Exports the checkpoint (float + static int8, calibrated on its training images), then
reports size, the task's validation metrics and interleaved inference throughput of both.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from visiontl.adapters import load

from . import harness


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks export")
    p.add_argument("checkpoint")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--tag", default="", help="suffix of the result file (export-int8-cpu<tag>.json)")
    args = p.parse_args()
    import onnxruntime as ort

    model = load(args.checkpoint)
    out = Path(tempfile.mkdtemp(prefix="visiontl-export-"))
    meta = model.export(out, formats=["onnx"], int8=True)
    size = model.config.data.image_size
    x = np.random.default_rng(0).random((args.batch, 3, size, size), dtype=np.float32)
    sessions = {name: ort.InferenceSession(str(out / f), providers=["CPUExecutionProvider"])
                for name, f in (("float", "model.onnx"), ("int8", "model.int8.onnx"))}

    def rate(session):
        def five() -> int:
            for _ in range(5):
                session.run(None, {"images": x})
            return 5 * args.batch

        five()  # warm-up
        return harness.timed(five)

    rates = harness.interleaved({k: (lambda s=s: rate(s)) for k, s in sessions.items()}, args.repeats)
    medians = {k: harness.median(v) for k, v in rates.items()}
    checkpoint = "/".join(Path(args.checkpoint).parts[-2:])  # run/best.pt: no machine path
    result = {"machine": harness.machine(), "task": model.task, "checkpoint": checkpoint, "image_size": size,
              "batch": args.batch, "int8_vs_float": meta["int8_vs_float"], "images_per_s": rates, "medians": medians}
    path = harness.save(f"export-int8-cpu{args.tag}", result)
    q = meta["int8_vs_float"]
    m = q["metric"]
    print(f"\n{'':8}{m:>10}{'MB':>8}{'images/s':>10}   ({q['val_images']} validation images, batch {args.batch})")
    for kind in ("float", "int8"):
        print(f"{kind:8}{q[kind][m]:>10.4f}{q[f'{kind}_mb']:>8.2f}{medians[kind]:>10.0f}")
    print(f"int8 / float throughput {medians['int8'] / medians['float']:.2f}; wrote {path}")


if __name__ == "__main__":
    main()

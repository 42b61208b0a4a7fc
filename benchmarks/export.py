"""Deployment benchmark: float vs int8 ONNX (onnxruntime, CPU) of a trained classifier.

    python -m benchmarks export RUN_DIR/best.pt [--batch 32]

Exports the checkpoint (float + static int8, calibrated on its training images), then
reports size, validation accuracy and interleaved inference throughput of both.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from visiontl.adapters import Classifier

from . import harness


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks export")
    p.add_argument("checkpoint")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    import onnxruntime as ort

    clf = Classifier.load(args.checkpoint)
    out = Path(tempfile.mkdtemp(prefix="visiontl-export-"))
    meta = clf.export(out, formats=["onnx"], int8=True)
    size = clf.config.data.image_size
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
    result = {"machine": harness.machine(), "checkpoint": args.checkpoint, "image_size": size, "batch": args.batch,
              "int8_vs_float": meta["int8_vs_float"], "images_per_s": rates, "medians": medians}
    path = harness.save("export-int8-cpu", result)
    q = meta["int8_vs_float"]
    print(f"\n{'':8}{'accuracy':>10}{'MB':>8}{'images/s':>10}   ({q['val_images']} validation images, batch {args.batch})")
    print(f"{'float':8}{q['float_accuracy']:>10.4f}{q['float_mb']:>8.2f}{medians['float']:>10.0f}")
    print(f"{'int8':8}{q['int8_accuracy']:>10.4f}{q['int8_mb']:>8.2f}{medians['int8']:>10.0f}")
    print(f"int8 / float throughput {medians['int8'] / medians['float']:.2f}; wrote {path}")


if __name__ == "__main__":
    main()

"""Deployment benchmark of a trained model (classify, detect, segment, stylize): the float and
int8 ONNX models (and any ``--compare`` models) through visiontl's deployment report — size,
the task's validation metrics, ONNX Runtime latency and throughput, interleaved rounds.

    python -m benchmarks export RUN_DIR/best.pt [--batch 32] [--tag nuclei] [--compare CKPT ...]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from visiontl.deploy import deployment_report, markdown

from . import harness


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks export")
    p.add_argument("checkpoint")
    p.add_argument("--compare", nargs="+", default=[], help="more trained models of the same task")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=7, help="timing rounds")
    p.add_argument("--tag", default="", help="suffix of the result file (export-int8-cpu<tag>.json)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="visiontl-export-") as out:
        report = deployment_report(args.checkpoint, compare=args.compare, out=out, batch=args.batch,
                                   rounds=args.repeats)
    checkpoint = "/".join(Path(args.checkpoint).parts[-2:])  # run/best.pt: no machine path
    path = harness.save(f"export-int8-cpu{args.tag}", {"machine": harness.machine(), "checkpoint": checkpoint,
                                                        "report": report})
    print(markdown(report))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

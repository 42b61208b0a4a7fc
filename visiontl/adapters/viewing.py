"""Using a trained model, for every task: what every ``predict`` shares (its set-up, and
``predict_to`` for the command line), test-time augmentation (``supports_tta``,
``tta_model``: see tta.py), explanations (``supports_explain``, ``explain``) and video
(``predict_video``). Capabilities are declared here with their defaults, never sniffed;
:class:`~visiontl.adapters.base.TaskAdapter` inherits them."""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..data.images import report_unreadable
from ..files import replacing
from ..results import Results
from ..video import VideoWriter

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}


def is_video(item) -> bool:
    """A video file (by suffix) or a camera index such as ``0``."""
    return (isinstance(item, int) or (isinstance(item, str) and item.isdigit())
            or (isinstance(item, (str, Path)) and Path(item).suffix.lower() in VIDEO_SUFFIXES))


class Viewing:
    task = ""

    # -- predict's shared parts -------------------------------------------------------------
    def _prediction_setup(self, out_dir: str | Path | None) -> tuple[torch.device, Path | None]:
        """The start every ``predict`` shares: the model in eval mode, its device, and the
        output folder (created) when there is one."""
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        return next(self.model.eval().parameters()).device, out

    def predict_to(self, inputs, *, out_dir: str | Path | None = None, **options) -> Results:
        """``visiontl predict``: predict, print a line per input, and with ``out_dir`` write the
        outputs; an unreadable input is reported in its result's ``error``, never raised."""
        results = self.predict(inputs, out_dir=out_dir, **options)
        for r in results:
            print(f"{r['path']}: " + ("skipped (unreadable)" if r.get("error") else self.describe_prediction(r)))
        if out_dir is not None:
            print(f"wrote {self.prediction_files} to {out_dir}", file=sys.stderr)
        report_unreadable(results)
        return results


    # -- test-time augmentation ---------------------------------------------------------
    supports_tta = False

    def tta_model(self) -> torch.nn.Module:
        """The model wrapped to merge several views of each input (tta.py), used by
        ``predict(tta=True)`` and ``evaluate(tta=True)``."""
        raise NotImplementedError(f"{self.task}: no test-time augmentation for this task")

    # -- explanations ---------------------------------------------------------------------
    supports_explain = False
    explain_methods: tuple[str, ...] = ()

    def explain(self, inputs, *, method: str = "", target: str | None = None,
                out_dir: str | Path | None = None) -> Results:
        """Where the model looks: one result per input whose ``plot()`` shows it."""
        raise NotImplementedError(f"{self.task}: explanations are for classification (class activation maps) "
                                  "and segmentation (per-class confidence maps)")

    # -- video ----------------------------------------------------------------------------
    def predict_video(self, source: str | Path | int, *, out_dir: str | Path, batch_size: int = 8,
                      max_frames: int = 0, progress: bool = True, **options) -> dict:
        """Predict every frame of a video file (or a camera index, e.g. ``0``) with the same
        ``options`` as ``predict``, streaming: frames are read, predicted in batches of
        ``batch_size``, drawn and written to ``<out_dir>/<name>_pred.mp4`` at once, and the
        per-frame numbers to ``<name>_frames.csv``; memory does not grow with the video. The
        video is H.264 (:class:`~visiontl.video.VideoWriter`): it plays in a browser.
        ``max_frames`` > 0 stops after that many (a camera runs until it is closed or
        interrupted with Ctrl-C, which keeps what was written). Returns the counts, the output
        paths and frames/s."""
        import cv2
        from tqdm import tqdm

        camera = isinstance(source, int) or str(source).isdigit()
        if not camera and not Path(source).is_file():
            raise FileNotFoundError(f"{source}: no such video file")
        cap = cv2.VideoCapture(int(source) if camera else str(source))
        if not cap.isOpened():
            raise ValueError(f"{source}: cannot be opened as a video" + (" (no such camera)" if camera else
                             " (not a video, or a codec OpenCV cannot read)"))
        fps_in = cap.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if not camera else 0
        total = min(total, max_frames) if max_frames > 0 and total > 0 else (total or max_frames or None)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        name = f"camera{int(source)}" if camera else Path(source).stem
        video_path, table_path = out / f"{name}_pred.mp4", out / f"{name}_frames.csv"
        n, t0 = 0, time.perf_counter()
        bar = tqdm(total=total, unit="frame", desc=f"{self.task} {name}", disable=not progress, file=sys.stderr)
        # both files are written beside their names and renamed into place when whole (files.py)
        with replacing(video_path) as video_tmp, replacing(table_path) as table_tmp, \
                open(table_tmp, "w", newline="") as f:
            writer, table = VideoWriter(video_tmp, fps_in), None
            try:
                while True:
                    frames = []
                    while len(frames) < batch_size and (max_frames <= 0 or n + len(frames) < max_frames):
                        ok, frame = cap.read()
                        if not ok:
                            break
                        frames.append(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV's BGR → RGB
                    if not frames:
                        break
                    results = self.predict(frames, **options)
                    for k, r in enumerate(results):
                        writer.write(r.plot())
                        rows = [{"frame": n + k, **{c: v for c, v in row.items() if c != "path"}} for row in r.rows()]
                        if table is None and rows:
                            table = csv.DictWriter(f, fieldnames=list(rows[0]), extrasaction="ignore")
                            table.writeheader()
                        if rows:
                            table.writerows(rows)
                    n += len(frames)
                    bar.update(len(frames))
                    bar.set_postfix(fps=f"{n / (time.perf_counter() - t0):.1f}")
            except KeyboardInterrupt:  # how a camera is stopped: the frames so far make a whole video
                print(f"\ninterrupted after {n} frames", file=sys.stderr)
            finally:
                bar.close()
                cap.release()
                writer.close()
            if n == 0:
                raise ValueError(f"{source}: no frame could be read")
        seconds = time.perf_counter() - t0
        print(f"{name}: {n} frames in {seconds:.1f} s ({n / seconds:.1f} frames/s) → {video_path}", file=sys.stderr)
        return {"frames": n, "seconds": seconds, "fps": n / seconds, "video": str(video_path),
                "table": str(table_path)}

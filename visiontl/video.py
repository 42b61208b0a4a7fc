"""Result videos that play in a browser: H.264 (yuv420p, the index at the front of the MP4)
encoded by FFmpeg's libx264 through PyAV, whose wheels ship it. OpenCV's own writer gives
MPEG-4 Part 2 (``mp4v``), which browsers do not play."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


class VideoWriter:
    """``write(rgb)`` frames (H, W, 3 uint8) into an MP4 at ``path``, then ``close()``. The
    first frame fixes the size (rounded up to even sides, as yuv420p needs); later frames of
    another size are resized to it."""

    def __init__(self, path: str | Path, fps: float, *, crf: int = 23) -> None:
        import av

        self.crf = crf
        self.rate = Fraction(fps if fps and fps > 0 else 25.0).limit_denominator(1001)
        self.container = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        self.stream = None
        self.size: tuple[int, int] | None = None  # (width, height)

    def write(self, rgb: np.ndarray) -> None:
        import av

        if self.stream is None:
            h, w = rgb.shape[:2]
            self.size = (w + w % 2, h + h % 2)
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            self.stream.width, self.stream.height = self.size
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": str(self.crf), "preset": "veryfast"}
        frame = av.VideoFrame.from_ndarray(self._fit(rgb), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def _fit(self, rgb: np.ndarray) -> np.ndarray:
        w, h = self.size
        if rgb.shape[:2] == (h, w):
            return np.ascontiguousarray(rgb)
        if 0 <= h - rgb.shape[0] <= 1 and 0 <= w - rgb.shape[1] <= 1:  # an odd side: repeat the edge
            return np.pad(rgb, ((0, h - rgb.shape[0]), (0, w - rgb.shape[1]), (0, 0)), mode="edge")
        import cv2

        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():  # flush the encoder
                self.container.mux(packet)
        self.container.close()

"""Export helpers for the classification adapter: the graph that is exported, and how
an exported ONNX model is run on a dataset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...data.image_dataset import ImageDataset


class WithProbabilities(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor):
        logits = self.model(images)
        return logits, logits.softmax(1)


def batch_array(data: ImageDataset, indices) -> np.ndarray:
    return torch.stack([data[i][0] for i in indices]).float().div(255).numpy()


def onnx_accuracy(path: Path, data: ImageDataset, batch_size: int = 32) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    correct = 0
    for start in range(0, len(data), batch_size):
        idx = range(start, min(start + batch_size, len(data)))
        logits = session.run(["logits"], {"images": batch_array(data, idx)})[0]
        correct += int((logits.argmax(1) == np.array([data.samples[i][1] for i in idx])).sum())
    return correct / max(len(data), 1)

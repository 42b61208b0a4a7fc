"""The task contract is enough for a new task: image regression (an image's mean brightness)
written against ``TaskAdapter`` alone, registered with one call, trained by the engine and by
the command line, evaluated and reloaded."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from visiontl.adapters import TASKS, register_task
from visiontl.adapters.base import TaskAdapter
from visiontl.engine import FinetuneConfig, OptimConfig, TrainConfig, Validation
from visiontl.export import ExportGraph


# -- the toy task: a config, a dataset and an adapter ---------------------------------------
@dataclass
class RegressData:
    train: str = ""  # folder of images; the target is each image's mean brightness
    val: str = ""  # the same for validation
    val_fraction: float = 0.0  # unused: validation comes from data.val
    image_size: int = 32  # input side


@dataclass
class RegressModel:
    backbone: str = "resnet18"  # a registry backbone
    weights: str = "none"  # imagenet | a file | none


@dataclass
class RegressConfig:
    data: RegressData = field(default_factory=RegressData)
    model: RegressModel = field(default_factory=RegressModel)
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(strategy="full"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=8, batch_size=8, num_workers=0,
                                                                   progress="none"))


class Brightness(torch.utils.data.Dataset):
    classes = ["brightness"]

    def __init__(self, folder: str, size: int):
        self.samples = [(p, None) for p in sorted(Path(folder).glob("*.png"))]
        self.size = size

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        image = Image.open(self.samples[i][0]).convert("RGB").resize((self.size, self.size))
        x = torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1)
        return x, x.mean().reshape(1)


class Regressor(TaskAdapter):
    config_class = RegressConfig

    def datasets(self):
        d = self.config.data
        return Brightness(d.train, d.image_size), Brightness(d.val, d.image_size) if d.val else None

    def make_model(self, backbone):
        return RegressionModel(backbone)

    def training_step(self, model, batch):
        images, target = batch
        return {"loss": F.mse_loss(model(images), target)}

    def validation_step(self, model, batch):
        images, target = batch
        return {"sq": F.mse_loss(model(images), target, reduction="sum"), "n": len(target)}

    def validation_metrics(self, outputs):
        return Validation({"loss": float(sum(o["sq"] for o in outputs)) / sum(o["n"] for o in outputs)})

    def eval_dataset(self, data):
        return Brightness(data, self.config.data.image_size)

    def write_evaluation(self, out_dir, data, details):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "evaluated.txt").write_text(f"{len(data)} images\n")

    def export_graph(self, net):
        return ExportGraph(net, {"brightness": "(batch, 1) in [0, 1]"}, size=self.config.data.image_size)


class RegressionModel(torch.nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone, self.head = backbone, torch.nn.Linear(backbone.feature_info[-1].channels, 1)

    def forward(self, images):
        return self.head(self.backbone(images)[-1].float().mean((2, 3)))


# -----------------------------------------------------------------------------------------
def _images(folder: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        level = rng.uniform(0, 255)
        Image.fromarray(np.clip(rng.normal(level, 20, (32, 32, 3)), 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def regress_task():
    if "regress" not in TASKS:
        register_task("regress", Regressor, RegressConfig)
    return TASKS["regress"]


def test_a_new_task_trains_evaluates_and_reloads_through_the_contract(tmp_path, regress_task):
    train, val = _images(tmp_path / "train", 48, 0), _images(tmp_path / "val", 16, 1)
    cfg = RegressConfig()
    cfg.data.train, cfg.data.val, cfg.train.out_dir, cfg.train.name = str(train), str(val), str(tmp_path / "runs"), "r"
    reg = Regressor(config=cfg)
    history = reg.fit()
    train_losses, losses = [h["train/loss"] for h in history], [h["val/loss"] for h in history]
    assert train_losses[-1] < 0.2 * train_losses[0], train_losses  # it learns
    targets = torch.cat([y for _, y in Brightness(str(val), 32)])
    assert min(losses) < 0.5 * float(targets.var(unbiased=False)), losses  # better than a constant
    run = tmp_path / "runs" / "r"
    assert {"best.pt", "last.pt", "metrics.csv", "summary.txt", "evaluated.txt", "curves.png"} <= {p.name for p in run.iterdir()}
    assert "evaluated.txt" in (run / "summary.txt").read_text()  # the files line lists what is there
    again = Regressor.load(run / "best.pt")
    assert again.evaluate(str(val))["loss"] == pytest.approx(min(losses), rel=1e-4)
    meta = again.export(tmp_path / "export", formats=["onnx"])  # the base class's export, from export_graph
    assert meta["task"] == "regress" and meta["outputs"] == {"brightness": "(batch, 1) in [0, 1]"}
    assert meta["input"]["shape"] == ["batch", 3, 32, 32] and meta["onnx_max_abs_diff_vs_pytorch"] < 1e-3
    with pytest.raises(ValueError, match="int8 export is not available for the regress model"):
        again.export(tmp_path / "int8", int8=True)


def test_a_registered_task_trains_from_the_command_line(tmp_path, regress_task, capsys):
    from visiontl.cli import main

    train = _images(tmp_path / "train", 16, 0)
    assert main(["train", "regress", f"data.train={train}", f"train.out_dir={tmp_path / 'runs'}", "train.name=c",
                 "train.epochs=1"]) == 0
    assert (tmp_path / "runs" / "c" / "last.pt").is_file()
    assert main(["train", "regress", "--help"]) == 0
    assert "data.train=''" in capsys.readouterr().out

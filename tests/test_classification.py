"""Classification end to end: API, CLI, CSV data, frozen BatchNorm, plots, predict."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from visiontl.adapters import Classifier
from visiontl.cli import main

ROOT = Path(__file__).parent.parent


def _png_has_content(path: Path, min_size=(300, 200)):
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] >= min_size[0] and img.shape[0] >= min_size[1], path
    assert img.std() > 10, f"{path} is blank"  # a real plot, not an empty canvas


def test_frozen_backbone_trains_head_only_and_keeps_bn_statistics(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path, finetune__strategy="frozen", train__epochs=1)
    clf = Classifier(config=cfg, classes=["blue", "green", "red"])
    before = {k: v.clone() for k, v in clf.model.backbone.state_dict().items()}
    head_before = clf.model.head.layers[-1].weight.clone()
    assert not any(p.requires_grad for p in clf.model.backbone.parameters())
    clf.fit()
    after = clf.model.backbone.state_dict()
    for k in before:  # weights *and* BatchNorm running statistics untouched
        assert torch.equal(before[k].float(), after[k].float()), k
    assert not torch.equal(head_before, clf.model.head.layers[-1].weight)


def test_full_strategy_trains_backbone(image_folder, tmp_path):
    clf = Classifier(config=tiny_config(image_folder, tmp_path, train__epochs=1), classes=["blue", "green", "red"])
    w = clf.model.backbone.stages[0][0][0].weight.clone()
    clf.fit()
    assert not torch.equal(w, clf.model.backbone.stages[0][0][0].weight)


def test_pretrained_frozen_learns_and_run_directory_is_complete(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path, model__backbone="mobilenet_v2", model__weights="imagenet",
                      finetune__strategy="frozen", train__epochs=4, optim__lr=0.01, data__image_size=64)
    clf = Classifier(config=cfg)
    history = clf.fit()
    assert history[-1]["val/accuracy"] == 1.0  # three colours: trivially separable with real features
    run = clf.run_dir
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "last.pt", "best.pt", "metrics.csv", "summary.txt", "curves.png",
            "confusion_matrix.png", "confusion_matrix.csv", "val_predictions.png"} <= names
    for png in ("curves.png", "confusion_matrix.png", "val_predictions.png"):
        _png_has_content(run / png)
    rows = list(csv.reader(open(run / "confusion_matrix.csv")))
    assert rows[0][1:] == ["blue", "green", "red"]
    assert sum(int(rows[i][i]) for i in (1, 2, 3)) == 6  # all 6 validation images on the diagonal
    # the resolved config re-runs as is
    assert main(["train", "classify", "-c", str(run / "config.yaml"), "train.name=rerun", "train.epochs=1"]) == 0
    assert (Path(cfg.train.out_dir) / "rerun" / "last.pt").is_file()

    # predict: a file, a folder, and a list file → top-k
    loaded = Classifier.load(run / "best.pt")
    one = loaded.predict(image_folder / "red" / "0.png", topk=2)
    assert one[0]["labels"][0] == "red" and len(one[0]["scores"]) == 2 and one[0]["scores"][0] > one[0]["scores"][1]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{image_folder / 'blue' / '1.png'}\n{image_folder / 'green' / '2.png'}\n")
    many = loaded.predict([image_folder / "green", listing])
    assert len(many) == 10 and [r["labels"][0] for r in many[-2:]] == ["blue", "green"]


def test_cli_train_val_predict_and_csv_data(image_folder, tmp_path, capsys):
    csv_path = tmp_path / "labels.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for p in sorted(image_folder.rglob("*.png")):
            w.writerow([p.relative_to(tmp_path), p.parent.name])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  format: csv\n  train: {csv_path}\n  image_size: 32\n  val_fraction: 0.25\n"
                   f"model:\n  backbone: mobilenet_v3_small\n  weights: none\n"
                   f"train:\n  epochs: 1\n  batch_size: 4\n  num_workers: 0\n  out_dir: {tmp_path / 'runs'}\n"
                   f"  progress: none\n")
    assert main(["train", "classify", "-c", str(cfg), "optim.lr=3e-4", "train.name=csvrun"]) == 0
    run = tmp_path / "runs" / "csvrun"
    assert "lr: 0.0003" in (run / "config.yaml").read_text()
    assert main(["val", str(run / "best.pt"), "--data", str(image_folder), "--out", str(tmp_path / "val")]) == 0
    out = capsys.readouterr().out
    assert '"accuracy"' in out and (tmp_path / "val" / "confusion_matrix.png").is_file()
    assert main(["predict", str(run / "best.pt"), str(image_folder / "red"), "--topk", "3",
                 "--out", str(tmp_path / "pred")]) == 0
    preds = json.loads((tmp_path / "pred" / "predictions.json").read_text())
    assert len(preds) == 8 and len(preds[0]["labels"]) == 3
    assert (tmp_path / "pred" / "predictions.csv").read_text().startswith("path,label1,score1")
    assert len(list((tmp_path / "pred").glob("*_pred.png"))) == 8  # each image drawn with its labels, as other tasks
    # an existing run is never overwritten by a new one
    assert main(["train", "classify", "-c", str(cfg), "train.name=csvrun"]) == 2
    assert "already there" in capsys.readouterr().err
    # the last lines say which epoch each checkpoint holds (lr falls under the cosine: epoch 1 is "best")
    assert main(["train", "classify", "-c", str(cfg), "train.name=labelled", "train.epochs=2", "train.monitor=lr"]) == 0
    lines = capsys.readouterr().out.splitlines()
    epochs = {line.split()[0]: int(line.split()[1]) for line in lines
              if line.startswith(("best.pt ", "last.pt ")) and line.split()[1].isdigit()}
    assert epochs == {"best.pt": 1, "last.pt": 2}
    assert any(line.startswith("best.pt holds epoch 1 of 2") for line in lines)


def test_console_script_and_task_script(image_folder, tmp_path):
    exe = Path(sys.executable).parent / "visiontl"
    proc = subprocess.run([str(exe), "backbones"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "mobilenet_v2" in proc.stdout and "shipped" in proc.stdout
    proc = subprocess.run([sys.executable, str(ROOT / "tasks" / "classify.py"), str(image_folder),
                           "--backbone", "mobilenet_v3_small", "--weights", "none", "--epochs", "1",
                           "--image-size", "32", "--out", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "accuracy" in proc.stdout and "blue/0.png" in proc.stdout


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "classify").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    from visiontl.adapters import ClassifyConfig
    from visiontl.config import load_config

    cfg = load_config(ClassifyConfig, path)
    assert cfg.data.train


def test_head_sizes_from_feature_info_and_loss_options(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path, model__backbone="resnet18", model__hidden=16)
    cfg.loss.class_weights, cfg.loss.label_smoothing = "balanced", 0.1
    clf = Classifier(config=cfg, classes=["blue", "green", "red"])
    first = clf.model.head.layers[2]
    assert first.in_features == clf.model.backbone.feature_info[-1].channels == 512 and first.out_features == 16
    # 'balanced' weights are inverse class frequencies
    from visiontl.data import image_folder as folder

    (image_folder / "red" / "0.png").unlink()
    w = clf._weights_for(folder(image_folder))
    assert w[2] > w[0] == w[1] and float(w[0]) == pytest.approx(23 / (3 * 8))
    images = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8)
    clf._class_weights = w
    out = clf.training_step(clf.model, (images, torch.tensor([0, 2])))
    assert out["loss"].ndim == 0 and out["loss"].requires_grad


def test_report_summarises_a_run(image_folder, tmp_path, capsys):
    clf = Classifier(config=tiny_config(image_folder, tmp_path / "runs", train__epochs=2))
    clf.fit()
    assert main(["report", str(clf.run_dir)]) == 0
    out = capsys.readouterr().out
    assert "mobilenet_v3_small" in out and "fine-tuning full" in out and "best by val/accuracy" in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1 ", "2 "))]) == 2
    assert "curves.png" in out and "confusion_matrix.png" in out
    assert main(["report", str(tmp_path)]) == 2  # not a run directory: a clear error

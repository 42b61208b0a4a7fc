"""On a CUDA machine (skipped elsewhere): every task trains through the engine with bf16
autocast and channels_last and its loss falls; a checkpoint written on the GPU predicts the
same on the CPU; torch.compile trains; the bench cell measures GPU memory.

Run them with ``make gpu-check`` (on a bare GPU machine) or ``pytest -m cuda``."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import (make_detection_set, make_image_folder, make_segmentation_set, tiny_config,
                      tiny_detect_config, tiny_segment_config)

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _falls(history: list[dict], factor: float = 0.9) -> None:
    losses = [h["train/loss"] for h in history]
    assert all(np.isfinite(losses)) and losses[-1] < factor * losses[0], losses


@pytest.mark.parametrize("compile", [False, True])
def test_classification_trains_in_bf16_on_cuda_and_predicts_the_same_on_cpu(tmp_path, compile):
    from visiontl.adapters import Classifier

    data = make_image_folder(tmp_path / "data", per_class=16)
    cfg = tiny_config(data, tmp_path / "runs", train__epochs=4, train__compile=compile, train__name="r")
    clf = Classifier(config=cfg)
    history = clf.fit()
    assert next(clf.model.parameters()).is_cuda
    _falls(history)
    assert history[-1]["val/accuracy"] >= 0.8
    gpu = clf.predict(data)
    cpu = Classifier.load(tmp_path / "runs" / "r" / "best.pt")  # loads on the CPU
    assert [r["labels"][0] for r in cpu.predict(data)] == [r["labels"][0] for r in gpu]


def test_detection_and_segmentation_train_on_cuda(tmp_path):
    from visiontl.adapters import Detector, Segmenter

    det = Detector(config=tiny_detect_config(make_detection_set(tmp_path / "det"), tmp_path / "runs",
                                             train__epochs=6, data__image_size=64))
    _falls(det.fit())
    seg = Segmenter(config=tiny_segment_config(make_segmentation_set(tmp_path / "seg", n=12), tmp_path / "runs",
                                               train__epochs=6))
    history = seg.fit()
    _falls(history)
    assert max(h["val/mIoU"] for h in history) > 0.4


def test_fast_style_model_trains_on_cuda(tmp_path):
    from visiontl.adapters import Stylizer

    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (72, 72, 3), dtype=np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[:, ::8] = (250, 200, 40)
    Image.fromarray(stripes).save(tmp_path / "style.png")
    st = Stylizer(style=tmp_path / "style.png", weights="none", backbone="vgg16")
    st.config.model.width, st.config.model.blocks = 8, 2
    st.config.train.batch_size, st.config.train.num_workers, st.config.train.progress = 2, 0, "none"
    history = st.fit(tmp_path / "photos", epochs=8, image_size=48, out_dir=str(tmp_path / "runs"))
    assert next(st.model.parameters()).is_cuda and (st.run_dir / "stylized.png").is_file()
    _falls(history)


def test_bench_cell_on_cuda_reports_gpu_memory(tmp_path):
    from visiontl.bench import bench

    data = make_image_folder(tmp_path / "data", per_class=8)
    results = bench(backbones=["mobilenet_v3_small"], tasks=["classify"], data={"classify": str(data)}, quick=True,
                    out=tmp_path / "bench", timing_rounds=2,
                    overrides=["classify.data.image_size=32", "classify.train.num_workers=0", "classify.train.epochs=2",
                               "classify.data.val_fraction=0.25"])
    (cell,) = results["cells"]
    assert cell["status"] == "ok", cell.get("error")
    assert cell["speed"]["memory_kind"] == "max_memory_allocated" and cell["speed"]["peak_memory_mb"] > 0
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["environment"]["gpu"]

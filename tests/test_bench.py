"""``visiontl bench``: a cell trains pretrained and random init and measures the model; a
failing cell is recorded and the rest go on; a re-run resumes; other settings are refused."""
import json

import pytest

from conftest import make_image_folder
from visiontl.bench import bench
from visiontl.cli import main

pytest.importorskip("onnxruntime")

SETTINGS = ["classify.data.image_size=32", "classify.train.batch_size=4", "classify.train.num_workers=0",
            "classify.data.val_fraction=0.25", "classify.train.epochs=2"]


def test_bench_measures_a_cell_records_a_failure_and_resumes(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=8)
    out = tmp_path / "bench"
    args = dict(backbones=["mobilenet_v2", "timm:no_such_model"], tasks=["classify"], data={"classify": str(data)},
                quick=True, out=out, overrides=SETTINGS, timing_rounds=2)
    results = bench(**args)
    ok, bad = results["cells"]
    assert ok["status"] == "ok" and bad["status"] == "error" and "no_such_model" in bad["error"]
    assert ok["weights"]["available"] and ok["weights"]["sha256"].startswith("b0353104")  # the offline file
    pre, rnd = ok["pretrained"], ok["random"]
    assert len(pre["history"]) == len(rnd["history"]) == 2 and pre["train_images_per_s"] > 0
    assert pre["metric"] == max(h["val/accuracy"] for h in pre["history"])  # best.pt's epoch
    s = ok["speed"]
    assert s["infer_images_per_s"] > 0 and s["ort_images_per_s"] > 0 and s["latency_ms"] > 0
    assert 2.2 < s["params_m"] < 2.3  # mobilenet_v2's features + a 3-class head
    assert 0.010 < s["gflops"] < 0.016  # 0.3 GMACs at 224 px, × (32/224)², 2 FLOPs per MAC
    assert s["peak_memory_mb"] > 100
    assert not list(out.rglob("*.pt")) and list(out.rglob("curves.png"))  # checkpoints dropped, plots kept
    md = (out / "results.md").read_text()
    assert "| mobilenet_v2 |" in md and "error: " in md and "--quick" in md
    assert (out / "metric_vs_speed.png").stat().st_size > 0 and (out / "transfer_gain.png").stat().st_size > 0
    assert str(out) not in (out / "results.json").read_text()  # run folders relative to the bench folder
    saved = json.loads((out / "results.json").read_text())
    assert saved["environment"]["versions"]["torch"] and saved["data"]["classify"] == {"data.train": str(data)}

    # a re-run resumes: the finished cell is kept as it was, the failed one runs again
    done = out / "cells" / "classify__mobilenet_v2.json"
    stamp = done.stat().st_mtime_ns
    again = bench(**args)
    assert done.stat().st_mtime_ns == stamp and again["cells"][0] == ok and again["cells"][1]["status"] == "error"
    with pytest.raises(ValueError, match="other settings"):
        bench(**{**args, "epochs": 5})
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "## classify — accuracy" in capsys.readouterr().out


def test_a_cell_past_its_budget_is_stopped_and_recorded(tmp_path):
    data = make_image_folder(tmp_path / "data", per_class=8)
    results = bench(backbones=["mobilenet_v2"], tasks=["classify"], data={"classify": str(data)}, quick=True,
                    out=tmp_path / "bench", overrides=SETTINGS, budget_s=1)
    (cell,) = results["cells"]
    assert cell["status"] == "error" and cell["error"] == "stopped after --budget-s 1 s" and cell["cell_seconds"] < 30
    assert "error: stopped after --budget-s 1 s" in (tmp_path / "bench" / "results.md").read_text()

"""DDP under torchrun: 2 CPU processes (gloo) end with identical weights; only rank 0 writes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_image_folder, tiny_config
from visiontl.adapters import Classifier


@pytest.mark.parametrize("strategy", ["full", "two_phase"])
def test_ddp_two_cpu_ranks(tmp_path, strategy):
    data = make_image_folder(tmp_path / "data", per_class=8)
    out, weights = tmp_path / "runs", tmp_path / "weights"
    weights.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(Path(__file__).parent / "ddp_worker.py"), str(data), str(out), str(weights), strategy],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(weights / "rank0.pt", weights_only=True)
    b = torch.load(weights / "rank1.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    runs = list(out.iterdir())
    assert len(runs) == 1, runs  # one run directory, made by rank 0
    rows = (runs[0] / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 epochs, written once
    assert {p.name for p in runs[0].iterdir()} >= {"last.pt", "best.pt", "config.yaml", "metrics.csv", "summary.txt"}
    # ...which are the ones rank 0 checkpointed, and they really trained
    ckpt = torch.load(runs[0] / "last.pt", weights_only=True)
    trained = ckpt.get("train_model", ckpt["model"])  # after a switch "model" is the running average
    assert ("train_model" in ckpt) == (strategy == "two_phase")
    assert all(torch.equal(trained[k], a[k]) for k in a)
    # 18 training images / 2 ranks = 9 each, batch 4: 2 steps per epoch (a lone last sample is dropped)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * 2
    fresh = Classifier(config=tiny_config(data, tmp_path / "unused"), classes=["blue", "green", "red"])
    assert not torch.equal(fresh.model.state_dict()["head.layers.3.weight"], a["head.layers.3.weight"])

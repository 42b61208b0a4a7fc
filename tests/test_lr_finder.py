"""The learning-rate range test: a real sweep, a sensible suggestion, the model left untouched."""
import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from visiontl.adapters import Classifier
from visiontl.cli import main
from visiontl.engine.lr_finder import suggest
from visiontl.report import best_vs_last


def _sweep(steps: int, descent: tuple[float, float], seed: int, noise: float) -> tuple[list[float], list[float]]:
    """A range test's losses: a plateau, a straight fall in log-LR from ``descent[0]`` to
    ``descent[1]``, then divergence; multiplicative noise; the sweep's LRs as lr_find's."""
    rng = np.random.default_rng(seed)
    lrs = [1e-7 * (10 / 1e-7) ** (i / (steps - 1)) for i in range(steps)]
    a, b = (math.log10(x) for x in descent)
    losses = []
    for lr in lrs:
        x = math.log10(lr)
        y = 2.3 if x < a else 2.3 - (x - a) / (b - a) * 1.8 if x < b else 0.5 + 10 * (x - b) ** 2
        losses.append(y * (1 + noise * rng.standard_normal()))
    stop = next((i for i in range(11, steps) if losses[i] > 4 * min(losses[:i])), steps)  # lr_find stops there
    return lrs[:stop], losses[:stop]


@pytest.mark.parametrize("steps", [40, 100, 200])
@pytest.mark.parametrize("descent", [(1e-4, 1e-2), (1e-5, 1e-3), (1e-3, 1e-1)])
def test_the_suggestion_is_inside_the_steep_part_of_the_descent(steps, descent):
    """The middle two decades' worth of a two-decade fall, whatever the sweep's length and the noise;
    fastai's valley on a running average gave 7e-5 for a 1e-4 → 1e-2 fall in 40 steps."""
    low, high = (math.log10(x) for x in descent)
    for seed in range(4):
        for noise in (0.03, 0.15):
            lrs, losses = _sweep(steps, descent, seed, noise)
            _, at = suggest(lrs, losses)
            assert low + 0.4 <= math.log10(lrs[at]) <= high - 0.4, (seed, noise, lrs[at])


def test_no_descent_suggests_a_tenth_of_where_the_loss_leaves_its_plateau():
    """A random-init model whose loss stays flat, then diverges: not the sweep's first LR."""
    lrs = [1e-7 * (10 / 1e-7) ** (i / 29) for i in range(30)]
    rng = np.random.default_rng(0)
    losses = [1.1 * (1 + 0.02 * rng.standard_normal()) if lr < 1e-2 else 1.1 + 5 * math.log10(lr / 1e-2)
              for lr in lrs]
    _, at = suggest(lrs, losses)
    assert 3e-4 <= lrs[at] <= 3e-3, lrs[at]


def test_lr_find_sweeps_suggests_and_restores(image_folder, tmp_path):
    clf = Classifier(config=tiny_config(image_folder, tmp_path / "runs"), classes=["blue", "green", "red"])
    before = {k: v.clone() for k, v in clf.model.state_dict().items()}
    flags = [p.requires_grad for p in clf.model.parameters()]
    result = clf.lr_find(steps=30, out_dir=tmp_path)
    assert len(result.lrs) >= 12 and all(b > a for a, b in zip(result.lrs, result.lrs[1:]))
    assert result.lrs[0] == 1e-7 and math.isfinite(result.suggestion) and 1e-7 < result.suggestion < 10
    assert all(math.isfinite(v) for v in result.losses)
    after = clf.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics restored
    assert flags == [p.requires_grad for p in clf.model.parameters()]
    assert (tmp_path / "lr_find.png").stat().st_size > 0


def test_optim_lr_auto_trains_at_the_found_rate(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path / "runs")
    cfg.optim.lr = "auto"
    clf = Classifier(config=cfg)
    history = clf.fit()
    lr = clf.config.optim.lr
    assert isinstance(lr, float) and 1e-7 < lr < 10
    assert history[0]["lr"] <= lr * 1.0001  # the schedule starts from the found rate
    assert (clf.run_dir / "lr_find.png").is_file()
    assert "lr: auto" not in (clf.run_dir / "config.yaml").read_text()  # the resolved value re-runs as is


def test_lr_find_command(image_folder, tmp_path, capsys):
    assert main(["lr-find", "classify", f"data.train={image_folder}", "model.weights=none",
                 "model.backbone=mobilenet_v3_small", "data.image_size=32", "train.batch_size=4",
                 "train.num_workers=0", "--steps", "20", "--out", str(tmp_path)]) == 0
    assert "suggested optim.lr" in capsys.readouterr().out and (tmp_path / "lr_find.png").is_file()


def test_best_vs_last_flags_a_final_epoch_far_below_the_best():
    rows = [{"epoch": 1, "val/accuracy": 0.80}, {"epoch": 2, "val/accuracy": 0.90}, {"epoch": 3, "val/accuracy": 0.70}]
    best, text = best_vs_last(rows, "val/accuracy", "max")
    assert best["epoch"] == 2 and "epoch 2 of 3" in text and "WARNING" in text
    _, text = best_vs_last(rows[:2], "val/accuracy", "max")
    assert "WARNING" not in text and "the last epoch" in text
    _, text = best_vs_last([{"epoch": 1, "val/loss": 1.0}, {"epoch": 2, "val/loss": 1.05}], "val/loss", "min")
    assert "WARNING" not in text  # 5 % above the best loss is noise

"""The shared loop: schedules, exact resume, atomic checkpoints, accumulation, early stop."""
import math

import pytest
import torch

from conftest import tiny_config
from visiontl.adapters import Classifier
from visiontl.engine import get_lr, load_checkpoint
from visiontl.engine import checkpoint as ckpt_mod


def test_schedules_are_pure_functions():
    lrs = [get_lr(s, total_steps=100, base_lr=1.0, warmup_steps=10, min_lr_ratio=0.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    one = [get_lr(s, total_steps=100, base_lr=1.0, schedule="onecycle") for s in range(100)]
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0, abs=1e-3) and one[-1] < 1e-3
    # torch's OneCycleLR agrees on the peak position
    assert max(range(100), key=lambda s: one[s]) == 30
    assert get_lr(5, total_steps=10, base_lr=0.3, schedule="constant") == 0.3


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


class Crash(Exception):
    pass


@pytest.mark.parametrize("workers", [0, 1])
def test_exact_resume_matches_straight_run(image_folder, tmp_path, workers):
    straight = Classifier(config=tiny_config(image_folder, tmp_path / "a", train__epochs=4, train__num_workers=workers))
    straight.fit()

    def crash_after_two(trainer, metrics):
        if metrics["epoch"] == 2:
            raise Crash

    broken = Classifier(config=tiny_config(image_folder, tmp_path / "b", train__epochs=4, train__num_workers=workers))
    with pytest.raises(Crash):
        broken.fit(callbacks=(crash_after_two,))
    run_dir = next((tmp_path / "b").iterdir())
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 2

    resumed = Classifier(config=tiny_config(image_folder, tmp_path / "b", train__epochs=4, train__num_workers=workers,
                                            train__resume=str(run_dir / "last.pt")))
    history = resumed.fit()
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    a = load_checkpoint(straight.run_dir / "last.pt")["model"]
    b = load_checkpoint(run_dir / "last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 5  # header + 4 epochs, none duplicated by the resume


def test_crash_while_saving_keeps_last_good_checkpoint(image_folder, tmp_path, monkeypatch):
    clf = Classifier(config=tiny_config(image_folder, tmp_path / "runs", train__epochs=3))
    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 1:  # epoch 1 wrote last.pt (best.pt links to it); epoch 2's write dies half-way
            f.write(b"half a checkpoint")
            raise OSError("disk full")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_mod.torch, "save", flaky_save)
    with pytest.raises(OSError, match="disk full"):
        clf.fit()
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
    assert load_checkpoint(run_dir / "best.pt")["epoch"] == 1
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_accumulation_clipping_and_early_stop(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path, train__epochs=6, train__accumulate=2, train__grad_clip=1.0,
                      train__early_stop_patience=1, optim__lr=0.0, train__min_steps_per_epoch=0)
    clf = Classifier(config=cfg, classes=["blue", "green", "red"])
    before = _weights(clf.model)
    history = clf.fit()
    assert len(history) == 2  # lr 0: nothing improves after epoch 1, patience 1 stops at epoch 2
    after = clf.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "running" not in k and "num_batches" not in k)
    ck = load_checkpoint(clf.run_dir / "last.pt")
    assert ck["step"] == 2 * math.ceil(math.ceil(18 / 4) / 2)  # 18 training images, batch 4, accumulate 2


def test_monitor_chooses_best_checkpoint_and_bad_name_is_named(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path / "a", train__epochs=3, train__monitor="val/loss")
    clf = Classifier(config=cfg)
    history = clf.fit()
    best_epoch = min(history, key=lambda h: h["val/loss"])["epoch"]
    best = load_checkpoint(clf.run_dir / "best.pt")
    assert best["epoch"] == best_epoch and best["best"] == pytest.approx(min(h["val/loss"] for h in history))
    cfg = tiny_config(image_folder, tmp_path / "b", train__epochs=1, train__monitor="val/acuracy")
    with pytest.raises(KeyError, match="val/acuracy"):
        Classifier(config=cfg).fit()


def test_tensorboard_events_written(image_folder, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    clf = Classifier(config=tiny_config(image_folder, tmp_path, train__epochs=2, train__tensorboard=True))
    clf.fit()
    events = EventAccumulator(str(clf.run_dir / "tensorboard"))
    events.Reload()
    assert {"train/loss", "val/accuracy"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]


def test_a_tiny_dataset_gets_a_smaller_batch_and_is_told(image_folder, tmp_path, capsys):
    cfg = tiny_config(image_folder, tmp_path, train__epochs=1, train__batch_size=16)
    clf = Classifier(config=cfg)
    assert "train.batch_size 16 → 4" in clf.plan()  # said before training
    clf.fit()
    assert "train.batch_size 16 → 4" in capsys.readouterr().err
    assert load_checkpoint(clf.run_dir / "last.pt")["step"] == 5  # 18 images at batch 4 (the last batch 2)


def test_resume_from_a_checkpoint_of_another_group_plan_says_so(image_folder, tmp_path):
    """A last.pt whose optimiser has other parameter groups (an older visiontl) cannot be
    resumed: the error names the file and what to do instead."""
    clf = Classifier(config=tiny_config(image_folder, tmp_path / "a", train__epochs=1))
    clf.fit()
    ckpt = load_checkpoint(clf.run_dir / "last.pt")
    ckpt["optimizer"]["param_groups"] = ckpt["optimizer"]["param_groups"][1:]  # one group fewer
    old = tmp_path / "old" / "last.pt"
    old.parent.mkdir()
    torch.save(ckpt, old)
    again = Classifier(config=tiny_config(image_folder, tmp_path / "b", train__epochs=2, train__resume=str(old)))
    with pytest.raises(ValueError, match=r"train.resume=.*old/last.pt: its optimiser state does not fit"):
        again.fit()


def test_a_kill_before_best_is_linked_is_caught_up_on_resume(image_folder, tmp_path, monkeypatch):
    """Killed after ``last.pt`` of a best epoch was written but before ``best.pt`` was linked:
    the resume links it, removes the kill's temp files, and checkpoints are readable by the
    group (mode 0644 under the usual umask 022, not mkstemp's 0600)."""
    import os

    from visiontl.engine import trainer as trainer_mod

    real, calls = trainer_mod.link_atomic, []

    def dies_on_second_link(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise Crash
        real(src, dst)

    monkeypatch.setattr(trainer_mod, "link_atomic", dies_on_second_link)
    old_umask = os.umask(0o022)
    try:
        clf = Classifier(config=tiny_config(image_folder, tmp_path / "a", train__epochs=2, train__name="r",
                                            train__monitor="epoch"))  # every epoch improves on the last
        with pytest.raises(Crash):
            clf.fit()
        run = tmp_path / "a" / "r"
        assert load_checkpoint(run / "last.pt")["epoch"] == 2 and load_checkpoint(run / "best.pt")["epoch"] == 1
        (run / ".last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
        monkeypatch.setattr(trainer_mod, "link_atomic", real)
        resumed = Classifier(config=tiny_config(image_folder, tmp_path / "a", train__epochs=2,
                                                train__resume=str(run / "last.pt"), train__monitor="epoch"))
        resumed.fit()
        assert load_checkpoint(run / "best.pt")["epoch"] == 2
        assert not list(run.glob(".*.tmp"))
        assert (run / "last.pt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old_umask)


def test_a_restart_after_a_kill_before_the_first_checkpoint_starts_its_metrics_afresh(image_folder, tmp_path, capsys):
    """The same train.name again, no last.pt (killed in its first epoch): the new run's
    metrics.csv holds its own epochs only, the old rows are kept aside."""
    from visiontl.engine.logger import read_metrics
    from visiontl.report import report

    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,train/loss\n1,2.5\n")  # what the killed attempt left
    clf = Classifier(config=tiny_config(image_folder, tmp_path / "runs", train__epochs=2, train__name="r"))
    clf.fit()
    assert [int(r["epoch"]) for r in read_metrics(run)] == [1, 2]
    aside = list(run.glob("metrics.previous-*.csv"))
    assert len(aside) == 1 and aside[0].read_text() == "epoch,train/loss\n1,2.5\n"
    assert "moved to metrics.previous-" in capsys.readouterr().err
    assert "epochs     2;" in report(run)


def test_the_console_gives_the_run_an_eta_and_ends_with_one_rounded_summary(image_folder, tmp_path, capsys):
    import re

    from visiontl.cli import main

    argv = ["train", "classify", f"data.train={image_folder}", "data.image_size=32", "model.backbone=mobilenet_v3_small",
            "model.weights=none", "finetune.strategy=full", "train.epochs=3", "train.batch_size=4",
            "train.num_workers=0", "train.progress=log", f"train.out_dir={tmp_path}", "train.name=r"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    progress = [line for line in captured.err.splitlines() if line.startswith("epoch 1/3 ")]
    assert progress and all(re.search(r"run: ~\d+s left", line) for line in progress)  # the whole run, not the epoch
    assert re.search(r"^epoch 2 .*\(\d+s; run ~\d+s left\)$", captured.err, re.M)
    out = captured.out.splitlines()
    assert out[0].split()[:3] == ["epoch", "train/loss", "val/loss"] and out[1].startswith("best.pt")
    assert not re.search(r"\d\.\d{6,}", captured.out) and "{" not in captured.out  # no raw dicts of long floats
    assert out[-1].startswith(f"run directory: {tmp_path / 'r'}")

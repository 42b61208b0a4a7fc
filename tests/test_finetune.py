"""Fine-tuning strategies: real requires_grad, BatchNorm modes and optimiser groups per phase."""
import pytest
import torch
from torch import nn

from conftest import tiny_config
from visiontl.adapters import Classifier
from visiontl.cli import main
from visiontl.engine import FinetuneConfig, Finetuner, load_checkpoint
from visiontl.engine.finetune import choose, lr_factor, trainable_groups
from visiontl.engine.trainer import build_optimizer, OptimConfig

CLASSES = ["blue", "green", "red"]


def test_plan_is_a_pure_function_of_the_epoch():
    n = 5
    assert [trainable_groups(FinetuneConfig("frozen"), n, e) for e in range(3)] == [0, 0, 0]
    assert [trainable_groups(FinetuneConfig("full"), n, e) for e in range(3)] == [5, 5, 5]
    assert [trainable_groups(FinetuneConfig("last_n", last_n=2), n, e) for e in range(3)] == [2, 2, 2]
    two = FinetuneConfig("two_phase", last_n=3, head_epochs=2, phase2_lr_factor=0.1)
    assert [trainable_groups(two, n, e) for e in range(4)] == [0, 0, 3, 3]
    assert [lr_factor(two, e) for e in range(4)] == [1.0, 1.0, 0.1, 0.1]
    assert [trainable_groups(FinetuneConfig("gradual"), n, e) for e in range(7)] == [0, 1, 2, 3, 4, 5, 5]
    assert [trainable_groups(FinetuneConfig("gradual", milestones=[2, 4]), n, e) for e in range(6)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="auto"):
        trainable_groups(FinetuneConfig("auto"), n, 0)


def test_auto_chooses_by_data_size_and_says_why():
    small, why = choose(FinetuneConfig("auto"), n_images=300, n_classes=3, n_groups=5)
    assert small.strategy == "frozen" and "little data" in why
    mid, why = choose(FinetuneConfig("auto"), n_images=2000, n_classes=10, n_groups=5)
    assert mid.strategy == "two_phase" and mid.last_n == 2 and "200/class" in why
    more, _ = choose(FinetuneConfig("auto"), n_images=6000, n_classes=10, n_groups=5)
    assert more.strategy == "two_phase" and more.last_n == 3
    big, why = choose(FinetuneConfig("auto"), n_images=50000, n_classes=10, n_groups=5)
    assert big.strategy == "full" and big.group_lr_decay == 0.5 and "discriminative" in why


def _model():
    clf = Classifier(config=tiny_config("unused", "unused", model__backbone="resnet18"), classes=CLASSES)
    return clf, clf.model


def _bn_training(group: nn.Module) -> set[bool]:
    return {m.training for m in group.modules() if isinstance(m, nn.BatchNorm2d)}


@pytest.mark.parametrize("strategy, epoch, trainable", [
    ("frozen", 0, [False] * 5), ("full", 0, [True] * 5), ("last_n", 0, [False, False, False, True, True]),
    ("two_phase", 0, [False] * 5), ("two_phase", 2, [False, False, False, True, True]),
    ("gradual", 1, [False] * 4 + [True]), ("gradual", 3, [False, False, True, True, True]),
])
def test_requires_grad_bn_mode_and_optimizer_groups(strategy, epoch, trainable):
    clf, model = _model()
    ft = Finetuner(FinetuneConfig(strategy, last_n=2, head_epochs=2, phase2_lr_factor=0.01, group_lr_decay=0.5), model)
    opt = build_optimizer(ft.param_groups(), OptimConfig(lr=1.0))
    ft.apply(epoch, opt)
    clf.train_mode(model)
    for group, on in zip(ft.groups, trainable):
        assert all(p.requires_grad == on for p in group.parameters())
        assert _bn_training(group) == {on}  # frozen groups keep BatchNorm statistics (eval mode)
    assert all(p.requires_grad for p in model.head.parameters())
    scales = {g["name"]: g["lr_scale"] for g in opt.param_groups}
    factor = 0.01 if strategy == "two_phase" and epoch >= 2 else 1.0
    assert scales["head"] == factor
    for i, on in enumerate(trainable):  # discriminative: top group × 0.5, next × 0.25 …
        assert scales[f"backbone.{i}"] == pytest.approx(factor * 0.5 ** (5 - i) if on else 0.0)
    # every parameter is in the optimiser exactly once, frozen or not
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


def _record(log):
    def cb(trainer, metrics):
        ft = trainer.finetuner
        log.append({
            "trainable": [all(p.requires_grad for p in g.parameters()) for g in ft.groups],
            "lrs": {g["name"]: g["lr"] for g in trainer.optimizer.param_groups},
            "backbone": {k: v.clone() for k, v in trainer.adapter.model.backbone.state_dict().items()},
        })
    return cb


def test_two_phase_through_the_engine(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path, model__backbone="resnet18", train__epochs=4, optim__schedule="constant",
                      optim__lr=0.01)
    cfg.finetune = FinetuneConfig("two_phase", last_n=2, head_epochs=2, phase2_lr_factor=0.1)
    clf = Classifier(config=cfg, classes=CLASSES)
    start = {k: v.clone() for k, v in clf.model.backbone.state_dict().items()}
    log = []
    clf.fit(callbacks=(_record(log),))
    assert [e["trainable"] for e in log] == [[False] * 5] * 2 + [[False, False, False, True, True]] * 2
    assert log[0]["lrs"]["head"] == pytest.approx(0.01) and log[2]["lrs"]["head"] == pytest.approx(0.001)
    assert log[2]["lrs"]["backbone.4"] == pytest.approx(0.001) and log[2]["lrs"]["backbone.0"] == 0.0
    # phase 1: backbone weights and BN statistics untouched; phase 2: only the last 2 groups move
    assert all(torch.equal(start[k], log[1]["backbone"][k]) for k in start)
    moved = {k.split(".")[1] for k in start if not torch.equal(start[k], log[3]["backbone"][k])}
    assert moved == {"3", "4"}


@pytest.mark.parametrize("crash_after", [1, 3])  # resume in phase 1, and in phase 2
def test_two_phase_resume_is_exact_in_either_phase(image_folder, tmp_path, crash_after):
    def config(out, **kw):
        cfg = tiny_config(image_folder, out, model__backbone="resnet18", train__epochs=4, **kw)
        cfg.finetune = FinetuneConfig("two_phase", last_n=2, head_epochs=2)
        return cfg

    straight = Classifier(config=config(tmp_path / "a"))
    straight.fit()

    class Crash(Exception):
        pass

    def crash(trainer, metrics):
        if metrics["epoch"] == crash_after:
            raise Crash

    with pytest.raises(Crash):
        Classifier(config=config(tmp_path / "b")).fit(callbacks=(crash,))
    (run_dir,) = (tmp_path / "b").iterdir()
    Classifier(config=config(tmp_path / "b", train__resume=str(run_dir / "last.pt"))).fit()
    a = load_checkpoint(straight.run_dir / "last.pt")
    b = load_checkpoint(run_dir / "last.pt")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


def test_dry_run_prints_the_plan_without_training(image_folder, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "classify", f"data.train={image_folder}", "model.weights=none", "model.backbone=resnet18",
                 "finetune.strategy=two_phase", "finetune.head_epochs=1", "train.epochs=3",
                 f"train.out_dir={out}", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "from epoch 1 (two_phase)" in text and "from epoch 2 (two_phase)" in text
    phase1, phase2 = text.split("from epoch 2")
    assert phase1.count(" no ") == 5 and "eval (frozen)" in phase1
    assert phase2.count(" yes ") == 3 and "11,176,512" not in text  # per-group sizes, not the total
    assert not out.exists()  # nothing trained, nothing written

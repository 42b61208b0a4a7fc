import pytest

from visiontl.adapters import ClassifyConfig
from visiontl.config import ConfigError, load_config, save_config


def test_yaml_then_overrides_with_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("data:\n  train: /data/x\n  image_size: 128\noptim:\n  lr: 1e-3\nloss:\n  class_weights: [1, 2]\n")
    cfg = load_config(ClassifyConfig, f, ["optim.lr=3e-4", "train.batch_size=16", "data.augment.hflip=0",
                                          "finetune.strategy=two_phase", "train.amp=off"])
    assert cfg.data.train == "/data/x" and cfg.data.image_size == 128
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.train.batch_size == 16 and cfg.data.augment.hflip == 0.0
    assert cfg.loss.class_weights == [1.0, 2.0] and cfg.finetune.strategy == "two_phase"


def test_a_task_keeps_its_own_section_defaults_when_another_key_of_the_section_is_set(tmp_path):
    """Segmentation's ``train.min_steps_per_epoch: 8`` and ``finetune.strategy: full``, detection's
    ``train.batch_size: 16``, style
    transfer's ``optim.weight_decay: 0`` are the task's, not the shared section's: setting
    ``train.epochs`` or ``finetune.last_n`` (on the command line or in a YAML section) must
    not put the shared defaults back."""
    from visiontl.adapters import DetectConfig, SegmentConfig, StylizeConfig

    f = tmp_path / "seg.yaml"
    f.write_text("train: {epochs: 20, batch_size: 8}\nfinetune: {last_n: 2}\n")
    for cfg in (load_config(SegmentConfig, None, ["train.epochs=10", "finetune.last_n=2"]), load_config(SegmentConfig, f)):
        assert cfg.train.min_steps_per_epoch == 8 and cfg.finetune.strategy == "full" and cfg.finetune.last_n == 2
    detect = load_config(DetectConfig, None, ["train.epochs=10"])  # detection trains at batch 16 (ultralytics')
    assert detect.train.batch_size == 16 and detect.train.epochs == 10
    style = load_config(StylizeConfig, None, ["optim.lr=5e-4"])
    assert style.optim.weight_decay == 0.0 and style.optim.lr == pytest.approx(5e-4)
    assert load_config(SegmentConfig) == SegmentConfig()


@pytest.mark.parametrize("override, key", [
    ("optim.lrr=1", "optim.lrr"),
    ("train.batch_size=big", "train.batch_size"),
    ("finetune.strategy=sometimes", "finetune.strategy"),
    ("data.augment.flip=1", "data.augment.flip"),
    ("train.epochs=true", "train.epochs"),
])
def test_bad_override_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.").replace("[", r"\[")):
        load_config(ClassifyConfig, None, [override])


def test_wrong_key_in_file_names_file_and_key(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown key 'optim\.learning_rate'; valid keys here: .*lr"):
        load_config(ClassifyConfig, f)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(ClassifyConfig, None, ["optim.lr=0.05", "data.train=/x", "loss.class_weights=balanced"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(ClassifyConfig, tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("task", ["classify", "detect", "segment", "stylize"])
def test_task_help_lists_every_config_key_with_type_default_and_meaning(task, capsys):
    from visiontl.adapters import TASKS
    from visiontl.cli import main
    from visiontl.config import describe

    assert main(["train", task, "--help"]) == 0
    out = capsys.readouterr().out
    rows = [r for r in describe(TASKS[task][1]) if r[0] != "task"]
    assert len(rows) > 40
    for key, tp, default, doc in rows:
        assert doc, f"{task}: config key {key} has no description (a trailing # comment on its field)"
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{key}="))
        assert f"{key}={default}" in line and tp in line and doc in line
    assert "--dry-run" in out  # the command's own options come first
    # the defaults shown are the task's own, also in the sections the tasks share
    cfg = TASKS[task][1]()
    for key in ("finetune.strategy", "train.epochs", "train.min_steps_per_epoch"):
        section, name = key.split(".")
        assert f"{key}={getattr(getattr(cfg, section), name)} " in out, key


def test_help_of_an_unknown_task_names_the_valid_ones(capsys):
    from visiontl.cli import main

    assert main(["train", "regress", "--help"]) == 2
    assert "valid tasks: classify, detect, segment, stylize" in capsys.readouterr().err


@pytest.mark.parametrize("override, meant", [("optim.lrr=1", "optim.lr"), ("train.epoch=3", "train.epochs"),
                                             ("data.augment.hflp=0.5", "data.augment.hflip"),
                                             ("trian.epochs=3", "train")])
def test_a_mistyped_key_gets_a_did_you_mean(override, meant):
    with pytest.raises(ConfigError, match=rf"did you mean {meant.replace('.', r'[.]')}\?"):
        load_config(ClassifyConfig, None, [override])

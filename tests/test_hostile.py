"""Hostile files: nothing a checkpoint, a model yaml or a dataset holds ever runs as code.

Each crafted file carries a payload that would create a marker file; every entry point must
refuse the file with an error naming it and the refused entry, and the marker must never
appear."""
import copy
import warnings

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import tiny_detect_config
from visiontl.cli import main


class _WritesMarker:
    """Unpickling this (without ``weights_only``) creates ``pwned`` in the working directory."""

    def __reduce__(self):
        import os

        return os.system, ("touch pwned",)


EVIL_ACTIVATION = "__import__('os').system('touch pwned') or nn.SiLU()"


def _yolo_architecture() -> dict:
    from ultralytics.nn.tasks import yaml_model_load

    return yaml_model_load("yolov8n.yaml")


def _evil_architectures(tmp_path) -> dict[str, tuple[dict, str]]:
    """name → (architecture, what the error must name)."""
    second = tmp_path / "second.pt"
    torch.save({"x": _WritesMarker()}, second)  # what ultralytics' torch_safe_load would unpickle
    by_activation = _yolo_architecture()
    by_activation["activation"] = EVIL_ACTIVATION
    by_loader = _yolo_architecture()
    by_loader["backbone"][0] = [-1, 1, "torch_safe_load", [str(second)]]
    by_nn_name = _yolo_architecture()
    by_nn_name["head"][0] = [-1, 1, "xxnn.functional", []]
    return {"activation": (by_activation, "activation"), "loader": (by_loader, "torch_safe_load"),
            "nn-name": (by_nn_name, "xxnn.functional")}


def _native_model(architecture: dict):
    """A real ultralytics model (its classes pass the unpickling allow-list) carrying ``architecture``."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False)
    model.yaml = architecture
    return model


@pytest.mark.parametrize("kind", ["activation", "loader", "nn-name"])
def test_native_pt_with_code_in_its_architecture_is_refused(tmp_path, monkeypatch, detection_set, capsys, kind):
    from visiontl.adapters.detection.native import build_native, load_ultralytics_checkpoint

    monkeypatch.chdir(tmp_path)
    architecture, named = _evil_architectures(tmp_path)[kind]
    evil = tmp_path / "evil.pt"
    torch.save({"model": _native_model(architecture)}, evil)
    with pytest.raises(ValueError, match=f"evil.pt: refusing the model architecture.*{named}"):
        load_ultralytics_checkpoint(evil)
    with pytest.raises(ValueError, match="evil.pt: refusing"):
        build_native(str(evil), 2)
    assert main(["train", "detect", f"data.yaml={detection_set}", f"model.ultralytics={evil}", "--dry-run"]) == 2
    assert "evil.pt: refusing the model architecture" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_model_yaml_with_code_is_refused(tmp_path, monkeypatch):
    from visiontl.adapters.detection.native import build_native

    monkeypatch.chdir(tmp_path)
    architecture = _yolo_architecture()
    architecture["activation"] = EVIL_ACTIVATION
    architecture.pop("yaml_file"), architecture.pop("scale")
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(architecture))
    with pytest.raises(ValueError, match="evil.yaml: refusing.*activation"):
        build_native(str(tmp_path / "evil.yaml"), 2)
    assert not (tmp_path / "pwned").exists()


def test_visiontl_checkpoint_with_code_in_its_architecture_is_refused(tmp_path, monkeypatch, detection_set, capsys):
    """A detection checkpoint stores a native model's architecture as plain data, so it passes
    ``weights_only=True``; ``Detector.load``, ``val``, ``predict`` and ``export`` must still
    refuse to hand a crafted one to ultralytics' parser."""
    from visiontl.adapters import Detector

    monkeypatch.chdir(tmp_path)
    cfg = tiny_detect_config(detection_set, tmp_path / "runs")
    cfg.model.ultralytics = "yolov8n.yaml"
    det = Detector(config=cfg, classes=["a", "b"])
    good = {"meta": det.checkpoint_meta(), "model": det.model.state_dict()}
    torch.save(good, tmp_path / "good.pt")
    assert Detector.load(tmp_path / "good.pt").model.head.nc == 2  # the crafted files differ only in the entry
    image = detection_set.parent / "images" / "val" / "000.png"
    for kind, (architecture, named) in _evil_architectures(tmp_path).items():
        evil = copy.deepcopy(good)
        evil["meta"]["architecture"] = architecture
        path = tmp_path / f"evil-{kind}.pt"
        torch.save(evil, path)
        with pytest.raises(ValueError, match=f"evil-{kind}.pt: refusing the model architecture.*{named}"):
            Detector.load(path)
        for argv in (["val", str(path), "--data", str(detection_set)], ["predict", str(path), str(image)],
                     ["export", str(path)]):
            assert main(argv) == 2, argv
            assert f"evil-{kind}.pt: refusing" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_architecture_check_accepts_ultralytics_own_models():
    from ultralytics.nn.tasks import yaml_model_load

    from visiontl.adapters.detection.native import check_architecture

    for name in ("yolov8n.yaml", "yolo11n.yaml", "yolov5nu.yaml", "yolov10n.yaml"):
        assert check_architecture(yaml_model_load(name), name)
    relu = dict(yaml_model_load("yolov8n.yaml"), activation="nn.LeakyReLU(0.1, inplace=True)")
    assert check_architecture(relu, "x")
    for bad in ("nn.SiLU(x)", "nn.Module()", "eval('1')", "nn.SiLU();import os"):
        with pytest.raises(ValueError, match="activation"):
            check_architecture(dict(relu, activation=bad), "x")


NETWORK_GUARD = '''
import socket, sys
log = open(sys.argv[1], "a")

def refuse(what, *args):
    log.write(f"{what} {args!r}\\n"); log.flush()
    raise OSError(f"test: {what} refused")

socket.getaddrinfo = lambda *a, **k: refuse("getaddrinfo", *a[:2])
socket.gethostbyname = lambda *a, **k: refuse("gethostbyname", *a[:1])
_connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
def connect(self, address, _real=_connect):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        refuse("connect", address)
    return _real(self, address)
socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: connect(self, address, _connect_ex)

from visiontl.cli import main
for argv in [line.split("\\t") for line in sys.argv[2:]]:
    code = main(argv)
    print("rc", code, argv[:2], flush=True)
    if code:
        sys.exit(code)
'''


def test_offline_commands_make_no_connection_attempt(tmp_path, image_folder, detection_set, segmentation_set):
    """With only ``VISIONTL_OFFLINE=1`` set (none of the libraries' own switches), training,
    dry-runs and predict never resolve a host name or open a network connection."""
    import os
    import subprocess
    import sys

    runs, log = tmp_path / "runs", tmp_path / "connections.log"
    small = "model.backbone=mobilenet_v3_small\tmodel.weights=none\ttrain.num_workers=0\ttrain.progress=none"
    commands = [f"train\tclassify\tdata.train={image_folder}\tdata.image_size=32\ttrain.epochs=1\t"
                f"train.batch_size=8\ttrain.out_dir={runs}\ttrain.name=c\t{small}",
                f"predict\t{runs / 'c' / 'best.pt'}\t{image_folder / 'red' / '0.png'}",
                f"train\tdetect\tdata.yaml={detection_set}\tdata.image_size=64\ttrain.out_dir={runs}\t{small}\t--dry-run",
                f"train\tsegment\tdata.train={segmentation_set}\tdata.classes=[bg,disc,bar]\tdata.image_size=64\t"
                f"train.out_dir={runs}\t{small}\t--dry-run"]
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_ALBUMENTATIONS_UPDATE", "YOLO_OFFLINE", "YOLO_AUTOINSTALL", "HF_HUB_OFFLINE")}
    env.update(VISIONTL_OFFLINE="1", HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    env.pop("YOLO_CONFIG_DIR", None)
    proc = subprocess.run([sys.executable, "-c", NETWORK_GUARD, str(log), *commands], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("rc 0") == len(commands)
    assert log.read_text() == ""  # not one getaddrinfo / connect


class _Calls:
    """Pickles as a call ``func(*args)`` (a REDUCE), which the unpickler would make."""

    def __init__(self, func, *args) -> None:
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _calling_checkpoints(folder) -> dict[str, str]:
    """Native-looking checkpoints that construct ultralytics classes with arguments from the
    file while being unpickled: file name → the class the refusal must name."""
    from ultralytics.nn.autobackend import AutoBackend
    from ultralytics.nn.modules.block import TorchVision
    from ultralytics.nn.tasks import DetectionModel

    cfg = _yolo_architecture()
    cfg["activation"] = EVIL_ACTIVATION  # ultralytics' parser would eval it while building
    torch.save({"x": _WritesMarker()}, folder / "inner.pt")  # unpickled by AutoBackend with plain pickle
    torch.save({"model": _Calls(DetectionModel, cfg, 3, 2, False)}, folder / "ctor.pt")
    torch.save({"model": _Calls(AutoBackend, str(folder / "inner.pt"))}, folder / "autobackend.pt")
    torch.save({"model": _Calls(TorchVision, "alexnet", "DEFAULT")}, folder / "torchvision.pt")  # downloads
    return {"ctor.pt": "DetectionModel", "autobackend.pt": "AutoBackend", "torchvision.pt": "TorchVision"}


@pytest.mark.parametrize("safe_load", ["0", "1"])
def test_native_pt_that_calls_a_class_while_unpickled_runs_nothing(tmp_path, detection_set, safe_load):
    """No constructor from the file runs before it is judged, whatever ultralytics' own safe
    mode says: one line of refusal, no marker, no connection attempt."""
    import os
    import subprocess
    import sys

    log = tmp_path / "connections.log"
    env = dict(os.environ, VISIONTL_OFFLINE="1", ULTRALYTICS_SAFE_LOAD=safe_load, HOME=str(tmp_path / "home"),
               OMP_NUM_THREADS="1")
    for name, cls in _calling_checkpoints(tmp_path).items():
        argv = f"train\tdetect\tdata.yaml={detection_set}\tmodel.ultralytics={tmp_path / name}\t--dry-run"
        proc = subprocess.run([sys.executable, "-c", NETWORK_GUARD, str(log), argv], capture_output=True, text=True,
                              env=env, timeout=300, cwd=tmp_path)
        assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
        err = [line for line in proc.stderr.splitlines() if line.strip()]
        assert f"{name}: refusing to load; it calls " in err[-1] and cls in err[-1], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("pwned*"))
    assert log.read_text() == ""  # not one getaddrinfo / connect


@pytest.mark.parametrize("name", ["../../x", "..", "a/b", "/tmp/abs", "x" * 300, "a\nb", "a\tb", " a", "a\x1b[2J"])
def test_run_name_never_leaves_the_runs_folder(tmp_path, image_folder, capsys, name):
    runs = tmp_path / "sub" / "runs"
    argv = ["train", "classify", f"data.train={image_folder}", f"train.out_dir={runs}", f"train.name={name}",
            "model.backbone=mobilenet_v3_small", "model.weights=none", "train.epochs=1", "train.num_workers=0"]
    assert main(argv) == 2
    assert "train.name=" in capsys.readouterr().err
    assert main(argv + ["--dry-run"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [image_folder.name]  # nothing written anywhere


@pytest.mark.parametrize("setting", ["train.epochs=0", "train.epochs=-1", "train.batch_size=0", "train.accumulate=0",
                                     "optim.lr=-1", "optim.lr=nan", "optim.min_lr_ratio=2", "train.device=cuda:7",
                                     "train.device=nonsense"])
def test_impossible_settings_are_named_before_any_work(image_folder, tmp_path, capsys, setting):
    argv = ["train", "classify", f"data.train={image_folder}", f"train.out_dir={tmp_path / 'runs'}", setting,
            "model.backbone=mobilenet_v3_small", "model.weights=none", "train.num_workers=0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {setting.split('=')[0]}="), err[-3:]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("setting", ["data.image_size=-1", "data.val_fraction=1", "data.val_fraction=-0.1",
                                     "loss.label_smoothing=5", "data.augment.hflip=5", "data.augment.color_jitter=-1",
                                     "data.augment.scale_min=0", "model.dropout=2", "model.dropout=nan"])
def test_impossible_data_and_loss_values_are_named(image_folder, tmp_path, capsys, setting):
    argv = ["train", "classify", f"data.train={image_folder}", f"train.out_dir={tmp_path / 'runs'}", setting,
            "model.backbone=mobilenet_v3_small", "model.weights=none", "train.num_workers=0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {setting.split('=')[0]}="), err[-3:]
    assert len(err) == 1 or "must be" in err[-1]  # one line that names the key (and its range)


@pytest.mark.parametrize("task, setting", [("detect", "data.augment.mosaic=2"), ("segment", "data.augment.vflip=-1"),
                                           ("detect", "data.augment.translate=0.9")])
def test_other_tasks_augmentation_ranges_are_named(task, setting, tmp_path, capsys):
    assert main(["train", task, "data.train=x", setting, "--dry-run"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {setting.split('=')[0]}=")


def test_report_of_a_run_whose_config_holds_a_python_tag_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics.csv").write_text("epoch,train/loss\n1,0.5\n")
    (tmp_path / "config.yaml").write_text("task: !!python/object/apply:os.system ['touch pwned']\n")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.yaml: refused: the tag" in err[0] and "python/object/apply:os.system" in err[0]
    assert "Traceback" not in err[0] and not (tmp_path / "pwned").exists()


def test_resuming_a_checkpoint_of_another_task_or_backbone_says_so(image_folder, tmp_path, segmentation_set, capsys):
    from conftest import tiny_config

    from visiontl.adapters import Classifier

    clf = Classifier(config=tiny_config(image_folder, tmp_path / "a", train__epochs=1, train__name="r"))
    clf.fit()
    last = tmp_path / "a" / "r" / "last.pt"
    seg = ["train", "segment", f"data.train={segmentation_set}", "data.classes=[bg,disc,bar]", "data.image_size=64",
           "model.backbone=mobilenet_v3_small", "model.weights=none", "train.num_workers=0", f"train.resume={last}"]
    assert main(seg) == 2
    err = capsys.readouterr().err
    assert "a checkpoint of task 'classify', and this run's task is 'segment'" in err and len(err) < 2000
    other = ["train", "classify", f"data.train={image_folder}", "model.backbone=resnet18", "model.weights=none",
             "train.num_workers=0", "data.image_size=32", f"train.resume={last}"]
    assert main(other) == 2
    assert "a checkpoint of backbone 'mobilenet_v3_small', and this run's backbone is 'resnet18'" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--steps", "0"], ["--size", "-5"]])
def test_stylize_rejects_impossible_steps_and_size(tmp_path, capsys, option):
    import numpy as np
    from PIL import Image

    for name in ("c.png", "s.png"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / name)
    assert main(["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "--weights", "none", *option,
                 "--out", str(tmp_path / "o")]) == 2
    assert f"{option[0][2:]}=" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["x" * 300, "x/" * 3000])
def test_a_path_too_long_for_the_system_is_one_line(tmp_path, capsys, path):
    argv = ["train", "classify", f"data.train={tmp_path / path}", f"train.out_dir={tmp_path / 'runs'}",
            "model.backbone=mobilenet_v3_small", "model.weights=none"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: File name too long: ") and len(err[0]) < 300, err[-3:]



def test_very_long_class_and_file_names_train_and_plot(tmp_path):
    """A 240-character class folder of 245-character file names trains and draws its plots
    (labels shortened to fit)."""
    from conftest import tiny_config

    from visiontl.adapters import Classifier

    rng = np.random.default_rng(0)
    for name in ("c" * 240, "b"):
        (tmp_path / "d" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                tmp_path / "d" / name / ("i" * 245 + f"{i}.png"))
    clf = Classifier(config=tiny_config(tmp_path / "d", tmp_path / "runs", train__epochs=1, train__name="r"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # matplotlib: "Tight layout not applied"
        clf.fit()
    assert (tmp_path / "runs" / "r" / "confusion_matrix.png").exists()

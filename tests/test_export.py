"""Export: ONNX run with onnxruntime matches PyTorch; TorchScript loads; int8 is smaller."""
import json

import numpy as np
import pytest
import torch

from conftest import tiny_config
from visiontl.adapters import Classifier
from visiontl.cli import main

ort = pytest.importorskip("onnxruntime")


def test_onnx_and_torchscript_match_pytorch(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path / "runs", train__epochs=1)
    clf = Classifier(config=cfg)
    clf.fit()
    meta = clf.export(tmp_path / "export")
    assert meta["classes"] == ["blue", "green", "red"] and meta["input"]["range"] == [0, 1]
    assert json.loads((tmp_path / "export" / "model.json").read_text())["preprocessing"]["channel_order"] == "RGB"
    x = torch.rand(3, 3, 32, 32)  # another batch size than the export example
    with torch.no_grad():
        want = clf.model.eval()(x)
    session = ort.InferenceSession(str(tmp_path / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, probs = session.run(None, {"images": x.numpy()})
    np.testing.assert_allclose(logits, want.numpy(), atol=1e-4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    scripted = torch.jit.load(str(tmp_path / "export" / "model.torchscript.pt"))
    torch.testing.assert_close(scripted(x)[0], want, atol=1e-5, rtol=1e-5)


def test_int8_export_from_the_cli(image_folder, tmp_path, capsys):
    cfg = tiny_config(image_folder, tmp_path / "runs", train__epochs=1, train__name="r")
    Classifier(config=cfg).fit()
    assert main(["export", str(tmp_path / "runs" / "r" / "best.pt"), "--int8", "--formats", "onnx",
                 "--out", str(tmp_path / "ex")]) == 0
    meta = json.loads((tmp_path / "ex" / "model.json").read_text())
    q = meta["int8_vs_float"]
    assert q["int8_mb"] < q["float_mb"] / 2 and 0 <= q["int8"]["accuracy"] <= 1 and q["val_images"] == 6
    # the float ONNX model scored by the task's own validation code equals the PyTorch model's score
    clf = Classifier.load(tmp_path / "runs" / "r" / "best.pt")
    torch_scores = clf.evaluate(clf.datasets()[1])
    assert q["metric"] == "accuracy" and q["float"]["accuracy"] == torch_scores["accuracy"]
    assert q["float"]["loss"] == pytest.approx(torch_scores["loss"], abs=1e-4)
    assert "torchscript" not in meta["files"]
    assert "int8 vs float on 6 validation images" in capsys.readouterr().out


def test_prepare_gives_a_contiguous_cpu_eval_model_and_refuses_int8_for_other_tasks(tmp_path):
    from visiontl import export

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).to(memory_format=torch.channels_last)
    net, out = export.prepare(model, tmp_path / "a" / "b")
    assert out.is_dir() and not net.training and net[0].weight.is_contiguous()
    with pytest.raises(ValueError, match="int8 export is not available for the detector; export it in float"):
        export.prepare(model, tmp_path / "c", int8=True, name="the detector")
    assert not (tmp_path / "c").exists()  # nothing written before the refusal


def test_float_tail_is_what_follows_the_last_convolutions(tmp_path):
    from visiontl import export

    class Decode(torch.nn.Module):  # a detector's ending: boxes in pixels beside scores in 0…1
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return torch.cat([y[:, :2] * 100, y[:, 2:].sigmoid()], 1)

    path = export.to_onnx(Decode().eval(), torch.rand(1, 3, 16, 16), tmp_path / "m.onnx", output_names=["out"])
    import onnx

    ops = {n.name: n.op_type for n in onnx.load(str(path)).graph.node}
    tail = {ops[name] for name in export.float_tail(path)}
    assert {"Concat", "Sigmoid", "Mul", "Relu"} <= tail and "Conv" not in tail


class _FindsNothing(torch.nn.Module):
    """A detector-shaped graph whose example gives no detections (a barely trained model)."""

    def forward(self, images):
        flat = images.flatten(1)
        keep = flat[:, 0] > 2  # images are in [0, 1]: never
        return flat[:, :4][keep], flat[:, 0][keep]


def test_onnx_check_of_a_model_that_outputs_nothing(tmp_path):
    from visiontl.export import write_models

    meta = write_models(_FindsNothing(), torch.rand(1, 3, 8, 8), tmp_path, {}, formats=["onnx"],
                        output_names=["boxes", "scores"], one_image=True)
    check = meta["onnx_check"]
    assert check["max_abs_diff"] == 0.0 and check["shapes"] == {"boxes": [0, 4], "scores": [0]}
    assert "empty" in check["note"] and "only shapes compared" in check["note"]


class _Shifted(torch.nn.Module):
    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra

    def forward(self, images):
        return images.flatten(1)[:, : 4 + self.extra]


def test_onnx_check_compares_shapes_before_values(tmp_path):
    from visiontl.export import check_onnx, to_onnx

    path = to_onnx(_Shifted(0), torch.rand(2, 3, 8, 8), tmp_path / "m.onnx", output_names=["y"])
    with pytest.raises(AssertionError, match=r"'y' has shape \[2, 4\] in onnxruntime but \[2, 5\] in PyTorch"):
        check_onnx(_Shifted(1), path, torch.rand(2, 3, 8, 8))


def test_outputs_replace_links_planted_in_the_output_folder(image_folder, tmp_path):
    """A symlink already at an output's name (export/model.json, preds/predictions.csv …)
    is replaced by the new file; the file it pointed at is never written."""
    cfg = tiny_config(image_folder, tmp_path / "runs", train__epochs=1, train__name="r")
    Classifier(config=cfg).fit()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    planted = {"ex": ["model.json", "model.onnx", "model.int8.onnx", "model.torchscript.pt"],
               "preds": ["predictions.csv", "predictions.json"]}
    for folder, names in planted.items():
        (tmp_path / folder).mkdir()
        for name in names:
            (tmp_path / folder / name).symlink_to(victim)
    ckpt = str(tmp_path / "runs" / "r" / "best.pt")
    assert main(["export", ckpt, "--int8", "--out", str(tmp_path / "ex")]) == 0
    assert main(["predict", ckpt, str(image_folder / "red"), "--out", str(tmp_path / "preds")]) == 0
    assert victim.read_text() == "precious"
    for folder, names in planted.items():
        for name in names:
            path = tmp_path / folder / name
            assert not path.is_symlink() and path.stat().st_size > 0, path
    assert json.loads((tmp_path / "ex" / "model.json").read_text())["task"] == "classify"
    assert not [p for p in (tmp_path / "ex").iterdir() if p.name.startswith(".")]  # no temp file left

"""Structured pruning and the deployment report: a trained model loses whole channels to a
target (torch-pruning), every layer keeps a multiple of 8, the task's outputs keep their
size, the pruned checkpoint loads, resumes and exports; fine-tuning through the engine wins
back what pruning cost; the report puts float, int8 and pruned models in one table."""
import json

import pytest
import torch

from conftest import (make_image_folder, make_segmentation_set, tiny_config,
                      tiny_detect_config, tiny_segment_config)
from visiontl.adapters import Classifier, Detector, Segmenter, Stylizer, load
from visiontl.cli import main
from visiontl.engine.prune import prune_channels


def _built(kind, tmp_path):
    if kind == "classify":
        a = Classifier(config=tiny_config(tmp_path, tmp_path, model__backbone="mobilenet_v2"))
        a.classes = ["a", "b", "c"]
    elif kind == "segment":
        a = Segmenter(config=tiny_segment_config(tmp_path, tmp_path, model__backbone="mobilenet_v2"))
        a.classes = ["bg", "fg"]
    else:
        a = Detector(config=tiny_detect_config(tmp_path / "d.yaml", tmp_path, model__backbone="mobilenet_v2"))
        a.classes = ["square", "bar"]
    a._build()
    return a


@pytest.mark.parametrize("kind", ["classify", "segment", "detect"])
def test_pruning_meets_its_target_keeps_the_outputs_and_the_checkpoint_loads(kind, tmp_path):
    a = _built(kind, tmp_path)
    size = a.config.data.image_size
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        before = a.model.eval()(x)
    params = sum(p.numel() for p in a.model.parameters())
    outputs = lambda: [getattr(m, "out_channels", getattr(m, "out_features", 0))  # noqa: E731
                       for f in a.prune_fixed(a.model) for m in f.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    fixed, stages = outputs(), [f.channels for f in a.model.backbone.feature_info]
    result = a.prune(speedup=2)
    assert result.speedup >= 2 and result.params[1] < 0.75 * params
    changed = [a.model.get_submodule(n) for n in result.structure]
    assert any(isinstance(m, torch.nn.Conv2d) for m in changed)
    kept = {id(m) for f in a.prune_fixed(a.model) for m in f.modules()}
    for m in changed:  # what ONNX Runtime's CPU kernels run fast
        if isinstance(m, torch.nn.Conv2d) and id(m) not in kept:
            assert m.out_channels % 8 == 0, m
    assert outputs() == fixed and sum(fixed) > 0  # class scores, boxes: whole
    with torch.no_grad():  # feature_info says what the pruned stages give
        assert [f.channels for f in a.model.backbone.feature_info] == [t.shape[1] for t in a.model.backbone(x)]
    assert a.model.backbone.feature_info[-1].channels < stages[-1]
    with torch.no_grad():
        after = a.model.eval()(x)
    shapes = lambda out: [t.shape for t in out] if isinstance(out, (tuple, list)) else [out.shape]  # noqa: E731
    if kind != "detect":  # the detector's eval output is (decoded, raw) with raw channels per level
        assert shapes(after) == shapes(before)
    torch.save({"model": a.model.state_dict(), "meta": a.checkpoint_meta()}, tmp_path / "best.pt")
    b = load(tmp_path / "best.pt")
    assert tuple(b.pruned["macs"]) == result.macs
    assert "pruned to" in b.describe_model()
    with torch.no_grad():
        again = b.model.eval()(x)
    first = lambda out: out[0] if isinstance(out, (tuple, list)) else out  # noqa: E731
    assert torch.allclose(first(again), first(after), atol=1e-5)


def test_bad_pruning_targets_are_refused(tmp_path):
    a = _built("classify", tmp_path)
    with pytest.raises(ValueError, match="one pruning target"):
        a.prune()
    with pytest.raises(ValueError, match="one pruning target"):
        a.prune(speedup=2, keep_params=0.5)
    with pytest.raises(ValueError, match="must be above 1"):
        a.prune(speedup=0.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        a.prune(keep_params=1.5)
    with pytest.raises(ValueError, match="does not reach the target"):
        a.prune(speedup=1000)
    with pytest.raises(ValueError, match="nothing to prune"):
        Classifier().prune(speedup=2)
    with pytest.raises(ValueError, match="no pruning"):
        Stylizer().prune(speedup=2)
    with pytest.raises(ValueError, match="one pruning target"):
        prune_channels(torch.nn.Conv2d(3, 8, 3), torch.rand(1, 3, 8, 8), [])


def test_prune_fine_tunes_as_a_normal_run_and_the_report_compares_it(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=12)
    Classifier(config=tiny_config(data, tmp_path / "runs", train__epochs=4, train__name="big",
                                  model__backbone="resnet18")).fit()
    big = tmp_path / "runs" / "big" / "best.pt"
    assert main(["prune", str(big), "--speedup", "2"]) == 0  # 5 epochs at the run's LR
    err = capsys.readouterr().err
    run = tmp_path / "runs" / "big-pruned"
    pruned = load(run / "best.pt")
    assert pruned.pruned and pruned.config.finetune.strategy == "full"
    assert pruned.config.optim.lr == load(big).config.optim.lr  # the run's recipe
    _, val = pruned.datasets()
    after_pruning = float(err.split("before fine-tuning")[1].split("accuracy ")[1].split()[0])
    fine_tuned = pruned.evaluate(val)["accuracy"]
    assert fine_tuned >= max(after_pruning + 0.2, 0.7), (after_pruning, fine_tuned)  # fine-tuning won it back
    n = lambda m: sum(p.numel() for p in m.model.parameters())  # noqa: E731
    assert n(pruned) < 0.6 * n(load(big))
    # the pruned run resumes (its shapes come from last.pt) and predicts
    assert main(["train", "classify", "-c", str(run / "config.yaml"), f"train.resume={run / 'last.pt'}",
                 "train.epochs=6"]) == 0
    assert len(load(run / "last.pt").predict(data)) == 36
    assert main(["export", str(big), "--report", "--compare", str(run / "best.pt"), "--out",
                 str(tmp_path / "deploy")]) == 0
    report = json.loads((tmp_path / "deploy" / "deploy_report.json").read_text())
    rows = {r["model"]: r for r in report["rows"]}
    assert list(rows) == ["big float", "big int8", "big-pruned float", "big-pruned int8"]
    assert rows["big-pruned float"]["kind"] == "pruned" and rows["big float"]["kind"] == "trained"
    assert rows["big float"]["metric"] == pytest.approx(load(big).evaluate(val)["accuracy"])  # val's numbers
    assert rows["big-pruned float"]["metric"] == pytest.approx(load(run / "best.pt").evaluate(val)["accuracy"])
    assert rows["big-pruned float"]["params"] < 0.6 * rows["big float"]["params"]
    assert rows["big int8"]["mb"] < 0.4 * rows["big float"]["mb"]
    assert all(r["latency_ms"] > 0 and r["images_per_s"] > 0 for r in rows.values())
    assert (tmp_path / "deploy" / "deploy_report.png").stat().st_size > 10_000
    assert "| big-pruned float | pruned, float |" in (tmp_path / "deploy" / "deploy_report.md").read_text()
    other = make_segmentation_set(tmp_path / "seg", n=8)
    seg = Segmenter(config=tiny_segment_config(other, tmp_path / "runs", train__epochs=1, train__name="seg"))
    seg.fit()
    assert main(["export", str(big), "--report", "--compare", str(tmp_path / "runs" / "seg" / "best.pt"),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "compares models of" in capsys.readouterr().err

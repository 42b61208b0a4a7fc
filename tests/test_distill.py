"""Knowledge distillation: the soft loss is Hinton's; a student trains on a teacher's soft
targets through the engine (classification from the command line, segmentation from
Python) and its run is a normal run; a teacher of other classes is refused."""
import pytest
import torch
import torch.nn.functional as F

from conftest import (make_detection_set, make_image_folder, make_segmentation_set, tiny_config, tiny_detect_config,
                      tiny_segment_config)
from visiontl.adapters import Classifier, Detector, Segmenter, load
from visiontl.cli import main
from visiontl.engine import DistillConfig
from visiontl.engine.distill import mix, soft_loss, soft_scores, verdict


def test_soft_loss_is_t_squared_kl_and_weight_zero_is_the_task_loss():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5), torch.randn(6, 5)
    want = F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t / 3, 1), reduction="batchmean") * 9
    assert soft_loss(s, t, 3.0) == pytest.approx(float(want), rel=1e-5)
    assert soft_loss(t, t, 3.0) == pytest.approx(0.0, abs=1e-6)
    s4, t4 = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    mask = torch.rand(2, 4, 4) > 0.5
    per_pixel = (F.softmax(t4, 1) * (F.log_softmax(t4, 1) - F.log_softmax(s4, 1))).sum(1)
    assert soft_loss(s4, t4, 1.0, mask) == pytest.approx(float(per_pixel[mask].mean()), rel=1e-5)
    task = torch.tensor(2.5)
    assert mix(task, s, t, DistillConfig(weight=0.0)) == task
    assert mix(task, s, t, DistillConfig(weight=1.0, temperature=3.0)) == pytest.approx(float(want), rel=1e-5)


def test_the_verdict_says_when_a_student_has_caught_up_with_its_teacher():
    ahead = verdict({"accuracy": 0.70}, {"accuracy": 0.90}, "val/accuracy", "max")
    assert "val/accuracy 0.9000; the student's best epoch: 0.7000" in ahead and "caught up" not in ahead
    assert "caught up" in verdict({"accuracy": 0.86}, {"accuracy": 0.85}, "val/accuracy", "max")
    assert "caught up" in verdict({"loss": 1.0}, {"loss": 1.2}, "val/loss", "min")
    assert "caught up" not in verdict({"loss": 1.3}, {"loss": 1.2}, "val/loss", "min")
    assert verdict({"accuracy": 0.7}, {"f1": 0.9}, "val/f1", "max") == ""  # a metric one side lacks: nothing said


def test_a_student_distils_from_the_command_line_and_is_a_normal_run(tmp_path, capsys):
    data = make_image_folder(tmp_path / "data", per_class=12)
    teacher = Classifier(config=tiny_config(data, tmp_path / "runs", train__epochs=4, train__name="teacher",
                                            model__backbone="resnet18"))
    teacher.fit()
    best = tmp_path / "runs" / "teacher" / "best.pt"
    taught = load(best).predict(data)
    assert sum(r["labels"][0] == r["path"].split("/")[-2] for r in taught) / len(taught) >= 0.8  # it knows
    assert main(["distill", "classify", "--teacher", str(best), "model.backbone=resnet18", "train.name=student",
                 "train.epochs=8", "train.seed=1", "distill.weight=1.0", "distill.temperature=2"]) == 0  # the teacher's soft targets alone
    run = tmp_path / "runs" / "student"
    # the end of the run says where the student stands against its teacher, on the same images
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("teacher on the same")]
    assert len(said) == 1 and said[0] in (run / "summary.txt").read_text()
    assert 0 <= float(said[0].split("val/accuracy ")[1].split(";")[0]) <= 1
    assert "distill:\n  teacher: " in (run / "config.yaml").read_text().replace("'", "")
    # a normal run: loads, predicts, exports. last.pt: the end of what distillation optimised
    # (best.pt is the epoch of best val accuracy, whose distance to the teacher varies)
    student = load(run / "last.pt")
    assert student.config.train.seed == 1 and student.classes == teacher.classes
    # what distillation optimises fell: the student's distance to the teacher's soft targets
    images = torch.stack([x for x, _ in student.eval_dataset(str(data))])  # uint8, as the loaders give
    fresh = Classifier(config=student.config)
    fresh.classes = student.classes
    fresh._build(weights="none")  # the student as it started (same seed)
    with torch.no_grad():
        target = load(best).model.eval()(images)
        before = soft_loss(fresh.model.eval()(images), target, 2.0)
        after = soft_loss(student.model.eval()(images), target, 2.0)
    assert after < 0.7 * before, (before, after)  # measured 0.300 → 0.024 (torch 2.14), 0.224 → 0.085 (2.6)
    assert len(student.predict(data)) == 36
    student.export(tmp_path / "exp", formats=["onnx"])
    other = make_image_folder(tmp_path / "other", per_class=4)
    (other / "red").rename(other / "crimson")
    with pytest.raises(ValueError, match="the student is a classify model of classes"):
        Classifier(config=tiny_config(other, tmp_path / "runs")).distill(best)


def test_a_segmentation_student_distils_per_pixel_from_python(tmp_path):
    data = make_segmentation_set(tmp_path / "seg", n=12)
    teacher = Segmenter(config=tiny_segment_config(data, tmp_path / "runs", train__epochs=3, train__name="t"))
    teacher.fit()
    student = Segmenter(config=tiny_segment_config(data, tmp_path / "runs", train__name="s",
                                                   model__backbone="resnet18", train__epochs=3))
    history = student.distill(teacher)
    assert student.config.distill.teacher.endswith("best.pt") and student.teacher is not None
    assert history[-1]["train/loss"] < history[0]["train/loss"]


def test_sigmoid_soft_scores_are_a_bernoulli_kl():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 50), torch.randn(2, 3, 50)
    assert soft_scores(t, t, 2.0) == pytest.approx(0.0, abs=1e-5)
    p, q = torch.sigmoid(s / 2), torch.sigmoid(t / 2)
    kl = (q * (q / p).log() + (1 - q) * ((1 - q) / (1 - p)).log()).sum()
    assert soft_scores(s, t, 2.0) == pytest.approx(float(kl * 4 / torch.sigmoid(t).sum()), rel=1e-4)


def test_a_detector_distils_its_class_scores_through_its_training_step(tmp_path):
    data = make_detection_set(tmp_path / "det", n_train=8, n_val=4)
    teacher = Detector(config=tiny_detect_config(data, tmp_path / "runs"))
    teacher.classes = ["square", "bar"]
    teacher._build(weights="none")
    with torch.no_grad():  # a teacher whose class scores differ clearly from the fresh student's
        for branch in teacher.model.head.cv3:
            branch[-1].bias.add_(torch.linspace(-2.0, 4.0, branch[-1].bias.numel()))
    torch.save({"model": teacher.model.state_dict(), "meta": teacher.checkpoint_meta()}, tmp_path / "t.pt")
    student = Detector(config=tiny_detect_config(data, tmp_path / "runs", train__name="s", distill__weight=1.0,
                                                 distill__temperature=2.0, distill__teacher=str(tmp_path / "t.pt"),
                                                 train__seed=1))
    train_set, _ = student.datasets()
    student.prepare(train_set)
    plain = student.eval_dataset(str(data))  # no random augmentation: the same batch in any test order
    batch = student.collate([plain[i] for i in range(4)])
    model = student.model
    # the class-score convolutions only, BatchNorm statistics fixed: what the distillation term
    # reaches, on a smooth problem (the whole network at this LR diverged in some test orders)
    optimizer = torch.optim.Adam([p for branch in model.head.cv3 for p in branch.parameters()], lr=1e-2)

    def train_mode() -> None:
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()

    def distance() -> float:
        with torch.no_grad():
            return float(soft_scores(model.eval()(batch["img"])[1]["scores"], student.teacher(batch["img"])[1]["scores"],
                                     2.0))

    before = distance()
    for _ in range(20):
        train_mode()
        optimizer.zero_grad()
        student.training_step(model, batch)["loss"].backward()
        optimizer.step()
    assert distance() < 0.5 * before, (before, distance())  # the class scores went to the teacher's
    # (measured 16.1 → 1.1; with distill.weight=0 it grows: 16.1 → 128)
    history = student.fit(epochs=1)  # a normal run: checkpoints that load and predict
    assert history and load(tmp_path / "runs" / "s" / "best.pt").config.distill.weight == 1.0

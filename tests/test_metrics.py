"""Classification metrics agree with an independent implementation (scikit-learn)."""
import numpy as np
import pytest
import torch

from visiontl.adapters.classification.metrics import confusion_matrix, summarize

sk = pytest.importorskip("sklearn.metrics")


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 6
    y = rng.integers(0, n_classes - 1, 200)  # class 5 never occurs as a target…
    p = np.where(rng.random(200) < 0.6, y, rng.integers(0, n_classes, 200))  # …but may be predicted
    cm = confusion_matrix(torch.from_numpy(p), torch.from_numpy(y), n_classes)
    assert np.array_equal(cm.numpy(), sk.confusion_matrix(y, p, labels=range(n_classes)))
    ours = summarize(cm)
    prec, rec, f1, _ = sk.precision_recall_fscore_support(y, p, average="macro", zero_division=0)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    assert ours["precision"] == pytest.approx(prec)
    assert ours["recall"] == pytest.approx(rec)
    assert ours["f1"] == pytest.approx(f1)


def test_deployment_plot_labels_do_not_cover_each_other():
    """Points close together (a float model and its int8 twin) get labels at other heights;
    a point far away keeps the default place."""
    from visiontl import plots

    fig, ax = plots.subplots(1, 1)
    points = [(1.00, 0.812), (1.01, 0.8121), (1.02, 0.8119), (9.0, 0.70)]
    for x, y in points:
        ax.scatter(x, y)
    offsets = plots.label_offsets(ax, points)
    scale = 72 / fig.dpi
    spots = [ax.transData.transform(p) * scale + (4, dy) for p, dy in zip(points, offsets)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert abs(spots[i][1] - spots[j][1]) >= 10 - 1e-6  # a label's height apart
    assert offsets[3] == 4.0

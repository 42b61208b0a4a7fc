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

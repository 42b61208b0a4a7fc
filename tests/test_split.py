"""One rule for holding out validation data, the same in every task."""
import pytest

from conftest import make_detection_set, make_segmentation_set, tiny_detect_config, tiny_segment_config
from visiontl.data.split import random_split, stratified_split


@pytest.mark.parametrize("n, fraction, n_val", [(10, 0.2, 2), (2, 0.9, 1), (3, 0.01, 1), (5, 0.0, 0), (1, 0.5, 0)])
def test_at_least_one_held_out_and_one_kept(n, fraction, n_val, capsys):
    train, val = random_split(n, fraction, seed=0, where="here")
    assert len(val) == n_val and sorted(train + val) == list(range(n))
    assert ("too few to hold out" in capsys.readouterr().err) == (n < 2 and fraction > 0)
    assert random_split(n, fraction, seed=0) == (train, val)  # the seed fixes it


def test_stratified_split_with_single_image_classes_says_there_is_no_validation(capsys):
    train, val = stratified_split([0, 1, 2], 0.2, where="folder")
    assert (train, val) == ([0, 1, 2], []) and "folder: 3 image(s) is too few" in capsys.readouterr().err


def test_a_one_image_dataset_trains_without_validation_in_every_task(tmp_path, capsys):
    from visiontl.adapters import Detector, Segmenter

    data_yaml = make_detection_set(tmp_path / "det", n_train=1, n_val=0)
    data_yaml.write_text(data_yaml.read_text().replace("val: images/val\n", ""))
    train, val = Detector(config=tiny_detect_config(data_yaml, tmp_path / "runs")).datasets()
    assert len(train) == 1 and val is None  # (the training set was empty before)
    seg = Segmenter(config=tiny_segment_config(make_segmentation_set(tmp_path / "seg", n=1), tmp_path / "runs"))
    train, val = seg.datasets()  # (an error before)
    assert len(train) == 1 and val is None
    assert capsys.readouterr().err.count("too few to hold out") == 2

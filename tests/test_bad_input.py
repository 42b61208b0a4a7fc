"""Bad input: clear errors naming the file or key, or counted skips when asked."""
import numpy as np
import pytest
from PIL import Image

from conftest import tiny_config
from visiontl.adapters import Classifier
from visiontl.cli import main
from visiontl.data import BadImageError, DataError, csv_dataset, read_image
from visiontl.data import image_folder as image_folder_fn


def test_corrupt_image_is_named(image_folder):
    bad = image_folder / "red" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(BadImageError, match="broken.jpg.*not a readable image"):
        image_folder_fn(image_folder)
    with pytest.raises(BadImageError, match="broken.jpg"):
        read_image(bad)


def test_truncated_image_is_named(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(BadImageError, match="cut.png"):
        read_image(path)


def test_skip_bad_counts_and_reports(image_folder, tmp_path, capsys):
    (image_folder / "red" / "broken.png").write_bytes(b"garbage")
    (image_folder / "blue" / "empty.jpg").write_bytes(b"")
    ds = image_folder_fn(image_folder, skip_bad=True)
    assert len(ds) == 24 and len(ds.skipped) == 2
    err = capsys.readouterr().err
    assert "skipped 2 unreadable file(s)" in err and "broken.png" in err and "empty.jpg" in err
    clf = Classifier(config=tiny_config(image_folder, tmp_path / "runs", train__epochs=1, data__skip_bad=True))
    assert clf.fit()  # trains on the good files


def test_empty_class_folder_is_named(image_folder):
    (image_folder / "purple").mkdir()
    with pytest.raises(DataError, match="purple: class folder has no images"):
        image_folder_fn(image_folder)


def test_csv_missing_file_names_csv_line(tmp_path, image_folder):
    f = tmp_path / "labels.csv"
    f.write_text(f"path,label\n{image_folder / 'red' / '0.png'},red\nnope/missing.png,blue\n")
    with pytest.raises(DataError, match=r"labels.csv:3: image 'nope/missing.png' not found"):
        csv_dataset(f)
    f.write_text("file,class\na.png,red\n")
    with pytest.raises(DataError, match="header must have columns 'path' and 'label'"):
        csv_dataset(f)


def test_grayscale_rgba_16bit_palette_load_as_rgb8(tmp_path):
    gray = tmp_path / "gray.png"
    Image.fromarray(np.full((10, 12), 77, np.uint8), mode="L").save(gray)
    out = read_image(gray)
    assert out.shape == (10, 12, 3) and out.dtype == np.uint8 and (out == 77).all()

    rgba = tmp_path / "rgba.png"
    arr = np.zeros((8, 8, 4), np.uint8)
    arr[..., 0] = 200
    arr[:4, :, 3] = 255  # top half opaque red, bottom half fully transparent
    Image.fromarray(arr, mode="RGBA").save(rgba)
    out = read_image(rgba)
    assert out.shape == (8, 8, 3)
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[7, 7]) == (255, 255, 255)  # transparent → white

    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((6, 6), 65535 // 2, np.uint16)).save(deep)
    out = read_image(deep)
    assert out.dtype == np.uint8 and abs(int(out[0, 0, 0]) - 128) <= 1  # scaled by the 16-bit range

    pal = tmp_path / "pal.gif"
    Image.fromarray(np.full((5, 5, 3), (10, 200, 30), np.uint8)).convert("P", palette=Image.Palette.ADAPTIVE).save(pal)
    assert tuple(read_image(pal)[0, 0]) == (10, 200, 30)


def test_mixed_modes_train(tmp_path):
    """A dataset of grayscale, RGBA and 16-bit files trains without a fuss."""
    root = tmp_path / "data"
    for name, make in {"a": lambda i: Image.fromarray(np.full((20, 20), 30 + i, np.uint8), mode="L"),
                       "b": lambda i: Image.fromarray(np.full((20, 20, 4), 200 - i, np.uint8), mode="RGBA"),
                       "c": lambda i: Image.fromarray(np.full((20, 20), 40000 + i, np.uint16))}.items():
        (root / name).mkdir(parents=True)
        for i in range(6):
            make(i).save(root / name / f"{i}.png")
    clf = Classifier(config=tiny_config(root, tmp_path / "runs", train__epochs=1))
    assert clf.fit()[0]["epoch"] == 1


def test_wrong_config_key_on_the_command_line(tmp_path, capsys):
    assert main(["train", "classify", "optim.lrate=0.1"]) == 2
    assert "optim.lrate" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  backbone: resnet18\n  wieghts: none\n")
    assert main(["train", "classify", "-c", str(cfg)]) == 2
    assert "c.yaml: unknown key 'model.wieghts'" in capsys.readouterr().err


def test_missing_data_and_unknown_backbone_are_clear(tmp_path, capsys):
    assert main(["train", "classify", f"data.train={tmp_path / 'nothing'}", "model.weights=none"]) == 2
    assert "nothing: image folder not found" in capsys.readouterr().err
    assert main(["train", "classify", f"data.train={tmp_path}", "model.backbone=resnet9000"]) == 2
    assert "resnet9000" in capsys.readouterr().err


def test_skip_bad_also_catches_truncated_files(image_folder):
    path = image_folder / "green" / "cut.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(path)
    path.write_bytes(path.read_bytes()[:80])  # the header reads, the pixels do not
    ds = image_folder_fn(image_folder, skip_bad=True)
    assert len(ds) == 24 and [p for p, _ in ds.skipped] == [str(path)]

"""Bad input: clear errors naming the file or key, or counted skips when asked."""
from pathlib import Path

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


def _untrained(task: str):
    """An untrained model of ``task`` (predict needs no training to exercise its inputs)."""
    from visiontl.adapters import Classifier, Detector, Segmenter, Stylizer

    small = {"backbone": "mobilenet_v3_small", "weights": "none"}
    if task == "classify":
        return Classifier(classes=["a", "b"], strategy="full", **small)
    if task == "detect":
        det = Detector(classes=["a", "b"], **small)
        det.config.data.image_size = 64
        return det
    if task == "segment":
        seg = Segmenter(classes=["bg", "fg"], **small)
        seg.config.data.image_size = 64
        return seg
    st = Stylizer(weights="none")
    st.config.model.width, st.config.model.blocks = 8, 1
    st._build()
    return st


@pytest.mark.parametrize("task", ["classify", "detect", "segment", "stylize"])
def test_predict_skips_bad_inputs_and_keeps_same_names_apart(tmp_path, task, capsys):
    """One unreadable file does not end predict: it is listed at the end and in the CSV/JSON
    with its error, everything else is written; a/x.png and b/x.png get their own outputs."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    for sub in ("a", "b"):
        (folder / sub).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(folder / sub / "x.png")
    (folder / "a" / "broken.png").write_bytes(b"not a png at all")
    model, out = _untrained(task), tmp_path / "out"
    results = model.predict_to(folder, out_dir=out)
    assert len(results) == 3
    (bad,) = [r for r in results if r.get("error")]
    assert "broken.png" in bad["path"] and "not a readable image" in bad["error"]
    err = capsys.readouterr().err
    assert "skipped 1 unreadable input(s) of 3" in err and "broken.png" in err
    if task in ("classify", "detect", "segment"):  # (detection's CSV has a row per box; none found here)
        table = (out / ("predictions.json" if task == "detect" else "predictions.csv")).read_text()
        assert "broken.png" in table and "not a readable image" in table and table.count("x.png") == 2
    written = sorted(p.name for p in out.glob("*.png"))
    expected = {"detect": ["a_x_boxes.png", "b_x_boxes.png"], "stylize": ["a_x_stylized.png", "b_x_stylized.png"],
                "segment": ["a_x_mask.png", "a_x_overlay.png", "b_x_mask.png", "b_x_overlay.png"],
                "classify": ["a_x_pred.png", "b_x_pred.png"]}
    assert written == expected[task]


@pytest.mark.parametrize("task", ["detect", "segment", "stylize"])
def test_predict_outputs_of_very_long_file_names_fit_the_file_system(tmp_path, task):
    """Two 250-character names differing only at the end: each gets its own output, named
    within the file system's 255-byte limit."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    for end in ("1", "2"):
        Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(folder / ("é" * 120 + "x" * 5 + f"{end}.png"))
    results = _untrained(task).predict_to(folder, out_dir=tmp_path / "out")
    assert len(results) == 2 and not any(r.get("error") for r in results)
    written = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert len(written) == (4 if task == "segment" else 2) and max(len(n.encode()) for n in written) <= 255


def test_cli_predict_exit_status_says_some_inputs_were_skipped(tmp_path, image_folder):
    clf = _untrained("classify")
    clf.config.data.image_size = 32
    torch_save = __import__("torch").save
    torch_save({"meta": clf.checkpoint_meta(), "model": clf.model.state_dict()}, tmp_path / "m.pt")
    assert main(["predict", str(tmp_path / "m.pt"), str(image_folder / "red")]) == 0
    (image_folder / "red" / "zz.png").write_bytes(b"")
    assert main(["predict", str(tmp_path / "m.pt"), str(image_folder / "red"), "--out", str(tmp_path / "p")]) == 1
    assert (tmp_path / "p" / "predictions.csv").read_text().count("\n") == 10  # header + 8 good + 1 skipped


def test_decompression_bomb_header_is_a_named_error(tmp_path):
    """A PNG whose header claims 200 M pixels: refused from the header, not decoded."""
    import struct
    import zlib

    from visiontl.data.images import check_image

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))
    for read in (check_image, read_image):
        with pytest.raises(BadImageError, match="bomb.png: refused: its header claims more than"):
            read(path)


def test_truncated_image_found_at_first_decode_suggests_skip_bad(image_folder, tmp_path, capsys):
    """A file whose header is fine and pixels are cut passes the pre-scan; the error at its
    first decode says how to skip it, and data.skip_bad=true (which decodes every file
    first) does."""
    from visiontl.data.image_dataset import ImageDataset

    path = image_folder / "red" / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    data = image_folder_fn(image_folder)  # the header scan passes
    i = [str(p) for p, _ in data.samples].index(str(path))
    with pytest.raises(BadImageError, match="cut.png.*data.skip_bad=true"):
        ImageDataset.__getitem__(data, i)
    assert len(image_folder_fn(image_folder, skip_bad=True).skipped) == 1


def test_a_class_with_a_single_image_is_warned_about(image_folder, tmp_path, capsys):
    lone = image_folder / "zebra"
    lone.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(lone / "only.png")
    clf = Classifier(config=tiny_config(image_folder, tmp_path / "runs"))
    train, val = clf.datasets()
    assert "class(es) zebra have a single image" in capsys.readouterr().err
    assert "zebra" not in {val.classes[t] for t in val.targets()}


def test_one_image_per_class_trains_without_validation(tmp_path, capsys):
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "one", per_class=1)
    clf = Classifier(config=tiny_config(data, tmp_path / "runs", train__epochs=2, finetune__strategy="full"))
    history = clf.fit()
    assert len(history) == 2 and not any(k.startswith("val/") for k in history[-1])
    assert "training without validation" in capsys.readouterr().err
    assert (clf.run_dir / "best.pt").is_file()


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_run_folder(image_folder, tmp_path, monkeypatch):
    def broken(self, model, batch):
        raise RuntimeError("boom")

    monkeypatch.setattr(Classifier, "training_step", broken)
    with pytest.raises(RuntimeError, match="boom"):
        Classifier(config=tiny_config(image_folder, tmp_path / "runs", train__name="r")).fit()
    assert not (tmp_path / "runs" / "r").exists()
    keep = tmp_path / "runs" / "mine"  # a folder the run did not create is left alone
    keep.mkdir(parents=True)
    with pytest.raises(RuntimeError, match="boom"):
        Classifier(config=tiny_config(image_folder, tmp_path / "runs", train__name="mine")).fit()
    assert keep.is_dir()


def test_a_recipes_class_list_on_other_data_stops_naming_both(tmp_path, segmentation_set, detection_set, capsys):
    """A 4-class scene recipe on 3-class masks, or data.names that are not the data.yaml's
    names: one line naming the configured classes and the data's, before any training."""
    config = Path(__file__).resolve().parents[1] / "configs" / "segment" / "folder_resnet34_unet.yaml"
    recipe = ["train", "segment", "-c", str(config), f"data.train={segmentation_set}", "data.val=", "data.palette=[]",
              "model.weights=none", "data.image_size=64", f"train.out_dir={tmp_path / 'runs'}"]
    assert main(recipe + ["--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "data.classes names 4 classes (background, road, building, vegetation)" in err
    assert "no pixel of vegetation" in err and str(segmentation_set) in err
    assert main(["train", "detect", f"data.yaml={detection_set}", "data.names=[car,person]", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "differ from data.names (car, person)" in err and "data.yaml" in err
    assert not (tmp_path / "runs").exists()

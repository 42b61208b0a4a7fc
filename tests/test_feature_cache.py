"""Frozen-feature cache: reuse, invalidation, augmented views, equivalence, CLI."""
import numpy as np
import torch
from PIL import Image

from conftest import tiny_config
from visiontl.adapters import Classifier
from visiontl.cli import main
from visiontl.engine import FinetuneConfig, load_checkpoint


def _frozen(image_folder, out, cache_dir, **kw):
    cfg = tiny_config(image_folder, out, model__backbone="resnet18", train__epochs=2, **kw)
    cfg.finetune = FinetuneConfig("frozen", cache_dir=str(cache_dir))
    return cfg


def _fit(cfg):
    clf = Classifier(config=cfg)
    stats = {}
    clf.fit(callbacks=(lambda trainer, m: stats.update(getattr(trainer, "cache_stats", {})),))
    return clf, stats


def test_second_run_skips_the_backbone_and_a_changed_image_is_recomputed(image_folder, tmp_path):
    cache = tmp_path / "cache"
    _, first = _fit(_frozen(image_folder, tmp_path / "a", cache))
    assert first["computed"] == 24 and first["reused"] == 0  # 18 training + 6 validation images

    calls = {"n": 0}
    clf = Classifier(config=_frozen(image_folder, tmp_path / "b", cache), classes=["blue", "green", "red"])
    clf.model.backbone.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    stats = {}
    clf.fit(callbacks=(lambda trainer, m: stats.update({**trainer.cache_stats, "calls": calls["n"]}),))
    assert stats["computed"] == 0 and stats["reused"] == 24 and stats["calls"] == 0  # no backbone pass at all

    img = np.asarray(Image.open(image_folder / "red" / "3.png")).copy()
    img[0, 0] = 0
    Image.fromarray(img).save(image_folder / "red" / "3.png")
    _, third = _fit(_frozen(image_folder, tmp_path / "c", cache))
    assert third["computed"] == 1 and third["reused"] == 23

    # another preprocessing (here: image size) is another feature space: all recomputed
    _, fourth = _fit(_frozen(image_folder, tmp_path / "d", cache, data__image_size=48))
    assert fourth["computed"] == 24
    assert main(["cache", "--dir", str(cache)]) == 0
    assert main(["cache", "clear", "--dir", str(cache)]) == 0 and not cache.exists()


def test_cached_training_equals_recomputing(image_folder, tmp_path):
    """Without augmentation, the head trained on cached features is the head trained on images."""
    heads = []
    for cache in ("auto", "off"):
        cfg = _frozen(image_folder, tmp_path / cache, tmp_path / "cache", model__dropout=0.0)
        cfg.finetune.cache = cache
        cfg.data.augment.random_resized_crop, cfg.data.augment.hflip, cfg.data.augment.color_jitter = False, 0.0, 0.0
        clf, _ = _fit(cfg)
        heads.append(clf.model.head.layers[-1].weight.detach().clone())
    torch.testing.assert_close(heads[0], heads[1], atol=2e-3, rtol=1e-2)  # features stored as float16


def test_augmented_views_and_two_phase_uses_the_cache_first(image_folder, tmp_path):
    cfg = tiny_config(image_folder, tmp_path / "runs", model__backbone="resnet18", train__epochs=3)
    cfg.finetune = FinetuneConfig("two_phase", head_epochs=2, last_n=1, cache_views=3, cache_dir=str(tmp_path / "c"))
    seen = []
    clf = Classifier(config=cfg, classes=["blue", "green", "red"])
    stem = clf.model.backbone.stages[0][0].weight.clone()
    last = clf.model.backbone.stages[4][1].conv1.weight.clone()  # last_n=1: the last block
    clf.fit(callbacks=(lambda trainer, m: seen.append(dict(trainer.cache_stats)),))
    assert seen[0]["computed"] == 18 * 3 + 6 and seen[0]["views"] == 3  # 3 augmented views + plain validation
    assert len(list((tmp_path / "c").iterdir())) == 4  # one feature space per view, one for validation
    final = load_checkpoint(clf.run_dir / "last.pt")["model"]  # (the model itself holds the best epoch)
    assert torch.equal(stem, final["backbone.stages.0.0.weight"])  # frozen throughout
    assert not torch.equal(last, final["backbone.stages.4.1.conv1.weight"])  # trained in phase 2, on images


class _Numbered(torch.utils.data.Dataset):
    """Image i is a (1, 4) tensor of the value ``values[i]``; 'encoding' flattens it."""

    def __init__(self, values):
        self.values = values

    def __len__(self):
        return len(self.values)

    def __getitem__(self, i):
        return torch.full((4,), float(self.values[i])), 0


def _store(root, ids, values):
    from visiontl.engine.feature_cache import FeatureSpace

    return FeatureSpace(root, {"test": 1}).rows(ids, _Numbered(values), lambda x: x, view=0, batch_size=4,
                                                num_workers=0, collate=None)


def _writer(root, worker, rounds):
    for r in range(rounds):  # each round: 6 images of its own and 2 every worker shares
        ids = [f"{worker:02d}{r:02d}{k:02d}" + "0" * 34 for k in range(6)] + [f"ff{k:02d}" + "0" * 36 for k in range(2)]
        values = [worker * 100 + r * 10 + k for k in range(6)] + [1000 + k for k in range(2)]
        _store(root, ids, values)


def test_concurrent_writers_lose_nothing_and_read_back_right_rows(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, w, 4)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    from visiontl.engine.feature_cache import FeatureSpace

    ids = [f"{w:02d}{r:02d}{k:02d}" + "0" * 34 for w in range(4) for r in range(4) for k in range(6)]
    expected = [w * 100 + r * 10 + k for w in range(4) for r in range(4) for k in range(6)]
    rows = FeatureSpace(tmp_path, {"test": 1}).read(ids + ["ff00" + "0" * 36])
    assert np.array_equal(rows[:, 0], np.array(expected + [1000], np.float16))


def test_damaged_cache_files_are_named_and_recomputed(tmp_path, capsys):
    from visiontl.engine.feature_cache import FeatureSpace

    ids = [f"{k:02d}" + "0" * 38 for k in range(8)]
    values = list(range(8))
    rows, computed = _store(tmp_path, ids, values)
    assert computed == 8 and np.array_equal(rows[:, 0], np.arange(8, dtype=np.float16))
    space = FeatureSpace(tmp_path, {"test": 1})
    (chunk,) = space.dir.glob("rows-*.npy")
    for damage in ("nan", "truncate", "flip"):
        data = bytearray(chunk.read_bytes())
        if damage == "nan":  # NaN in a row: float16 0x7e00
            data[-2:] = b"\x00\x7e"
        elif damage == "truncate":
            data = data[: len(data) // 2]
        else:
            data[-9] ^= 0x40
        chunk.write_bytes(bytes(data))
        rows, computed = _store(tmp_path, ids, values)
        assert computed == 8 and np.array_equal(rows[:, 0], np.arange(8, dtype=np.float16)), damage
        assert f"{chunk}:" in capsys.readouterr().err
        (chunk,) = [c for c in space.dir.glob("rows-*.npy") if c != chunk]  # the new chunk
        for old in space.dir.glob("rows-*.npy"):
            if old != chunk:
                old.unlink()
    (space.dir / "index.json").write_text("{not json")
    assert main(["cache", "--dir", str(tmp_path)]) == 0  # size, with a damaged index
    rows, computed = _store(tmp_path, ids, values)
    assert computed == 8 and "index.json: unreadable" in capsys.readouterr().err
    (space.dir / "index.json").write_text("{not json")
    assert main(["cache", "clear", "--dir", str(tmp_path)]) == 0 and not tmp_path.exists()

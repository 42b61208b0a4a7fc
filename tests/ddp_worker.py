"""Run under torchrun by test_ddp.py / test_detection.py: train the tiny classifier (or
detector), save this rank's weights after every epoch."""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_config, tiny_detect_config  # noqa: E402

from visiontl.adapters import Classifier, Detector  # noqa: E402

data, out, weights_dir = map(Path, sys.argv[1:4])
torch.set_num_threads(1)
strategy = sys.argv[4] if len(sys.argv) > 4 else "full"
task = sys.argv[5] if len(sys.argv) > 5 else "classify"
if task == "detect":
    cfg = tiny_detect_config(data, out, train__epochs=2)
else:
    cfg = tiny_config(data, out, train__epochs=2, model__weights="none")
cfg.finetune.strategy, cfg.finetune.head_epochs = strategy, 1  # two_phase: the switch re-wraps DDP
cfg.train.min_steps_per_epoch = 0  # keep batch 4 on the 9 images per rank (the test counts steps)
clf = (Detector if task == "detect" else Classifier)(config=cfg)


def save_rank_weights(trainer, metrics):  # each rank's weights after every epoch, as trained
    torch.save(clf.model.state_dict(), weights_dir / f"rank{os.environ['RANK']}.pt")


clf.fit(callbacks=(save_rank_weights,))

"""Fine-tune a U-Net on a registry backbone for semantic segmentation, then evaluate and predict.

    python tasks/segment.py path/to/data --classes background nucleus --epochs 20 --image-size 128

The same recipe as `visiontl train segment`, written against the public Python API. The data
folder holds images/ and masks/ (index PNGs, same file names); --val another such folder
(default: 20 % of the data). Without a data folder it uses the built-in nuclei tiles.
"""
import argparse

from visiontl.adapters import Segmenter

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("data", nargs="?", help="folder with images/ and masks/ (default: the built-in nuclei tiles)")
parser.add_argument("--val", help="validation folder with images/ and masks/")
parser.add_argument("--classes", nargs="+", default=["background", "nucleus"], help="class names, mask index order")
parser.add_argument("--mask-values", nargs="+", type=int, default=[], help="raw mask value per class, e.g. 0 255")
parser.add_argument("--backbone", default="mobilenet_v2")
parser.add_argument("--weights", default="imagenet", help="imagenet | a file path | none")
parser.add_argument("--architecture", default="unet", choices=["unet", "fpn", "deeplabv3plus"])
parser.add_argument("--strategy", default="full", choices=["frozen", "last_n", "full", "two_phase", "gradual", "auto"])
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--image-size", type=int, default=128, help="training crop size, a multiple of 32")
parser.add_argument("--out", default="runs")
args = parser.parse_args()

if args.data is None:  # stardist's nuclei image, cut into tiles once (offline)
    from visiontl.data.nuclei import materialize_nuclei

    root = materialize_nuclei()
    args.data, args.val = root / "train", root / "val"

# 1. a pretrained backbone as the U-Net encoder, a new decoder and head for the classes
seg = Segmenter(backbone=args.backbone, weights=args.weights, strategy=args.strategy,
                architecture=args.architecture, classes=args.classes)
seg.config.data.mask_values = args.mask_values
seg.config.train.num_workers = 0  # small tiles: in-process loading is fastest on few cores
# 2. train: the run directory gets checkpoints, metrics.csv, curves, per-class IoU, a prediction grid
seg.fit(args.data, val=args.val, epochs=args.epochs, lr=args.lr, image_size=args.image_size, out_dir=args.out)
print(f"run directory: {seg.run_dir}")
# 3. evaluate the best checkpoint on the validation data
_, val = seg.datasets()
print("  ".join(f"{k} {v:.3f}" for k, v in seg.evaluate(val).items()))
# 4. predict the validation images: index masks, colour overlays, class shares (any image size)
results = seg.predict([image for image, _ in val.samples[:8]], out_dir=seg.run_dir / "predict")
print(f"{len(results)} masks and overlays → {seg.run_dir / 'predict'}")
# 5. later: Segmenter.load(seg.run_dir / "best.pt").predict("big_slide.png")  # tiled above eval.tile

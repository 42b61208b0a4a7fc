"""``visiontl serve RUN/best.pt``: a local web page for a trained model (Gradio). A person
drops an image (or a video) and sees the drawn result (``Result.plot``, the same drawing as
``predict``) and the numbers (``Results.to_pandas``). The model is loaded once; requests
queue, and one runs on the model at a time. The page works on the uploaded bytes only: an
image is decoded from them, a video must be one of the containers it lists (checked by its
first bytes), and nothing named inside an upload (a ``.txt`` list of paths, a playlist) is
ever opened on the server. Anything else is refused with a message on the page. Offline: no analytics, no share tunnel, no web fonts
(the page uses the system's fonts), no server-side rendering process.
"""
from __future__ import annotations

import atexit
import io
import os
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from .adapters.viewing import is_video
from .data.images import BadImageError, read_image

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
    work = Path(tempfile.mkdtemp(prefix="visiontl-serve-"))  # result videos; removed when the process ends
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    title = title or f"visiontl · {model.task} · {model.describe_model()}"
    n = len(model.classes)
    classes = f"{n} class{'es' if n > 1 else ''}: {', '.join(model.classes[:12])}{'…' if n > 12 else ''}" if n else ""

    def predict(path: str | None):
        image, video, table, summary = answer(model, path, work=work, lock=lock)
        shown = table is not None and len(table) > 0  # an empty table would show Gradio's headers 1 2 3
        return image, video, gr.update(value=table if shown else None, visible=shown), summary

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"## {title}\n{classes}")
        with gr.Row():
            with gr.Column():
                source = gr.File(label="an image or a video", file_count="single", elem_id="source")
                gr.Markdown("Images: png, jpg, tif, webp …; videos: mp4, avi, mov, mkv, webm.")
            with gr.Column():
                summary = gr.Markdown(elem_id="summary")
                # no label tag over the picture (it hid the drawn top-left label); no share button (it goes online)
                image = gr.Image(label="result", show_label=False, type="numpy", elem_id="result", interactive=False,
                                 buttons=["download", "fullscreen"])
                video = gr.Video(label="result video", show_label=False, elem_id="result_video", interactive=False)
        numbers = gr.Dataframe(label="numbers", elem_id="numbers", interactive=False, visible=False)
        source.upload(predict, inputs=source, outputs=[image, video, numbers, summary])
    return app.queue(default_concurrency_limit=4)


def answer(model, path: str | None, *, work: Path, lock: threading.Lock):
    """The page's answer to one upload at ``path`` (Gradio's copy of the uploaded bytes):
    (drawn image, result video, table, summary)."""
    if not path:
        return None, None, None, "Drop an image or a video above."
    name = Path(path).name
    if is_video(path):
        with open(path, "rb") as f:
            container = video_container(f.read(16))
        if container is None:
            return None, None, None, _refused(name, "not a video container this page reads (MP4/QuickTime, AVI, "
                                                    "Matroska/WebM, MPEG, WMV)")
        with lock:
            try:
                info = model.predict_video(path, out_dir=work / Path(path).parent.name, progress=False)
            except ValueError as e:
                return None, None, None, _refused(name, str(e))
        table = _read_table(info["table"])
        return None, info["video"], table, f"**{name}**: {info['frames']} frames, {info['fps']:.1f} frames/s"
    try:  # decoded from the uploaded bytes, whatever the name says: never a list of paths to open
        image = read_image(io.BytesIO(Path(path).read_bytes()))
    except BadImageError as e:
        return None, None, None, _refused(name, str(e))
    with lock:
        results = model.predict([image])
    r = results[0]
    if not r.ok:
        return None, None, None, _refused(name, r["error"])
    table = results.to_pandas().drop(columns=["error"]).assign(path=name).round(4)  # the user's name, not an array's
    return r.plot(), None, table, f"**{name}**: {model.describe_prediction(r)}"


def video_container(head: bytes) -> str | None:
    """The container a file's first 16 bytes announce, or None."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"):
        return "mp4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return "mpeg"
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return "asf"
    return None


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
        # a service manager's SIGTERM ends the process as Ctrl-C does: exit handlers run (the temp folder goes)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print(f"visiontl serve: http://{host}:{port} ({model.task}, {model.describe_model()}); Ctrl-C stops it",
              file=sys.stderr)
    app.launch(server_name=host, server_port=port, share=False, ssr_mode=False, show_error=True, theme=theme(),
               prevent_thread_lock=not block, quiet=True, enable_monitoring=False, pwa=False, mcp_server=False,
               footer_links=[])
    return app

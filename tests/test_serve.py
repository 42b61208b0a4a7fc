"""The web page (visiontl serve): uploads are bytes only, a real browser shows the result and
plays result videos, the process cleans up after itself."""
from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_video
from visiontl.adapters import Classifier


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BROWSER_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


def test_web_page_takes_only_the_uploaded_bytes(classifier, tmp_path, monkeypatch):
    """An upload is decoded from its bytes: a list of server paths, a probe for a server file
    or a playlist disguised as a video is refused alike, and no server file is ever read."""
    import threading

    from visiontl.serve import answer

    model, data = classifier
    secret = sorted((data / "green").glob("*.png"))[0]  # an image on the server's disk
    seen = []
    original = Classifier.predict
    monkeypatch.setattr(Classifier, "predict", lambda self, inputs, **kw: seen.extend(inputs) or original(self, inputs, **kw))
    uploads, lock = tmp_path / "uploads", threading.Lock()
    uploads.mkdir()
    (uploads / "list.txt").write_text(f"{secret}\n" * 300)
    (uploads / "probe.txt").write_text("/etc/passwd\n")
    (uploads / "missing.txt").write_text("/no/such/file.png\n")
    (uploads / "clip.mp4").write_text(f"#EXTM3U\n#EXTINF:1,\nfile://{secret}\n")
    summaries = {}
    for name in ("list.txt", "probe.txt", "missing.txt", "clip.mp4"):
        image, video, table, summary = answer(model, str(uploads / name), work=tmp_path / "work", lock=lock)
        assert image is None and video is None and table is None and f"**{name}** was refused" in summary
        summaries[name] = summary.replace(name, "NAME")
    assert summaries["probe.txt"] == summaries["missing.txt"] == summaries["list.txt"]  # no file-existence oracle
    assert seen == []
    (uploads / "photo.png").write_bytes(secret.read_bytes())
    image, _, table, summary = answer(model, str(uploads / "photo.png"), work=tmp_path / "work", lock=lock)
    assert image is not None and list(table["path"]) == ["photo.png"] and "green" in summary
    assert len(seen) == 1 and isinstance(seen[0], np.ndarray)  # the model got the decoded bytes, not a path


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it as root)")
def test_web_page_in_a_real_browser(classifier, tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    sync_api = pytest.importorskip("playwright.sync_api")
    from visiontl.serve import serve

    model, data = classifier
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    # offline: the server side looks up and connects to nothing but this machine
    elsewhere = []
    local = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
    real_connect, real_connect_ex, real_lookup = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def connect(self, address, _real=real_connect):
        if isinstance(address, tuple) and address[0] not in local:
            elsewhere.append(address)
        return _real(self, address)

    def lookup(host, *args, **kwargs):
        if host not in local and host is not None:
            elsewhere.append(host)
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, a: connect(self, a, real_connect_ex))
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    app = serve(model, port=port, block=False)
    image = sorted((data / "green").glob("*.png"))[0]
    (tmp_path / "notes.png").write_text("this is not an image")
    shots = Path(__file__).resolve().parent / "output"
    shots.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
            page = browser.new_page()
            page.on("request", lambda r: None if r.url.startswith((f"http://127.0.0.1:{port}/", "data:", "blob:"))
                    else elsewhere.append(r.url))  # the page itself loads nothing from the web (fonts, scripts)
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#source input[type=file]").wait_for(state="attached", timeout=60_000)
            assert not page.locator("#numbers").is_visible()  # no empty table with headers "1 2 3" before a result
            page.locator("#source input[type=file]").set_input_files(str(image))
            page.locator("#result img").wait_for(timeout=60_000)
            page.locator("#summary").get_by_text("green").wait_for(timeout=30_000)
            assert page.locator("#result img").get_attribute("src")
            assert not page.locator("#result [data-testid='block-label']").is_visible()  # nothing over the drawn label
            assert "green" in page.locator("#numbers").inner_text()
            page.screenshot(path=str(shots / "serve_result.png"), full_page=True)
            # two people at once: each page gets its own answer (requests queue on the one model)
            pages = [browser.new_page(), browser.new_page()]
            for other, colour in zip(pages, ("red", "blue")):
                other.goto(f"http://127.0.0.1:{port}/")
                other.locator("#source input[type=file]").set_input_files(str(sorted((data / colour).glob("*.png"))[1]))
            for other, colour in zip(pages, ("red", "blue")):
                other.locator("#summary").get_by_text(f": {colour}").wait_for(timeout=60_000)
            # a video: the result video plays in the browser (H.264; OpenCV's mp4v stayed at 0:00)
            frames = [np.asarray(Image.open(f).convert("RGB").resize((64, 48))) for f in sorted(data.glob("*/*.png"))[:8]]
            page.reload()
            page.locator("#source input[type=file]").set_input_files(str(write_video(tmp_path / "clip.mp4", frames)))
            page.locator("#result_video video").wait_for(timeout=60_000)
            played = page.evaluate("""async () => {
                const v = document.querySelector('#result_video video');
                v.muted = true;
                await v.play();
                await new Promise(r => setTimeout(r, 700));
                return {time: v.currentTime, width: v.videoWidth, error: v.error && v.error.code};
            }""")
            assert played["error"] is None and played["time"] > 0 and played["width"] > 0, played
            page.reload()
            page.locator("#source input[type=file]").set_input_files(str(tmp_path / "notes.png"))
            page.locator("#summary").get_by_text("was refused").wait_for(timeout=30_000)
            assert "notes.png" in page.locator("#summary").inner_text()
            page.screenshot(path=str(shots / "serve_refused.png"), full_page=True)
            browser.close()
    finally:
        app.close()
    assert not elsewhere, f"the page's server tried to reach {elsewhere}"


def test_serve_removes_its_temporary_folder_on_sigterm(classifier, tmp_path):
    """`visiontl serve` stopped by a service manager (SIGTERM) leaves no visiontl-serve-* folder."""
    pytest.importorskip("gradio")
    import os
    import signal
    import subprocess
    import time
    import urllib.request

    model, _ = classifier
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), GRADIO_TEMP_DIR=str(scratch / "gradio"))
    proc = subprocess.Popen([sys.executable, "-m", "visiontl", "serve", str(Path(model.run_dir) / "best.pt"),
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
                time.sleep(0.5)
        assert list(scratch.glob("visiontl-serve-*")), "the page made no temporary folder"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert not list(scratch.glob("visiontl-serve-*"))

"""Groundwork of issue 15: pages rendered in a real headless Chromium (Playwright), each
version candidate judged visible or not from the recorded facts alone."""
import http.server
import socket
import threading
import time

import pytest

from harness_version.browser import MIN_CONTRAST, contrast, find_browser, judge_visible, render

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install chromium; CI installs it)")


_SERVED: list = []


@pytest.fixture(scope="module", autouse=True)
def _close_served():
    """The servers :func:`served` started end with the module (their sockets closed)."""
    yield
    while _SERVED:
        server = _SERVED.pop()
        server.shutdown()
        server.server_close()


def served(page) -> str:
    """``page`` (a file in a test's folder) over HTTP on loopback, as a vendor's page is: the
    browser runs as an unprivileged account when the tests run as root, and reads no file of
    root's folders."""
    folder, name = page.parent, page.name

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map = {".html": "text/html; charset=utf-8"}  # the pages are UTF-8, as file: URLs were read

        def __init__(self, *args, **kw):
            super().__init__(*args, directory=str(folder), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _SERVED.append(server)
    return f"http://127.0.0.1:{server.server_address[1]}/{name}"

PAGE = b"""<html><head><meta charset="utf-8"><style>.hide{display:none}</style></head><body style="background:#fff">
<header>Cabinet Demo</header>
<p>Le protocole version 9.9.9 du patient</p>
<div class="hide">Version 1.1.1</div>
<div style="color:#fff">Version 2.2.2</div>
<div style="font-size:0">Version 3.3.3</div>
<div style="position:absolute;left:-9999px">Version 4.4.4</div>
<dialog><p>Version 5.5.5</p></dialog>
<footer id="pied">Cabinet Demo v3.2.1 - Version du logiciel : 3.2.1</footer>
<script>document.getElementById('pied').insertAdjacentHTML('beforeend', '<span> build 3.2.1-b42</span>')</script>
</body></html>"""


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/":
            self.send_response(302)
            self.send_header("Location", "/login")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


@needs_browser
def test_what_a_person_sees_of_each_version_on_the_page(site):
    r = render(f"{site}/")
    assert (r.error, r.status, r.final_url) == (None, 200, f"{site}/login")  # a redirect to the login page is followed
    assert r.views[0].screenshot.startswith(b"\x89PNG") and r.views[0].via is None
    seen = {c["text"]: judge_visible(c) for c in r.candidates}
    assert seen["Version 1.1.1"][0] == "not-rendered"  # a class with display:none
    assert "low-contrast" in seen["Version 2.2.2"]  # white on white
    assert "font-too-small" in seen["Version 3.3.3"]  # font-size:0
    assert seen["Version 4.4.4"] == ["off-screen"]
    assert seen["Version 5.5.5"] == ["closed-dialog"]  # the first cause alone: not rendered, no box follow from it
    # in the product's area (the footer), each label form, and a number the page's script wrote
    footer = {c["text"]: c for c in r.candidates if c["area"] == "footer#pied"}
    assert set(footer) == {"v3.2.1", "Version du logiciel : 3.2.1", "build 3.2.1-b42"}
    assert all(judge_visible(c) == [] for c in footer.values())
    # a version number in unrelated content is seen, but outside any product area
    [other] = [c for c in r.candidates if c["text"] == "version 9.9.9"]
    assert other["area"] is None and judge_visible(other) == []


@needs_browser
def test_a_page_that_never_answers_ends_at_the_deadline():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        t0 = time.monotonic()
        r = render(f"http://127.0.0.1:{listener.getsockname()[1]}/", deadline=2)
        assert r.error is not None and time.monotonic() - t0 < 15
        assert r.candidates == [] and r.views == []


def test_without_a_browser_nothing_is_rendered(monkeypatch):
    from harness_version import browser

    monkeypatch.setattr(browser, "find_browser", lambda: None)
    r = browser.render("http://127.0.0.1:9/")
    assert (r.error, r.candidates, r.views) == ("no-browser", [], [])


def test_the_configured_browser_is_resolved_to_its_path(monkeypatch, tmp_path):
    """HARNESS_BROWSER may name a browser on PATH: the renderer is given the path (the browser
    runs as another account, whose PATH is not this one's); a name not found is no browser."""
    from harness_version import browser

    fake = tmp_path / "my-chromium"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    monkeypatch.setenv("HARNESS_BROWSER", "my-chromium")
    assert browser.distribution_browser() == str(fake)
    monkeypatch.setenv("HARNESS_BROWSER", "no-such-browser")
    assert browser.distribution_browser() is None
    monkeypatch.setenv("HARNESS_BROWSER", "none")
    assert browser.distribution_browser() is None


@pytest.mark.parametrize("color,background,ratio", [
    ("rgb(0, 0, 0)", "rgb(255, 255, 255)", 21.0),
    ("rgb(119, 119, 119)", "rgb(255, 255, 255)", 4.48),  # #777 on white: just under AA
    ("rgb(118, 118, 118)", "rgb(255, 255, 255)", 4.54),  # #767676: the lightest grey that passes
    ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)", 1.0),  # transparent text
])
def test_wcag_contrast(color, background, ratio):
    assert contrast(color, background) == pytest.approx(ratio, abs=0.01)
    assert (contrast(color, background) >= MIN_CONTRAST) is (ratio >= MIN_CONTRAST)


ABOUT = """<html><body><main>Dossier patient</main>
<button onclick="document.getElementById('a').showModal()">À propos</button>
<dialog id="a"><p>Cabinet Demo</p><p>Version 3.2.1</p></dialog></body></html>"""


@needs_browser
def test_the_about_dialog_one_click_away_is_opened_and_the_version_outlined(tmp_path):
    page = tmp_path / "about.html"
    page.write_text(ABOUT, encoding="utf-8")
    r = render(served(page))
    first, clicked = r.views
    assert [judge_visible(c) for c in first.candidates] == [["closed-dialog"]]
    assert clicked.via == "À propos" and clicked.outlined == 0
    [c] = clicked.candidates
    assert (c["text"], c["area"], judge_visible(c)) == ("Version 3.2.1", "dialog#a", [])
    # the outline is drawn on the screenshot, around the version
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(clicked.screenshot)).convert("RGB")
    x, y = int(c["box"]["x"] - 2), int(c["box"]["y"] + c["box"]["height"] / 2)
    assert img.getpixel((x, y))[0] > 200 and img.getpixel((x, y))[1] < 60


@needs_browser
def test_a_page_whose_script_never_yields_is_stopped_at_the_total_deadline(tmp_path):
    """No Playwright timeout interrupts a script that never yields: the browser's process group
    is killed once the total budget and its grace are spent, and the reason recorded."""
    page = tmp_path / "loop.html"
    page.write_text("<html><body><footer>Version 1.2.3</footer>"
                    "<script>addEventListener('load', () => setTimeout(() => { while (true) {} }, 0))</script></body></html>")
    t0 = time.monotonic()
    r = render(served(page), deadline=1, total=2)
    assert time.monotonic() - t0 < 2 + 5.5 + 5
    assert r.error.startswith("killed after 8 s") and r.views == []


@needs_browser
def test_an_offline_run_lets_the_page_load_nothing_beyond_loopback(tmp_path, site):
    page = tmp_path / "remote.html"
    page.write_text('<html><body><footer>Version 1.2.3</footer><img src="http://192.0.2.1/logo.png" width="40" height="20"></body></html>')
    r = render(served(page), loopback_only=True, deadline=5)
    [remote] = [q for q in r.requests if q["url"].startswith("http://192.0.2.1/")]
    assert "BLOCKED_BY_CLIENT" in remote["failure"].upper()
    assert [c["text"] for c in r.candidates] == ["Version 1.2.3"]


def test_reading_recorded_facts_the_product_version_and_what_is_set_aside():
    from harness_version.visible import compatible, label_of, number_of, read_rendering

    assert [number_of(t) for t in ("Version du logiciel : 3.2.1", "v3.2.1", "build 3.2.1-b42", "Version printemps-2024",
                                   "Cabinet Démo 3.2.1.", "Ver. 2024.06", "nothing")] == \
        ["3.2.1", "3.2.1", "3.2.1-b42", "printemps-2024", "3.2.1", "2024.06", None]
    assert [label_of(t) for t in ("Version 1.2", "build 1.2", "release 1.2", "v1.2")] == ["version", "build", "release", "v"]
    assert compatible("3.2.1", "3.2.1-b42") and compatible("v3.2.1", "3.2.1") and not compatible("3.2.1", "3.2.10")

    def cand(text, area, context="", **style):
        return {"text": text, "context": context or text, "path": "p", "area": area, "rendered": True, "closed_dialog": False,
                "box": {"x": 10, "y": 10, "width": 80, "height": 16}, "page": {"width": 1280, "height": 800},
                "style": {"color": "rgb(0, 0, 0)", "background": "rgb(255, 255, 255)", "font_size": 14, "font_weight": "400",
                          "opacity": "1", **style}}

    rendering = {"views": [{"url": "http://x/", "via": None, "about_page": False, "candidates": [
        cand("version 2.4.1", None, "Protocole SESAM-Vitale version 2.4.1"),  # unrelated content
        cand("Version 9.0", "footer", "Conforme DMP Version 9.0"),  # in the footer, not named as the product's
        cand("version 3.2.1", "footer", "Cabinet Démo version 3.2.1"),
        cand("build 3.2.1-b42", "footer", "Cabinet Démo build 3.2.1-b42"),
        cand("Version 3.3.0", "footer", "Cabinet Démo Version 3.3.0", color="rgb(255, 255, 255)"),  # white on white
    ], "images": [{"path": "img", "area": "footer", "ocr": None}]}]}
    r = read_rendering(rendering, "Cabinet Démo")
    assert r.version.version == "3.2.1" and [s.version for s in r.shown] == ["3.2.1", "3.2.1-b42"]
    assert r.conflicts() == []  # a build suffix of the same version
    # another thing's version, written after its name: a component or a standard, never a rival
    assert [s.version for s in r.elsewhere] == ["2.4.1"] and [(s.owner, s.version) for s in r.components] == [("Conforme DMP", "9.0")]
    assert [(s.version, s.reasons) for s in r.hidden] == [("3.3.0", ["low-contrast"])]
    assert r.pending == [(0, 0)]  # an image no OCR read
    rendering["views"][0]["candidates"][4]["style"]["color"] = "rgb(0, 0, 0)"
    assert [s.version for s in read_rendering(rendering, "Cabinet Démo").conflicts()] == ["3.3.0"]


def test_ocr_reads_a_version_drawn_in_an_image_with_its_confidence():
    from harness_version import ocr

    if ocr.engine() is None:
        pytest.skip("no Tesseract with fra+eng (apt-get install tesseract-ocr tesseract-ocr-fra; CI installs it)")
    import io

    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (220, 30), "white")
    try:
        font = ImageFont.truetype("DejaVuSans.ttf", 16)
    except OSError:
        font = ImageFont.load_default()
    ImageDraw.Draw(img).text((4, 5), "Version 3.2.1", fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    from harness_version.browser import PATTERN

    read = ocr.read(buf.getvalue(), PATTERN)
    assert read["version"] == "Version 3.2.1" and read["confidence"] >= ocr.MIN_CONFIDENCE and read["error"] is None
    assert ocr.read(b"not a png", PATTERN)["error"].startswith("UnidentifiedImageError")


@needs_browser
def test_an_endless_page_gives_a_bounded_screenshot_that_still_holds_the_version(tmp_path):
    from io import BytesIO

    from PIL import Image

    from harness_version.browser import MAX_SHOT_HEIGHT

    page = tmp_path / "long.html"
    page.write_text('<html><body style="margin:0"><div style="height:40000px">Dossier</div>'
                    '<footer style="font-size:16px">Version 7.1.0</footer></body></html>')
    r = render(served(page), follow_about=False)
    [view] = r.views
    shot = Image.open(BytesIO(view.screenshot))
    assert shot.height == MAX_SHOT_HEIGHT and view.shot_top > 30000
    box = view.candidates[view.outlined]["box"]
    assert view.shot_top <= box["y"] <= view.shot_top + MAX_SHOT_HEIGHT

"""Groundwork of issue 15: pages rendered in a real headless Chromium (Playwright), each
version candidate judged visible or not from the recorded facts alone."""
import http.server
import socket
import threading
import time

import pytest

from harness_version.browser import MIN_CONTRAST, contrast, find_browser, judge_visible, render

needs_browser = pytest.mark.skipif(find_browser() is None, reason="no Chromium (apt-get install chromium; CI installs it)")

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
    r = render(page.as_uri())
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

"""What a person sees of a page: rendered in a real headless Chromium (Playwright), each
candidate version text with its box, computed style and surroundings, a screenshot.

Groundwork of issue 15. Two halves:
- :func:`render` (live only): drives the browser, returns :class:`Rendering`, plain facts
  that collectors record (JSON and the PNG);
- :func:`judge_visible` (pure): decides from the recorded facts whether a person sees a
  candidate, so that replay needs no browser.

Thresholds (stated once, here): rendered (``checkVisibility`` with opacity and CSS
visibility), a box of at least 1×1 CSS px, inside the page's scrollable area (not pushed off
to negative coordinates nor clipped away), not inside a closed ``<dialog>``, a font size of at
least :data:`MIN_FONT_PX` CSS px, and a contrast ratio against the effective background of at
least :data:`MIN_CONTRAST` (WCAG 2.x AA for normal text; :data:`MIN_CONTRAST_LARGE` for large
text, 24 px, or 18.66 px bold).
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MIN_FONT_PX = 9.0
MIN_CONTRAST = 4.5
MIN_CONTRAST_LARGE = 3.0
VIEWPORT = {"width": 1280, "height": 800}
MAX_SHOT_HEIGHT = 6000  # CSS px of page a screenshot holds at most

# In-page helpers both scripts use: an element's DOM path (up to its nearest id), and the
# product area that holds it (footer, header, navigation, a dialog, an about or version area).
_HELPERS = r"""
  const path = (el) => {
    const parts = [];
    for (let e = el; e && e.nodeType === 1 && parts.length < 12; e = e.parentElement) {
      let p = e.localName;
      if (e.id) { p += '#' + e.id; parts.unshift(p); break; }
      const sib = e.parentElement ? [...e.parentElement.children].filter(c => c.localName === e.localName) : [];
      if (sib.length > 1) p += ':nth-of-type(' + (sib.indexOf(e) + 1) + ')';
      parts.unshift(p);
    }
    return parts.join(' > ');
  };
  const productArea = (el) => el.closest('footer, header, nav, dialog, [role=contentinfo], [role=banner], [role=dialog], [id*=about i], [class*=about i], [id*=version i], [class*=version i], [id*=propos i], [class*=propos i]');
"""

# Runs in the page: every text node that holds something shaped like a version number, with
# what a person needs to see it. Kept free of the page's own globals.
_COLLECT = r"""
([pattern, label, number]) => {
  const re = new RegExp(pattern, 'gi');
  const out = [];
""" + _HELPERS + r"""
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = getComputedStyle(e).backgroundColor;
      if (c && c !== 'transparent' && !/rgba\(.*,\s*0\)$/.test(c)) return c;
    }
    return 'rgb(255, 255, 255)';
  };
  const area = (el) => {
    const a = productArea(el);
    return a ? path(a) : null;
  };
  const walker = document.createTreeWalker(document.body || document.documentElement, NodeFilter.SHOW_TEXT);
  const scroll = document.scrollingElement || document.documentElement;
  const labelled = new RegExp(label + '$', 'i'), bare = new RegExp('^\\s*(' + number + ')\\s*$');
  let previous = '';
  for (let node = walker.nextNode(); node && out.length < 200; node = walker.nextNode()) {
    const text = node.textContent;
    const el = node.parentElement;
    if (!el || ['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE'].includes(el.tagName)) continue;
    const found = [];
    re.lastIndex = 0;
    let m;
    while ((m = re.exec(text)) && found.length < 20) found.push({start: m.index, end: m.index + m[0].length, text: m[0]});
    // a label and its value in two elements (<dt>Version</dt><dd>3.2.1</dd>, a table's cells)
    const b = !found.length && bare.exec(text);
    if (b && labelled.test(previous)) {
      const start = text.indexOf(b[1]);
      found.push({start, end: start + b[1].length, text: previous.trim().match(labelled)[0].trim() + ' ' + b[1]});
    }
    if (text.trim()) previous = text.trim().slice(-80);
    for (const f of found) {
      if (out.length >= 200) break;
      const range = document.createRange();
      range.setStart(node, f.start);
      range.setEnd(node, f.end);
      const r = range.getBoundingClientRect();
      const s = getComputedStyle(el);
      out.push({
        text: f.text, context: text.trim().slice(0, 200), path: path(el), area: area(el),
        box: {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height},
        page: {width: scroll.scrollWidth, height: scroll.scrollHeight},
        rendered: el.checkVisibility ? el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}) : (s.display !== 'none' && s.visibility !== 'hidden'),
        closed_dialog: !!el.closest('dialog:not([open])'),
        style: {color: s.color, background: background(el), font_size: parseFloat(s.fontSize), font_weight: s.fontWeight,
                opacity: s.opacity, display: s.display, visibility: s.visibility, clip_path: s.clipPath},
      });
    }
  }
  return out;
}
"""
# Shaped like a product version: a label (French or English) or a v prefix, then a number of
# one of the usual schemes (semantic 3.2.1, dated 2024.06 or 2024-06-15, with a build suffix
# 3.2.1-b42, 3.2.1+20240601, 3.2.1.4711).
LABEL = r"\b(?:version(?:\s+du\s+logiciel)?|ver\.|build|release)\s*[:\-–—]?\s*(?:n°\s*)?"
NUMBER = r"\d+(?:[._-]\d+)+(?:[-+.][0-9A-Za-z]+)*"
# after a label, any token holding a digit is what the product calls its version ("Version
# printemps-2024" is shown, though not orderable: the scheme rule judges that); after a bare
# v, only a dotted number ("v3.2.1", not "v8 engine")
TOKEN = r"(?=[0-9A-Za-z.\-+_]*\d)[0-9A-Za-z][0-9A-Za-z.\-+_]*"
PATTERN = rf"(?:{LABEL}{TOKEN}|\bv{NUMBER})"


def find_browser() -> str | None:
    """The Chromium to drive: the one the version screenshot uses (``HARNESS_BROWSER``, else
    the distribution's), else Playwright's own download (``playwright install chromium``)."""
    from .collect import find_browser as distribution_browser

    found = distribution_browser()
    if found or os.environ.get("HARNESS_BROWSER") == "none":
        return found
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            own = p.chromium.executable_path
        return own if own and Path(own).exists() else None
    except Exception:
        return None


@dataclass
class View:
    """One rendered state of the product: the page, or what one click on an about link or
    button shows; with the screenshot, the version a person sees outlined."""

    url: str
    via: str | None = None  # the label clicked to get here (None: the page itself)
    candidates: list[dict] = field(default_factory=list)
    screenshot: bytes = b""
    outlined: int | None = None  # index of the candidate outlined on the screenshot
    images: list[dict] = field(default_factory=list)  # each with its "crop" (PNG bytes) and "ocr" (or None)
    about_page: bool = False  # reached by an about link that opened another page
    outlined_image: int | None = None  # index of the image outlined (its version read by OCR)
    shot_top: float = 0  # the page's y at the top of the screenshot (0 unless the page is taller than MAX_SHOT_HEIGHT)

    def to_json(self) -> dict:
        return {"url": self.url, "via": self.via, "about_page": self.about_page, "outlined": self.outlined, "outlined_image": self.outlined_image, "shot_top": self.shot_top, "candidates": self.candidates,
                "images": [{k: v for k, v in i.items() if k != "crop"} for i in self.images]}


@dataclass
class Rendering:
    url: str
    final_url: str = ""
    status: int | None = None
    views: list[View] = field(default_factory=list)
    error: str | None = None
    browser: str = ""
    requests: list[dict] = field(default_factory=list)  # what the page loaded (or was refused)
    skipped: list[str] = field(default_factory=list)  # about entries not opened: the total deadline was spent

    @property
    def candidates(self) -> list[dict]:
        return [c for v in self.views for c in v.candidates]


# Images a version may be drawn in: in a product area (or anywhere on a page reached through
# an about link), rendered, large enough to hold text; at most MAX_IMAGES per view.
MAX_IMAGES = 4
_IMAGES = r"""
(max) => {
  const out = [];
""" + _HELPERS + r"""
  for (const el of document.querySelectorAll('img, svg, canvas, input[type=image], [role=img]')) {
    if (out.length >= max) break;
    if (el.closest('svg') && el.closest('svg') !== el) continue;  // a part of an outer svg
    const r = el.getBoundingClientRect();
    if (r.width < 24 || r.height < 8) continue;
    if (el.checkVisibility && !el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
    const a = productArea(el);
    out.push({kind: el.localName, path: path(el), area: a ? path(a) : null, alt: (el.getAttribute('alt') || el.getAttribute('aria-label') || '').slice(0, 200),
              box: {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}});
  }
  return out;
}
"""

# "One click away": links and buttons labelled like an about entry, French or English
ABOUT_LABEL = r"^\s*(à propos|a propos|about|informations? (?:sur le|du) logiciel|version)\b"
_CLICKABLE = r"""
(pattern) => {
  const re = new RegExp(pattern, 'i');
  return [...document.querySelectorAll('a, button, [role=button], [role=menuitem], summary')]
    .filter(e => re.test((e.innerText || e.getAttribute('aria-label') || e.title || '').trim()))
    .filter(e => e.checkVisibility ? e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true}) : true)
    .slice(0, 3).map(e => (e.innerText || e.getAttribute('aria-label') || e.title || '').trim().slice(0, 80));
}
"""
_OUTLINE = r"""
(box) => {
  // drawn where the version is: in the open modal dialog that holds it (the top layer, above
  // anything in the body), else in the body
  const cx = box.x - window.scrollX + box.width / 2, cy = box.y - window.scrollY + box.height / 2;
  const top = document.elementFromPoint(cx, cy);
  const dialog = top ? top.closest('dialog[open]') : null;
  const d = document.createElement('div');
  d.setAttribute('data-harness-outline', '');
  Object.assign(d.style, {position: dialog ? 'fixed' : 'absolute', left: ((dialog ? cx - box.width / 2 : box.x) - 3) + 'px',
    top: ((dialog ? cy - box.height / 2 : box.y) - 3) + 'px', width: (box.width + 6) + 'px', height: (box.height + 6) + 'px',
    border: '3px solid #e00', zIndex: 2147483647, pointerEvents: 'none', boxSizing: 'border-box', margin: 0});
  (dialog || document.body).appendChild(d);
}
"""


def _view(page, via: str | None, ms: int, ocr, home: str) -> View:
    view = View(page.url, via, page.evaluate(_COLLECT, [PATTERN, LABEL, TOKEN]))
    view.about_page = via is not None and page.url.split("#")[0] != home.split("#")[0]
    if not any(in_product_area(c, view.about_page) and not judge_visible(c) for c in view.candidates):
        # no version in the text a person sees there: what the product area draws in images
        for image in page.evaluate(_IMAGES, MAX_IMAGES):
            if not in_product_area(image, view.about_page):
                continue
            b = image["box"]
            image["crop"] = page.screenshot(clip={"x": b["x"], "y": b["y"], "width": b["width"], "height": b["height"]}, full_page=True,
                                            timeout=ms)
            image["ocr"] = ocr(image["crop"]) if ocr else None
            view.images.append(image)
    shown = [n for n, c in enumerate(view.candidates) if in_product_area(c, view.about_page) and not judge_visible(c)]
    read = [k for k, i in enumerate(view.images) if i["ocr"] and i["ocr"].get("version")]
    if shown:
        view.outlined = shown[0]
        page.evaluate(_OUTLINE, view.candidates[shown[0]]["box"])
    elif read:  # the version a person sees is drawn in an image: the image is outlined
        view.outlined_image = read[0]
        page.evaluate(_OUTLINE, view.images[read[0]]["box"])
    # the whole page, down to MAX_SHOT_HEIGHT (an endless page must not make an endless image),
    # the version outlined always within it
    height = page.evaluate("() => (document.scrollingElement || document.documentElement).scrollHeight")
    top = 0
    if view.outlined is not None:
        top = max(0, min(view.candidates[view.outlined]["box"]["y"] - 200, height - MAX_SHOT_HEIGHT))
    clip = {"x": 0, "y": top, "width": VIEWPORT["width"], "height": min(height, MAX_SHOT_HEIGHT)} if height > MAX_SHOT_HEIGHT else None
    view.screenshot = page.screenshot(full_page=True, clip=clip, timeout=ms)
    view.shot_top = top if clip else 0
    page.evaluate("() => document.querySelectorAll('[data-harness-outline]').forEach(e => e.remove())")
    return view


GRACE = 15.0  # at most, seconds beyond the total budget before the browser's process group is killed


def render(url: str, *, deadline: float = 20.0, total: float = 60.0, browser: str | None = None, follow_about: bool = True,
           ocr: bool = False, loopback_only: bool = False) -> Rendering:
    """Open ``url`` in headless Chromium (redirects followed, as a person's browser does),
    let its scripts run, read the candidates; then, one click away, what each about link or
    button shows (at most 3). Where a product area shows no version as text, its images are
    cropped and, with ``ocr``, read by Tesseract (:mod:`.ocr`).

    ``deadline`` bounds each browser step, in seconds; no about view is opened once ``total``
    seconds are spent. The browser runs in a process group of its own, killed whole when
    ``total`` + :data:`GRACE` seconds pass: a page whose script never yields control (which no
    Playwright timeout interrupts) cannot hang the run. ``loopback_only``: the page may load
    nothing beyond loopback (``--offline``); every request is listed in :attr:`Rendering.requests`."""
    out = Rendering(url)
    executable = browser or find_browser()
    if executable is None:
        out.error = "no-browser"
        return out
    args = {"url": url, "deadline": deadline, "total": total, "browser": executable, "follow_about": follow_about, "ocr": ocr,
            "loopback_only": loopback_only}
    with tempfile.TemporaryDirectory(prefix="harness-render-") as tmp:
        result = Path(tmp) / "rendering.pickle"
        proc = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(args), str(result)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        limit = total + min(GRACE, 5 + total / 4)
        try:
            _, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            out.error = f"killed after {limit:.0f} s (the page never yielded control to the browser)"
            return out
        finally:
            _kill_group(proc)  # whatever the driver left behind (a browser that did not close)
        if proc.returncode != 0 or not result.exists():
            out.error = f"renderer exited with {proc.returncode}: {err.decode('utf-8', 'replace').strip()[-300:]}"
            return out
        with result.open("rb") as fh:
            return pickle.load(fh)  # written by the child just above, never by the page


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _render_here(url: str, *, deadline: float, total: float, browser: str, follow_about: bool, ocr: bool, loopback_only: bool) -> Rendering:
    """:func:`render`'s work, in the child process."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    from harness import is_loopback

    from .collect import private_env

    reader = None
    if ocr:
        from . import ocr as ocr_module

        reader = lambda png: ocr_module.read(png, PATTERN)  # noqa: E731
    out = Rendering(url)
    ms = int(deadline * 1000)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="harness-browser-") as tmp, sync_playwright() as p:
            b = p.chromium.launch(executable_path=browser, args=["--no-sandbox", "--disable-gpu", "--disable-crash-reporter", "--disable-breakpad"],
                                  timeout=ms, env=private_env(tmp))
            try:
                out.browser = f"{Path(browser).name} {b.version}"
                context = b.new_context(viewport=VIEWPORT, service_workers="block")
                if loopback_only:
                    context.route("**/*", lambda route: route.continue_() if is_loopback(route.request.url) or route.request.url.startswith(("data:", "file:"))
                                  else route.abort("blockedbyclient"))
                page = context.new_page()
                page.on("response", lambda r: len(out.requests) < 200 and out.requests.append(
                    {"url": r.url[:500], "method": r.request.method, "status": r.status}))
                page.on("requestfailed", lambda r: len(out.requests) < 200 and out.requests.append(
                    {"url": r.url[:500], "method": r.method, "failure": (r.failure or "")[:200]}))
                page.set_default_timeout(ms)
                response = page.goto(url, wait_until="load", timeout=ms)
                out.status = response.status if response else None
                out.final_url = page.url
                out.views.append(_view(page, None, ms, reader, out.final_url))
                for label in page.evaluate(_CLICKABLE, ABOUT_LABEL) if follow_about else []:
                    if time.monotonic() - started > total:
                        out.skipped.append(label)  # the total deadline is spent: said, not waited for
                        continue
                    page.goto(out.final_url, wait_until="load", timeout=ms)
                    page.get_by_text(label, exact=True).first.click(timeout=ms)
                    page.wait_for_load_state("load", timeout=ms)
                    out.views.append(_view(page, label, ms, reader, out.final_url))
            finally:
                b.close()
    except PlaywrightError as exc:
        out.error = str(exc).splitlines()[0][:300]
    return out


# -- judging recorded facts (no browser) ----------------------------------------------------

def in_product_area(item: dict, about_page: bool) -> bool:
    """Whether a candidate (or an image) is where a product shows its own version: its footer,
    header, navigation, an about or version area, a dialog; or anywhere on the page an about
    link led to (``about_page``). A number elsewhere (a protocol, a patient's document) is not
    the product's version."""
    return bool(item.get("area")) or about_page

def _rgba(value: str) -> tuple[float, float, float, float]:
    import re

    nums = [float(x) for x in re.findall(r"[\d.]+", value or "")]
    if len(nums) < 3:
        return (0.0, 0.0, 0.0, 1.0)
    return (nums[0], nums[1], nums[2], nums[3] if len(nums) > 3 else 1.0)


def _luminance(rgb: tuple[float, float, float]) -> float:
    def channel(c: float) -> float:
        c /= 255.0
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(color: str, background: str) -> float:
    """WCAG 2.x contrast ratio; a translucent text colour is blended over the background."""
    fr, fg, fb, fa = _rgba(color)
    br, bg, bb, _ = _rgba(background)
    blended = (fr * fa + br * (1 - fa), fg * fa + bg * (1 - fa), fb * fa + bb * (1 - fa))
    hi, lo = sorted((_luminance(blended), _luminance((br, bg, bb))), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def judge_visible(c: dict) -> list[str]:
    """Why a person does not see candidate ``c`` (empty: they see it)."""
    style, box, page = c["style"], c["box"], c["page"]
    # what is not rendered has no box nor place either: its first cause alone is said
    if c["closed_dialog"]:
        return ["closed-dialog"]
    if not c["rendered"]:
        return ["not-rendered"]
    reasons = []
    if box["width"] < 1 or box["height"] < 1:
        reasons.append("no-size")
    if box["x"] + box["width"] <= 0 or box["y"] + box["height"] <= 0 or box["x"] >= page["width"] or box["y"] >= page["height"]:
        reasons.append("off-screen")
    if float(style["opacity"]) < 0.1:
        reasons.append("transparent")
    size = float(style["font_size"] or 0)
    if size < MIN_FONT_PX:
        reasons.append("font-too-small")
    bold = str(style.get("font_weight", "400")).isdigit() and int(style["font_weight"]) >= 700
    large = size >= 24 or (bold and size >= 18.66)
    if contrast(style["color"], style["background"]) < (MIN_CONTRAST_LARGE if large else MIN_CONTRAST):
        reasons.append("low-contrast")
    return reasons


if __name__ == "__main__":  # the child process of render(): its classes pickled under the module's own name
    from harness_version.browser import _render_here as _work

    _options = json.loads(sys.argv[1])
    _rendering = _work(_options.pop("url"), **_options)
    with open(sys.argv[2], "wb") as _fh:
        pickle.dump(_rendering, _fh)

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
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import browser as kit

MIN_FONT_PX = 9.0
MIN_CONTRAST = 4.5
MIN_CONTRAST_LARGE = 3.0
VIEWPORT = kit.VIEWPORT
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
  const AREA = 'footer, header, nav, aside, dialog, [role=contentinfo], [role=banner], [role=navigation], [role=dialog], [id*=about i], [class*=about i], [id*=version i], [class*=version i], [id*=propos i], [class*=propos i], [id*=footer i], [class*=footer i]';
  // the product area holding an element, across the open shadow roots it sits in
  const productArea = (el) => {
    for (let e = el; e; ) {
      const a = e.closest(AREA);
      if (a) return a;
      const root = e.getRootNode();
      e = root && root.host ? root.host : null;
    }
    return null;
  };
  // every text node in document order, open shadow roots included
  const textNodes = (max) => {
    const out = [];
    const visit = (root) => {
      const w = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
      for (let n = w.nextNode(); n && out.length < max; n = w.nextNode()) {
        if (n.nodeType === 3) out.push(n);
        else if (n.shadowRoot) visit(n.shadowRoot);
      }
    };
    visit(document.body || document.documentElement);
    return out;
  };
"""

# Runs in the page: every text node that holds something shaped like a version number, with
# what a person needs to see it. Kept free of the page's own globals.
_COLLECT = r"""
([pattern, label, number, product]) => {
  const re = new RegExp(pattern, 'gi');
  const named = product ? new RegExp(product + '\\s*[:\\-–—]?\\s*$', 'i') : null;
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
  const scroll = document.scrollingElement || document.documentElement;
  const labelled = new RegExp(label + '$', 'i'), bare = new RegExp('^\\s*(' + number + ')\\s*$');
  let previous = '', previousEl = null;
  for (const node of textNodes(20000)) {
    if (out.length >= 200) break;
    const text = node.textContent;
    const el = node.parentElement;
    if (!el || ['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE'].includes(el.tagName)) continue;
    const found = [];
    re.lastIndex = 0;
    let m;
    while ((m = re.exec(text)) && found.length < 20) found.push({start: m.index, end: m.index + m[0].length, text: m[0]});
    // a label and its value in two elements (<dt>Version</dt><dd>3.2.1</dd>, a table's cells)
    const b = !found.length && bare.exec(text);
    if (b && (labelled.test(previous) || (named && named.test(previous)))) {
      const start = text.indexOf(b[1]);
      const lab = previous.trim().match(labelled) || previous.trim().match(named);
      found.push({start, end: start + b[1].length, text: lab[0].trim() + ' ' + b[1],
                  before: previous.trim().slice(0, previous.trim().length - lab[0].length).slice(-60)});
    }
    // the text just before, when it is part of the same line of the page (a sibling or the
    // parent's text: <b>OrdoCabinet</b> <span>5.4.2</span>), not another block's
    const inline = (e) => getComputedStyle(e).display.startsWith('inline');
    const near = previousEl && (previousEl === el || ((previousEl.parentElement === el.parentElement || previousEl === el.parentElement
      || previousEl.parentElement === el) && inline(el) && inline(previousEl)));
    const earlier = near ? previous : '';
    if (text.trim()) { previous = text.trim().slice(-80); previousEl = el; }
    for (const f of found) {
      if (out.length >= 200) break;
      const range = document.createRange();
      range.setStart(node, f.start);
      range.setEnd(node, f.end);
      const r = range.getBoundingClientRect();
      const s = getComputedStyle(el);
      const before = f.before !== undefined ? f.before : (text.slice(Math.max(0, f.start - 60), f.start).trim() ? text.slice(Math.max(0, f.start - 60), f.start) : earlier.slice(-60) + ' ');
      out.push({
        text: f.text, context: text.trim().slice(0, 200), before: before.slice(-60), path: path(el), area: area(el),
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
# What follows a version and belongs to it: a build, revision or date ("Version 5.4.2 (build
# 2026.11.3)", "v5.4.2 – build 4711", "5.4.2 du 03/11/2026"): part of the same candidate, never a
# second version of its own
SUFFIX = (r"(?:\s*[(\[]\s*(?:build|rev\.?|r[ée]vision|compilation|du|of|#)?\s*[:#]?\s*[0-9A-Za-z][0-9A-Za-z.\-+_/: ]{0,40}[)\]]"
          r"|\s*[,\-–—·]?\s*\b(?:build|rev\.?|r[ée]vision|compilation)\s*[:#]?\s*(?:n°\s*)?[0-9A-Za-z][0-9A-Za-z.\-+_]{0,40}"
          r"|\s+(?:du|of)\s+\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4})?")
PATTERN = rf"(?:{LABEL}{TOKEN}{SUFFIX}|\bv{NUMBER}{SUFFIX})"
_META = set(r"\^$.|?*+()[]{}/")


def js_literal(text: str) -> str:
    """``text`` as a regular expression matching it literally, in the syntax JavaScript and
    Python share."""
    return "".join("\\" + ch if ch in _META else ch for ch in text)


def pattern_for(product_name: str) -> str:
    """:data:`PATTERN`, and the product's name followed by a bare number ("OrdoCabinet 5.4.2")."""
    name = product_name.strip()
    if len(name) < 3:
        return PATTERN
    return rf"(?:{LABEL}{TOKEN}{SUFFIX}|\bv{NUMBER}{SUFFIX}|{js_literal(name)}\s+(?:v\s?)?{NUMBER}{SUFFIX})"


# the browser itself is the services kit's (harness.browser): which one, its flags, its sandbox
BROWSERS, BROWSER_FLAGS, OFFLINE_FLAGS, CONTEXT = kit.BROWSERS, kit.BROWSER_FLAGS, kit.OFFLINE_FLAGS, kit.CONTEXT
distribution_browser, browser_flags = kit.distribution_browser, kit.browser_flags


def find_browser() -> str | None:
    """The Chromium the version screenshot uses (:func:`harness.browser.find_browser`)."""
    return kit.find_browser()


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
    sandbox: str = ""  # "on", or "off: why" (Chromium's sandbox around the vendor's page)

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

# "One click away": links and buttons labelled like an about entry, French or English, by their
# accessible name (text, aria-label, aria-labelledby, title, an image's alt: an icon button
# "À propos" counts); and the menus that may hold one (Aide › À propos), two clicks deep
ABOUT_LABEL = r"^\s*(à propos|a propos|about|informations? (?:sur le|du) logiciel|version)\b"
MENU_LABEL = r"^\s*(aide|help|\?|menu|plus|more|options|paramètres|settings|⋮|…|\.\.\.)\s*$"
MAX_ABOUT = 3  # about entries opened, at most
MAX_MENUS = 2  # menus opened to find one, at most
_CLICKABLE = r"""
([pattern, mark, max]) => {
  const re = new RegExp(pattern, 'i');
  const name = (e) => {
    const by = (e.getAttribute('aria-labelledby') || '').split(/\s+/).map(id => document.getElementById(id)).filter(Boolean)
      .map(x => x.textContent).join(' ');
    const img = e.querySelector('img[alt]');
    return (by || e.getAttribute('aria-label') || e.innerText || e.title || (img && img.alt) || '').replace(/\s+/g, ' ').trim();
  };
  document.querySelectorAll('[data-harness-' + mark + ']').forEach(e => e.removeAttribute('data-harness-' + mark));
  const out = [];
  for (const e of document.querySelectorAll('a, button, [role=button], [role=menuitem], [role=link], summary, [onclick]')) {
    if (out.length >= max) break;
    const label = name(e);
    if (!re.test(label)) continue;
    if (e.checkVisibility && !e.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})) continue;
    e.setAttribute('data-harness-' + mark, String(out.length));
    out.push(label.slice(0, 80));
  }
  return out;
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


_FRAME_AREA = r"""
(el) => {
""" + _HELPERS + r"""
  const a = productArea(el);
  return a ? path(a) : null;
}
"""
SETTLE = 5.0  # seconds at most a page is given to settle (network idle) after it loads or after a click


def _settle(page, ms: int) -> None:
    """Wait until the page has settled: its load event, then no request for half a second
    (a version filled in by a request that completes after the load), within the deadline."""
    from playwright.sync_api import Error as PlaywrightError

    try:
        page.wait_for_load_state("load", timeout=ms)
        page.wait_for_load_state("networkidle", timeout=min(ms, int(SETTLE * 1000)))
    except PlaywrightError:
        pass  # a page that keeps polling is read as it is then


def _candidates(page, product: str) -> list[dict]:
    """The candidates of the page and of its same-origin frames (a footer frame), each frame's
    boxes placed in the page and its product area taken from its frame element's when its own
    document has none."""
    args = [pattern_for(product), LABEL, TOKEN, js_literal(product.strip()) if len(product.strip()) >= 3 else ""]
    out = page.evaluate(_COLLECT, args)
    origin = page.url.split("/", 3)[:3]
    for frame in page.frames[1:6]:
        try:
            if frame.url.split("/", 3)[:3] != origin:
                continue  # another site's frame (an advert, a map) is not the product
            element = frame.frame_element()
            box = element.bounding_box()
            if box is None:
                continue
            area = element.evaluate(_FRAME_AREA)
            scroll = page.evaluate("() => [window.scrollX, window.scrollY]")
            for c in frame.evaluate(_COLLECT, args):
                c["box"]["x"] += box["x"] + scroll[0]
                c["box"]["y"] += box["y"] + scroll[1]
                c["area"] = c.get("area") or area
                c["path"] = f"iframe[src={frame.url.rsplit('/', 1)[-1][:60]}] >> {c['path']}"
                c["page"] = {"width": max(c["page"]["width"], box["x"] + box["width"]), "height": max(c["page"]["height"], box["y"] + box["height"])}
                out.append(c)
        except Exception:  # a frame that went away while read
            continue
    return out


def _view(page, via: str | None, ms: int, ocr, home: str, product: str = "") -> View:
    view = View(page.url, via, _candidates(page, product))
    # an about entry that led elsewhere: another page, a hash route, a new tab
    view.about_page = via is not None and page.url != home
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


def render(url: str, *, deadline: float = 20.0, total: float = 60.0, browser: str | None = None, follow_about: bool = True,
           ocr: bool = False, loopback_only: bool = False, product: str = "") -> Rendering:
    """Open ``url`` in headless Chromium (redirects followed, as a person's browser does),
    let its scripts run and the page settle (network idle), read the candidates, its open
    shadow roots and same-origin frames included (``product``: its name followed by a bare
    number is a candidate too); then what each about link or button shows (at most 3, found by
    their accessible name; a hash route, a new tab or a pop-up followed), or, when the page has
    none, the about entry of a menu, two clicks away. Where a product area shows no version as
    text, its images are cropped and, with ``ocr``, read by Tesseract (:mod:`.ocr`).

    ``deadline`` bounds each browser step, in seconds; no about view is opened once ``total``
    seconds are spent. The browser runs in a process group of its own, killed whole when
    ``total`` + a grace (:func:`harness.browser.run_driver`) pass: a page whose script never yields control (which no
    Playwright timeout interrupts) cannot hang the run. ``loopback_only``: the page may load
    nothing beyond loopback (``--offline``); every request is listed in :attr:`Rendering.requests`."""
    out = Rendering(url)
    executable = browser or find_browser()
    if executable is None:
        out.error = "no-browser"
        return out
    args = {"url": url, "deadline": deadline, "total": total, "browser": executable, "follow_about": follow_about, "ocr": ocr,
            "loopback_only": loopback_only, "product": product}
    result, error = kit.run_driver(f"{__name__}:_render_child", args, total=total)
    if error is not None:
        out.error = error.replace("driver", "renderer")
        return out
    try:
        return rendering_from(result)  # data only
    except (ValueError, TypeError, KeyError) as exc:
        out.error = f"renderer result unreadable: {type(exc).__name__}"
        return out


def _render_child(args: dict) -> dict:
    """:func:`render`'s work in the driver's process (:func:`harness.browser.run_driver`)."""
    from dataclasses import asdict

    return asdict(_render_here(args.pop("url"), **args))


def dump_rendering(rendering: Rendering) -> bytes:
    from dataclasses import asdict

    return json.dumps(kit.encode(asdict(rendering))).encode("utf-8")


def load_rendering(data: bytes) -> Rendering:
    """A :class:`Rendering` from :func:`dump_rendering`'s bytes (bounded, data only)."""
    from harness import UnsafeInput, parse_json

    try:
        return rendering_from(kit.decode(parse_json(data, source="rendering.json", max_bytes=kit.MAX_RESULT)))
    except UnsafeInput as exc:
        raise ValueError(str(exc)) from None


def rendering_from(d: Any) -> Rendering:
    """A :class:`Rendering` from its data (the driver's result): known fields only."""
    if not isinstance(d, dict):
        raise ValueError("not a rendering")
    fields = set(Rendering.__dataclass_fields__)
    rendering = Rendering(**{k: v for k, v in d.items() if k in fields and k != "views"})
    rendering.views = [View(**{k: v for k, v in view.items() if k in View.__dataclass_fields__}) for view in d.get("views") or []]
    return rendering


def _reader(ocr: bool):
    if not ocr:
        return None
    from . import ocr as ocr_module

    return lambda png: ocr_module.read(png, PATTERN)


def _render_here(url: str, *, deadline: float, total: float, browser: str, follow_about: bool, ocr: bool, loopback_only: bool,
                 product: str = "") -> Rendering:
    """:func:`render`'s work, in the child process: a browser of its own, then :func:`render_in`."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    out = Rendering(url)
    ms = int(deadline * 1000)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="harness-browser-") as tmp, sync_playwright() as p:
            launched = kit.launch(p, Path(tmp), browser=browser, timeout_ms=ms, loopback_only=loopback_only)
            out.sandbox, out.browser = launched.sandbox, launched.browser
            try:
                _render_in(launched.context, out, ms=ms, started=started, total=total, follow_about=follow_about, reader=_reader(ocr),
                           loopback_only=loopback_only, product=product)
            finally:
                launched.context.close()
    except PlaywrightError as exc:
        out.error = str(exc).splitlines()[0][:300]
    return out


def render_in(context, url: str, *, deadline: float = 20.0, total: float = 60.0, follow_about: bool = True, ocr: bool = False,
              loopback_only: bool = False, product: str = "") -> Rendering:
    """What :func:`render` does once its browser is up, in a browser ``context`` the caller
    holds (launched with :func:`browser_flags` and :data:`CONTEXT`, one context per page):
    for a caller judging many pages, the browser's start paid once. Without :func:`render`'s
    process of its own, nothing kills a page whose script never yields: for pages one trusts."""
    from playwright.sync_api import Error as PlaywrightError

    out = Rendering(url)
    out.browser = f"chromium {context.browser.version if context.browser else ''}".strip()
    try:
        _render_in(context, out, ms=int(deadline * 1000), started=time.monotonic(), total=total, follow_about=follow_about,
                   reader=_reader(ocr), loopback_only=loopback_only, product=product)
    except PlaywrightError as exc:
        out.error = str(exc).splitlines()[0][:300]
    return out


def _render_in(context, out: Rendering, *, ms: int, started: float, total: float, follow_about: bool, reader, loopback_only: bool,
               product: str) -> None:
    from harness import is_loopback

    context.add_init_script(script=OPEN_WATCH)
    if loopback_only:
        context.route("**/*", lambda route: route.continue_() if is_loopback(route.request.url) or route.request.url.startswith(("data:", "file:", "about:"))
                      else route.abort("blockedbyclient"))
    page = context.pages[0] if context.pages else context.new_page()

    def listen(pg) -> None:
        pg.on("response", lambda r: len(out.requests) < 200 and out.requests.append(
            {"url": r.url[:500], "method": r.request.method, "status": r.status}))
        pg.on("requestfailed", lambda r: len(out.requests) < 200 and out.requests.append(
            {"url": r.url[:500], "method": r.method, "failure": (r.failure or "")[:200]}))
        pg.set_default_timeout(ms)
    listen(page)
    context.on("page", listen)
    response = page.goto(out.url, wait_until="load", timeout=ms)
    _settle(page, ms)
    if out.sandbox.startswith("on"):
        out.sandbox += kit.renderer_confinement()
    out.status = response.status if response else None
    out.final_url = page.url
    out.views.append(_view(page, None, ms, reader, out.final_url, product))
    if follow_about:
        _follow_about(page, context, out, ms, reader, product, started, total)


def _home(page, home: str, ms: int) -> None:
    """Back to the product's page as it loaded (a hash route left, a dialog closed)."""
    if page.url.split("#")[0] == home.split("#")[0] and page.url != home:
        page.goto("about:blank", timeout=ms)  # the same document with another hash would not reload
    page.goto(home, wait_until="load", timeout=ms)
    _settle(page, ms)


# What a click shows may come later than the click: a dialog filled once the server answers a
# request the click made, a window opened then, a tab that reaches the driver late on a busy
# machine (half a second missed a window.open pop-up on two cores running four browsers). A
# click is read once the page is quiet: its load when it navigated, and no request of the
# page in flight for IDLE seconds (as Playwright's network idle, which a click that does not
# navigate never waits for), within SETTLE. Whether it opened a tab or a window is known in the
# page: every page's window.open and its clicks on links to another window are counted
# (OPEN_WATCH, added before any script of the page runs); a click counted as opening one waits
# for it up to the step's deadline.
IDLE = 0.5
OPEN_WATCH = r"""
(() => {
  let opened = 0;
  const elsewhere = (name) => !['_self', '_parent', '_top'].includes(String(name ?? '_blank').toLowerCase());
  const open = window.open;
  window.open = function (...args) {
    const win = open.apply(this, args);
    if (win && elsewhere(args[1])) opened += 1;
    return win;
  };
  window.addEventListener('click', (e) => {
    const link = e.target && e.target.closest ? e.target.closest('a[href][target], area[href][target]') : null;
    if (link && link.target && elsewhere(link.target) && !e.defaultPrevented) opened += 1;
  });
  Object.defineProperty(window, '__harnessOpened', { get: () => opened });
})();
"""


def _opened(page) -> int:
    from playwright.sync_api import Error as PlaywrightError

    try:
        return int(page.evaluate("() => window.__harnessOpened || 0"))
    except (PlaywrightError, TypeError, ValueError):  # a page navigating away: it opened nothing we could count
        return 0


def _click(page, context, selector: str, via: str, out: Rendering, ms: int, reader, product: str) -> None:
    """Click, then read what the click shows, once the page is quiet: the same page (a dialog,
    a hash route, another page), or the tab or pop-up it opened."""
    opened: list = []
    inflight: set = set()
    last = [time.monotonic()]  # when a request of the page last started or ended

    def on_page(new_page) -> None:
        opened.append(new_page)

    def started(request) -> None:
        inflight.add(request)
        last[0] = time.monotonic()

    def ended(request) -> None:
        inflight.discard(request)
        last[0] = time.monotonic()

    listeners = (("page", on_page), ("request", started), ("requestfinished", ended), ("requestfailed", ended))
    for event, fn in listeners:
        context.on(event, fn)
    try:
        before = _opened(page)
        clicked = time.monotonic()
        page.locator(selector).first.click(timeout=ms)  # a click that fails: the caller says so
        _settle(page, ms)  # the load of a page the click navigated to
        while not opened:  # events (a new page, requests) are heard while waiting
            now = time.monotonic()
            if now - clicked >= ms / 1000:
                break
            quiet = (not inflight and now - last[0] >= IDLE) or now - clicked >= SETTLE
            if quiet and _opened(page) <= before:
                break
            page.wait_for_timeout(50)
    finally:
        for event, fn in listeners:
            context.remove_listener(event, fn)
    tab = opened[0] if opened else None
    if tab is not None:
        _settle(tab, ms)
        view = _view(tab, via, ms, reader, out.final_url, product)
        view.about_page = True
        out.views.append(view)
        tab.close()
    else:
        out.views.append(_view(page, via, ms, reader, out.final_url, product))


def _follow_about(page, context, out: Rendering, ms: int, reader, product: str, started: float, total: float) -> None:
    """What each about entry shows (at most :data:`MAX_ABOUT`), one click away; when the page
    has none, the about entry of a menu (Aide › À propos), two clicks away. An entry that cannot
    be clicked is said in :attr:`Rendering.skipped`, the others still read."""
    from playwright.sync_api import Error as PlaywrightError

    home = out.final_url
    entries = page.evaluate(_CLICKABLE, [ABOUT_LABEL, "about", MAX_ABOUT])
    for n, label in enumerate(entries):
        if time.monotonic() - started > total:
            out.skipped.append(label)  # the total deadline is spent: said, not waited for
            continue
        try:
            if n:  # the first entry is clicked on the page as it was read; the others after going back to it
                _home(page, home, ms)
                page.evaluate(_CLICKABLE, [ABOUT_LABEL, "about", MAX_ABOUT])
            _click(page, context, f'[data-harness-about="{n}"]', label, out, ms, reader, product)
        except PlaywrightError as exc:  # covered, moved away, gone: said, and the other entries still read
            out.skipped.append(f"{label}: {str(exc).splitlines()[0][:160]}")
    if entries:
        return
    menus = page.evaluate(_CLICKABLE, [MENU_LABEL, "menu", MAX_MENUS])
    for n, menu in enumerate(menus):
        if time.monotonic() - started > total:
            out.skipped.append(menu)
            continue
        try:
            _home(page, home, ms)
            page.evaluate(_CLICKABLE, [MENU_LABEL, "menu", MAX_MENUS])
            page.locator(f'[data-harness-menu="{n}"]').first.click(timeout=ms)
            _settle(page, ms)
            inner = page.evaluate(_CLICKABLE, [ABOUT_LABEL, "about", 1])
            if inner:
                _click(page, context, '[data-harness-about="0"]', f"{menu} › {inner[0]}", out, ms, reader, product)
                return
        except PlaywrightError as exc:
            out.skipped.append(f"{menu}: {str(exc).splitlines()[0][:160]}")


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

"""The version a person sees, decided from a recorded rendering alone (no browser, no OCR).

The rendering record (``ui.rendering``, written by the ``version.ui`` collector) holds, for
each view of the product (its page, what an about link or button shows), every text shaped
like a version with its box, computed style, surroundings and DOM path, and the images of the
product's area with what OCR read in them. :func:`read_rendering` sorts those facts into what
a person sees as the product's version, what is present but not seen (and why), what is seen
but is not the product's version, and the images a person must look at.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .browser import LABEL, NUMBER, TOKEN, in_product_area, judge_visible
from .ocr import MIN_CONFIDENCE

_VERSION = re.compile(rf"(?:{LABEL})({TOKEN})|\bv({NUMBER})|({NUMBER})", re.IGNORECASE)
_LABEL = re.compile(LABEL, re.IGNORECASE)
_SEPARATORS = "-+._ "
# a candidate the page names as the product's own (beside the product name, in an about area)
_ABOUT_AREA = re.compile(r"dialog|about|propos|version", re.IGNORECASE)


def number_of(text: str) -> str | None:
    """The version in a candidate's text: ``Version du logiciel : 3.2.1`` → ``3.2.1``; in a
    document's ``softwareName`` (``Cabinet Démo 3.2.1``), the dotted number."""
    m = _VERSION.search(text)
    return next(g for g in m.groups() if g).rstrip(".") if m else None


def label_of(text: str) -> str:
    """How the number is introduced: ``version``, ``build``, ``release`` or ``v``."""
    m = _LABEL.match(text.strip())
    if not m:
        return "v"
    word = m.group(0).strip().lower()
    return "build" if word.startswith("build") else "release" if word.startswith("release") else "version"


def compatible(a: str, b: str) -> bool:
    """Two numbers that name the same version: equal, or one is the other with a build or
    pre-release suffix (``3.2.1`` and ``3.2.1-b42``; not ``3.2.1`` and ``3.2.10``)."""
    short, long = sorted((a.lower().lstrip("v"), b.lower().lstrip("v")), key=len)
    return long == short or (long.startswith(short) and long[len(short)] in _SEPARATORS)


@dataclass
class Shown:
    """One version text of the rendering."""

    version: str
    text: str
    label: str
    view: int  # index of the view
    url: str
    path: str  # DOM path of the element (an image's, for OCR)
    source: str = "text"  # "text", or "ocr" for a version read in an image
    confidence: float | None = None  # OCR's, for "ocr"
    reasons: list[str] = field(default_factory=list)  # why a person does not see it (empty: seen)
    style: dict = field(default_factory=dict)
    named: bool = False

    @property
    def location(self) -> str:
        return f"{self.url} {self.path}"


@dataclass
class Reading:
    shown: list[Shown] = field(default_factory=list)  # the product's version, as a person sees it
    hidden: list[Shown] = field(default_factory=list)  # in the product's area, not seen (reasons)
    elsewhere: list[Shown] = field(default_factory=list)  # seen, but not where a product shows its version
    unnamed: list[Shown] = field(default_factory=list)  # seen in a product area, set aside for a named one
    pending: list[tuple[int, int]] = field(default_factory=list)  # (view, image) a person must read
    unread: list[tuple[int, int, str]] = field(default_factory=list)  # (view, image, what OCR read) no version in it

    @property
    def version(self) -> Shown | None:
        """The product's version: the first one seen, a ``build`` number only when nothing else."""
        labelled = [s for s in self.shown if s.label != "build"]
        return (labelled or self.shown or [None])[0]

    def conflicts(self) -> list[Shown]:
        """Versions seen as the product's that name another version than :attr:`version`."""
        first = self.version
        out, seen = [], set()
        for s in self.shown:
            if first is not None and not compatible(s.version, first.version) and s.version not in seen:
                seen.add(s.version)
                out.append(s)
        return out


def _named(c: dict, area: str | None, about_page: bool, product_name: str) -> bool:
    context = (c.get("context") or "").casefold()
    return (bool(product_name) and product_name.casefold() in context) or about_page or bool(area and _ABOUT_AREA.search(area)) \
        or "logiciel" in c.get("text", "").casefold()


def read_rendering(rendering: dict, product_name: str = "") -> Reading:
    """Sort the recorded facts; pure, so that replay decides exactly as the live run did.

    When some version seen in a product area is named as the product's (beside the product's
    name, in an about area, dialog or page, "Version du logiciel"), those are the product's
    version and the others of its areas (a standard's version in a footer) are set aside."""
    out = Reading()
    area_seen: list[Shown] = []
    for n, view in enumerate(rendering.get("views") or []):
        about_page = bool(view.get("about_page"))
        for c in view.get("candidates") or []:
            version = number_of(c["text"])
            if version is None:
                continue
            s = Shown(version, c["text"], label_of(c["text"]), n, view["url"], c.get("path", ""), reasons=judge_visible(c),
                      style=c.get("style") or {}, named=_named(c, c.get("area"), about_page, product_name))
            if not in_product_area(c, about_page):
                if not s.reasons:
                    out.elsewhere.append(s)
            elif s.reasons:
                out.hidden.append(s)
            else:
                area_seen.append(s)
        for k, image in enumerate(view.get("images") or []):
            ocr = image.get("ocr")
            if not ocr or ocr.get("error"):
                out.pending.append((n, k))
                continue
            version = number_of(ocr["version"]) if ocr.get("version") else None
            if version is None:
                out.unread.append((n, k, ocr.get("text", "")))
            elif (ocr.get("confidence") or 0) < MIN_CONFIDENCE:
                out.pending.append((n, k))
            else:
                area_seen.append(Shown(version, ocr["version"], label_of(ocr["version"]), n, view["url"], image.get("path", ""), "ocr",
                                       ocr["confidence"], named=True))
    named = [s for s in area_seen if s.named]
    out.shown = named or area_seen
    out.unnamed = [s for s in area_seen if named and not s.named]
    return out


def rendered_version(rendering: dict, product_name: str = "") -> str | None:
    """The product's version a recorded rendering shows, for the other rules and the history."""
    shown = read_rendering(rendering, product_name).version
    return shown.version if shown else None

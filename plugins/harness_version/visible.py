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
_NUMBER = re.compile(rf"\b{NUMBER}\b")
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
    owner: str = ""  # the name written just before it, when another than the product's (a component, a standard)

    @property
    def location(self) -> str:
        return f"{self.url} {self.path}"


@dataclass
class Reading:
    shown: list[Shown] = field(default_factory=list)  # the product's version, as a person sees it
    hidden: list[Shown] = field(default_factory=list)  # in the product's area, not seen (reasons)
    elsewhere: list[Shown] = field(default_factory=list)  # seen, but not where a product shows its version
    unnamed: list[Shown] = field(default_factory=list)  # seen in a product area, set aside for a named one
    components: list[Shown] = field(default_factory=list)  # another thing's version (a component, a standard)
    pending: list[tuple[int, int]] = field(default_factory=list)  # (view, image) a person must read
    unread: list[tuple[int, int, str]] = field(default_factory=list)  # (view, image, what OCR read) no version in it

    @property
    def version(self) -> Shown | None:
        """The product's version: the first one seen, a ``build`` number only when nothing else."""
        labelled = [s for s in self.shown if s.label != "build"]
        return (labelled or self.shown or [None])[0]

    def conflicts(self) -> list[Shown]:
        """Versions seen in the product's areas that name another version than :attr:`version`:
        those named as the product's, and those set aside for them (a stale about box against the
        header is two versions, said with both places); a component's or a standard's is none."""
        first = self.version
        out, seen = [], set()
        for s in self.shown + self.unnamed:
            if first is not None and not compatible(s.version, first.version) and s.version not in seen:
                seen.add(s.version)
                out.append(s)
        return out


_BREAK = re.compile(r"[·•|;,\n]|\s{3,}")
_TRAIL = re.compile(r"[\s:\-–—(\[]+$")
_WORD = re.compile(r"([0-9A-Za-zÀ-ÿ][\w.\-'’À-ÿ]*(?:\s+[0-9A-Za-zÀ-ÿ][\w.\-'’À-ÿ]*){0,3})$")
_ABOUT_WORDS = re.compile(r"propos|about|aide|help|informations?|logiciel|application|software|produit|product", re.IGNORECASE)
_NOT_OWNERS = re.compile(r"^(?:©|\(c\)|copyright|\d{4}|le|la|les|du|de|des|en|the|of|by|par|numéro|n°|no\.?)$", re.IGNORECASE)


def owner_of(c: dict, product_name: str) -> str:
    """The name written just before a candidate when it is another thing's: ``HL7 v2.5``,
    ``Connecteur DMP v1.8.3``, ``CI-SIS version 2023.01``. Empty when it is the product's (its
    name there) or nobody's in particular (a label alone, a separator before it)."""
    text = c.get("text", "")
    before = c.get("before")
    if before is None:  # recorded before the browser kept it: what precedes it in its text
        context = c.get("context") or ""
        at = context.find(text)
        before = context[:at] if at > 0 else ""
    name = product_name.casefold().strip()
    if name and name in text.casefold():
        return ""
    tail = _BREAK.split(before)[-1]
    if name and name in tail.casefold():
        return ""
    if _TRAIL.search(tail) and re.search(r"[—–:(\[]\s*$", tail):
        return ""  # "Cabinet du Dr Martin — Version 5.4.2": a separator, not a name, before it
    m = _WORD.search(_TRAIL.sub("", tail))
    if not m:
        return ""
    words = [w for w in m.group(1).split() if not _NOT_OWNERS.match(w)]
    if _ABOUT_WORDS.search(" ".join(words)):
        return ""  # "À propos", "Informations sur le logiciel": a title, not another thing's name
    return " ".join(words)


def _listed_with_product(c: dict, product_name: str) -> str:
    """In a view that names the product's version, a version after another name, whatever
    the separator ("Module INSi — version 2.0.1" under "OrdoCabinet — version 5.4.2")."""
    tail = _BREAK.split(c.get("before") or "")[-1]
    m = _WORD.search(_TRAIL.sub("", tail))
    words = [w for w in (m.group(1).split() if m else []) if not _NOT_OWNERS.match(w)]
    name = " ".join(words)
    return "" if not name or _ABOUT_WORDS.search(name) or (product_name and product_name.casefold() in name.casefold()) else name


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
        candidates = view.get("candidates") or []
        # a view where the product's version is written beside its name: the others listed there
        # after another name are its components'
        lists_product = bool(product_name) and any(
            product_name.casefold() in (c.get("text", "") + " " + _BREAK.split(c.get("before") or "")[-1]).casefold() for c in candidates)
        for c in candidates:
            version = number_of(c["text"])
            if version is None:
                continue
            own = bool(product_name) and product_name.casefold() in (c.get("text", "") + " " + _BREAK.split(c.get("before") or "")[-1]).casefold()
            listing = lists_product and not own and (about_page or bool(c.get("area") and _ABOUT_AREA.search(c["area"])))
            owner = owner_of(c, product_name) or (_listed_with_product(c, product_name) if listing else "")
            s = Shown(version, c["text"], label_of(c["text"]), n, view["url"], c.get("path", ""), reasons=judge_visible(c),
                      style=c.get("style") or {}, named=_named(c, c.get("area"), about_page, product_name), owner=owner)
            if s.owner and not s.reasons and in_product_area(c, about_page):
                out.components.append(s)
            elif not in_product_area(c, about_page):
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
            if version is None and (_NUMBER.search(ocr.get("text") or "") or not (ocr.get("text") or "").strip()):
                # a number without a label ("WERSION 5.4.2"), or nothing OCR could read at all: what
                # the image says is for a person to read, never a proof that it holds no version
                out.pending.append((n, k))
            elif version is None:
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

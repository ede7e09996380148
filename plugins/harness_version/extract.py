"""Reading versions out of what a vendor's software shows: HTML pages and API answers.

Pure functions of recorded bytes. The raw HTML reading proves nothing about what a person
sees (the browser does, :mod:`.visible`): it judges bundles written before the browser, says
what the HTML held when no browser was found, and reads the history of such bundles.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

_ABOUT = re.compile(r"about|a-?propos|apropos|à propos|version", re.IGNORECASE)
_INVISIBLE = {"script", "style", "template", "noscript", "head", "title"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
VERSION_IN_TEXT = re.compile(r"\bversion\b\s*[:\-–—]?\s*(?:n°\s*)?(?=[0-9A-Za-z.\-+_]*\d)(v?[0-9A-Za-z][0-9A-Za-z.\-+_]*)", re.IGNORECASE)


@dataclass
class PageText:
    """Visible text of a page: all of it, and the text of its "about" areas."""

    text: str = ""
    about: list[tuple[str, str]] = field(default_factory=list)  # (selector, text)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool, str | None]] = []  # (tag, hidden, about selector)
        self.parts: list[str] = []
        self.about: dict[str, list[str]] = {}
        self.order: list[str] = []

    def _hidden(self) -> bool:
        return any(h for _, h, _ in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        hidden = tag in _INVISIBLE or "hidden" in a or a.get("aria-hidden") == "true" or bool(_HIDDEN_STYLE.search(a.get("style", "")))
        selector = None
        for key, prefix in (("id", "#"), ("class", ".")):
            value = a.get(key, "")
            if value and _ABOUT.search(value):
                selector = f"{tag}{prefix}{value.split()[0] if key == 'class' else value}"
                break
        if tag in _VOID:
            return
        self.stack.append((tag, hidden, selector))
        if selector and selector not in self.about:
            self.about[selector] = []
            self.order.append(selector)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data: str) -> None:
        if self._hidden():
            return
        self.parts.append(data)
        for _, _, selector in self.stack:
            if selector:
                self.about[selector].append(data)


def _squash(parts: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(parts)).strip()


def read_page(data: bytes) -> PageText:
    """Visible text of an HTML page; never raises on malformed markup."""
    reader = _Reader()
    try:
        reader.feed(data.decode("utf-8", errors="replace"))
        reader.close()
    except Exception:  # html.parser is lenient; anything left is simply not read
        pass
    return PageText(
        text=_squash(reader.parts),
        about=[(sel, _squash(reader.about[sel])) for sel in reader.order],
    )


def version_in(text: str) -> str | None:
    m = VERSION_IN_TEXT.search(text)
    return m.group(1).rstrip(".") if m else None


def ui_version(page: PageText) -> tuple[str, str] | None:
    """(version, where) from the page's about areas, else from its visible text."""
    for selector, text in page.about:
        v = version_in(text)
        if v:
            return v, selector
    v = version_in(page.text)
    return (v, "body") if v else None


def dig(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


# -- orderable versions --------------------------------------------------------------

ORDERABLE = re.compile(r"^v?(?P<nums>\d+(?:\.\d+){1,3})(?:-(?P<pre>[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*))?(?:\+[0-9A-Za-z.\-]+)?$")


def version_key(version: str) -> tuple | None:
    """A sort key for an orderable version (dotted numbers, optional pre-release), else None.

    ``3.2`` and ``3.2.0`` are equal; a pre-release sorts before its release
    (``3.2.0-rc.1 < 3.2.0``), as in Semantic Versioning.
    """
    m = ORDERABLE.match(version.strip())
    if not m:
        return None
    nums = [int(n) for n in m.group("nums").split(".")]
    nums += [0] * (4 - len(nums))
    pre = m.group("pre")
    if pre is None:
        return (tuple(nums), 1, ())
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return (tuple(nums), 0, ids)

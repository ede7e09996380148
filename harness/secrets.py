"""Keeping the target's secrets out of everything the harness writes.

A peer may echo a credential back in another form than it was sent: JSON-escaped (``\\/``,
``\\u00e9``), HTML-escaped (``&amp;``, ``&#x2F;``, ``&#47;``, ``&sol;``), percent-encoded,
JavaScript-escaped (``\\x2f``), or inside base64 (an ``Authorization: Basic`` header quoted in
an error page). Each character of a secret may take any of these forms independently, as
encoders differ on which characters they escape: :class:`Scrubber` matches every mix of
them, for the secret and for each line of a secret that spans several, and replaces them.

There is one scrubbing path for everything that leaves the process: the run installs its
scrubber (:func:`install`) and every sink goes through :func:`scrub`: the recorder (every
artefact), the rendering of every message (:mod:`harness.messages`: findings, reasons,
incidents, the terminal), the bundle writer (every member but the artefacts, already
scrubbed) and the HTTP client's own error texts.
"""
from __future__ import annotations

import base64
import html.entities
import re
import threading
from typing import Iterable

import re2  # linear time: a scan of a 32 MiB answer takes 50 ms, where Python's re takes 1.6 s

REDACTED = b"***REDACTED***"
MIN_LENGTH = 4  # shorter values would blank out ordinary text
MIN_BASE64 = 8

_JSON_SHORT = {"/": "\\/", '"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _hex(value: int, width: int) -> bytes:
    """``value`` in hexadecimal, either case, zero-padded to ``width`` at least."""
    digits = f"{value:0{width}x}"
    return b"".join(f"[{d}{d.upper()}]".encode() if d.isalpha() else d.encode() for d in digits)


def _names() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, text in html.entities.html5.items():
        if name.endswith(";") and len(text) == 1:
            out.setdefault(text, []).append(name)
    return out


_ENTITY_NAMES = _names()


def _char(ch: str) -> bytes:
    """A pattern matching ``ch`` in any of the forms a peer may give it."""
    cp = ord(ch)
    raw = ch.encode("utf-8")
    forms = []
    if cp < 0x10000:
        forms.append(rb"\\u" + _hex(cp, 4))
    else:  # JSON writes an astral character as a surrogate pair
        hi, lo = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
        forms.append(rb"\\u" + _hex(hi, 4) + rb"\\u" + _hex(lo, 4))
    if ch in _JSON_SHORT:
        forms.append(re.escape(_JSON_SHORT[ch].encode()))
    if cp < 0x100:
        forms.append(rb"\\x" + _hex(cp, 2))
    forms.append(rb"&#[xX]0*" + _hex(cp, 1) + b";")
    forms.append(b"&#0*" + str(cp).encode() + b";")
    forms += [re.escape(b"&" + name.encode()) for name in _ENTITY_NAMES.get(ch, ())]
    forms.append(b"".join(b"%" + _hex(byte, 2) for byte in raw))
    if ch == " ":
        forms.append(rb"\+")
    # the raw form last: where an escaped form also matches (a JSON "\\" for a "\"), the match
    # takes it whole, never half of it (which would leave a lone "\" breaking the JSON around)
    forms.append(re.escape(raw))
    return b"(?:" + b"|".join(forms) + b")"


def _base64_cores(value: bytes) -> set[bytes]:
    """The base64 text of ``value`` wherever it sits in a longer string: for each of the three
    alignments, the characters whose six bits all come from ``value``."""
    out = set()
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + value)
        first = -(-8 * shift // 6)  # the first character with no bit of the bytes before
        last = 8 * (shift + len(value)) // 6  # past the last character with no bit of the bytes after
        core = encoded[first:last]
        if len(core) >= MIN_BASE64:  # shorter cores would match random base64 text (a PDF in a document)
            out.add(core)
            out.add(core.replace(b"+", b"-").replace(b"/", b"_"))  # the URL-safe alphabet
    return out


def _parts(secret: str) -> set[str]:
    return {p for p in {secret} | {line.strip() for line in secret.splitlines()} if len(p) >= MIN_LENGTH}


def pattern(secret: str) -> bytes | None:
    """The pattern (RE2 syntax, bytes) of every form of ``secret`` (and of each of its lines)."""
    alternatives: list[tuple[int, bytes]] = []
    for part in _parts(secret):
        alternatives.append((len(part), b"".join(_char(c) for c in part)))
        alternatives += [(len(core), re.escape(core)) for core in _base64_cores(part.encode("utf-8"))]
    if not alternatives:
        return None
    return b"|".join(p for _, p in sorted(alternatives, key=lambda a: -a[0]))


def variants(secret: str) -> set[bytes]:
    """Usual forms of ``secret`` (tests look for them in what was written): raw, JSON with
    and without ``\\/``, HTML with named and numeric references, percent-encoded, base64."""
    import json
    from urllib.parse import quote, quote_plus

    forms: set[bytes] = set()
    for part in _parts(secret):
        raw = part.encode("utf-8")
        as_json = json.dumps(part)[1:-1]
        forms |= {raw, as_json.encode(), as_json.replace("/", "\\/").encode(), json.dumps(part, ensure_ascii=False)[1:-1].encode(),
                  html.escape(part).encode(), "".join(c if c.isalnum() else f"&#x{ord(c):X};" for c in part).encode(),
                  "".join(c if c.isalnum() else f"&#{ord(c)};" for c in part).encode(),
                  quote(part, safe="").encode(), quote_plus(part, safe="").encode()}
        forms |= _base64_cores(raw)
    return {f for f in forms if len(f) >= MIN_LENGTH}


class Scrubber:
    """Replaces every form of every secret it was given."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        patterns = [p for p in (pattern(s) for s in dict.fromkeys(s for s in secrets if s)) if p is not None]
        self._pattern = re2.compile(b"|".join(patterns)) if patterns else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def bytes(self, data: bytes) -> bytes:
        return self._pattern.sub(REDACTED, data) if self._pattern is not None else data

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self.bytes(text.encode("utf-8", "surrogatepass")).decode("utf-8", "surrogatepass")


_NONE = Scrubber()
_active = _NONE
_lock = threading.Lock()


def install(scrubber: Scrubber) -> Scrubber:
    """Make ``scrubber`` the process's: every sink uses it. Returns the one it replaces."""
    global _active
    with _lock:
        previous, _active = _active, scrubber
    return previous


def active() -> Scrubber:
    return _active


def scrub(text: str) -> str:
    """``text`` with every form of every installed secret replaced."""
    return _active.text(text)

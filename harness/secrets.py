"""Keeping the target's secrets out of everything the harness writes.

A server may echo a credential back in another form than it was sent: JSON-escaped,
HTML-escaped, percent-encoded, or inside base64 (an ``Authorization: Basic`` header quoted
in an error page). :class:`Scrubber` knows every form of every declared secret, and of each
line of a secret that spans several, and replaces them all; the recorder runs everything it
stores through it, and the HTTP client every library message it reports.
"""
from __future__ import annotations

import base64
import html
import json
from typing import Iterable
from urllib.parse import quote, quote_plus

REDACTED = b"***REDACTED***"
MIN_LENGTH = 4  # shorter values would blank out ordinary text
MIN_BASE64 = 8


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


def variants(secret: str) -> set[bytes]:
    """Every form of ``secret`` (and of each of its lines) that should never be stored."""
    forms: set[bytes] = set()
    parts = {secret} | {line.strip() for line in secret.splitlines()}
    for part in parts:
        if len(part) < MIN_LENGTH:
            continue
        raw = part.encode("utf-8")
        forms |= {raw, json.dumps(part)[1:-1].encode("utf-8"), json.dumps(part, ensure_ascii=False)[1:-1].encode("utf-8"),
                  html.escape(part).encode("utf-8"), quote(part, safe="").encode("ascii"), quote_plus(part, safe="").encode("ascii")}
        forms |= _base64_cores(raw)
    return {f for f in forms if len(f) >= MIN_LENGTH}


class Scrubber:
    """Replaces every known form of every secret, longest first."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[bytes] = set()
        for secret in secrets:
            if secret:
                forms |= variants(secret)
        self._forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def bytes(self, data: bytes) -> bytes:
        for form in self._forms:
            if form in data:
                data = data.replace(form, REDACTED)
        return data

    def text(self, text: str) -> str:
        return self.bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape") if self._forms else text

"""Recording: every artefact and exchange stored once, by SHA-256, with secrets scrubbed."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import requests

from .context import Artefact

REDACTED = b"***REDACTED***"
SENSITIVE_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    """The one JSON serialisation used for hashing and comparing: sorted, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file and a rename: readers, including other
    processes writing the same file, never see it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ObjectStore:
    """A folder of content-addressed objects, safe to share between processes.

    Each object is written to a temporary file then renamed, so concurrent writers of the
    same content (pytest-xdist workers) never expose a partial file.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / digest

    def put(self, data: bytes) -> str:
        digest = sha256(data)
        final = self.path(digest)
        if not final.exists():
            atomic_write(final, data)
        return digest

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()


class Recorder:
    """Stores artefacts in an :class:`ObjectStore`, scrubbing known secret values first."""

    def __init__(self, store: ObjectStore, secrets: Iterable[str] = ()) -> None:
        self.store = store
        self._secrets = sorted({s.encode("utf-8") for s in secrets if s}, key=len, reverse=True)
        self.recorded: dict[str, Artefact] = {}

    def scrub(self, data: bytes) -> bytes:
        for secret in self._secrets:
            data = data.replace(secret, REDACTED)
        return data

    def record(self, data: bytes | str, *, media_type: str, label: str) -> Artefact:
        if isinstance(data, str):
            data = data.encode("utf-8")
        data = self.scrub(bytes(data))
        digest = self.store.put(data)
        art = Artefact(digest, len(data), media_type, label)
        self.recorded.setdefault(digest, art)
        return art

    def record_json(self, value: Any, *, label: str) -> Artefact:
        return self.record(canonical_json(value), media_type="application/json", label=label)


class HttpResult:
    """A recorded HTTP exchange: the body artefact for checks, the exchange for the record."""

    def __init__(self, status: int | None, body: Artefact | None, exchange: Artefact, error: str | None, content_type: str, data: bytes = b"") -> None:
        self.status = status
        self.body = body
        self.data = data  # the body as recorded (secrets scrubbed)
        self.exchange = exchange
        self.error = error
        self.content_type = content_type

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


class RecordingHttp:
    """GET and POST through requests, recording request, response and timing; never raises for I/O."""

    def __init__(self, recorder: Recorder, *, timeout: float = 10.0, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.recorder = recorder
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.session = requests.Session()
        self.session.trust_env = False  # loopback and configured endpoints only: no proxies

    def get(self, url: str, *, label: str, headers: dict[str, str] | None = None) -> HttpResult:
        return self._exchange("GET", url, label=label, headers=headers)

    def post(self, url: str, *, label: str, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> HttpResult:
        """POST ``body`` (recorded as an artefact of its own, secrets scrubbed)."""
        return self._exchange("POST", url, label=label, headers=dict(headers or {}, **{"Content-Type": content_type}), payload=body)

    def _exchange(self, method: str, url: str, *, label: str, headers: dict[str, str] | None, payload: bytes | None = None) -> HttpResult:
        headers = dict(headers or {})
        sent = None
        if payload is not None:
            sent = self.recorder.record(self.recorder.scrub(payload), media_type=headers.get("Content-Type", "application/octet-stream"), label=f"request:{label}")
        started = utc_now()
        t0 = time.monotonic()
        status: int | None = None
        body: Artefact | None = None
        error: str | None = None
        response_headers: dict[str, str] = {}
        content_type = ""
        recorded = b""
        try:
            with self.session.request(method, url, headers=headers, data=payload, timeout=self.timeout, stream=True, allow_redirects=False) as resp:
                status = resp.status_code
                response_headers = dict(resp.headers)
                content_type = resp.headers.get("Content-Type", "application/octet-stream")
                data = bytearray()
                for chunk in resp.iter_content(65536):
                    data += chunk
                    if len(data) > self.max_bytes:
                        raise ValueError(f"response larger than {self.max_bytes} bytes")
                recorded = self.recorder.scrub(bytes(data))
                body = self.recorder.record(recorded, media_type=content_type.split(";")[0].strip() or "application/octet-stream", label=label)
        except (requests.RequestException, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        exchange = {
            "protocol": "http",
            "method": method,
            "url": url,
            **({"request_body_sha256": sent.sha256} if sent is not None else {}),
            "started_at": started,
            "elapsed_ms": round((time.monotonic() - t0) * 1000, 1),
            "request_headers": _redact_headers(headers),
            "status": status,
            "response_headers": _redact_headers(response_headers),
            "body_sha256": body.sha256 if body else None,
            "error": error,
        }
        art = self.recorder.record_json(exchange, label=f"exchange:{label}")
        return HttpResult(status, body, art, error, content_type, recorded)


def _redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k.lower() in SENSITIVE_HEADERS else v) for k, v in sorted(headers.items())}

"""Recording: every artefact and exchange stored once, by SHA-256, with secrets scrubbed."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Any, BinaryIO, Iterable

from ..running.context import Artefact
from ..files import atomic_write
from ..safety.http import Fetched, HttpClient
from ..messages import Localized
from ..secrets import Scrubber

SENSITIVE_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(value: Any) -> bytes:
    """The one JSON serialisation used for hashing and comparing: sorted, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


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

    def open(self, digest: str) -> BinaryIO:
        return self.path(digest).open("rb")


class Recorder:
    """Stores artefacts in an :class:`ObjectStore`, every form of every secret scrubbed first."""

    def __init__(self, store: ObjectStore, secrets: Scrubber | Iterable[str] = ()) -> None:
        self.store = store
        self.scrubber = secrets if isinstance(secrets, Scrubber) else Scrubber(secrets)
        self.recorded: dict[str, Artefact] = {}
        self.listener: Callable[[Artefact], None] | None = None  # told of each new artefact (the run's events)

    def scrub(self, data: bytes) -> bytes:
        return self.scrubber.bytes(data)

    def record(self, data: bytes | str, *, media_type: str, label: str) -> Artefact:
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.keep(self.scrub(bytes(data)), media_type=media_type, label=label)

    def keep(self, data: bytes, *, media_type: str, label: str) -> Artefact:
        """Store bytes already scrubbed (:meth:`scrub`): a large body is not scanned twice."""
        digest = self.store.put(data)
        art = Artefact(digest, len(data), media_type, label)
        if digest not in self.recorded and self.listener is not None:
            self.listener(art)
        self.recorded.setdefault(digest, art)
        return art

    def record_json(self, value: Any, *, label: str) -> Artefact:
        return self.record(canonical_json(value), media_type="application/json", label=label)


class HttpResult:
    """A recorded HTTP exchange: the body artefact for checks, the exchange for the record."""

    def __init__(self, fetched: Fetched, body: Artefact | None, exchange: Artefact, data: bytes) -> None:
        self.status = fetched.status
        self.body = body
        self.data = data  # the body as recorded (secrets scrubbed)
        self.exchange = exchange
        self.error: Localized | None = fetched.error
        self.content_type = fetched.headers.get("Content-Type", "application/octet-stream")
        self.headers = dict(fetched.headers)  # as recorded in the exchange (a redirect's Location)

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


class RecordingHttp:
    """GET and POST to the vendor's software, each exchange recorded (request, answer,
    timing, what went wrong); never raises for I/O. The limits are :class:`HttpClient`'s:
    a total deadline per exchange, a size bound, no proxy, no redirect followed, loopback
    only when offline."""

    def __init__(self, recorder: Recorder, *, total: float = 30.0, read: float = 10.0, max_bytes: int = 16 * 1024 * 1024,
                 offline: bool = False) -> None:
        self.recorder = recorder
        self.client = HttpClient(total=total, read=read, max_bytes=max_bytes, offline=offline, scrub=recorder.scrubber.text)

    def get(self, url: str, *, label: str, headers: dict[str, str] | None = None) -> HttpResult:
        return self._exchange("GET", url, label=label, headers=headers)

    def post(self, url: str, *, label: str, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None) -> HttpResult:
        """POST ``body`` (recorded as an artefact of its own, secrets scrubbed)."""
        return self._exchange("POST", url, label=label, headers=dict(headers or {}, **{"Content-Type": content_type}), payload=body)

    def _exchange(self, method: str, url: str, *, label: str, headers: dict[str, str] | None, payload: bytes | None = None) -> HttpResult:
        headers = dict(headers or {})
        sent = None
        if payload is not None:
            sent = self.recorder.record(payload, media_type=headers.get("Content-Type", "application/octet-stream"), label=f"request:{label}")
        started = utc_now()
        fetched = self.client.request(method, url, headers=headers, data=payload)
        body, recorded = None, b""
        if fetched.failure is None:
            recorded = self.recorder.scrub(fetched.body)
            media_type = fetched.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip() or "application/octet-stream"
            body = self.recorder.keep(recorded, media_type=media_type, label=label)
        exchange = {
            "protocol": "http",
            "method": method,
            "url": self.recorder.scrubber.text(url),
            **({"request_body_sha256": sent.sha256} if sent is not None else {}),
            "started_at": started,
            "elapsed_ms": round(fetched.elapsed * 1000, 1),
            "request_headers": _redact_headers(headers),
            "status": fetched.status,
            "response_headers": _redact_headers(fetched.headers),
            "body_sha256": body.sha256 if body else None,
            "error": fetched.error.texts() if fetched.error is not None else None,
            **({"failure": fetched.failure} if fetched.failure else {}),
        }
        art = self.recorder.record_json(exchange, label=f"exchange:{label}")
        return HttpResult(fetched, body, art, recorded)


def _redact_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("<redacted>" if k.lower() in SENSITIVE_HEADERS else v) for k, v in sorted(headers.items())}

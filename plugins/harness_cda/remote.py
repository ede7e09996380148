"""The harness's side of the kit server (:mod:`.server`): SVRL asked of the advertised server."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time

from harness import Text, UnsafeInput, catalogue, core_version, is_loopback, parse_json

from .engine import EngineError
from .kit import COMPILER
from .local import code_fingerprint, state_path

M = catalogue(__name__)

MAX_BATCH = 128  # documents in one batch (under MAX_DOCUMENTS: a batch never evicts its own documents)
BATCH_BYTES = 24 * 1024 * 1024  # bytes of documents a client sends in one batch request
BATCH_DEADLINE = 600.0  # seconds a batch may take in all (128 documents through one stylesheet)
MAX_ANSWER = 512 * 1024 * 1024  # bytes of a batch's answer (its SVRL, base64)


class RemoteKit:
    """The harness's side: SVRL from the advertised kit server. Every exchange within a total
    deadline and a size bound, like every other network wait of the harness."""

    def __init__(self, url: str, token: str, pid: int) -> None:
        import requests

        self.url, self.token, self.pid = url, token, pid
        self.health: dict = {}
        self.session = requests.Session()  # one connection kept alive for the run
        self.session.trust_env = False
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    @classmethod
    def find(cls) -> "RemoteKit | None":
        """The advertised server, when it answers and is of this harness; None otherwise."""
        return cls.look()[0]

    @classmethod
    def look(cls) -> "tuple[RemoteKit | None, str]":
        """(the advertised server of this harness, "") or (None, why): "none" (nothing
        advertised, or it does not answer) or "other" (another version or code of the harness)."""
        try:
            said = json.loads(state_path().read_text(encoding="utf-8"))
            if said.get("version") != core_version() or said.get("compiler") != COMPILER or said.get("code") != code_fingerprint() \
                    or not is_loopback(str(said["url"])):
                return None, "other"
            remote = cls(str(said["url"]), str(said["token"]), int(said.get("pid", 0)))
            status, health = remote._exchange("GET", "health", None, deadline=3.0)
            remote.health = health if isinstance(health, dict) else {}
            if status != 200 or health.get("version") != core_version() or health.get("compiler") != COMPILER or health.get("code") != code_fingerprint():
                return None, "other"
            return remote, ""
        except (OSError, ValueError, KeyError, TypeError, ServerGone):
            return None, "none"

    def _exchange(self, method: str, path: str, body: dict | None, *, deadline: float) -> tuple[int, dict]:
        """(status, JSON answer) within ``deadline`` seconds in all and :data:`MAX_ANSWER` bytes;
        :class:`ServerGone` otherwise."""
        import requests

        started = time.monotonic()
        try:
            with self.session.request(method, self.url + path, data=json.dumps(body).encode() if body is not None else None, stream=True,
                                      timeout=(2, deadline)) as res:
                chunks, size = [], 0
                for chunk in res.iter_content(1 << 20):
                    size += len(chunk)
                    if size > MAX_ANSWER or time.monotonic() - started > deadline:
                        raise ServerGone("answer too large or too slow")
                    chunks.append(chunk)
                body = b"".join(chunks)
                if res.status_code != 200 and not body.lstrip().startswith(b"{"):  # the services kit's own refusal (413): a text
                    return res.status_code, {"text": body[:300].decode("utf-8", "replace").strip()}
                return res.status_code, parse_json(body, source="kit server", max_bytes=MAX_ANSWER)
        except (requests.RequestException, UnsafeInput) as exc:
            raise ServerGone(type(exc).__name__) from None

    def judge(self, kit: str, name: str, data: bytes, blobs: bool = True) -> dict:
        """One document judged by the server, with its recorded artefacts: as a batch worker
        answers (``{"summary", "blobs"}``, or ``{"error"}`` when it could not be judged).
        :class:`ServerGone` when the server could not be asked."""
        status, answer = self._exchange("POST", "judge", {"kit": kit, "name": name, "document": base64.b64encode(data).decode("ascii"),
                                                          "blobs": blobs}, deadline=BATCH_DEADLINE)
        if status in (400, 413, 422) and isinstance(answer, dict):  # this document refused (too large, unreadable): the others go on
            error = answer.get("error")
            return {"error": error if isinstance(error, dict) else M("remote.refused", status=status, text=str(answer.get("text", ""))).texts()}
        if status != 200 or not isinstance(answer, dict):
            raise ServerGone(f"HTTP {status}")
        try:
            blobs = {str(k): base64.b64decode(v) for k, v in dict(answer.get("blobs") or {}).items()}
            summary = dict(answer["judged"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise ServerGone("unreadable answer") from None
        if any(hashlib.sha256(v).hexdigest() != k for k, v in blobs.items()):
            raise ServerGone("artefact digest")
        return {"summary": summary, "blobs": blobs}

    def run_many(self, xslt_path: str, texts: list[bytes], documents: dict[str, str] | None = None) -> list[bytes | EngineError]:
        """The SVRL of each document (or the :class:`EngineError` it caused), in order: batches
        of at most :data:`MAX_BATCH` documents, each sent by its SHA-256 first and its bytes only
        when the server lacks it. :class:`ServerGone` when the server could not be asked."""
        out: list[bytes | EngineError] = []
        for start in range(0, len(texts), MAX_BATCH):
            chunk = texts[start:start + MAX_BATCH]
            digests = [hashlib.sha256(t).hexdigest() for t in chunk]
            send: set[str] = set()
            for _ in range(len(chunk) + 2):  # digests only; then with what the server lacks, as much as a request carries
                items, size = [], 0
                for digest, text in zip(digests, chunk):
                    item = {"sha256": digest}
                    if digest in send and (size == 0 or size + len(text) * 4 // 3 <= BATCH_BYTES):  # at least one a request
                        item["document"] = base64.b64encode(text).decode("ascii")
                        size += len(item["document"])
                        send.discard(digest)
                    items.append(item)
                status, answer = self._exchange("POST", "svrl-batch", {"xslt": xslt_path, "documents": dict(documents or {}), "items": items},
                                                deadline=BATCH_DEADLINE)
                if status == 409:
                    send |= {str(d) for d in ((answer.get("missing") or []) if isinstance(answer, dict) else [])}
                    continue
                if status != 200:
                    raise ServerGone(f"HTTP {status}")
                try:
                    results = list(answer["results"])
                    out += [base64.b64decode(r["svrl"]) if "svrl" in r else EngineError(Text.of(r["error"])) for r in results]
                except (KeyError, TypeError, binascii.Error):
                    raise ServerGone("unreadable answer") from None
                if len(results) != len(chunk):
                    raise ServerGone("answers missing")
                break
            else:
                raise ServerGone("documents evicted")
        return out


class ServerGone(Exception):
    """The kit server could not be asked (gone, refused, another harness): run in process."""

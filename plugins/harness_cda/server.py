"""The kit server: the kit's compiled stylesheets kept in memory between runs (``harness kit serve``).

Every run of the CDA kit scenarios compiles, in each process, every stylesheet it runs (SaxonC-HE
cannot save a compiled stylesheet: exporting one needs Saxon-EE), which costs most of a warm run.
A kit server is a long-lived local process that compiles each stylesheet once and answers the
SVRL of documents, one batch per stylesheet (each document sent once, then named by its
SHA-256); the harness's runs use it when it advertises itself and is of the same
harness (version and compiler fingerprint), and run in process otherwise, with the same verdicts.

- **Advertised** by a state file, ``$XDG_CACHE_HOME/harness/kit-server.json`` (or
  ``HARNESS_KIT_SERVER_STATE``), readable by its user only: its address, a token, its process,
  the harness version and compiler fingerprint. Removed when it stops.
- **Loopback only**: it listens on 127.0.0.1 and answers nothing to another address; every request
  but ``/health`` carries the token (compared in constant time).
- **Runs only the harness's own stylesheets**: an ``xslt`` outside the kit cache
  (``…/harness/cda-kit/``) is refused, as is a parameter file that is not a ``.xml`` file; the
  document goes through the hardened parser before Saxon sees it.
- **Notices change**: a stylesheet or value-set file whose size or modification time changed is
  compiled again; a changed kit or harness compiles to other files (the cache's keys), and a
  harness of another version or compiler does not use it at all.
- **Bounded**: at most ``max_stylesheets`` compiled stylesheets and 256 parsed documents (256 MiB;
  the least recently used dropped), the first 32 exchanges kept (the others counted), a request
  body of at most 80 MiB read within 60 s, 16 connections; transformations one at a time (one
  Saxon processor).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

from harness import (ConnectionBounds, HttpService, Request, Response, Text, UnsafeInput, atomic_write, catalogue, core_version, is_loopback,
                     parse_json, parse_xml)

from .engine import EngineError, Saxon
from .kit import COMPILER, cache_root

M = catalogue(__name__)
MAX_BODY = 80 * 1024 * 1024  # a document of 64 MiB, base64, and its request
MAX_DOCUMENTS = 256  # parsed documents kept (least recently used dropped) ...
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024  # ... and their bytes at most
MAX_BATCH = 128  # documents in one batch (under MAX_DOCUMENTS: a batch never evicts its own documents)
BATCH_BYTES = 24 * 1024 * 1024  # bytes of documents a client sends in one batch request
BATCH_DEADLINE = 600.0  # seconds a batch may take in all (128 documents through one stylesheet)
MAX_ANSWER = 512 * 1024 * 1024  # bytes of a batch's answer (its SVRL, base64)


def state_path() -> Path:
    return Path(os.environ.get("HARNESS_KIT_SERVER_STATE") or cache_root() / "kit-server.json")


class KitServer(HttpService):
    name = "cda-kit-server"
    server_header = "harness-kit-server"
    bounds = ConnectionBounds(max_connections=16, deadline=600.0, idle=30.0)
    max_request = MAX_BODY
    request_deadline = 60.0
    max_recorded = 32  # exchanges kept with their bodies (documents, SVRL): a long-lived server counts the rest, keeps none

    def __init__(self, *, port: int = 0, max_stylesheets: int = 256) -> None:
        super().__init__(host="127.0.0.1", port=port)
        self.token = secrets.token_urlsafe(32)
        self.saxon = Saxon(max_stylesheets=max_stylesheets)
        self.kit_cache = (cache_root() / "cda-kit").resolve()
        self.served = 0
        self._nodes: OrderedDict[bytes, object] = OrderedDict()  # parsed documents, by SHA-256
        self._node_bytes: dict[bytes, int] = {}
        self._lock = threading.Lock()
        self._state: Path | None = None

    # -- advertising --------------------------------------------------------------------

    def advertise(self, path: Path | None = None) -> Path:
        """Write the state file (its user only) the harness's runs find the server by."""
        path = path or state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        said = {"url": self.base_url, "token": self.token, "pid": os.getpid(), "version": core_version(), "compiler": COMPILER}
        old = os.umask(0o077)
        try:
            atomic_write(path, json.dumps(said).encode())
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._state = path
        return path

    def stop(self) -> None:
        if self._state is not None:
            try:
                if json.loads(self._state.read_text(encoding="utf-8")).get("token") == self.token:
                    self._state.unlink()
            except (OSError, ValueError):
                pass
        super().stop()

    # -- answering ----------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if not is_loopback("http://" + request.connection.peer.rsplit(":", 1)[0].strip("[]") + "/"):
            return Response.json(403, {"error": "loopback only"})
        if request.path == "/health":
            return Response.json(200, {"version": core_version(), "compiler": COMPILER, "pid": os.getpid(),
                                       "stylesheets": self.saxon.stylesheets, "compiled": self.saxon.compiled, "served": self.served})
        if not hmac.compare_digest(request.header("Authorization").encode(), f"Bearer {self.token}".encode()):
            return Response.json(401, {"error": "token"})
        if request.path != "/svrl-batch" or request.method != "POST":
            return Response.json(404, {"error": "POST /svrl-batch"})
        try:
            asked = parse_json(request.body, source="kit-server request", max_bytes=MAX_BODY)
            xslt = Path(str(asked["xslt"])).resolve()
            documents = {str(k): str(v) for k, v in dict(asked.get("documents") or {}).items()}
            items = [(bytes.fromhex(str(i["sha256"])), base64.b64decode(str(i["document"]), validate=True) if i.get("document") else None)
                     for i in list(asked["items"])[:MAX_BATCH]]
        except (UnsafeInput, KeyError, TypeError, ValueError, binascii.Error) as exc:
            return Response.json(400, {"error": M("server.request", reason=type(exc).__name__).texts()})
        if not xslt.is_relative_to(self.kit_cache) or xslt.suffix != ".xsl" or not xslt.is_file():
            return Response.json(403, {"error": M("server.xslt", path=str(xslt)).texts()})
        if any(not p.endswith(".xml") or not Path(p).is_file() for p in documents.values()):
            return Response.json(403, {"error": M("server.documents").texts()})
        return self._batch(str(xslt), documents, items)

    def _batch(self, xslt: str, documents: dict[str, str], items: list[tuple[bytes, bytes | None]]) -> Response:
        """Many documents through one stylesheet: each named by its SHA-256, its bytes sent only
        when the server does not hold it (409 names those it lacks; nothing is run then)."""
        with self._lock:
            if any(data is not None and hashlib.sha256(data).digest() != digest for digest, data in items):
                return Response.json(400, {"error": M("server.request", reason="sha256").texts()})
            refused: dict[bytes, dict] = {}
            for digest, data in items:  # what was sent is kept first, so that a 409 still makes progress
                if data is not None and digest not in self._nodes:
                    try:
                        self._node(digest, data)
                    except (UnsafeInput, EngineError) as exc:
                        refused[digest] = exc.messages
            missing = sorted({d.hex() for d, _ in items if d not in self._nodes and d not in refused})
            if missing:
                return Response.json(409, {"missing": missing})
            results = []
            for digest, _ in items:
                if digest in refused:
                    results.append({"error": refused[digest]})
                    continue
                self._nodes.move_to_end(digest)
                try:
                    svrl = self.saxon.run(xslt, self._nodes[digest], documents)
                    results.append({"svrl": base64.b64encode(svrl).decode("ascii")})
                    self.served += 1
                except (UnsafeInput, EngineError) as exc:
                    results.append({"error": exc.messages})
        return Response.json(200, {"results": results})

    def _node(self, digest: bytes, data: bytes) -> None:
        """Keep the document's Saxon tree (the hardened parser first, as in process), while the
        same bytes come back: every profile and volet asks for the same documents."""
        parse_xml(data, source="document")
        self._nodes[digest] = self.saxon.parse(data)
        self._node_bytes[digest] = len(data)
        while len(self._nodes) > 1 and (len(self._nodes) > MAX_DOCUMENTS or sum(self._node_bytes.values()) > MAX_DOCUMENT_BYTES):
            old = next(iter(self._nodes))
            del self._nodes[old], self._node_bytes[old]


class RemoteKit:
    """The harness's side: SVRL from the advertised kit server. Every exchange within a total
    deadline and a size bound, like every other network wait of the harness."""

    def __init__(self, url: str, token: str, pid: int) -> None:
        import requests

        self.url, self.token, self.pid = url, token, pid
        self.session = requests.Session()  # one connection kept alive for the run
        self.session.trust_env = False
        self.session.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})

    @classmethod
    def find(cls) -> "RemoteKit | None":
        """The advertised server, when it answers and is of this harness; None otherwise."""
        try:
            said = json.loads(state_path().read_text(encoding="utf-8"))
            if said.get("version") != core_version() or said.get("compiler") != COMPILER or not is_loopback(str(said["url"])):
                return None
            remote = cls(str(said["url"]), str(said["token"]), int(said.get("pid", 0)))
            status, health = remote._exchange("GET", "health", None, deadline=3.0)
            if status != 200 or health.get("version") != core_version() or health.get("compiler") != COMPILER:
                return None
            return remote
        except (OSError, ValueError, KeyError, TypeError, ServerGone):
            return None

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
                return res.status_code, parse_json(b"".join(chunks), source="kit server", max_bytes=MAX_ANSWER)
        except (requests.RequestException, UnsafeInput) as exc:
            raise ServerGone(type(exc).__name__) from None

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


def serve(port: int, max_stylesheets: int) -> KitServer:
    server = KitServer(port=port, max_stylesheets=max_stylesheets).start()
    server.advertise()
    return server


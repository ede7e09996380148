"""The kit server: the kit's compiled stylesheets kept in memory between runs (``harness kit serve``).

Every run of the CDA kit scenarios compiles, in each process, every stylesheet it runs (SaxonC-HE
cannot save a compiled stylesheet: exporting one needs Saxon-EE), which costs most of a warm run.
A kit server is a long-lived local process that compiles each stylesheet once and answers
(``POST /svrl-batch``) the SVRL of documents, one batch per stylesheet (each document sent once,
then named by its SHA-256), and (``POST /judge``) one document's whole verdict as the ``cda-kit-*``
scenarios give it (:mod:`.judge`; the ``harness-kit-check`` command, :mod:`.quick`). The
harness's runs use it when it advertises itself and is of the same harness (version, compiler
and code fingerprints), and run in process otherwise, with the same verdicts.

- **Advertised** by a state file, ``$XDG_CACHE_HOME/harness/kit-server.json`` (or
  ``HARNESS_KIT_SERVER_STATE``), readable by its user only: its address, a token, its process,
  the harness version, compiler and code fingerprints. Removed when it stops.
- **Loopback only**: it listens on 127.0.0.1 and answers nothing to another address; every request
  but ``/health`` carries the token (compared in constant time).
- **Runs only the harness's own stylesheets**: an ``xslt`` outside the kit cache
  (``…/harness/cda-kit/``) is refused, as is a parameter file that is not a ``.xml`` file; the
  document goes through the hardened parser before Saxon sees it.
- **Notices change**: a stylesheet or value-set file whose size or modification time changed is
  compiled again; a changed kit or harness compiles to other files (the cache's keys); a kit
  folder whose files changed (path, size, modification time: :func:`kit_stamp`, 10 ms) is read
  again before its next document is judged; a harness of another version, compiler or code
  (any module of this plugin) does not use it at all.
- **Bounded**: at most ``max_stylesheets`` compiled stylesheets and 256 parsed documents (256 MiB;
  the least recently used dropped), the first 32 exchanges kept (the others counted), a request
  body of at most 96 MiB read within 60 s, 16 connections; transformations one at a time per
  Saxon processor (one per process). No exchange is kept (a request carries tens of MiB of
  documents; nothing reads them back): they are counted.
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
from concurrent.futures import wait
from collections import OrderedDict
from pathlib import Path

from harness import (ConnectionBounds, HttpService, Request, Response, UnsafeInput, atomic_write, catalogue, core_version, is_loopback,
                     parse_json, parse_xml)

from .engine import EngineError, shared_saxon
from .kit import COMPILER, cache_root
from .local import KIT_PARTS, code_fingerprint, state_path
from .remote import BATCH_DEADLINE, MAX_BATCH

M = catalogue(__name__)
MAX_BODY = 96 * 1024 * 1024  # a document of 64 MiB (85.4 MiB in base64) and its request
MAX_DOCUMENTS = 256  # parsed documents kept (least recently used dropped) ...
MAX_DOCUMENT_BYTES = 256 * 1024 * 1024  # ... and their bytes at most


CODE = code_fingerprint()


def kit_stamp(root: Path) -> str:
    """What says a kit's files changed under a long-lived server: each file's path, size and
    modification time (10 ms for the 2,167 files of the official kit, where hashing them all
    takes 85 ms)."""
    digest = hashlib.sha256()
    for part in KIT_PARTS:
        for folder, dirs, files in os.walk(root / part):
            dirs.sort()
            for name in sorted(files):
                try:
                    st = os.stat(os.path.join(folder, name))
                except OSError:
                    continue
                digest.update(f"{os.path.relpath(os.path.join(folder, name), root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class KitServer(HttpService):
    name = "cda-kit-server"
    server_header = "harness-kit-server"
    bounds = ConnectionBounds(max_connections=16, deadline=600.0, idle=30.0)
    max_request = MAX_BODY
    request_deadline = 60.0

    def __init__(self, *, port: int = 0, max_stylesheets: int = 256, workers: int = 1, recorded: int = 0) -> None:
        # ``recorded``: exchanges kept with their bodies (a test reads them); a served one is
        # counted, not kept: the first batches hold every document in base64, tens of MiB
        self.max_recorded = recorded
        super().__init__(host="127.0.0.1", port=port)
        # with workers > 1, that many processes of its own: a batch's documents are shared among
        # them by their SHA-256 (each process keeps the trees of its share, and compiles each
        # stylesheet once), whole documents (/judge) go to each in turn; with 1, this process
        self.workers = workers
        self.max_stylesheets = max_stylesheets
        self._procs: list = [_executor(max_stylesheets) for _ in range(workers)] if workers > 1 else []
        self._engines: dict[int, tuple[int, int]] = {}  # process -> (stylesheets kept, compiled), as it last said
        self._turn = 0
        self.token = secrets.token_urlsafe(32)
        # with one process, its one processor: batches and judges share what it compiled; with
        # several, this process runs nothing and holds no processor
        self.saxon = None
        if not self._procs:
            self.saxon = shared_saxon()
            self.saxon.max_stylesheets = max_stylesheets
        self.kit_cache = (cache_root() / "cda-kit").resolve()
        self.served = 0
        self._trees = Trees()  # with workers == 1: the parsed documents, here
        self._lock = threading.Lock()
        self._state: Path | None = None
        self._stamps: dict[Path, tuple[float, str]] = {}  # kit folder -> (when looked at, its stamp)

    # -- advertising --------------------------------------------------------------------

    def advertise(self, path: Path | None = None) -> Path:
        """Write the state file (its user only) the harness's runs find the server by."""
        path = path or state_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        said = {"url": self.base_url, "token": self.token, "pid": os.getpid(), "version": core_version(), "compiler": COMPILER, "code": CODE}
        old = os.umask(0o077)
        try:
            atomic_write(path, json.dumps(said).encode())
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        self._state = path
        return path

    def stop(self) -> None:
        for proc in self._procs:
            proc.shutdown(wait=False, cancel_futures=True)
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
            return Response.json(200, {"version": core_version(), "compiler": COMPILER, "code": CODE, "pid": os.getpid(),
                                       "stylesheets": self.stylesheets, "compiled": self.compiled, "served": self.served,
                                       "workers": self.workers})
        if not hmac.compare_digest(request.header("Authorization").encode(), f"Bearer {self.token}".encode()):
            return Response.json(401, {"error": "token"})
        if request.path == "/judge" and request.method == "POST":
            return self._judge(request)
        if request.path != "/svrl-batch" or request.method != "POST":
            return Response.json(404, {"error": "POST /svrl-batch | /judge"})
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

    @property
    def stylesheets(self) -> int:
        """Compiled stylesheets held, by every process of the server (as each last said)."""
        return self.saxon.stylesheets if self.saxon is not None else sum(s for s, _ in self._engines.values())

    @property
    def compiled(self) -> int:
        """Stylesheets compiled since the server started, by every process (as each last said)."""
        return self.saxon.compiled if self.saxon is not None else sum(c for _, c in self._engines.values())

    def _heard(self, k: int, answer: dict) -> None:
        if "engine" in answer:
            with self._lock:
                self._engines[k] = tuple(answer["engine"])

    def _batch(self, xslt: str, documents: dict[str, str], items: list[tuple[bytes, bytes | None]]) -> Response:
        """Many documents through one stylesheet: each named by its SHA-256, its bytes sent only
        when the server does not hold it (409 names those it lacks; nothing is run then). With
        several processes, each runs its share of the documents (by their SHA-256) at once."""
        if any(data is not None and hashlib.sha256(data).digest() != digest for digest, data in items):
            return Response.json(400, {"error": M("server.request", reason="sha256").texts()})
        if not self._procs:
            with self._lock:
                said = self._trees.run(xslt, documents, items)
        else:
            shares: dict[int, list[int]] = {}
            for pos, (digest, _) in enumerate(items):
                shares.setdefault(digest[0] % len(self._procs), []).append(pos)
            try:
                futures = {k: self._submit(k, run_share, xslt, documents, [items[pos] for pos in positions])
                           for k, positions in shares.items()}
                wait(futures.values(), timeout=BATCH_DEADLINE)  # one deadline for all the shares
                answers = {k: f.result(timeout=0) for k, f in futures.items()}
                for k, answer in answers.items():
                    self._heard(k, answer)
            except Exception as exc:  # a process died (killed, the engine crashed): said, the server goes on
                return Response.json(500, {"error": M("server.worker", error=f"{type(exc).__name__}: {exc}"[:300]).texts()})
            missing = sorted({d for a in answers.values() for d in a.get("missing", [])})
            if missing:
                said = {"missing": missing}
            else:
                results: list = [None] * len(items)
                for k, positions in shares.items():
                    for pos, result in zip(positions, answers[k]["results"]):
                        results[pos] = result
                said = {"results": results, "served": sum(a.get("served", 0) for a in answers.values())}
        if "missing" in said:
            return Response.json(409, {"missing": said["missing"]})
        with self._lock:
            self.served += said.get("served", 0)
        return Response.json(200, {"results": said["results"]})

    def _submit(self, k: int, fn, *args):
        """Work for process ``k``: started again if it died (a killed process leaves its executor broken)."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self._procs[k].submit(fn, *args)
        except BrokenProcessPool:
            self._procs[k] = _executor(self.max_stylesheets)
            with self._lock:
                self._engines.pop(k, None)
            return self._procs[k].submit(fn, *args)

    def _judge(self, request: Request) -> Response:
        """One document judged whole, as the ``cda-kit-*`` scenarios judge it (:mod:`.judge`),
        with what this server compiled: the kit is named by its folder, the document sent;
        ``blobs``: the recorded artefacts too (base64), for a batch to keep."""
        try:
            asked = parse_json(request.body, source="kit-server request", max_bytes=MAX_BODY)
            kit = Path(str(asked["kit"])).resolve()
            name = str(asked["name"])
            data = base64.b64decode(str(asked["document"]), validate=True)
            blobs = bool(asked.get("blobs"))
        except (UnsafeInput, KeyError, TypeError, ValueError, binascii.Error) as exc:
            return Response.json(400, {"error": M("server.request", reason=type(exc).__name__).texts()})
        stamp = self._stamp(kit)  # its files changed: read again (and compiled again, by their keys)
        if self._procs:
            with self._lock:
                k, self._turn = self._turn % len(self._procs), self._turn + 1
            try:
                answer = self._submit(k, judge_share, str(kit), name, data, stamp).result(timeout=BATCH_DEADLINE)
                self._heard(k, answer)
            except Exception as exc:  # a worker died (killed, the engine crashed): said, the server goes on
                return Response.json(500, {"error": M("server.worker", error=f"{type(exc).__name__}: {exc}"[:300]).texts()})
        else:
            with self._lock:
                answer = judge_share(str(kit), name, data, stamp)
        if "error" in answer:
            return Response.json(422, {"error": answer["error"]})
        with self._lock:
            self.served += 1
        said = {"judged": answer["summary"]}
        if blobs:
            said["blobs"] = {k: base64.b64encode(v).decode("ascii") for k, v in answer["blobs"].items()}
        return Response.json(200, said)

    def _stamp(self, kit: Path) -> str:
        """The kit's :func:`kit_stamp`, looked at again at most once a second (10 ms each time:
        a batch sends tens of documents a second)."""
        now = time.monotonic()
        with self._lock:
            kept = self._stamps.get(kit)
        if kept is None or now - kept[0] > 1.0:
            kept = (now, kit_stamp(kit))
            with self._lock:
                self._stamps[kit] = kept
                while len(self._stamps) > 16:
                    self._stamps.pop(next(iter(self._stamps)))
        return kept[1]



class Trees:
    """The Saxon trees of the documents a process was sent, by SHA-256 (at most
    :data:`MAX_DOCUMENTS`, :data:`MAX_DOCUMENT_BYTES`; the least recently used dropped), and the
    batches run on them with this process's one processor."""

    def __init__(self) -> None:
        self.nodes: OrderedDict[bytes, object] = OrderedDict()
        self.sizes: dict[bytes, int] = {}

    def run(self, xslt: str, documents: dict[str, str], items: list[tuple[bytes, bytes | None]]) -> dict:
        """``{"missing": [hex...]}`` when some documents are neither held nor sent, else
        ``{"results": [...], "served": n}`` in the order of ``items``."""
        refused: dict[bytes, dict] = {}
        for digest, data in items:  # what was sent is kept first, so that a 409 still makes progress
            if data is not None and digest not in self.nodes:
                try:
                    self._keep(digest, data)
                except (UnsafeInput, EngineError) as exc:
                    refused[digest] = exc.messages
        missing = sorted({d.hex() for d, _ in items if d not in self.nodes and d not in refused})
        if missing:
            return {"missing": missing}
        results, served = [], 0
        saxon = shared_saxon()
        for digest, _ in items:
            if digest in refused:
                results.append({"error": refused[digest]})
                continue
            self.nodes.move_to_end(digest)
            try:
                svrl = saxon.run(xslt, self.nodes[digest], documents)
                results.append({"svrl": base64.b64encode(svrl).decode("ascii")})
                served += 1
            except (UnsafeInput, EngineError) as exc:
                results.append({"error": exc.messages})
        return {"results": results, "served": served}

    def _keep(self, digest: bytes, data: bytes) -> None:
        """The hardened parser first, as in process; then Saxon's tree, kept while the same
        bytes come back (every profile and volet asks for the same documents)."""
        parse_xml(data, source="document")
        self.nodes[digest] = shared_saxon().parse(data)
        self.sizes[digest] = len(data)
        while len(self.nodes) > 1 and (len(self.nodes) > MAX_DOCUMENTS or sum(self.sizes.values()) > MAX_DOCUMENT_BYTES):
            old = next(iter(self.nodes))
            del self.nodes[old], self.sizes[old]


_SHARE: Trees | None = None


def run_share(xslt: str, documents: dict[str, str], items: list[tuple[bytes, bytes | None]]) -> dict:
    """A server process's share of a batch (its trees kept for the next batch)."""
    global _SHARE
    if _SHARE is None:
        _SHARE = Trees()
    return {**_SHARE.run(xslt, documents, items), "engine": _engine()}


def judge_share(kit: str, name: str, data: bytes, stamp: str) -> dict:
    """A whole document judged by a server process (:func:`.batch.judge_document`)."""
    from .batch import judge_document

    return {**judge_document(kit, name, data, stamp), "engine": _engine()}


def _engine() -> tuple[int, int]:
    saxon = shared_saxon()
    return (saxon.stylesheets, saxon.compiled)


def _start_process(max_stylesheets: int) -> None:
    shared_saxon().max_stylesheets = max_stylesheets


def _executor(max_stylesheets: int):
    """One spawned process of the server (nothing of the server's state carried into it), whose
    processor keeps at most ``max_stylesheets`` compiled stylesheets."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), initializer=_start_process, initargs=(max_stylesheets,))


def serve(port: int, max_stylesheets: int, workers: int = 1) -> KitServer:
    server = KitServer(port=port, max_stylesheets=max_stylesheets, workers=workers).start()
    server.advertise()
    return server


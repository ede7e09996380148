"""The DMP simulator: an XDS.b registry and repository on loopback, over TLS with client
certificates, that records every connection and every exchange.

One thread per connection (``http.server.ThreadingHTTPServer``, as the demo vendor); the
TLS handshake is done in that thread, so a failed one (no certificate accepted, an
expired one, an unknown authority) is recorded with its reason and never stops the
server. Each request is read whole within bounds (size, time), recorded raw, then parsed
(MTOM, SOAP, metadata, documents, VIHF) and answered: the transaction's response, a
registry error list, or a SOAP fault. Nothing a client sends makes it crash: an unexpected
error is answered as a Receiver fault and recorded.

Collectors find the running simulator of their process through :func:`running`.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from lxml import etree

from harness import BoundedServer, ConnectionBounds, catalogue

from . import pki, soap, vihf
from .registry import Outcome, Registry

M = catalogue(__name__)

ACTIONS = {
    "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b": "ITI-41",
    "urn:ihe:iti:2007:RegistryStoredQuery": "ITI-18",
    "urn:ihe:iti:2007:RetrieveDocumentSet": "ITI-43",
    "urn:ihe:iti:2010:UpdateDocumentSet": "ITI-57",
}
BODIES = {"ProvideAndRegisterDocumentSetRequest": "ITI-41", "AdhocQueryRequest": "ITI-18", "RetrieveDocumentSetRequest": "ITI-43",
          "SubmitObjectsRequest": "ITI-57"}
RESPONSE_ACTIONS = {t: a + "Response" for a, t in ACTIONS.items()}
MAX_REQUEST = 64 * 1024 * 1024
MAX_DOCUMENT = 32 * 1024 * 1024
READ_TIMEOUT = 10.0  # seconds without a byte from the client
REQUEST_DEADLINE = 60.0  # seconds to read one request in all
KEPT_OF_REFUSED = 64 * 1024  # bytes kept of a request refused for its size
_RUNNING: dict[str, "DmpSimulator"] = {}
_RUNNING_LOCK = threading.Lock()


_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")


def _chunk_size(line: bytes) -> int | None:
    """A chunk's size (RFC 9112 7.1: hexadecimal digits, then extensions after ";"), or None:
    a sign, a space inside, no digit or an absurd length is no size."""
    digits = line.split(b";")[0].strip(b" \t\r\n")
    return int(digits, 16) if _HEX.fullmatch(digits) else None


def running(base_url: str) -> "DmpSimulator | None":
    with _RUNNING_LOCK:
        return _RUNNING.get(base_url.rstrip("/") + "/")


@dataclass
class Connection:
    n: int
    at: str
    peer: str
    accepted: bool
    certificate: dict | None = None  # the client's, described
    error: str = ""  # why the handshake failed (OpenSSL's words)
    verify_code: int | None = None


@dataclass
class Exchange:
    n: int
    at: str
    connection: int
    path: str
    content_type: str
    request: bytes
    complete: bool  # False: the request was refused before it was read whole
    transaction: str = ""
    action: str = ""
    http_status: int = 200
    response_type: str = ""
    response: bytes = b""
    outcome: str = ""  # Success, PartialSuccess, Failure, Fault
    errors: list[tuple[str, str]] = field(default_factory=list)
    documents: list[tuple[str, bytes]] = field(default_factory=list)
    metadata: bytes | None = None
    assertion: bytes | None = None
    facts: dict = field(default_factory=dict)


class Journal:
    """Every connection and exchange, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: list[Connection] = []
        self.exchanges: list[Exchange] = []
        self.changed = threading.Condition(self.lock)

    def connection(self, **kw) -> Connection:
        with self.lock:
            c = Connection(len(self.connections) + 1, _now(), **kw)
            self.connections.append(c)
            self.changed.notify_all()
            return c

    def exchange(self, **kw) -> Exchange:
        with self.lock:
            e = Exchange(len(self.exchanges) + 1, _now(), **kw)
            self.exchanges.append(e)
            return e

    def done(self) -> None:
        with self.lock:
            self.changed.notify_all()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Server(BoundedServer, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    # a client's connections: 32 at once, 5 minutes each in all (a keep-alive session of
    # several transactions), READ_TIMEOUT without a byte
    connection_bounds = ConnectionBounds(max_connections=32, deadline=300.0, idle=READ_TIMEOUT)

    def __init__(self, sim: "DmpSimulator", port: int) -> None:
        self.sim = sim
        super().__init__(("127.0.0.1", port), _Handler)

    def finish_request(self, request, client_address):
        """The TLS handshake, in the connection's thread; a failed one is recorded."""
        request.settimeout(READ_TIMEOUT)
        peer = f"{client_address[0]}:{client_address[1]}"
        try:
            tls = self.sim.context.wrap_socket(request, server_side=True)
        except ssl.SSLCertVerificationError as exc:
            self.sim.journal.connection(peer=peer, accepted=False, error=exc.verify_message or str(exc), verify_code=exc.verify_code)
            return
        except (ssl.SSLError, OSError) as exc:
            self.sim.journal.connection(peer=peer, accepted=False, error=getattr(exc, "reason", None) or str(exc) or type(exc).__name__)
            return
        der = tls.getpeercert(binary_form=True)
        conn = self.sim.journal.connection(peer=peer, accepted=True, certificate=pki.describe(der) if der else None)
        self.RequestHandlerClass(tls, client_address, self, conn)

    def handle_error(self, request, client_address):  # recorded per exchange; nothing printed
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "HarnessDMPSimulator/1"

    def __init__(self, request, client_address, server, conn: Connection) -> None:
        self.conn = conn
        super().__init__(request, client_address, server)

    def log_message(self, *args) -> None:  # the journal is the log
        pass

    def _read(self) -> tuple[bytes, str | None]:
        """The request body and None, or its first bytes and why it stops there: "too-large"
        (over the size bound) or "deadline" (the request's total deadline: a body trickled a
        byte a second is cut)."""
        deadline = time.monotonic() + REQUEST_DEADLINE
        limit = self.server.sim.max_request
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out, total = [], 0
            while True:
                line = self._read_line(deadline)
                size = _chunk_size(line)
                if size is None:
                    raise ValueError(f"chunk size {line[:20]!r}")
                if size == 0:
                    self._read_line(deadline)
                    return b"".join(out), None
                total += size
                if total > limit:
                    return b"".join(out)[:KEPT_OF_REFUSED], "too-large"
                chunk, why = self._read_exact(size, deadline)
                out.append(chunk)
                if why is not None:
                    return b"".join(out)[:KEPT_OF_REFUSED], why
                self._read_line(deadline)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise ValueError("Content-Length") from None
        if length < 0:
            raise ValueError("Content-Length")
        if length > limit:
            return self._read_exact(min(length, KEPT_OF_REFUSED), deadline)[0], "too-large"
        return self._read_exact(length, deadline)

    def _read_exact(self, size: int, deadline: float) -> tuple[bytes, str | None]:
        """``size`` bytes, or what came before the deadline or the end: each read takes what
        has arrived (``read1``), so a trickle comes back to the deadline check."""
        chunks, left = [], size
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b"".join(chunks), "deadline"
            self.connection.settimeout(min(READ_TIMEOUT, remaining))
            try:
                chunk = self.rfile.read1(min(left, 1 << 20))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    return b"".join(chunks), "deadline"
                raise
            if not chunk:
                raise ConnectionError("the client closed the connection mid-body")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), None

    def _read_line(self, deadline: float) -> bytes:
        """A chunk-size line (at most 100 bytes), within the request's deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request deadline")
        self.connection.settimeout(min(READ_TIMEOUT, remaining))
        return self.rfile.readline(100)

    def do_GET(self) -> None:
        self._send(405, "text/plain", b"POST only\n", close=True)

    def do_POST(self) -> None:
        sim = self.server.sim
        content_type = self.headers.get("Content-Type") or ""
        try:
            body, cut = self._read()
        except (OSError, ValueError) as exc:
            ex = sim.journal.exchange(connection=self.conn.n, path=self.path, content_type=content_type, request=b"", complete=False)
            self._answer(ex, soap.SoapError("Sender", "BrokenRequest", M("sim.read_failed", error=str(exc) or type(exc).__name__)), close=True)
            return
        ex = sim.journal.exchange(connection=self.conn.n, path=self.path, content_type=content_type, request=body, complete=cut is None)
        if cut == "too-large":
            self._answer(ex, soap.SoapError("Sender", "RequestTooLarge", M("sim.too_large", limit=sim.max_request)), status=413, close=True)
            return
        if cut == "deadline":
            self._answer(ex, soap.SoapError("Sender", "RequestTimeout", M("sim.too_slow", seconds=f"{REQUEST_DEADLINE:g}")), status=408, close=True)
            return
        try:
            outcome = sim.handle(ex)
        except soap.SoapError as exc:
            self._answer(ex, exc)
            return
        except Exception as exc:  # never a crash: an unexpected error is the Receiver's fault, recorded
            self._answer(ex, soap.SoapError("Receiver", "InternalError", M("sim.internal", error=f"{type(exc).__name__}: {exc}")))
            return
        env = soap.envelope(RESPONSE_ACTIONS.get(ex.transaction, ""), outcome.body, relates_to=ex.facts.get("message_id", ""))
        content_type, data = soap.package(env, outcome.attachments)
        ex.outcome, ex.errors = outcome.status, outcome.errors
        ex.facts.update(outcome.facts)
        ex.response_type, ex.response = content_type, data
        self._send(200, content_type, data)
        sim.journal.done()

    def _answer(self, ex: Exchange, exc: soap.SoapError, status: int | None = None, close: bool = False) -> None:
        env = soap.fault(exc.code, exc.subcode, exc.reason.render("fr"), ex.facts.get("message_id", ""))
        data = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
        ex.outcome, ex.errors = "Fault", [(exc.subcode, exc.reason.render("fr"))]
        ex.http_status = status or (400 if exc.code in ("Sender", "VersionMismatch") else 500)
        ex.response_type, ex.response = "application/soap+xml; charset=UTF-8", data
        self._send(ex.http_status, ex.response_type, data, close=close)
        self.server.sim.journal.done()

    def _send(self, status: int, content_type: str, data: bytes, close: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client left: what it sent is recorded


class DmpSimulator:
    """The simulator: its PKI, its TLS server, its registry, its journal."""

    def __init__(self, *, port: int = 0, credentials: Path | None = None, trust: list[Path] = (), refuse: bool = False,
                 max_request: int = MAX_REQUEST, max_document: int = MAX_DOCUMENT, patients: tuple[str, ...] = ()) -> None:
        self.max_request = max_request
        self.refuse = refuse
        # the patients it knows: the test INS of the DMP platform (DMP-REG-01), and those the
        # target declares (``[services.dmp] patients``, as CX: ``ID^^^&OID&ISO``)
        self.registry = Registry(max_document, patients=patients)
        self.journal = Journal()
        self.ca = pki.TestCA()
        self._own_folder = credentials is None
        self.credentials = Path(tempfile.mkdtemp(prefix="harness-dmp-")) if credentials is None else credentials
        server = self.ca.issue("127.0.0.1", server=True)
        self.ca.write(self.credentials, server, None)
        self._write_client_certificates()
        self.trusted: list[x509.Certificate] = [self.ca.cert] + [c for p in trust for c in x509.load_pem_x509_certificates(Path(p).read_bytes())]
        self.context = self._context()
        self.server = _Server(self, port)
        self.port = self.server.server_address[1]
        self.base_url = f"https://127.0.0.1:{self.port}/"
        self._thread: threading.Thread | None = None

    def _write_client_certificates(self) -> None:
        """The client certificates a vendor (and the demo) may present: a good one, and one
        for each case the simulator must tell apart."""
        now = dt.datetime.now(dt.timezone.utc)
        cases = {
            "client": {},
            "client-expired": {"not_before": now - dt.timedelta(days=400), "not_after": now - dt.timedelta(days=2)},
            "client-not-yet-valid": {"not_before": now + dt.timedelta(days=10), "not_after": now + dt.timedelta(days=400)},
            "client-expiring": {"not_after": now + dt.timedelta(days=5)},
        }
        key = None  # the variants share one key: they differ only in what the simulator must tell apart
        for name, validity in cases.items():
            issued = self.ca.issue("Cabinet Démo (test)", org="Éditeur Exemple SAS", key=key, **validity)
            key = issued.key
            (self.credentials / f"{name}.pem").write_bytes(pki.pem(issued.cert))
            pki.write_private(self.credentials / f"{name}.key", pki.key_pem(issued.key))
        stranger = pki.TestCA("Unknown CA")
        issued = stranger.issue("Cabinet Démo (test)", org="Éditeur Exemple SAS", key=key)
        (self.credentials / "client-unknown-ca.pem").write_bytes(pki.pem(issued.cert))
        pki.write_private(self.credentials / "client-unknown-ca.key", pki.key_pem(issued.key))

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.credentials / pki.SERVER_CERT, self.credentials / pki.SERVER_KEY)
        if self.refuse:
            # the addresses of systems that keep calling with a refused certificate are
            # blocked: every certificate fails (a trust store of an authority nobody uses)
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=pki.pem(pki.TestCA("Nobody").cert).decode())
        else:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cadata="".join(pki.pem(c).decode() for c in self.trusted))
        return ctx

    def handle(self, ex: Exchange) -> Outcome:
        req = soap.parse(ex.content_type, ex.request)
        ex.facts["message_id"] = req.message_id
        ex.action = req.action
        ex.transaction = ACTIONS.get(req.action) or BODIES.get(etree.QName(req.body).localname if req.body is not None else "", "")
        assertion = vihf.find(req.envelope)
        if assertion is not None:
            ex.assertion = etree.tostring(assertion)
        if req.body is None or not ex.transaction:
            raise soap.SoapError("Sender", "wsa:ActionNotSupported", M("sim.unknown_action", action=req.action or "-"))
        request = None
        if ex.transaction in ("ITI-41", "ITI-57"):
            from harness_xds import ebrim

            request = ebrim.find_request(req.body)
            if request is not None:
                ex.metadata = etree.tostring(request)
        if assertion is None:
            raise soap.SoapError("Sender", "wsse:InvalidSecurity", M("sim.no_vihf"))
        outcome = {"ITI-41": self.registry.provide, "ITI-18": self.registry.query, "ITI-43": self.registry.retrieve,
                   "ITI-57": self.registry.update}[ex.transaction](req)
        unused = sorted(set(req.parts) - req.used)
        if unused:
            outcome.facts["unreferenced_parts"] = unused
        ex.documents = outcome.documents
        return outcome

    def start(self) -> "DmpSimulator":
        self._thread = threading.Thread(target=self.server.serve_forever, name="dmp-simulator", daemon=True)
        self._thread.start()
        with _RUNNING_LOCK:
            _RUNNING[self.base_url] = self
        return self

    def stop(self) -> None:
        with _RUNNING_LOCK:
            _RUNNING.pop(self.base_url, None)
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        if self._own_folder:
            shutil.rmtree(self.credentials, ignore_errors=True)

    def wait_quiet(self, *, after: int, quiet: float, deadline: float) -> None:
        """Until a connection came after the first ``after`` ones and none came for ``quiet``
        seconds since, or ``deadline`` (monotonic) passed: nothing heard is not quiet."""
        last = (len(self.journal.connections), len(self.journal.exchanges))
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            with self.journal.changed:
                self.journal.changed.wait(timeout=min(0.1, max(0.0, deadline - time.monotonic())))
                now = (len(self.journal.connections), len(self.journal.exchanges))
            if now != last:
                last, idle_since = now, time.monotonic()
            elif now[0] > after and time.monotonic() - idle_since >= quiet:
                return

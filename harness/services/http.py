"""The base of every HTTP(S) simulator and stand-in the harness runs on loopback.

A simulator is a subclass of :class:`HttpService` with a :meth:`~HttpService.handle` that
turns a :class:`Request` into a :class:`Response`; the base does the rest, the same way for
every one:

- **serving**: one thread per connection (``http.server.ThreadingHTTPServer``), HTTP/1.1
  keep-alive, IPv4 or IPv6; with an ``ssl.SSLContext`` the TLS handshake is done in the
  connection's thread, so a failed one is recorded with OpenSSL's reason and never stops
  the server; :meth:`~HttpService.accept` may still refuse a client once its certificate is
  known (a revoked one);
- **bounds**: connections as :class:`~harness.services.bounds.ConnectionBounds` say (how
  many, how long, how idle); a request body over :attr:`~HttpService.max_request` bytes is
  refused (413) after its first bytes are kept; a body that takes longer than
  :attr:`~HttpService.request_deadline` seconds in all is cut (408): a byte a second does
  not hold a thread;
- **records**: every connection and every exchange in a :class:`Journal`, raw bytes both
  ways, in order (at most :attr:`~HttpService.max_recorded` exchanges; more are counted);
- **no crash**: an exception in ``handle`` is answered 500 and recorded, never printed;
- **faults rehearsed**: a :class:`Response` may be no answer at all, at once (``cut``) or
  after holding the connection silent until the client gives up or ``hold`` seconds pass
  (a server that does not answer: how long the client waited is recorded), or a body cut
  short of the length it announced (``truncate``);
- **stops cleanly**: :meth:`~HttpService.stop` ends the serving thread and closes the
  socket, and raises :class:`ServiceStopError` when it could not (a failed stop is reported,
  not ignored).
"""
from __future__ import annotations

import datetime as dt
import email.message
import re
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from ..errors import HarnessError
from ..messages import catalogue
from .bounds import BoundedServer, ConnectionBounds

M = catalogue(__name__)

KEPT_OF_REFUSED = 64 * 1024  # bytes kept of a request refused for its size
_REFUSALS = {"broken": "kit.broken", "too-large": "kit.too_large", "deadline": "kit.deadline", "internal": "kit.internal"}
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_RUNNING: dict[str, "HttpService"] = {}  # base URL: the service started there (HttpService.running)
_RUNNING_LOCK = threading.Lock()


class ServiceStopError(HarnessError):
    """A service that did not stop: its thread still serves, or its socket did not close."""


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def chunk_size(line: bytes) -> int | None:
    """A chunk's size (RFC 9112 7.1: hexadecimal digits, then extensions after ";"), or None:
    a sign, a space inside, no digit or an absurd length is no size."""
    digits = line.split(b";")[0].strip(b" \t\r\n")
    return int(digits, 16) if _HEX.fullmatch(digits) else None


@dataclass
class Connection:
    n: int
    at: str
    peer: str
    accepted: bool = True
    certificate: dict | None = None  # the client's (TLS), described
    error: str = ""  # why it was refused (OpenSSL's words, or the service's)
    verify_code: int | None = None  # OpenSSL's verification code (X509_V_ERR_*)
    revocation: dict | None = None  # what the revocation check found, when one ran


@dataclass
class Exchange:
    n: int
    at: str
    connection: int
    path: str
    content_type: str
    request: bytes
    complete: bool  # False: the request was refused before it was read whole
    method: str = "POST"
    http_status: int = 0
    response_type: str = ""
    response: bytes = b""
    error: str = ""  # what went wrong on the service's side (handle raised)
    facts: dict = field(default_factory=dict)


class Journal:
    """Every connection and exchange, in order; ``changed`` is notified at each."""

    def __init__(self, exchange_type: type = Exchange, max_recorded: int = 100_000) -> None:
        self.lock = threading.Lock()
        self.connections: list[Connection] = []
        self.exchanges: list[Any] = []
        self.dropped = 0  # exchanges served but not kept (over max_recorded)
        self.changed = threading.Condition(self.lock)
        self._type = exchange_type
        self._max = max_recorded

    def connection(self, at: str | None = None, **kw: Any) -> Connection:
        with self.lock:
            c = Connection(len(self.connections) + 1, at or utc_now(), **kw)
            if len(self.connections) < self._max:
                self.connections.append(c)
            self.changed.notify_all()
            return c

    def exchange(self, **kw: Any) -> Any:
        with self.lock:
            e = self._type(len(self.exchanges) + self.dropped + 1, utc_now(), **kw)
            if len(self.exchanges) < self._max:
                self.exchanges.append(e)
            else:
                self.dropped += 1
            return e

    def done(self) -> None:
        with self.lock:
            self.changed.notify_all()


@dataclass
class Request:
    """One request as the service's ``handle`` sees it (read whole, within bounds)."""

    method: str
    target: str  # as sent: path and query
    headers: email.message.Message
    body: bytes
    connection: Connection
    exchange: Any
    peer_certificate: bytes | None = None  # DER, over TLS with a client certificate

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name) or default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False  # the connection ends after this answer
    cut: bool = False  # no answer at all: the connection is shut down (a fault rehearsed)
    hold: float = 0.0  # no answer, the connection held silent until the client leaves or this many seconds pass, then shut down
    truncate: int | None = None  # the whole body's length announced, only this many bytes sent, then the connection closed

    @classmethod
    def json(cls, status: int, value: Any, content_type: str = "application/json", **kw: Any) -> "Response":
        import json

        return cls(status, json.dumps(value, ensure_ascii=False).encode("utf-8"), content_type, **kw)


class _Server(BoundedServer, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64
    service: "HttpService"

    def finish_request(self, request: Any, client_address: Any) -> None:
        self.service._connect(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # what matters is in the journal; nothing is printed


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def __init__(self, request: Any, client_address: Any, server: _Server, conn: Connection, peer_der: bytes | None) -> None:
        self.conn = conn
        self.peer_der = peer_der
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        # an answer's head and body leave in two writes: without this, a kept-alive client's
        # delayed acknowledgement holds the body back (Nagle), some 40 ms per exchange
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    @property
    def server_version(self) -> str:  # type: ignore[override]
        return self.server.service.server_header

    sys_version = ""

    def log_message(self, *args: Any) -> None:  # the journal is the log
        pass

    # -- reading, bounded ---------------------------------------------------------------

    def _read(self, limit: int, deadline: float) -> tuple[bytes, str | None]:
        """The body and None, or its first bytes and why it stops there: "too-large" or
        "deadline"."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out, total = [], 0
            while True:
                size = chunk_size(self._read_line(deadline))
                if size is None:
                    raise ValueError("chunk size")
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
        """``size`` bytes, or what came before the deadline: each read takes what has arrived
        (``read1``), so a trickle comes back to the deadline check."""
        idle = self.server.connection_bounds.idle
        chunks, left = [], size
        while left:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return b"".join(chunks), "deadline"
            self.connection.settimeout(min(idle, remaining))
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
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request deadline")
        self.connection.settimeout(min(self.server.connection_bounds.idle, remaining))
        return self.rfile.readline(100)

    # -- one exchange ---------------------------------------------------------------------

    def _serve(self) -> None:
        service = self.server.service
        content_type = self.headers.get("Content-Type") or ""
        deadline = time.monotonic() + service.request_deadline
        record = dict(connection=self.conn.n, path=self.path, content_type=content_type, method=self.command)
        try:
            body, cut = self._read(service.max_request, deadline)
        except (OSError, ValueError) as exc:
            ex = service.journal.exchange(request=b"", complete=False, **record)
            self._answer(ex, service.refusal(ex, 400, "broken", str(exc) or type(exc).__name__), close=True)
            return
        ex = service.journal.exchange(request=body, complete=cut is None, **record)
        if cut == "too-large":
            self._answer(ex, service.refusal(ex, 413, "too-large", str(service.max_request)), close=True)
            return
        if cut == "deadline":
            self._answer(ex, service.refusal(ex, 408, "deadline", f"{service.request_deadline:g}"), close=True)
            return
        request = Request(self.command, self.path, self.headers, body, self.conn, ex, self.peer_der)
        try:
            response = service.handle(request)
        except Exception as exc:  # never a crash: the service's failure, answered and recorded
            ex.error = f"{type(exc).__name__}: {exc}"
            response = service.refusal(ex, 500, "internal", ex.error)
        self._answer(ex, response)

    def _hold(self, ex: Any, seconds: float) -> None:
        """Say nothing until the client leaves, the service stops or ``seconds`` (within the
        connection's deadline) pass; recorded: how long, and who ended the wait."""
        started = time.monotonic()
        until = started + min(seconds, self.server.connection_bounds.deadline)
        left = False
        while not left and time.monotonic() < until and getattr(self.server, "_serving", None) is not None:
            ready, _, _ = select.select([self.connection], [], [], min(0.1, max(0.0, until - time.monotonic())))
            if not ready:
                continue
            self.connection.settimeout(0.05)
            try:
                left = not self.connection.recv(1)  # end of stream: the client gave up (bytes sent meanwhile are ignored)
            except (TimeoutError, ssl.SSLWantReadError, BlockingIOError):
                pass
            except OSError:
                left = True
        ex.facts.update(held=round(time.monotonic() - started, 3), ended_by="client" if left else "service")

    def _answer(self, ex: Any, response: Response, close: bool = False) -> None:
        service = self.server.service
        if response.hold > 0:
            self._hold(ex, response.hold)
        if response.cut or response.hold > 0:
            ex.http_status = 0
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            service.journal.done()
            return
        sent = response.body if response.truncate is None else response.body[:response.truncate]
        ex.http_status, ex.response_type, ex.response = response.status, response.content_type, sent
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for k, v in {**service.headers, **response.headers}.items():
                self.send_header(k, v)
            if close or response.close or response.truncate is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if response.truncate is not None:
                self.close_connection = True
            if self.command != "HEAD":
                self.wfile.write(sent)
        except OSError:
            self.close_connection = True  # the client left: what it sent is recorded
        service.journal.done()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve


class HttpService:
    """A loopback HTTP(S) service: subclass it and write :meth:`handle`.

    ``tls``: a server ``ssl.SSLContext`` (its ``verify_mode`` says whether a client
    certificate is asked for); without one, plain HTTP."""

    name: ClassVar[str] = "service"  # the serving thread's name
    server_header: ClassVar[str] = "harness"
    bounds: ClassVar[ConnectionBounds] = ConnectionBounds(max_connections=32, deadline=300.0, idle=10.0)
    max_request: int = 8 * 1024 * 1024  # bytes of one request body
    request_deadline: float = 60.0  # seconds to read one request body in all
    max_recorded: ClassVar[int] = 100_000  # exchanges kept in the journal (more are counted)
    exchange_type: ClassVar[type] = Exchange
    headers: ClassVar[dict[str, str]] = {}  # sent with every answer
    stop_timeout: ClassVar[float] = 5.0

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.journal = Journal(self.exchange_type, self.max_recorded)
        server_type = type(f"{type(self).__name__}Server", (_Server,),
                           {"connection_bounds": self.bounds, "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
        self.server: _Server = server_type((host, port), _Handler)
        self.server.service = self
        self.host = host
        self.port: int = self.server.server_address[1]
        self._thread: threading.Thread | None = None

    # -- to write -------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def accept(self, connection: Connection, der: bytes | None) -> bool:
        """After a TLS handshake, with the client's certificate (DER) or None: False refuses
        the connection (say why in ``connection.error``). Plain HTTP: not called."""
        return True

    def refusal(self, exchange: Any, status: int, why: str, detail: str) -> Response:
        """The answer when the base refuses a request (``why``: broken, too-large, deadline)
        or ``handle`` failed (internal); a protocol's own error form overrides it."""
        text = M(_REFUSALS[why], detail=detail).render("en")
        return Response(status, (text + "\n").encode("utf-8"), close=status != 500)

    # -- running --------------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    def start(self) -> "HttpService":
        self._thread = self.server.serve_in_thread(f"harness-{self.name}")
        with _RUNNING_LOCK:
            _RUNNING[self.base_url] = self
        return self

    @classmethod
    def running(cls, base_url: str) -> "HttpService | None":
        """The service of this class serving ``base_url`` in this process, if any: how a
        collector finds the simulator a target names (``service://...``)."""
        with _RUNNING_LOCK:
            found = _RUNNING.get(base_url.rstrip("/") + "/")
        return found if isinstance(found, cls) else None

    def stop(self) -> None:
        """Stop serving and close the socket; :class:`ServiceStopError` if that failed."""
        with _RUNNING_LOCK:
            if _RUNNING.get(self.base_url) is self:
                del _RUNNING[self.base_url]
        problems = []
        if self._thread is not None and not self.server.stop_serving(self.stop_timeout):
            problems.append(f"thread {self._thread.name} still alive after {self.stop_timeout:g} s")
        try:
            self.server.server_close()
        except OSError as exc:
            problems.append(f"socket: {exc}")
        if problems:
            raise ServiceStopError(M("kit.stop_failed", service=self.name, url=self.base_url, problems="; ".join(problems)))

    def __enter__(self) -> "HttpService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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

    # -- a connection -----------------------------------------------------------------------

    def _connect(self, request: socket.socket, client_address: Any) -> None:
        peer = f"{client_address[0]}:{client_address[1]}"
        der = None
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except ssl.SSLCertVerificationError as exc:
                self.journal.connection(peer=peer, accepted=False, error=exc.verify_message or str(exc), verify_code=exc.verify_code)
                return
            except (ssl.SSLError, OSError) as exc:
                self.journal.connection(peer=peer, accepted=False, error=getattr(exc, "reason", None) or str(exc) or type(exc).__name__)
                return
            der = request.getpeercert(binary_form=True)
            from .certs import describe  # the cryptography stack, loaded for a TLS service only

            conn = Connection(0, utc_now(), peer, certificate=describe(der) if der else None)
            accepted = self.accept(conn, der)
            conn = self.journal.connection(**{**{k: v for k, v in conn.__dict__.items() if k != "n"}, "accepted": accepted})
            if not accepted:
                try:
                    request.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
        else:
            conn = self.journal.connection(peer=peer)
        _Handler(request, client_address, self.server, conn, der)

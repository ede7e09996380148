"""Every HTTP exchange of the harness: a total deadline, a size bound, no way out.

A peer may be hostile or broken: it may answer one byte every few seconds, which per-read
timeouts never stop, send an endless body, redirect to another address, or hide behind a
proxy named in the environment. :class:`HttpClient` bounds the whole exchange (connection,
headers, body, urllib3's retries and their back-off) by one deadline: when it expires, the
sockets of the exchange are shut down, which ends any read at once. Proxies from the
environment are never used, redirects are never followed (the caller sees the 3xx), and
with ``offline`` an address outside loopback is refused before any name is resolved.
Errors never carry a library's message that could quote a header: only its type, or a
message the caller's ``scrub`` has cleaned.
"""
from __future__ import annotations

import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from ..messages import Message, catalogue

M = catalogue(__name__)

_local = threading.local()


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this machine without asking any resolver."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Deadline:
    """A point in time after which the sockets of an exchange are shut down."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                _shutdown(sock)
            else:
                self._sockets.append(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shutdown(sock)

    def __enter__(self) -> "Deadline":
        _local.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        _local.deadline = None


def _shutdown(sock: socket.socket) -> None:
    try:  # the descriptor itself: safe while another thread reads it, TLS or not
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _watch(sock: socket.socket | None) -> None:
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _Watched:
    """A urllib3 connection whose socket the current exchange's deadline can shut down,
    fresh or reused from the pool."""

    sock: Any

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _watch(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _watch(self.sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _Connection(_Watched, HTTPConnection):
    pass


class _TlsConnection(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TlsPool}


def _timed_out(exc: BaseException) -> bool:
    """A read or connect timeout, also when urllib3 wrapped it once its retries were spent
    (a refused connection is not one, although urllib3 files it under timeouts)."""
    if isinstance(exc, (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)) and not isinstance(
            exc, urllib3.exceptions.NewConnectionError):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return False
    return isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError))


@dataclass
class Fetched:
    """What came back. ``failure`` is None, or why there is no complete answer:
    ``offline``, ``timeout``, ``unreachable``, ``too-large``, ``refused`` (a request the
    client would not send), with ``error`` saying it in words."""

    url: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    failure: str | None = None
    error: Message | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure is None and self.status is not None and 200 <= self.status < 300


class HttpClient:
    """One client per purpose (recording collectors, terminology): thread-safe for requests."""

    def __init__(self, *, total: float = 30.0, read: float | None = None, max_bytes: int = 16 * 1024 * 1024, offline: bool = False,
                 retries: Retry | int = 0, headers: Mapping[str, str] | None = None, scrub: Callable[[str], str] = lambda s: s) -> None:
        self.total = total
        self.read = min(read or total, total)
        self.max_bytes = max_bytes
        self.offline = offline
        self.scrub = scrub
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy, .netrc or CA bundle from the environment
        self.session.headers.update(headers or {})
        adapter = _Adapter(max_retries=retries)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(self, method: str, url: str, *, params: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None,
                data: bytes | Mapping[str, str] | None = None) -> Fetched:
        """The exchange, whole or with its failure; never raises for I/O."""
        out = Fetched(url)
        if urlsplit(url).scheme not in ("http", "https"):
            out.failure, out.error = "refused", M("http.scheme", url=url)
            return out
        if self.offline and not is_loopback(url):
            out.failure, out.error = "offline", M("http.offline", url=url)
            return out
        t0 = time.monotonic()
        with Deadline(self.total) as deadline:
            try:
                self._exchange(method, url, params, headers, data, out)
            except requests.exceptions.InvalidHeader:
                # its message quotes the header's value: a credential, maybe
                out.failure, out.error = "refused", M("http.invalid_header", url=url)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if _timed_out(exc):
                    out.failure, out.error = "timeout", M("http.timeout", seconds=self.read, url=url)
                else:
                    out.failure, out.error = "unreachable", M("http.unreachable", url=url, error=self._describe(exc))
            if deadline.expired:
                out.failure, out.error = "timeout", M("http.deadline", seconds=self.total, url=url)
        out.elapsed = time.monotonic() - t0
        return out

    def _exchange(self, method: str, url: str, params: Any, headers: Any, data: Any, out: Fetched) -> None:
        with self.session.request(method, url, params=params, headers=dict(headers or {}), data=data, stream=True,
                                  timeout=(min(10.0, self.total), self.read), allow_redirects=False) as resp:
            out.status = resp.status_code
            out.headers = dict(resp.headers)
            body = bytearray()
            for chunk in resp.iter_content(65536):
                body += chunk
                if len(body) > self.max_bytes:
                    out.failure, out.error = "too-large", M("http.too_large", limit=self.max_bytes, url=url)
                    return
            out.body = bytes(body)

    def _describe(self, exc: BaseException) -> str:
        """A library's error, for people: its type, and its text once secrets are scrubbed."""
        text = self.scrub(str(exc))
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def close(self) -> None:
        self.session.close()

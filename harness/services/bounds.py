"""Bounds for every server the harness runs on loopback (simulators, stand-ins, the live view).

A client the harness serves is the vendor's software, or anything else on the machine: it may
open a hundred connections and send one byte a second on each (slowloris), or never finish a
request. :class:`BoundedServer`, mixed into a ``socketserver`` threading server, bounds each
connection three ways, whatever the protocol on top:

- **how many at once** (``max_connections``): one more waits for a free slot a moment
  (``wait``: the accepting thread holds it, the kernel's backlog the others), then is closed
  and counted (``refused``);
- **how long in all** (``deadline``): when a connection has lived that long its socket is shut
  down, which ends any read or write its handler is blocked in (a byte a second never ends a
  read bounded per ``recv``);
- **how long without a byte** (``idle``): the socket's timeout, set before the handler runs
  (a handler may set a shorter one).

Sizes (of a request, a frame, a line) stay the protocol handler's job: it knows its units.
"""
from __future__ import annotations

import heapq
import itertools
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class ConnectionBounds:
    max_connections: int = 32
    deadline: float = 120.0  # seconds a connection may live in all
    idle: float = 10.0  # seconds without a byte
    wait: float = 2.0  # seconds a connection over the count waits for a slot


def _cut(dup: socket.socket) -> None:
    """Shut the connection down (both ways): reads blocked in its handler return at once."""
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Watchdog:
    """One thread per server that shuts connections down at their deadlines (a heap of them)."""

    def __init__(self, on_cut: Callable[[], None]) -> None:
        self._heap: list[tuple[float, int]] = []
        self._live: dict[int, socket.socket] = {}
        self._cond = threading.Condition()
        self._next = itertools.count()
        self._on_cut = on_cut
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, seconds: float, dup: socket.socket) -> int:
        with self._cond:
            token = next(self._next)
            self._live[token] = dup
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="harness-connection-deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def forget(self, token: int) -> None:
        with self._cond:
            self._live.pop(token, None)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                when, token = self._heap[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                dup = self._live.pop(token, None)
            if dup is not None:
                self._on_cut()
                _cut(dup)


class BoundedServer:
    """Mixin for ``socketserver.ThreadingMixIn`` servers (put it first among the bases)."""

    connection_bounds = ConnectionBounds()

    def __init__(self, *args: Any, **kw: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.connection_bounds.max_connections)
        self.refused = 0  # connections closed at once: too many were open
        self.cut = 0  # connections shut down at their deadline
        self.held = self.peak = 0  # connections being served, now and at most
        self._count_lock = threading.Lock()
        self._watchdog = _Watchdog(self._count_cut)
        super().__init__(*args, **kw)

    def _count_cut(self) -> None:
        with self._count_lock:
            self.cut += 1

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if not self._slots.acquire(timeout=self.connection_bounds.wait):
            self.refused += 1
            return False  # socketserver closes it
        with self._count_lock:
            self.held += 1
            self.peak = max(self.peak, self.held)
        return super().verify_request(request, client_address)  # type: ignore[misc]

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        bounds = self.connection_bounds
        # a duplicate of the descriptor: shutting it down ends the connection even after the
        # handler wrapped the socket (TLS detaches the original), and never another one that
        # reused the number
        try:
            dup = request.dup()
        except OSError:
            dup = None
        token = self._watchdog.watch(bounds.deadline, dup) if dup is not None else None
        try:
            request.settimeout(bounds.idle)
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            if token is not None:
                self._watchdog.forget(token)
            if dup is not None:
                dup.close()
            with self._count_lock:
                self.held -= 1
            self._slots.release()

    # -- serving --------------------------------------------------------------------------
    # socketserver's serve_forever notices shutdown() only at its next poll (every half second
    # by default): every stop of every simulator waited that long, for nothing. Here a stop
    # wakes the serving thread at once, through a socket pair.

    def serve_in_thread(self, name: str) -> threading.Thread:
        """Accept connections in a daemon thread named ``name`` until :meth:`stop_serving`."""
        self._wake, self._waker = socket.socketpair()
        self.socket.setblocking(False)  # a connection gone before it is accepted: no wait in accept()
        self._serving = threading.Thread(target=self._serve, name=name, daemon=True)
        self._serving.start()
        return self._serving

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake in ready:
                    return
                self.handle_request()  # type: ignore[attr-defined]  # accepts the one waiting (nothing, if it went)
                self.service_actions()  # type: ignore[attr-defined]

    def stop_serving(self, timeout: float) -> bool:
        """Wake the serving thread and wait for it at most ``timeout`` seconds: True when it ended
        (connections being served go on until their handler returns or their deadline)."""
        thread = getattr(self, "_serving", None)
        if thread is None:
            return True
        try:
            self._waker.send(b"x")
        except OSError:
            pass
        thread.join(timeout)
        if thread.is_alive():
            return False
        self._serving = None
        self._close_wake()
        return True

    def _close_wake(self) -> None:
        for sock in (getattr(self, "_wake", None), getattr(self, "_waker", None)):
            if sock is not None:
                sock.close()

    def server_close(self) -> None:
        self._watchdog.stop()  # its thread ends with the server
        if getattr(self, "_serving", None) is None:  # not serving (never, or stopped): its wake-up pair goes too
            self._close_wake()
        super().server_close()  # type: ignore[misc]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection a client broke, or the deadline cut, is no error of the server's: it
        prints nothing (the handler records what it must); anything else is the default."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]

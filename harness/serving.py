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

import socket
import sys
import threading
from dataclasses import dataclass
from typing import Any


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


class BoundedServer:
    """Mixin for ``socketserver.ThreadingMixIn`` servers (put it first among the bases)."""

    connection_bounds = ConnectionBounds()

    def __init__(self, *args: Any, **kw: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.connection_bounds.max_connections)
        self.refused = 0  # connections closed at once: too many were open
        self.cut = 0  # connections shut down at their deadline
        self.held = self.peak = 0  # connections being served, now and at most
        self._count_lock = threading.Lock()
        super().__init__(*args, **kw)

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
        timer = None
        if dup is not None:
            def cut() -> None:
                self.cut += 1
                _cut(dup)

            timer = threading.Timer(bounds.deadline, cut)
            timer.daemon = True
            timer.start()
        try:
            request.settimeout(bounds.idle)
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            if timer is not None:
                timer.cancel()
            if dup is not None:
                dup.close()
            with self._count_lock:
                self.held -= 1
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection a client broke, or the deadline cut, is no error of the server's: it
        prints nothing (the handler records what it must); anything else is the default."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)  # type: ignore[misc]

"""An MLLP receiver on loopback that plays the software's HL7 v2 partner.

It accepts connections, reads MLLP frames (``<VT> message <FS><CR>``), keeps every message
exactly as received and answers each like a real receiver: ``AA`` when the message is
readable and breaks no INS rule, ``AE`` with the reasons when it is readable but wrong,
``AR`` when it cannot be read at all (framing, MSH, separators). Anything the peer sends is
untrusted: bytes outside a frame, an unfinished frame at disconnection, a frame larger than
the limit are kept as received and judged like any message, never a crash.
"""
from __future__ import annotations

import socket
import socketserver
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from harness import BoundedServer, ConnectionBounds

from .hl7v2 import MLLP_END, MLLP_START, check_message, read_message

MAX_FRAME = 4 * 1024 * 1024
IDLE_TIMEOUT = 30.0


@dataclass
class Received:
    data: bytes  # the message as received, frame characters removed (the first KEEP bytes of a refused frame)
    ack: bytes  # what was answered (framed)
    code: str  # AA, AE, AR
    peer: str
    framed: bool  # False: bytes outside a complete MLLP frame
    size: int = 0  # bytes the peer sent for it (an oversized frame is counted, not kept)
    oversized: bool = False


KEEP = 64 * 1024  # what is kept of a refused frame, as evidence


def _field(text: str) -> str:
    return text.replace("|", " ").replace("^", " ").replace("~", " ").replace("\\", " ").replace("&", " ").replace("\r", " ")[:200]


def refusal(size: int) -> bytes:
    """The AR a receiver sends for a frame it will not read (larger than MAX_FRAME)."""
    now = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    segments = [f"MSH|^~\\&|HARNESS|HARNESS-SIM|||{now}||ACK|ACK{now}|P|2.5", "MSA|AR|",
                f"ERR||MLLP|100^HL7-FRAME-01^HL70357|E||HL7-FRAME-01|frame of {size} bytes refused (limit {MAX_FRAME})"]
    return MLLP_START + ("\r".join(segments) + "\r").encode("ascii") + MLLP_END


def acknowledge(data: bytes) -> tuple[str, bytes]:
    """(code, ACK message) for one received message, the way a receiver answers it."""
    msg = read_message(data)
    problems = check_message(msg)
    failing = [(loc, p) for loc, p in problems if p.severity.fails]
    if not msg.readable:
        code = "AR"
    elif failing:
        code = "AE"
    else:
        code = "AA"
    now = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
    control = _field(msg.control_id)[:20]
    trigger = _field(msg.message_type.split("^")[1]) if msg.message_type.count("^") >= 1 else ""
    segments = [
        f"MSH|^~\\&|HARNESS|HARNESS-SIM|||{now}||ACK^{trigger}^ACK|ACK{control or now}|P|2.5",
        f"MSA|{code}|{control}",
    ]
    for loc, p in failing[:10]:
        segments.append(f"ERR||{_field(loc)}|{'100' if code == 'AR' else '207'}^{_field(p.rule)}^HL70357|E||{_field(p.rule)}|{_field(p.text('en'))}")
    return code, MLLP_START + ("\r".join(segments) + "\r").encode("utf-8") + MLLP_END


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(IDLE_TIMEOUT)
        self.server.listener._opened(sock)
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        buf = b""
        skipping: tuple[bytes, int] | None = None  # a frame over MAX_FRAME: (what is kept, bytes seen)
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            if skipping is not None:
                kept, seen = skipping
                end = chunk.find(MLLP_END)
                if end < 0:
                    skipping = (kept, seen + len(chunk))
                    continue
                self._refuse(sock, kept, seen + end - 1, peer)  # the start byte is not the message
                skipping, chunk = None, chunk[end + len(MLLP_END):]
            buf += chunk
            buf = self._frames(sock, buf, peer)
            if len(buf) > MAX_FRAME:
                # one frame too large: refused once, whole, however many bytes follow
                skipping, buf = (buf[:KEEP], len(buf)), b""  # kept and seen include the start byte
        if skipping is not None:
            self._refuse(sock, skipping[0], skipping[1] - 1, peer, reply=False)
        elif buf.strip():
            self._answer(sock, buf.lstrip(MLLP_START), peer, framed=False, reply=False)

    def _frames(self, sock: socket.socket, buf: bytes, peer: str) -> bytes:
        """Answer every complete frame in ``buf``; what is left (an unfinished frame)."""
        while True:
            start = buf.find(MLLP_START)
            if start > 0:  # bytes before a frame: kept and judged as a message of their own
                self._answer(sock, buf[:start], peer, framed=False)
                buf = buf[start:]
                continue
            end = buf.find(MLLP_END)
            if start == 0 and end > 0:
                frame = buf[1:end]
                if len(frame) > MAX_FRAME:  # complete, but over the limit all the same
                    self._refuse(sock, frame[:KEEP], len(frame), peer)
                else:
                    self._answer(sock, frame, peer, framed=True)
                buf = buf[end + len(MLLP_END):]
                continue
            return buf

    # each message is kept once its acknowledgement is sent: a caller that stops listening as soon
    # as it has its messages (and shuts their connections down) never cuts an acknowledgement off
    def _answer(self, sock: socket.socket, data: bytes, peer: str, *, framed: bool, reply: bool = True) -> None:
        code, ack = acknowledge(data)
        self._reply(sock, ack, reply)
        self.server.listener._keep(Received(data, ack, code, peer, framed, len(data)))

    def _refuse(self, sock: socket.socket, kept: bytes, size: int, peer: str, reply: bool = True) -> None:
        ack = refusal(size)
        self._reply(sock, ack, reply)
        self.server.listener._keep(Received(kept.lstrip(MLLP_START), ack, "AR", peer, False, size, oversized=True))

    @staticmethod
    def _reply(sock: socket.socket, ack: bytes, reply: bool) -> None:
        if reply:
            try:
                sock.sendall(ack)
            except OSError:
                pass


class _Server(BoundedServer, socketserver.ThreadingTCPServer):
    daemon_threads = True
    # a sender may keep its connection for a whole scenario (MLLP connections are long-lived)
    connection_bounds = ConnectionBounds(max_connections=16, deadline=900.0, idle=IDLE_TIMEOUT)
    allow_reuse_address = True
    listener: "MllpListener"


class MllpListener:
    """``with MllpListener(port) as rx: ...; rx.wait(n, timeout)``; ``rx.received`` in order."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, port), _Handler)
        self._server.listener = self
        self.host, self.port = self._server.server_address[:2]
        self.received: list[Received] = []
        self._sockets: list[socket.socket] = []
        self._cond = threading.Condition()

    def _opened(self, sock: socket.socket) -> None:
        with self._cond:
            self._sockets.append(sock)

    def _keep(self, item: Received) -> None:
        with self._cond:
            self.received.append(item)
            self._cond.notify_all()

    def wait(self, count: int | None, timeout: float) -> list[Received]:
        """Wait until ``count`` messages arrived (None: the whole ``timeout``); what came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while count is None or len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.received)

    def __enter__(self) -> "MllpListener":
        self._server.serve_in_thread("harness-mllp")
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop_serving(timeout=5)
        self._server.server_close()
        with self._cond:  # a peer still sending (slowly) must not keep a thread reading past the wait
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

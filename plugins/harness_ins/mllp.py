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

from .hl7v2 import MLLP_END, MLLP_START, check_message, read_message

MAX_FRAME = 4 * 1024 * 1024
IDLE_TIMEOUT = 30.0


@dataclass
class Received:
    data: bytes  # the message as received, frame characters removed
    ack: bytes  # what was answered (framed)
    code: str  # AA, AE, AR
    peer: str
    framed: bool  # False: bytes outside a complete MLLP frame


def _field(text: str) -> str:
    return text.replace("|", " ").replace("^", " ").replace("~", " ").replace("\\", " ").replace("&", " ").replace("\r", " ")[:200]


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
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        buf = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while True:
                start = buf.find(MLLP_START)
                if start > 0:  # bytes before a frame: kept and judged as a message of their own
                    self._answer(sock, buf[:start], peer, framed=False)
                    buf = buf[start:]
                    continue
                end = buf.find(MLLP_END)
                if start == 0 and end > 0:
                    self._answer(sock, buf[1:end], peer, framed=True)
                    buf = buf[end + len(MLLP_END):]
                    continue
                break
            if len(buf) > MAX_FRAME:
                self._answer(sock, buf[:MAX_FRAME], peer, framed=False)
                buf = b""
        if buf.strip():
            self._answer(sock, buf.lstrip(MLLP_START), peer, framed=False, reply=False)

    def _answer(self, sock: socket.socket, data: bytes, peer: str, *, framed: bool, reply: bool = True) -> None:
        code, ack = acknowledge(data)
        self.server.listener._keep(Received(data, ack, code, peer, framed))
        if reply:
            try:
                sock.sendall(ack)
            except OSError:
                pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    listener: "MllpListener"


class MllpListener:
    """``with MllpListener(port) as rx: ...; rx.wait(n, timeout)``; ``rx.received`` in order."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, port), _Handler)
        self._server.listener = self
        self.host, self.port = self._server.server_address[:2]
        self.received: list[Received] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._server.serve_forever, name="harness-mllp", daemon=True)

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
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

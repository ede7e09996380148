"""The MSSanté mail simulator: an SMTP server on loopback (aiosmtpd) that the software sends
its messages to, as it would to its MSSanté operator.

Every connection and every message is journaled: the envelope, whether STARTTLS was used,
the raw message as received (after SMTP dot-unstuffing), how the reception ended and the
reply given. A message over ``max_message`` bytes, a line over the SMTP limit (RFC 5321
4.5.3.1.6: 1000 octets with CRLF) or a connection past its ``deadline`` is recorded as far
as it was read (at most ``max_message`` bytes are kept) and refused with its code:

- over the size: 552 5.3.4, once the end of data is read; a sender that keeps sending
  beyond a quarter more than the limit is cut there (552, then the connection closes);
- a line too long: 500 5.5.6 once the end of data is read (cut likewise);
- a line feed alone (bare LF, no CR; the door of SMTP smuggling): 500 5.5.2 likewise, and a
  carriage return alone (bare CR: ``\r.\r`` ends data for some servers) as well;
- a NUL, CR or LF inside a MAIL FROM or RCPT TO argument: 501 5.5.2, the command refused;
- more than ``MAX_RECIPIENTS`` recipients for one message: 452 4.5.3 (RFC 5321 4.5.3.1.10:
  a server must accept 100, and says "too many" with 452); more commands on one connection
  than ``COMMAND_LIMITS`` allow: 421 4.7.0 and closed (aiosmtpd's own call limit); more than
  ``MAX_CONNECTIONS`` connections at once: the next one is answered 421 4.7.0 and closed;
- past the deadline (a connection's total time, whatever it sends): 421 4.4.2, closed;
- silent for ``idle`` seconds: aiosmtpd's own timeout closes it.

The server keeps running whatever a client does. Modes: ``starttls`` (offered, a test
certificate made at start with ``cryptography``), ``required`` (nothing but EHLO, NOOP,
QUIT and STARTTLS before it) and ``plain`` (not offered).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

MODES = ("starttls", "required", "plain")
MAX_MESSAGE = 25 * 1024 * 1024
DEADLINE = 60.0
IDLE = 20.0
LINE_LIMIT = 1000  # octets with CRLF (RFC 5321 4.5.3.1.6)
MAX_REPLIES = 200  # kept per connection
MAX_CONNECTIONS = 32  # at once; one more is answered 421 and closed
MAX_RECIPIENTS = 100  # per message (RFC 5321 4.5.3.1.8: at least 100 must be accepted)
# per connection: a software sending fifty messages of twenty recipients stays far below
COMMAND_LIMITS = {"*": 200, "MAIL": 500, "RCPT": 5000, "DATA": 500, "RSET": 500, "NOOP": 200}
REPLIES = {
    "too-large": "552 5.3.4 Message trop volumineux / message too large",
    "line-too-long": "500 5.5.6 Ligne trop longue / line too long",
    "bare-lf": "500 5.5.2 Saut de ligne LF seul / bare LF received",
    "bare-cr": "500 5.5.2 Retour chariot CR seul / bare CR received",
}
_FORBIDDEN_IN_ARGS = ("\0", "\r", "\n")

_RUNNING: dict[str, "MailSimulator"] = {}


def _quiet(record: logging.LogRecord) -> bool:
    """aiosmtpd 1.4 logs a warning about its own use of ``Session.login_data`` at every login."""
    return "login_data" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_quiet)


def running(base_url: str) -> "MailSimulator | None":
    """The simulator started in this process at ``base_url`` (None: not ours)."""
    return _RUNNING.get(base_url.rstrip("/"))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Connection:
    n: int
    at: str
    peer: str
    tls: dict | None = None  # protocol and cipher once STARTTLS succeeded
    helo: str | None = None
    auth: dict | None = None  # mechanism and login name; the password is never kept
    replies: list[str] = field(default_factory=list)
    closed: str | None = None  # why: "quit", "deadline", "idle", "lost"


@dataclass
class Received:
    n: int
    connection: int
    at: str
    mail_from: str
    rcpt_tos: list[str]
    tls: bool
    outcome: str = "receiving"  # accepted, too-large, line-too-long, bare-lf, deadline, interrupted
    reply: str = ""
    complete: bool = False  # the end of data was read
    read: int = 0  # bytes read (more than kept when over the limit)
    raw: bytes = b""


class Journal:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: list[Connection] = []
        self.messages: list[Received] = []
        self.last_activity = 0.0

    def touch(self) -> None:
        self.last_activity = time.monotonic()


def _authenticate(server, session, envelope, mechanism, auth_data):
    """Any credentials are accepted (a test operator); the login name is journaled, never
    the password."""
    from aiosmtpd.smtp import AuthResult

    login = getattr(auth_data, "login", b"") or b""
    if getattr(server, "record", None) is not None:
        server.record.auth = {"mechanism": mechanism, "login": login.decode("utf-8", "replace")[:200]}
    return AuthResult(success=True)


class _Handler:
    async def handle_DATA(self, server, session, envelope) -> str:
        return "250 2.0.0 Ok: queued"


class _Smtp(SMTP):
    """aiosmtpd's server, with a reception of DATA that keeps what it read and bounds it."""

    def __init__(self, handler, *, sim: "MailSimulator", **kw) -> None:
        super().__init__(handler, **kw)
        self.sim = sim
        self.record: Connection | None = None
        self.receiving: Received | None = None
        self._kept: list[bytes] = []  # what the message under reception kept so far
        self._deadline_handle = None
        self._counted = False  # among the simulator's open connections

    def connection_made(self, transport) -> None:
        upgrading = self.transport is not None
        super().connection_made(transport)
        if upgrading:  # STARTTLS done
            if self.record is not None and self.session.ssl:
                cipher = transport.get_extra_info("cipher")
                self.record.tls = {"protocol": cipher[1] if cipher else None, "cipher": cipher[0] if cipher else None}
            return
        if self.sim.open_connections >= MAX_CONNECTIONS:  # every connection runs in this one loop: no race
            self.sim.refused_connections += 1
            transport.write(b"421 4.7.0 Trop de connexions / too many connections\r\n")
            transport.close()
            return
        self.sim.open_connections += 1
        self._counted = True
        if self.sim.ready:
            journal = self.sim.journal
            with journal.lock:
                peer = transport.get_extra_info("peername")
                self.record = Connection(len(journal.connections) + 1, _now(), f"{peer[0]}:{peer[1]}" if peer else "?")
                journal.connections.append(self.record)
                journal.touch()
        self._deadline_handle = self.loop.call_later(self.sim.deadline, self._past_deadline)

    def _past_deadline(self) -> None:
        if self.receiving is not None:
            self._end(self.receiving, "deadline", "421 4.4.2 Délai dépassé / deadline exceeded", complete=False)
        if self.record is not None:
            self.record.closed = "deadline"
        if self.transport is not None:
            try:
                self.transport.write(b"421 4.4.2 Delai depasse / deadline exceeded\r\n")
            finally:
                self.transport.close()

    def _timeout_cb(self) -> None:
        if self.record is not None and self.record.closed is None:
            self.record.closed = "idle"
        if self.receiving is not None:
            self._end(self.receiving, "interrupted", "421 4.4.2 idle timeout", complete=False)
        if self.transport is not None:
            self.transport.write(b"421 4.4.2 Inactivite / idle timeout\r\n")
        super()._timeout_cb()

    def connection_lost(self, error) -> None:
        if self._counted:
            self._counted = False
            self.sim.open_connections -= 1
        if self._deadline_handle is not None:
            self._deadline_handle.cancel()
        if self.receiving is not None:
            self._end(self.receiving, "interrupted", "", complete=False)
        if self.record is not None and self.record.closed is None:
            self.record.closed = "lost"
        super().connection_lost(error)

    async def push(self, status: str) -> None:
        if self.record is not None and len(self.record.replies) < MAX_REPLIES:
            self.record.replies.append(status)
        self.sim.journal.touch()
        await super().push(status)

    async def smtp_EHLO(self, hostname: str) -> None:
        if self.record is not None:
            self.record.helo = hostname[:200]
        await super().smtp_EHLO(hostname)

    async def smtp_MAIL(self, arg: str) -> None:
        if arg and any(c in arg for c in _FORBIDDEN_IN_ARGS):
            await self.push("501 5.5.2 Caractere interdit (NUL, CR, LF) / forbidden character in the address")
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str) -> None:
        if arg and any(c in arg for c in _FORBIDDEN_IN_ARGS):
            await self.push("501 5.5.2 Caractere interdit (NUL, CR, LF) / forbidden character in the address")
            return
        if len(self.envelope.rcpt_tos) >= MAX_RECIPIENTS:
            await self.push("452 4.5.3 Trop de destinataires / too many recipients")
            return
        await super().smtp_RCPT(arg)

    async def smtp_QUIT(self, arg: str) -> None:
        if self.record is not None:
            self.record.closed = "quit"
        await super().smtp_QUIT(arg)

    def _end(self, rec: Received, outcome: str, reply: str, *, complete: bool, raw: bytes | None = None) -> None:
        rec.raw = b"".join(self._kept) if raw is None else raw  # as far as read, at most max_message bytes
        self._kept = []
        rec.outcome, rec.reply, rec.complete = outcome, reply, complete
        self.receiving = None
        self.sim.journal.touch()

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        sim = self.sim
        rec = Received(0, self.record.n if self.record else 0, _now(), self.envelope.mail_from or "", list(self.envelope.rcpt_tos),
                       bool(self.session.ssl))
        if self.record is not None:
            with sim.journal.lock:
                rec.n = len(sim.journal.messages) + 1
                sim.journal.messages.append(rec)
        self.receiving = rec
        self._kept = kept = []
        kept_size = 0
        state = "accepted"
        cut = sim.max_message + sim.max_message // 4  # a sender going on past this is cut
        fragment = False
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                line = await self._reader.read(exc.consumed)
                if state == "accepted":
                    state = "line-too-long"
            except asyncio.IncompleteReadError:
                return  # the connection closed: connection_lost records it
            if line == b".\r\n" and not fragment:
                break
            ends = line.endswith(b"\r\n")
            if not fragment and line.startswith(b"."):
                line = line[1:]
            rec.read += len(line)
            body = line[:-2] if ends else line
            if b"\n" in body and state in ("accepted", "line-too-long"):
                state = "bare-lf"  # a line feed alone ends no SMTP line (RFC 5321 2.3.8)
            elif b"\r" in body.rstrip(b"\r" if not ends else b"") and state in ("accepted", "line-too-long"):
                state = "bare-cr"  # nor does a carriage return alone (RFC 5321 2.3.8)
            if ends and not fragment and len(line) > LINE_LIMIT and state == "accepted":
                state = "line-too-long"
            fragment = not ends
            if rec.read > sim.max_message and state == "accepted":
                state = "too-large"
            if kept_size < sim.max_message:
                piece = line[: sim.max_message - kept_size]
                kept.append(piece)
                kept_size += len(piece)
            if rec.read > cut:
                reply = REPLIES.get(state, REPLIES["too-large"])
                self._end(rec, state if state != "accepted" else "too-large", reply, complete=False)
                await self.push(reply)
                self.transport.close()
                return
            sim.journal.touch()
            self._reset_timeout()  # data flowing: not idle (the deadline bounds the whole)
        if self.receiving is not rec:
            return  # ended by the deadline, the idle timeout or the connection's loss
        if self.transport is None:
            self._end(rec, "interrupted", "", complete=False)
            return
        if state != "accepted":
            reply = REPLIES[state]
            self._end(rec, state, reply, complete=True)
            await self.push(reply)
            self._set_post_data_state()
            return
        content = b"".join(kept)
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._end(rec, "accepted", status, complete=True, raw=content)
        await self.push(status)
        self._set_post_data_state()


class _Controller(Controller):
    def __init__(self, sim: "MailSimulator", **kw) -> None:
        self.sim = sim
        super().__init__(_Handler(), **kw)

    def factory(self):
        return _Smtp(self.handler, sim=self.sim, **self.SMTP_kwargs)


_PKI: list = []  # the process's test PKI for mail servers, made once (its keys take time)


def server_credentials(folder: Path, cn: str) -> tuple[Path, Path, Path]:
    """A server certificate for 127.0.0.1 and localhost from the services kit's test PKI:
    (what a client trusts, the certificate with its chain, its key), written to ``folder``."""
    from harness import TestPKI

    if not _PKI:
        _PKI.append(TestPKI("Harness MSSanté", org="Harness MSSanté simulator (test)"))
    authority = _PKI[0]
    cert, key = authority.issue(cn, usage="server").write(folder, "server")
    trust = folder / "ca.pem"
    trust.write_bytes(authority.anchors_pem())
    return trust, cert, key


class MailSimulator:
    def __init__(self, *, port: int = 0, tls: str = "starttls", max_message: int = MAX_MESSAGE, deadline: float = DEADLINE,
                 idle: float = IDLE, hostname: str = "mssante.simulateur.test") -> None:
        if tls not in MODES:
            raise ValueError(f"tls: {tls!r} not in {', '.join(MODES)}")
        if max_message < 1024:
            raise ValueError(f"max_message: {max_message} < 1024")
        self.port, self.tls, self.max_message = port, tls, max_message
        self.deadline, self.idle, self.hostname = float(deadline), float(idle), hostname
        self.journal = Journal()
        self.open_connections = self.refused_connections = 0
        self.ready = False
        self._folder = tempfile.TemporaryDirectory(prefix="harness-mssante-")
        self.certificate: Path | None = None
        self._controller: _Controller | None = None

    @property
    def base_url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "MailSimulator":
        kw: dict = {"hostname": "127.0.0.1", "port": self.port, "server_hostname": self.hostname, "ready_timeout": 10.0,
                    "data_size_limit": self.max_message, "timeout": self.idle, "enable_SMTPUTF8": True, "decode_data": False,
                    "command_call_limit": COMMAND_LIMITS}
        if self.tls != "plain":
            self.certificate, cert, key = server_credentials(Path(self._folder.name), "Harness MSSante simulator (test)")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            kw.update(tls_context=context, require_starttls=self.tls == "required")
        kw.update(authenticator=_authenticate, auth_require_tls=self.tls != "plain")
        if not self.port:
            import socket

            with socket.socket() as s:  # aiosmtpd needs a port: take a free one
                s.bind(("127.0.0.1", 0))
                kw["port"] = self.port = s.getsockname()[1]
        self._controller = _Controller(self, **kw)
        self._controller.start()
        self.ready = True
        _RUNNING[self.base_url] = self
        return self

    def stop(self) -> None:
        _RUNNING.pop(self.base_url, None)
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        self._folder.cleanup()

    def wait_quiet(self, *, after: int, quiet: float, deadline: float) -> None:
        """Wait until a connection came after ``after`` connections, every message under way
        ended, and nothing happened for ``quiet`` seconds; or until ``deadline`` (monotonic)."""
        while time.monotonic() < deadline:
            with self.journal.lock:
                began = len(self.journal.connections) > after
                busy = any(m.outcome == "receiving" for m in self.journal.messages)
            if began and not busy and time.monotonic() - self.journal.last_activity >= quiet:
                return
            time.sleep(0.05)

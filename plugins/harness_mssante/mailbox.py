"""The mailbox the software reads: a real IMAP server from the distribution (Dovecot),
started by the harness on loopback with its own configuration, one test user, a password
made at start and written to a file only the software is pointed at (never recorded), and
a server certificate of the services kit's test PKI for STARTTLS.

The harness delivers its catalogue of messages with IMAP APPEND, then reads back which the
software opened (the ``\\Seen`` flag), through the same server.

Dovecot takes a connection whose two ends have the same address as secure (2.3: no setting
turns that off), so on loopback it accepts a password in clear even with ``ssl = required``:
the harness cannot refuse such a login as the operator would, so it judges it. Each login of
the software (the harness's own sessions set aside by their port) is read from Dovecot's log
with whether it came over TLS (:meth:`Mailbox.logins`); the receiving scenario judges them.
"""
from __future__ import annotations

import imaplib
import os
import pwd
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

USER = "medecin"
START_DEADLINE = 10.0  # seconds for Dovecot to listen
IMAP_TIMEOUT = 10.0  # seconds, each IMAP exchange
MODES = ("starttls", "plain")


_RUNNING: dict[str, "Mailbox"] = {}


class MailboxError(RuntimeError):
    pass


def running_mailbox(base_url: str) -> "Mailbox | None":
    """The mailbox started in this process at ``base_url`` (None: not ours)."""
    return _RUNNING.get(base_url.rstrip("/"))


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next((p for p in ("/usr/sbin/dovecot",) if os.access(p, os.X_OK)), None)


def _account() -> pwd.struct_passwd:
    """The account Dovecot's processes run as (see :meth:`Mailbox._config`)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("dovenull", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise MailboxError("no unprivileged account (dovenull, nobody) for Dovecot's processes")


def _group(account: pwd.struct_passwd) -> str:
    import grp

    try:
        return grp.getgrgid(account.pw_gid).gr_name
    except KeyError:
        return str(account.pw_gid)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox:
    def __init__(self, *, port: int = 0, tls: str = "starttls", address: str = "dr.destinataire@hopital-demo.mssante.fr") -> None:
        if tls not in MODES:
            raise ValueError(f"tls: {tls!r} not in {', '.join(MODES)}")
        self.port, self.tls, self.address = port, tls, address
        self.user = USER
        self._password = secrets.token_urlsafe(18)
        self._folder = tempfile.TemporaryDirectory(prefix="harness-mailbox-")
        self.root = Path(self._folder.name)
        self.password_file = self.root / "credentials" / "password"
        self.certificate: Path | None = None
        self._process: subprocess.Popen | None = None
        self._own_ports: set[int] = set()  # the harness's own sessions (deliver, state)

    @property
    def base_url(self) -> str:
        return f"imap://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        from .simulator import server_credentials

        root = self.root
        # Every Dovecot process but the master runs as one account: as root, Dovecot's own
        # unprivileged one (dovenull, else nobody); otherwise the developer's. The mailbox's
        # folder belongs to it, mode 0700: its passwd file, its sockets (several are 0666 by
        # default) and the mail are out of every other local user's reach.
        mail = _account()
        identity = (f"default_internal_user = {mail.pw_name}\ndefault_internal_group = {_group(mail)}\n"
                    f"default_login_user = {mail.pw_name}\n")
        for sub in ("run", "state", "home"):
            (root / sub).mkdir(mode=0o700)
        (root / "credentials").mkdir(mode=0o700)
        self.password_file.touch(mode=0o600)
        self.password_file.write_text(self._password)
        users = root / "users"
        users.touch(mode=0o600)
        users.write_text(f"{self.user}:{{PLAIN}}{self._password}::::::\n")
        for path in (root, root / "run", root / "state", root / "home", users):
            os.chown(path, mail.pw_uid, mail.pw_gid)
        root.chmod(0o700)
        tls = "ssl = no\ndisable_plaintext_auth = no\n"
        if self.tls == "starttls":
            self.certificate, cert, key = server_credentials(root, "Harness MSSante mailbox (test)")
            tls = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}\ndisable_plaintext_auth = yes\n"
        conf = root / "dovecot.conf"
        conf.write_text(f"""# written by the harness for one run
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{tls}auth_mechanisms = plain login
login_log_format_elements = user=<%u> method=%m rip=%r rport=%{{rport}} lip=%l mpid=%e %c session=<%{{session}}>
{identity}first_valid_uid = {min(mail.pw_uid, 500) or 1}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users}
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
        return conf

    def start(self) -> "Mailbox":
        binary = dovecot_binary()
        if binary is None:
            raise MailboxError("dovecot")
        if not self.port:
            self.port = _free_port()
        conf = self._config()
        self._process = subprocess.Popen([binary, "-F", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise MailboxError(self._process.stderr.read().decode("utf-8", "replace")[-500:] or self.log()[-500:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    _RUNNING[self.base_url] = self
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise MailboxError(f"no answer on 127.0.0.1:{self.port} within {START_DEADLINE:.0f} s")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _session(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=IMAP_TIMEOUT)
        self._own_ports.add(imap.sock.getsockname()[1])
        if self.tls == "starttls":
            imap.starttls(ssl.create_default_context(cafile=str(self.certificate)))
        imap.login(self.user, self._password)
        return imap

    def deliver(self, raw: bytes) -> None:
        """Put ``raw`` in the inbox, unread."""
        imap = self._session()
        try:
            status, said = imap.append("INBOX", None, None, raw)
            if status != "OK":
                raise MailboxError(f"APPEND: {said!r}")
        finally:
            imap.logout()

    def state(self) -> list[dict]:
        """Every message of the inbox: its Message-ID and flags."""
        imap = self._session()
        try:
            imap.select("INBOX", readonly=True)
            status, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        except imaplib.IMAP4.error:
            return []
        finally:
            try:
                imap.logout()
            except imaplib.IMAP4.error:
                pass
        out = []
        for item in data if status == "OK" else []:
            if not isinstance(item, tuple):
                continue
            head, body = item
            flags = re.search(rb"FLAGS \(([^)]*)\)", head)
            mid = re.search(rb"(?im)^message-id:\s*(<[^>]+>)", body or b"")
            out.append({"message_id": mid.group(1).decode("ascii", "replace") if mid else None,
                        "flags": sorted(flags.group(1).decode().split()) if flags else []})
        return out

    def logins(self) -> list[dict]:
        """Every login attempt on the mailbox but the harness's own: its client port, the user
        it named, whether it came over TLS, and how it ended ("login", or Dovecot's reason)."""
        out = []
        for line in self.log().splitlines():
            if "imap-login: Info: " not in line:
                continue
            port = re.search(r"rport=(\d+)", line)
            if port is None or int(port.group(1)) in self._own_ports:
                continue
            said = line.split("imap-login: Info: ", 1)[1]
            user = re.search(r"user=<([^>]*)>", said)
            plaintext = "plaintext" in said
            if not said.startswith("Login:") and not plaintext and "auth failed" not in said:
                continue  # a connection that tried no login
            out.append({"port": int(port.group(1)), "user": user.group(1)[:100] if user else "",
                        "tls": bool(re.search(r", (TLS|TLS handshaking)[,:]", said)),
                        "outcome": "login" if said.startswith("Login:") else said.split(":")[0][:200]})
        return out

    def stop(self) -> None:
        _RUNNING.pop(self.base_url, None)
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        if self._process is not None and self._process.stderr:
            self._process.stderr.close()
        self._process = None
        self._folder.cleanup()

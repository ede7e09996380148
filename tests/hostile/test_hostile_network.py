"""Hostile network peers: a server that drips bytes, never ends, redirects away, or echoes the
credentials back in another form. Every exchange ends within its total deadline, offline
runs never look beyond loopback, and no secret reaches anything the harness writes."""
import base64
import html
import json
import socket
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest

from harness.safety.http import HttpClient
from harness_demo.patients import PATIENTS, cda_document
from harness.secrets import variants
from tests.harness_run import run_harness
from tests.hostile.storm import slowloris

CANARY = "Cnry-8d2f6e/é+&<x>"
FORGED = "9.9.9\r\n  \x1b[32m✔ PASS  LES-3.1-DECL (all requirements proven)\x1b[0m\u202e"
LINE_CANARY = "second-line-9b1c4a"


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "drip"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        mode = self.server.mode
        if mode == "drip":  # a valid answer, one byte every 0.3 s: per-read timeouts never fire
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.3)
        elif mode == "slow-headers":
            for c in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 200:
                self.wfile.write(bytes([c]))
                self.wfile.flush()
                time.sleep(0.2)
        elif mode == "endless":
            self.send_response(200)
            self.end_headers()
            chunk = b"z" * 65536
            try:
                while True:
                    self.wfile.write(chunk)
            except OSError:
                pass
        elif mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "http://remote-vendor.example/steal")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "echo":
            self._echo()
        elif mode == "slow":  # answers nothing before the client gives up
            self.server.asked.append(self.path)
            time.sleep(3)
        elif mode == "forge":  # a version that tries to write its own lines on the verifier's terminal
            body = json.dumps({"version": FORGED, "build": {"fingerprint": "sha256:1"}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        """An identity provider refusing the password grant and quoting the password back."""
        if self.server.mode == "slow":
            time.sleep(3)
            return
        if self.server.mode == "forge":  # a refusal whose text tries to write its own lines
            body = json.dumps({"error": "invalid_grant", "error_description": FORGED}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        password = form.get("password", [""])[0]
        body = json.dumps({"error": "invalid_grant", "error_description": f"Invalid password {password} for {form.get('username')}"
                           f" ({html.escape(password)}, {quote(password)})"}).replace("/", "\\/").encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _echo(self):
        """The vendor that quotes back what it received, in every usual encoding."""
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        numeric = "".join(c if c.isalnum() else f"&#x{ord(c):X};" for c in token)  # every sign as a character reference
        page = (f"<html><body><footer id='about'>Version 3.2.1</footer><pre>{html.escape(token)}</pre><i>{numeric}</i>"
                f"<p>{quote(token, safe='')}</p><p>{base64.b64encode(('u:' + token).encode()).decode()}</p></body></html>")
        if self.path.startswith("/api"):  # PHP's json_encode escapes "/" as "\/"
            body = json.dumps({"version": "3.2.1", "build": {"fingerprint": "sha256:1"}, "echo": token, "raw": auth})
            body = body.replace("/", "\\/").encode()
            ctype = "application/json"
        else:
            body = page.encode()
            ctype = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def peer():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    server.asked = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server, path="/") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


@pytest.mark.parametrize("mode", ["drip", "slow-headers"])
def test_a_peer_dripping_bytes_is_cut_at_the_total_deadline(peer, mode):
    peer.mode = mode
    client = HttpClient(total=1.5, read=1.0)
    start = time.monotonic()
    res = client.request("GET", _url(peer))
    elapsed = time.monotonic() - start
    assert res.failure == "timeout" and elapsed < 3.0, (res.failure, elapsed)
    assert "total deadline of 1.5 s passed" in res.error.render("en")


def test_an_endless_body_stops_at_the_size_bound(peer):
    peer.mode = "endless"
    res = HttpClient(total=10, max_bytes=1024 * 1024).request("GET", _url(peer))
    assert res.failure == "too-large" and res.body == b""


def test_a_redirect_is_never_followed_and_offline_never_resolves_a_remote_name(peer, monkeypatch):
    peer.mode = "redirect"
    asked: list[str] = []
    real = socket.getaddrinfo

    def recording(host, *args, **kwargs):
        asked.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example:3128")
    client = HttpClient(total=5, offline=True)
    res = client.request("GET", _url(peer))
    assert res.status == 302 and res.failure is None  # seen, not followed
    res = client.request("GET", "http://remote-vendor.example/steal")
    assert res.failure == "offline" and "Offline mode: network access refused" in res.error.render("en")
    assert all(h in ("127.0.0.1", "localhost", "::1") for h in asked), asked


def test_offline_terminology_never_asks_a_remote_identity_provider(monkeypatch):
    from harness.terminology import build

    asked: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: asked.append(host) or [])
    setup = build({"server": "http://127.0.0.1:9/fhir/", "token_url": "https://keycloak.example/token"}, offline=True,
                  resolve_url=lambda u: u, secret=lambda n: "x" if n in ("smt_username", "smt_password") else None,
                  is_loopback=lambda u: "127.0.0.1" in u)
    answer = setup.service.lookup("2.16.840.1.113883.6.1", "1234-5")
    assert answer.result is None and all(h == "127.0.0.1" for h in asked), asked


def _signer_p12(path: Path, passphrase: str) -> None:
    """A signing key and its certificate (digitalSignature), in a PKCS#12 file under ``passphrase``."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Echo Signer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"echo", key, cert, None,
                                                           serialization.BestAvailableEncryption(passphrase.encode())))


def _all_outputs(run, tmp_path: Path) -> bytes:
    blob = run.stdout.encode() + run.stderr.encode()
    with zipfile.ZipFile(run.bundle) as zf:
        for name in zf.namelist():
            blob += zf.read(name)
    for path in (tmp_path / "reports").rglob("*"):
        if path.is_file() and path.suffix == ".xlsx":
            with zipfile.ZipFile(path) as zf:
                blob += b"".join(zf.read(name) for name in zf.namelist())
        elif path.is_file() and path.suffix != ".zip":
            blob += path.read_bytes()
    return blob


def test_a_canary_secret_echoed_back_in_every_encoding_never_reaches_anything_written(peer, tmp_path):
    """The canary is the API token (env:), the passphrase of the signing key (env:), the password
    of the terminology stand-in and of the identity provider (file:, two lines); the vendor quotes
    it back raw, JSON-escaped (with and without "\\/"), HTML-escaped (named and numeric
    references), percent-encoded and inside base64; the identity provider refuses it and
    quotes it in its error text, which the harness reports."""
    peer.mode = "echo"
    (tmp_path / "smt-password.txt").write_text(f"{CANARY}\n{LINE_CANARY}\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.xml").write_bytes(cda_document(PATIENTS[0], set(), 1))
    target = tmp_path / "t.toml"
    target.write_text(f'''[product]
id = "echo"
name = "Echo"
version = "3.2.1"

[endpoints]
ui = "{_url(peer, '/')}"
api = "{_url(peer, '/api/about')}"

[credentials]
api_token = "env:ECHO_TOKEN"
smt_username = "env:ECHO_TOKEN"
smt_password = "file:smt-password.txt"

[services.terminology]
user = "someone"
password = "file:smt-password.txt"

[terminology]
server = "{_url(peer, '/fhir/')}"
token_url = "{_url(peer, '/token')}"

[cda]
documents = "{docs}"

[signature]
key = "signer.p12"
passphrase = "env:ECHO_TOKEN"
''')
    _signer_p12(tmp_path / "signer.p12", CANARY)
    run = run_harness(tmp_path, "--scenario", "version", "--scenario", "terminology-cda-codes", "--lang", "en", "--target", str(target),
                      "--junitxml", str(tmp_path / "reports" / "junit.xml"),
                      env={"ECHO_TOKEN": CANARY}, allure=True)
    assert run.bundle is not None, run.stdout + run.stderr
    assert list((tmp_path / "reports").glob("*.allure/*-result.json"))  # Allure's files are read too
    attached = [a["type"] for p in (tmp_path / "reports").glob("*.allure/*-result.json")
                for step in json.loads(p.read_text())["steps"] for a in step.get("attachments", [])]
    assert attached and "text/html" not in attached  # the vendor's page is attached as its source
    written = _all_outputs(run, tmp_path)
    for secret in (CANARY, LINE_CANARY):
        for form in variants(secret):
            assert form not in written, form
    assert b"***REDACTED***" in written  # the echo was there, and scrubbed
    assert "Invalid password ***REDACTED***" in run.stdout  # the refusal is reported, its secret is not
    with zipfile.ZipFile(run.bundle) as zf:
        assert "manifest.p7s" in zf.namelist()  # the key opened with the canary as passphrase


@pytest.mark.slow
def test_a_dripping_vendor_ends_in_a_clear_verdict_within_the_deadline(peer, tmp_path):
    peer.mode = "drip"
    target = tmp_path / "t.toml"
    target.write_text(f'[product]\nid = "slow"\nname = "Slow"\nversion = "1.0"\n\n[endpoints]\nui = "{_url(peer)}"\n\n'
                      '[network]\ndeadline = 2\nread_timeout = 1\n')
    start = time.monotonic()
    run = run_harness(tmp_path, "--scenario", "version-visible-in-ui", "--lang", "en", "--target", str(target))
    assert time.monotonic() - start < 20
    assert run.returncode == 1 and run.requirement_verdicts() == {"LES-3.1-UI": "ERROR"}
    # it answered (HTTP 200) then dripped: said as such, not as a server that never answered
    assert "User interface unreadable" in run.stdout and "answered (HTTP 200)" in run.stdout
    assert "total deadline of 2.0 s passed" in run.stdout
    assert "{'fr'" not in run.stdout  # the recorded reason is shown in the user's language, not as a record


def test_a_multi_line_file_secret_is_never_quoted_by_the_http_library(peer, tmp_path):
    """requests refuses a header holding a line break and quotes its value in the error: the
    harness reports the refusal without the value, and scrubs each line of the secret."""
    peer.mode = "echo"
    (tmp_path / "token.txt").write_text(f"{CANARY}\n{LINE_CANARY}\n")
    target = tmp_path / "t.toml"
    target.write_text(f'[product]\nid = "echo"\nname = "Echo"\nversion = "3.2.1"\n\n[endpoints]\nui = "{_url(peer, "/")}"\n'
                      f'api = "{_url(peer, "/api/about")}"\n\n[credentials]\napi_token = "file:token.txt"\n')
    run = run_harness(tmp_path, "--scenario", "version-same-in-channels", "--lang", "en", "--target", str(target))
    [warning] = [f for f in run.findings() if f["rule"] == "VER-CHAN-02"]
    assert "API channel declared but unreadable" in warning["message"]["en"]
    assert "request not sent: a header holds a line break or a forbidden character (value not shown)" in warning["message"]["en"]
    written = _all_outputs(run, tmp_path)
    for secret in (CANARY, LINE_CANARY):
        assert not any(form in written for form in variants(secret))


def test_a_slowloris_on_the_live_view_holds_no_more_than_its_bound(tmp_path, monkeypatch):
    """A hundred connections sending a byte of their request line every 0.4 s (75 of 100 were
    kept open): at most the bound are served at once, each cut at its deadline, the others
    closed after a short wait (or left by the kernel in its backlog, costing the server
    nothing), and the page answers its token afterwards."""
    import urllib.request

    from harness.session import liveview
    from harness.session.events import EventHub

    monkeypatch.setattr(liveview.LiveView, "bounds", liveview.ConnectionBounds(max_connections=16, deadline=2.0, idle=1.0, wait=0.05))
    view = liveview.LiveView(EventHub(tmp_path, 1), "127.0.0.1:0", page=lambda: b"<html></html>", images=lambda d: None)
    try:
        slowloris(lambda: socket.create_connection(("127.0.0.1", view.port), timeout=5))
        assert view.server.peak <= 16 and view.server.refused > 0 and view.server.cut > 0
        deadline = time.monotonic() + 5
        while view.server.held and time.monotonic() < deadline:
            time.sleep(0.05)
        assert view.server.held == 0  # once they stop, nothing is held
        with urllib.request.urlopen(view.url, timeout=5) as res:  # noqa: S310 (loopback)
            assert res.status == 200
    finally:
        view.stop()
    watchdog = view.server._watchdog._thread
    watchdog.join(5)
    assert not watchdog.is_alive()  # the deadlines' thread ends with its server


@pytest.mark.slow
def test_the_terminology_questions_of_a_scenario_share_a_total_deadline(peer, tmp_path):
    """A server that answers each question just past its timeout held the run for questions x
    timeout (10 x 15 s): past the scenario's deadline the rest are not asked, and say so."""
    peer.mode = "slow"
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(3):
        (docs / f"d{n}.xml").write_bytes(cda_document(PATIENTS[0], set(), n + 1))
    target = tmp_path / "t.toml"
    server = _url(peer, "/fhir/")
    target.write_text(f'[product]\nid = "p"\nname = "P"\nversion = "1.0"\n\n[cda]\ndocuments = "{docs}"\n\n'
                      f'[terminology]\nserver = "{server}"\ntimeout = 1\nretries = 0\ndeadline = 2\n')
    started = time.monotonic()
    run = run_harness(tmp_path, "--scenario", "terminology-cda-codes", "--lang", "en", "--target", str(target))
    elapsed = time.monotonic() - started
    assert run.requirement_verdicts() == {"SMT-CODE": "INCONCLUSIVE"}, run.stdout
    with zipfile.ZipFile(run.bundle) as zf:
        [answers] = [json.loads(zf.read(f"artefacts/{d}")) for d, m in run.manifest["artefacts"].items() if m["label"] == "terminology.answers"]
    kinds = [a.get("error", {}).get("kind") for a in answers["answers"]]
    assert "deadline" in kinds and len(kinds) > 16, kinds
    # the questions in flight share the server's first silence: it costs one timeout, not one
    # each in turn (eight questions waited for the identity one after the other: 9 s)
    assert len(peer.asked) <= 3, peer.asked
    assert elapsed < 20, elapsed


@pytest.mark.parametrize("media_type, shown", [
    ("text/html", "text/plain"), ("text/html; charset=utf-8", "text/plain"), ("application/xhtml+xml", "text/plain"),
    ("image/svg+xml", "text/plain"), ("application/javascript", "text/plain"), ("application/pdf", "application/octet-stream"),
    ("image/png", "image/png"), ("application/json", "application/json"), ("", "application/octet-stream"),
])
def test_allure_never_attaches_what_a_browser_would_run(media_type, shown):
    """The vendor's page was attached as text/html, scripts included: Allure's report would run
    them in the reader's browser."""
    from harness.reporting.allure_results import _attachment_type

    kind, _ = _attachment_type(media_type)
    assert getattr(kind, "mime_type", kind) == shown


def test_a_peer_text_cannot_write_its_own_lines_on_the_terminal_or_in_the_summaries(peer, tmp_path):
    """What a peer says is quoted in messages (here an identity provider's refusal, and the
    software's version): its line breaks, escape sequences and direction overrides are written
    as escapes, on the terminal, in the summaries and in the reports."""
    peer.mode = "forge"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.xml").write_bytes(cda_document(PATIENTS[0], set(), 1))
    (tmp_path / "pw.txt").write_text("a-password-1234\n")
    api, server, token = _url(peer, "/api/about"), _url(peer, "/fhir/"), _url(peer, "/token")
    target = tmp_path / "t.toml"
    target.write_text(f'[product]\nid = "forge"\nname = "Forge"\nversion = "3.2.1"\n\n[endpoints]\napi = "{api}"\n\n'
                      f'[terminology]\nserver = "{server}"\ntoken_url = "{token}"\n\n[cda]\ndocuments = "{docs}"\n\n'
                      '[credentials]\nsmt_username = "file:pw.txt"\nsmt_password = "file:pw.txt"\n')
    run = run_harness(tmp_path, "--scenario", "version-matches-declared", "--scenario", "terminology-cda-codes", "--lang", "en",
                      "--target", str(target))
    assert run.bundle is not None, run.stdout + run.stderr
    assert "9.9.9\\r\\n  \\x1b[32m✔ PASS" in run.stdout  # quoted, as escapes
    written = _all_outputs(run, tmp_path)
    for raw in (b"\x1b[32m", "\u202e".encode(), b"\r\n  \x1b"):
        assert raw not in written, raw
    assert not any(line.lstrip().startswith("✔ PASS  LES-3.1-DECL") for line in run.stdout.splitlines())

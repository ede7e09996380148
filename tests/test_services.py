"""The services kit (issue 25, item 3): the loopback HTTP(S) base every simulator stands on,
and the test PKI with its OCSP responder and CRL."""
from __future__ import annotations

import datetime as dt
import http.client
import inspect
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from harness.services import HttpService, Request, Response, ServiceStopError, TestPKI, check_revocation, pki


class Echo(HttpService):
    """The smallest simulator: the base class and a handler."""

    def handle(self, request: Request) -> Response:
        return Response(200, request.body.upper())


def _post(url: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, data=body, headers={"Content-Type": "text/plain"}), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_smallest_simulator_is_a_base_class_and_a_handler_and_every_exchange_is_recorded():
    lines = [line for line in inspect.getsource(Echo).splitlines() if line.strip() and not line.strip().startswith('"""')]
    assert len(lines) == 3, lines  # class, def, return
    with Echo() as echo:
        assert _post(echo.base_url + "shout?x=1", b"bonjour") == (200, b"BONJOUR")
        assert _post(echo.base_url + "again", b"encore") == (200, b"ENCORE")
        [c] = echo.journal.connections[:1]
        assert c.accepted and c.peer.startswith("127.0.0.1:")
        first, second = echo.journal.exchanges
        assert (first.n, first.method, first.path, first.request, first.http_status, first.response, first.complete) == (
            1, "POST", "/shout?x=1", b"bonjour", 200, b"BONJOUR", True)
        assert first.content_type == "text/plain" and second.request == b"encore"


def test_a_request_over_the_size_bound_is_refused_and_its_start_kept():
    class Small(Echo):
        max_request = 1000

    with Small() as small:
        status, _ = _post(small.base_url, b"x" * 5000)
        assert status == 413
        [ex] = small.journal.exchanges
        assert not ex.complete and ex.http_status == 413 and ex.request == b"x" * 5000  # under the part kept of a refused one


def test_a_failing_handler_is_answered_500_and_recorded_and_the_service_keeps_serving():
    class Broken(HttpService):
        def handle(self, request: Request) -> Response:
            if request.path == "/boom":
                raise KeyError("nothing here")
            return Response(200, b"ok")

    with Broken() as broken:
        assert _post(broken.base_url + "boom", b"")[0] == 500
        assert _post(broken.base_url + "fine", b"") == (200, b"ok")
        assert broken.journal.exchanges[0].error == "KeyError: 'nothing here'"


def test_a_body_trickled_past_the_request_deadline_is_cut():
    class Patient(Echo):
        request_deadline = 1.0

    with Patient() as svc, socket.create_connection(("127.0.0.1", svc.port), timeout=5) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
        started, answer = time.monotonic(), b""
        s.settimeout(0.3)
        while not answer and time.monotonic() - started < 5:
            try:
                s.sendall(b"a")
                answer = s.recv(1000)
            except TimeoutError:
                continue
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 3
        assert not svc.journal.exchanges[-1].complete


def test_a_stop_that_fails_is_reported_not_ignored(monkeypatch):
    svc = Echo().start()
    monkeypatch.setattr(type(svc), "stop_timeout", 0.3)
    waker = svc.server._waker
    with socket.socket() as deaf:
        monkeypatch.setattr(svc.server, "_waker", deaf)  # the serving thread never hears it
        with pytest.raises(ServiceStopError) as caught:
            svc.stop()
    assert "did not stop: thread harness-service still alive after 0.3 s" in caught.value.message("en")
    monkeypatch.setattr(svc.server, "_waker", waker)
    assert svc.server.stop_serving(5) and not svc._thread.is_alive()  # heard now: ended, its wake-up pair closed
    assert svc.server._wake.fileno() == -1 and waker.fileno() == -1


def test_a_driver_gets_its_arguments_privately_and_is_killed_at_its_deadline():
    from harness import browser

    result, error = browser.run_driver("tests.driver_probe:echo", {"password": "s3cret-of-the-target", "n": 1}, total=30)
    assert error is None and result["args"] == {"password": "s3cret-of-the-target", "n": 1} and result["bytes"] == b"\x00\xff"
    assert "s3cret" not in result["cmdline"]  # not on the command line, which every local user can read
    started = time.monotonic()
    result, error = browser.run_driver("tests.driver_probe:hang", {}, total=1, grace=1)
    assert result is None and error.startswith("killed after 2 s") and time.monotonic() - started < 10


def test_a_collector_finds_the_running_service_of_its_class_by_its_address():
    class Other(HttpService):
        def handle(self, request: Request) -> Response:
            return Response(204)

    with Echo() as svc:
        assert Echo.running(svc.base_url) is svc and Echo.running(svc.base_url.rstrip("/")) is svc
        assert Other.running(svc.base_url) is None and HttpService.running(svc.base_url) is svc
    assert Echo.running(svc.base_url) is None  # stopped: no longer found


def test_a_stop_is_heard_at_once_and_a_connection_gone_before_its_accept_blocks_nothing():
    """socketserver's serve_forever hears a shutdown at its next poll only: 0.2 s for every
    simulator stopped, ten of them 2 s; here the serving thread is woken."""
    started = time.monotonic()
    for _ in range(10):
        svc = Echo().start()
        svc.stop()
        assert not svc._thread.is_alive()
    assert time.monotonic() - started < 1.5
    with Echo() as svc:
        for _ in range(5):  # reset at once (SO_LINGER 0): gone from the queue before it is accepted
            gone = socket.create_connection((svc.host, svc.port))
            gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            gone.close()
        assert _post(svc.base_url, b"still here") == (200, b"STILL HERE")


def test_a_silent_server_is_rehearsed_and_how_long_the_client_waited_is_recorded(tmp_path):
    """``Response(hold=...)``: nothing is said; the connection ends when the client gives up
    (recorded as the client's), at the bound (the service's), or when the service stops; over
    TLS too."""
    class Silent(HttpService):
        def handle(self, request: Request) -> Response:
            return Response(hold=float(request.path.strip("/")))

    authority = TestPKI("Kit test")
    pem, key = authority.issue("127.0.0.1", usage="server").write(tmp_path, "server")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pem, key)
    (tmp_path / "ca.pem").write_bytes(authority.anchors_pem())
    client_tls = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    for context, secure in ((None, None), (tls, client_tls)):
        with Silent(tls=context) as svc:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=secure))
            started = time.monotonic()
            with pytest.raises((TimeoutError, urllib.error.URLError, socket.timeout)):
                opener.open(urllib.request.Request(svc.base_url + "30", data=b"?"), timeout=0.5)
            waited = time.monotonic() - started
            deadline = time.monotonic() + 5
            while "held" not in svc.journal.exchanges[0].facts and time.monotonic() < deadline:
                time.sleep(0.02)
            gave_up = svc.journal.exchanges[0]
            assert gave_up.facts["ended_by"] == "client" and gave_up.http_status == 0 and gave_up.response == b""
            assert 0.4 < gave_up.facts["held"] < waited + 1.0, (gave_up.facts, waited)  # ended when the client left, not at 30 s
            started = time.monotonic()
            with pytest.raises((urllib.error.URLError, ConnectionError, http.client.RemoteDisconnected)):
                opener.open(urllib.request.Request(svc.base_url + "0.6", data=b"?"), timeout=5)
            assert 0.5 < time.monotonic() - started < 3
            bounded = svc.journal.exchanges[1]
            assert bounded.facts["ended_by"] == "service" and 0.55 < bounded.facts["held"] < 1.5
            if context is None:  # a stop ends a held connection: its thread does not outlive the service by the bound
                sock = socket.create_connection((svc.host, svc.port))
                sock.sendall(b"GET /60 HTTP/1.1\r\nHost: x\r\n\r\n")
                while len(svc.journal.exchanges) < 3 and time.monotonic() < deadline + 5:
                    time.sleep(0.02)
        if context is None:
            stopped = time.monotonic()
            while "held" not in svc.journal.exchanges[2].facts and time.monotonic() < stopped + 5:
                time.sleep(0.02)
            assert svc.journal.exchanges[2].facts["ended_by"] == "service" and svc.journal.exchanges[2].facts["held"] < 5
            sock.close()


def test_over_tls_a_client_certificate_is_described_and_the_service_may_refuse_it(tmp_path):
    authority = TestPKI("Kit test")
    server = authority.issue("127.0.0.1", usage="server")
    client = authority.issue("Client (test)", usage="client")
    refused = authority.issue("Refused (test)", usage="client")
    server_pem, server_key = server.write(tmp_path, "server")

    class Guarded(Echo):
        def accept(self, connection, der):
            if der and x509.load_der_x509_certificate(der).serial_number == refused.cert.serial_number:
                connection.error = "not this one"
                return False
            return True

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_pem, server_key)
    ctx.verify_mode = ssl.CERT_OPTIONAL
    ctx.load_verify_locations(cadata=authority.anchors_pem().decode())
    (tmp_path / "ca.pem").write_bytes(authority.anchors_pem())
    with Guarded(tls=ctx) as svc:
        assert svc.base_url.startswith("https://127.0.0.1:")
        for issued, stem in ((client, "client"), (refused, "refused")):
            cert, key = issued.write(tmp_path, stem)
            cctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            cctx.load_cert_chain(cert, key)
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=cctx))
            try:
                with opener.open(urllib.request.Request(svc.base_url, data=b"hi"), timeout=5) as r:
                    assert r.read() == b"HI"
            except (urllib.error.URLError, ConnectionError, ssl.SSLError):
                assert stem == "refused"
        good, bad = svc.journal.connections
        assert good.accepted and good.certificate["subject"].startswith("CN=Client (test)")
        assert not bad.accepted and bad.error == "not this one" and bad.certificate["serial"] == format(refused.cert.serial_number, "x")
        assert len(svc.journal.exchanges) == 1


# -- the PKI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority():
    with TestPKI("Kit test") as p:
        yield p


def test_the_pki_is_shaped_like_the_national_one(authority):
    root, inter = authority.root.cert, authority.intermediate.cert
    assert root.issuer == root.subject and inter.issuer == root.subject
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    inter.verify_directly_issued_by(root)
    responder = authority.responder_cert.cert
    assert x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING in responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    now = dt.datetime.now(dt.timezone.utc)
    cases = {v: authority.issue(f"{v} (test)", validity=v).cert for v in pki.VALIDITIES}
    assert cases["valid"].not_valid_before_utc < now < cases["valid"].not_valid_after_utc
    assert cases["expired"].not_valid_after_utc < now
    assert cases["not-yet-valid"].not_valid_before_utc > now
    assert cases["short"].not_valid_after_utc - now < dt.timedelta(days=pki.SHORT_DAYS + 1)
    signing = authority.issue("Signer (test)", usage="signing").cert
    assert signing.extensions.get_extension_for_class(x509.KeyUsage).value.content_commitment
    aia = cases["valid"].extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert aia[0].access_location.value == authority.service.ocsp_url


def test_the_ocsp_responder_answers_good_revoked_and_unknown_and_the_crl_agrees(authority):
    good = authority.issue("Good (test)").cert
    revoked = authority.issue("Revoked (test)").cert
    authority.revoke(revoked)
    stranger_ca = pki.self_signed_ca("Stranger (test)")
    stranger = pki.issue(stranger_ca, "Stranger client (test)", ocsp_url=authority.service.ocsp_url).cert

    assert check_revocation(good, authority.intermediate.cert).status == "good"
    found = check_revocation(revoked, authority.intermediate.cert)
    assert (found.status, found.method, found.reason) == ("revoked", "ocsp", "key_compromise") and found.revoked_at
    # another authority's certificate: the responder is not authorised to answer (RFC 6960 4.2.1)
    req = ocsp.OCSPRequestBuilder().add_certificate(stranger, stranger_ca.cert, hashes.SHA256()).build()
    status, body = _post(authority.service.ocsp_url, req.public_bytes(serialization.Encoding.DER))
    assert status == 200 and ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert ocsp.load_der_ocsp_response(_post(authority.service.ocsp_url, b"garbage")[1]).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    crl = x509.load_der_x509_crl(pki.fetch_crl(authority.service.crl_url))
    assert crl.is_signature_valid(authority.intermediate.cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
    assert crl.get_revoked_certificate_by_serial_number(good.serial_number) is None
    served = [e.facts.get("served") for e in authority.service.journal.exchanges]
    assert served.count("ocsp") >= 4 and "crl" in served
    statuses = {e.facts.get("serial"): e.facts.get("cert_status") for e in authority.service.journal.exchanges if e.facts.get("served") == "ocsp"}
    assert statuses[format(revoked.serial_number, "x")] == "revoked" and statuses[format(good.serial_number, "x")] == "good"


def test_when_the_responder_is_down_the_crl_answers_and_off_loopback_nothing_is_asked(authority):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/ocsp"  # nobody listens there
    revoked = pki.issue(authority.intermediate, "Revoked, CRL only (test)", ocsp_url=dead, crl_url=authority.service.crl_url)
    authority.issued[revoked.cert.serial_number] = revoked.cert
    authority.revoke(revoked.cert)
    found = check_revocation(revoked.cert, authority.intermediate.cert, deadline=5)
    assert (found.status, found.method) == ("revoked", "crl")
    assert found.consulted[0]["method"] == "ocsp" and found.consulted[0]["error"]
    far = pki.issue(authority.intermediate, "Far (test)", ocsp_url="http://ocsp.example.org/", crl_url="http://crl.example.org/x.crl")
    found = check_revocation(far.cert, authority.intermediate.cert)
    assert found.status == "unchecked" and "not on loopback" in found.error
    assert check_revocation(pki.issue(authority.intermediate, "Silent (test)").cert, authority.intermediate.cert).status == "unchecked"


def test_a_forged_ocsp_answer_is_not_believed(authority):
    """An answer signed by a key the issuer never delegated is refused: the certificate's
    status stays unchecked, never good."""
    impostor = TestPKI("Impostor")
    victim: list[x509.Certificate] = []

    class Forger(HttpService):
        def handle(self, request: Request) -> Response:
            now = pki.now()
            forged = (ocsp.OCSPResponseBuilder().add_response(
                cert=victim[0], issuer=authority.intermediate.cert, algorithm=hashes.SHA256(), cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=now, next_update=now + dt.timedelta(hours=1), revocation_time=None, revocation_reason=None)
                .responder_id(ocsp.OCSPResponderEncoding.HASH, impostor.responder_cert.cert).certificates([impostor.responder_cert.cert])
                .sign(impostor.responder_cert.key, hashes.SHA256()))
            return Response(200, forged.public_bytes(serialization.Encoding.DER), pki.OCSP_TYPE)

    with Forger() as forger:
        victim.append(pki.issue(authority.intermediate, "Victim (test)", ocsp_url=forger.base_url + "ocsp").cert)
        found = check_revocation(victim[0], authority.intermediate.cert)
        assert found.status == "unchecked" and "signature does not verify" in found.error, found


def test_the_kits_public_surface_resolves_and_is_pinned():
    import harness.services as kit

    assert sorted(kit.__all__) == ["BoundedServer", "Connection", "ConnectionBounds", "Exchange", "HttpService", "Issued", "Journal", "Request",
                                   "Response", "Revocation", "ServiceStopError", "TestPKI", "browser", "check_revocation", "pki"]
    for name in kit.__all__:
        assert getattr(kit, name).__name__.rsplit(".", 1)[-1] == name
    with pytest.raises(AttributeError):
        kit.nothing_here  # noqa: B018


def test_a_collector_reads_what_the_service_behind_an_endpoint_says_of_itself():
    """A plugin learns what another plugin's service issued (the DMP simulator's client
    credentials) through the target's endpoint, never by importing that plugin."""
    from harness.running.context import CollectContext
    from harness.running.target import Target

    asked = []
    target = Target(None, {"endpoints": {"dmp": "service://dmp/", "page": "http://127.0.0.1:9/page"}})
    ctx = CollectContext(target=target, record=None, http=None, service_url=lambda n: "https://127.0.0.1:1/", lang="en",
                         service_info=lambda n: asked.append(n) or {"credentials": f"/run/{n}"})
    assert ctx.endpoint_service("dmp") == {"credentials": "/run/dmp"} and asked == ["dmp"]
    assert ctx.endpoint_service("page") is None and ctx.endpoint_service("absent") is None and asked == ["dmp"]


def test_a_simulators_credentials_folder_is_removed_only_when_it_made_it(tmp_path):
    from harness import pki

    made = pki.ServiceCredentials("T", org="T (test)")
    assert {p.name for p in made.folder.iterdir()} == {"ca.pem", "server.pem", "server.key"}
    made.close()
    made.close()  # closing twice is harmless (a simulator that failed to start closes it too)
    assert not made.folder.exists()
    kept = pki.ServiceCredentials("T", org="T (test)", folder=tmp_path / "mine")
    kept.close()
    assert (tmp_path / "mine" / "ca.pem").exists()

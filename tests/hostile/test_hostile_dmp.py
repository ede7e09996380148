"""Hostile submissions to the DMP simulator: each is answered with an error, recorded, and
the simulator keeps serving."""
import socket
import ssl
import threading
import time

import pytest
import requests
from lxml import etree

from harness.services.http import KEPT_OF_REFUSED
from harness_dmp import simulator as sim_module
from harness_dmp import soap
from harness_dmp.simulator import DmpSimulator
from tests.hostile.storm import slowloris

PROVIDE = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"


@pytest.fixture
def sim():
    s = DmpSimulator(max_request=2 * 1024 * 1024, max_document=256 * 1024).start()
    yield s
    s.stop()


def client(sim) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.verify = str(sim.credentials / "ca.pem")
    session.cert = (str(sim.credentials / "client.pem"), str(sim.credentials / "client.key"))
    return session


def post(sim, data: bytes, content_type: str) -> requests.Response:
    return client(sim).post(sim.base_url, data=data, headers={"Content-Type": content_type}, timeout=10)


def envelope(body: str, action: str = PROVIDE, security: bool = True) -> bytes:
    vihf = ('<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
            '<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="_x"/></wsse:Security>') if security else ""
    return (f'<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing">'
            f'<soap:Header><wsa:Action>{action}</wsa:Action>{vihf}</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>').encode()


def fault_subcode(res: requests.Response) -> str:
    root = etree.fromstring(res.content)
    return root.findtext(".//{http://www.w3.org/2003/05/soap-envelope}Subcode/{http://www.w3.org/2003/05/soap-envelope}Value")


def still_serving(sim) -> bool:
    res = post(sim, envelope("<x/>", action="urn:ihe:iti:2007:RegistryStoredQuery"), "application/soap+xml")
    return res.status_code in (200, 400) and res.headers["Content-Type"].startswith(("multipart/related", "application/soap+xml"))


PROVIDE_BODY = ('<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="urn:ihe:iti:xds-b:2007">'
                '<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"/>'
                '<xdsb:Document id="Document01"><xop:Include xmlns:xop="http://www.w3.org/2004/08/xop/include" href="cid:doc1"/></xdsb:Document>'
                '</xdsb:ProvideAndRegisterDocumentSetRequest>')


# (case, content type, body) -> the fault subcode or registry error code, and the HTTP status
CASES = {
    "multipart without boundary": ("multipart/related; type=\"application/xop+xml\"", b"--x\r\n\r\n", "BrokenMime", 400),
    "mtom part missing": (None, None, "MissingPart", 400),
    "external entity": ("application/soap+xml", b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + envelope("&x;"),
                        "InvalidXml", 400),
    "billion laughs": ("application/soap+xml", b'<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>' + envelope("&b;"), "InvalidXml", 400),
    "not xml": ("application/soap+xml", b"\x00\x01 this is not XML", "InvalidXml", 400),
    "soap 1.1": ("text/xml", b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body/></s:Envelope>', "VersionMismatch", 400),
    "unknown action": ("application/soap+xml", envelope("<x/>", action="urn:example:unknown"), "wsa:ActionNotSupported", 400),
    "no vihf": ("application/soap+xml", envelope(PROVIDE_BODY, security=False), "wsse:InvalidSecurity", 400),
    "wrong media type": ("application/json", b"{}", "UnsupportedMediaType", 400),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_hostile_request_is_answered_recorded_and_survived(sim, case):
    content_type, data, code, status = CASES[case]
    if case == "mtom part missing":
        content_type, data = soap.package(etree.fromstring(envelope(PROVIDE_BODY)), [])
    res = post(sim, data, content_type)
    assert (res.status_code, fault_subcode(res)) == (status, code)
    ex = sim.journal.exchanges[-1]
    assert ex.outcome == "Fault" and ex.errors[0][0] == code
    assert ex.complete and ex.request == data
    assert b"root:" not in res.content  # no entity was ever expanded
    assert still_serving(sim)


def tls_socket(sim) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(sim.credentials / "ca.pem"))
    ctx.load_cert_chain(sim.credentials / "client.pem", sim.credentials / "client.key")
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", sim.port), timeout=5), server_hostname="127.0.0.1")


def test_a_request_over_the_limit_is_refused_at_its_headers_and_its_start_kept(sim):
    # a client announcing 3 MiB (the limit is 2): the answer comes before the body is read,
    # as a client using "Expect: 100-continue" would wait for it
    with tls_socket(sim) as tls:
        tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\nContent-Length: 3145728\r\n\r\n" + b"<" * 70000)
        answer = tls.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")
    ex = sim.journal.exchanges[-1]
    assert (ex.complete, ex.outcome, ex.errors[0][0], len(ex.request)) == (False, "Fault", "RequestTooLarge", KEPT_OF_REFUSED)
    assert still_serving(sim)


def test_an_oversized_document_is_a_registry_error(sim):
    env = etree.fromstring(envelope(PROVIDE_BODY))
    content_type, data = soap.package(env, [("doc1", b"<ClinicalDocument/>" + b" " * (300 * 1024), "text/xml")])
    res = post(sim, data, content_type)
    assert res.status_code == 200
    ex = sim.journal.exchanges[-1]
    assert ex.outcome == "Failure" and "XDSRepositoryError" in [c for c, _ in ex.errors]
    assert still_serving(sim)


def test_a_hostile_document_inside_a_valid_package_is_refused_unexpanded(sim):
    hostile = b'<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3">&x;</ClinicalDocument>'
    env = etree.fromstring(envelope(PROVIDE_BODY))
    content_type, data = soap.package(env, [("doc1", hostile, "text/xml")])
    res = post(sim, data, content_type)
    assert res.status_code == 200
    codes = [c for c, _ in sim.journal.exchanges[-1].errors]
    assert "XDSMissingDocumentMetadata" in codes and b"root:" not in res.content


def test_a_stalled_client_times_out_and_others_are_served(monkeypatch):
    # the simulator's bound without a byte, shortened (10 s by default)
    monkeypatch.setattr(sim_module.DmpSimulator, "bounds", sim_module.ConnectionBounds(max_connections=32, deadline=300.0, idle=2.0))
    sim = DmpSimulator(max_request=2 * 1024 * 1024, max_document=256 * 1024).start()
    try:
        tls = tls_socket(sim)
        tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\nContent-Length: 1000\r\n\r\n<soap")
        assert still_serving(sim)  # meanwhile
        started = time.monotonic()
        tls.settimeout(sim.bounds.idle + 10)  # the server's bound ends it; the client waits longer than that
        answer = tls.recv(65536)
        assert 1.0 < time.monotonic() - started < sim.bounds.idle + 5  # ended by that bound, not by the request deadline
        assert answer == b"" or b"400" in answer.split(b"\r\n")[0]  # closed, or answered as broken
        tls.close()
        assert still_serving(sim)
    finally:
        sim.stop()


def test_plain_http_and_missing_certificates_are_recorded_handshakes(sim):
    with socket.create_connection(("127.0.0.1", sim.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            s.recv(100)
        except OSError:
            pass
    deadline = time.monotonic() + 5
    while not sim.journal.connections and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.journal.connections[-1].accepted is False and sim.journal.connections[-1].error
    anonymous = requests.Session()
    anonymous.trust_env = False
    anonymous.verify = str(sim.credentials / "ca.pem")
    res = anonymous.post(sim.base_url, data=envelope("<x/>"), headers={"Content-Type": "application/soap+xml"}, timeout=10)
    assert res.status_code == 400  # served (the DMP-TLS check judges the missing certificate)
    assert sim.journal.connections[-1].accepted and sim.journal.connections[-1].certificate is None
    assert still_serving(sim)


def test_fifty_clients_at_once_are_all_answered(sim):
    results = []

    def one():
        try:
            results.append(post(sim, envelope("<x/>", action="urn:ihe:iti:2007:RegistryStoredQuery"), "application/soap+xml").status_code)
        except requests.RequestException as exc:
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 50


@pytest.mark.parametrize("size_line", [b"-1", b"+10", b"0x10", b"1 0", b"", b"ffffffffffffffffff"])
def test_a_chunk_size_that_is_no_size_is_refused_before_any_body_is_read(sim, size_line):
    """A chunk size of -1 made the simulator read to the end of the stream (300 MiB: 673 MB
    resident, a bundle its own verify refused); any size that is not hexadecimal digits is now
    a broken request, refused at once while the client is still sending, the body never read."""
    before = len(sim.journal.exchanges)
    tls = tls_socket(sim)
    tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n"
                + size_line + b"\r\n")
    started = time.monotonic()

    def flood():  # what follows the size: 4 s of data the simulator must not wait for
        try:
            while time.monotonic() - started < 4:
                tls.sendall(b"<" * 16384)
                time.sleep(0.05)
        except OSError:
            pass

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    while len(sim.journal.exchanges) == before and time.monotonic() - started < 10:
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    sender.join(10)
    tls.close()
    ex = sim.journal.exchanges[-1]
    assert elapsed < 1.5 and ex.errors[0][0] == "BrokenRequest" and len(ex.request) == 0, (elapsed, ex.errors)
    assert still_serving(sim)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_trickled_a_byte_a_second_is_cut_at_the_request_deadline(sim, monkeypatch, chunked):
    monkeypatch.setattr(sim, "request_deadline", 2.0)
    with tls_socket(sim) as tls:
        framing = b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n" if chunked else b"Content-Length: 1000\r\n\r\n"
        tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\n" + framing)
        started = time.monotonic()
        tls.settimeout(0.5)
        answer = b""
        while time.monotonic() - started < 8 and not answer:
            try:
                tls.sendall(b"<")
                answer = tls.recv(65536)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                break
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408") and elapsed < 5, (answer[:60], elapsed)
    ex = sim.journal.exchanges[-1]
    assert ex.errors[0][0] == "RequestTimeout" and not ex.complete and 0 < len(ex.request) < 100
    assert still_serving(sim)


def test_a_slowloris_holds_no_more_than_the_connection_bound(monkeypatch):
    """A hundred clients that complete their handshake then send a header byte every 0.4 s
    (never idle, never done): at most the bound are served at once, the others are closed
    after a short wait, each held one is cut at its deadline, and a client is served after."""
    monkeypatch.setattr(sim_module.DmpSimulator, "bounds",
                        sim_module.ConnectionBounds(max_connections=8, deadline=3.0, idle=1.0, wait=0.05))
    sim = DmpSimulator().start()
    try:
        ended = slowloris(lambda: tls_socket(sim), byte=b"P", seconds=20)
        assert len(ended) == 100 and max(ended) < 15, sorted(ended)[-5:]
        assert sim.server.peak <= 8 and sim.server.refused > 0 and sim.server.cut > 0
        assert still_serving(sim)
    finally:
        sim.stop()

"""The INSi stand-in: the Assurance Maladie's INS teleservice played on loopback, on the core's
services kit (TLS with a client certificate of its own test PKI, bounds, the journal).

A software calls it as it calls INSi: SOAP 1.2 over HTTPS, authenticated by the structure's
certificate (or a professional's), the body one of the two searches of :mod:`.insi`, the header
saying which software calls (``ContexteLPS``: its name, version and authorisation number,
``IDAM``) and the action (``wsa:Action``). It answers from its identities (:data:`insi.IDENTITIES`,
or those a test gives it) with the report INSi gives (``00``, ``01``, ``02``), and can be made
to fail as a real service does: unavailable for its first calls (``fail_first``), slow
(``delay``). Every call is recorded with what it asked and what it was answered.

Its credentials folder holds what the software needs to call it: ``ca.pem`` (trust), the
structure's certificate ``client.pem``/``client.key`` (CN ``INSI-AUTO``: the public INSi client
warns that another CN gets the fault ``DESIR_560``), and variants a test presents:
``client-expired``, ``client-revoked`` (refused through the PKI's OCSP responder).

Faults are SOAP 1.2 faults with the service's detail element (``siram:Erreur``, a code, the
message's id, a severity), the shape INSi's test environment answers (@padoa/tlsi-ins,
``src/ins/fixtures/service-errors``); the codes of the faults only the stand-in gives are its own,
prefixed ``harness_`` (:data:`insi.MALFORMED`).
"""
from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

from lxml import etree

from harness import ConnectionBounds, HttpService, Request, Response, UnsafeInput, parse_xml, pki

from . import insi

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
LPS = "urn:siram:lps:ctxlps"
SIRAM = "urn:siram"
CONTENT_TYPE = "application/soap+xml; charset=UTF-8"
CA_FILE, SERVER = "ca.pem", "server"
CLIENTS = {"client": "valid", "client-expired": "expired", "client-revoked": "valid"}
CLIENT_CN = "INSI-AUTO"
REVOCATION_DEADLINE = 5.0  # seconds to learn a client certificate's status
MAX_DELAY = 60.0  # seconds a slow answer may be held back at most


class InsiStandIn(HttpService):
    name = "insi"
    server_header = "harness-insi"
    bounds = ConnectionBounds(max_connections=32, deadline=120.0, idle=10.0)
    max_request = 256 * 1024  # a search is a few kilobytes
    request_deadline = 20.0

    def __init__(self, *, port: int = 0, credentials: Path | None = None, identities: tuple[insi.Identity, ...] = insi.IDENTITIES,
                 fail_first: int = 0, delay: float = 0.0, history_order: str = "schema") -> None:
        if history_order not in insi.HISTORY_ORDERS:
            raise ValueError(f"history_order: {history_order!r}, expected one of {', '.join(insi.HISTORY_ORDERS)}")
        self.history_order = history_order
        self.identities = list(identities)
        self.fail_first, self.delay = max(0, int(fail_first)), min(max(0.0, float(delay)), MAX_DELAY)
        self._calls = 0
        self._lock = threading.Lock()
        self.down = False  # set by the harness: every call answered as by a service that is down, until cleared
        self._credentials = pki.ServiceCredentials("Harness INSi", org="Harness INSi stand-in (test)", folder=credentials, prefix="harness-insi-")
        self.pki, self.credentials = self._credentials.pki, self._credentials.folder
        try:
            key = None
            for stem, validity in CLIENTS.items():
                issued = self.pki.issue(CLIENT_CN, org="Cabinet Démo (test)", validity=validity, key=key)
                key = issued.key
                issued.write(self.credentials, stem)
                if stem == "client-revoked":
                    self.pki.revoke(issued.cert)
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(self.credentials / f"{SERVER}.pem", self.credentials / f"{SERVER}.key")
            ctx.verify_mode = ssl.CERT_OPTIONAL  # no certificate: answered with a fault, recorded
            ctx.load_verify_locations(cadata=self.pki.anchors_pem().decode())
            super().__init__(port=port, tls=ctx)
        except BaseException:
            self._credentials.close()
            raise

    # -- the kit's hooks ------------------------------------------------------------------------

    def accept(self, connection, der: bytes | None) -> bool:
        """A revoked certificate is refused at the handshake's end (OCSP, then the CRL)."""
        return pki.refuse_revoked(connection, der, self.pki.intermediate.cert, deadline=REVOCATION_DEADLINE)

    def refusal(self, exchange, status: int, why: str, detail: str) -> Response:
        return self._fault(exchange, "Receiver" if why == "internal" else "Sender", f"harness_{why}", detail, status=status,
                           close=why != "internal")

    def handle(self, request: Request) -> Response:
        ex = request.exchange
        if request.method != "POST":
            return Response(405, b"POST only\n", close=True)
        with self._lock:
            self._calls += 1
            unavailable = self._calls <= self.fail_first or self.down
        if unavailable:  # the service down: no SOAP answer at all, as a gateway says it
            ex.facts.update({"outcome": "unavailable", **({"asked": asked} if (asked := _asked(request.body)) else {})})
            return Response(503, b"Service Unavailable\n", headers={"Retry-After": "1"})
        if self.delay:
            time.sleep(self.delay)
            ex.facts["delayed"] = self.delay
        if request.peer_certificate is None:
            return self._fault(ex, "Sender", "harness_no_certificate", "Authentification du client requise : aucun certificat présenté")
        try:
            envelope = parse_xml(request.body).getroot()
        except UnsafeInput as exc:
            return self._fault(ex, "Sender", insi.MALFORMED, f"XML illisible : {str(exc)[:200]}")
        if envelope.tag != f"{{{SOAP}}}Envelope":
            return self._fault(ex, "Sender", "harness_not_soap12", "Enveloppe SOAP 1.2 attendue")
        header, body = envelope.find(f"{{{SOAP}}}Header"), envelope.find(f"{{{SOAP}}}Body")
        ex.facts["message_id"] = _text(header, f"{{{WSA}}}MessageID")
        action = _text(header, f"{{{WSA}}}Action")
        ex.facts["action"] = action
        lps = header.find(f"{{{LPS}}}ContexteLPS/{{{LPS}}}LPS") if header is not None else None
        ex.facts["software"] = {k: _text(lps, f"{{{LPS}}}{k}") for k in ("IDAM", "Nom", "Version", "Instance")} if lps is not None else None
        question = next(iter(body), None) if body is not None else None
        if question is None or not isinstance(question.tag, str):
            return self._fault(ex, "Sender", insi.MALFORMED, "Corps de requête absent")
        operation = insi.OPERATIONS.get(action)
        if operation is None or insi.BODIES.get(question.tag) != operation:
            return self._fault(ex, "Sender", "harness_unknown_operation", f"Action inconnue ou sans rapport avec le corps : {action or '-'}")
        try:
            query = insi.read_query(question)
        except insi.InsiError as exc:
            return self._fault(ex, "Sender", exc.code, exc.text)
        code, found = insi.search(self.identities, query)
        ex.facts.update({"operation": operation, "asked": query.facts(), "code": code, "outcome": "answered"})
        if code == insi.FOUND:
            ex.facts["ins"] = {"ins": found[0].active.matricule + found[0].active.key, "oid": found[0].active.oid}
            ex.facts["answer"] = insi.read_result(insi.result(code, found[0]))  # what the software was told: INS, replaced ones, traits
        answer = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP})
        etree.SubElement(answer, f"{{{SOAP}}}Body").append(insi.result(code, found[0] if code == insi.FOUND else None,
                                                                       history_order=self.history_order))
        return Response(200, etree.tostring(answer, xml_declaration=True, encoding="UTF-8"), CONTENT_TYPE)

    def _fault(self, ex, code: str, subcode: str, text: str, *, status: int | None = None, close: bool = False) -> Response:
        env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP})
        fault = etree.SubElement(etree.SubElement(env, f"{{{SOAP}}}Body"), f"{{{SOAP}}}Fault")
        c = etree.SubElement(fault, f"{{{SOAP}}}Code")
        etree.SubElement(c, f"{{{SOAP}}}Value").text = f"soap:{code}"
        etree.SubElement(etree.SubElement(c, f"{{{SOAP}}}Subcode"), f"{{{SOAP}}}Value").text = f"soap:{subcode}"
        reason = etree.SubElement(etree.SubElement(fault, f"{{{SOAP}}}Reason"), f"{{{SOAP}}}Text")
        reason.set("{http://www.w3.org/XML/1998/namespace}lang", "fr")
        reason.text = text
        detail = etree.SubElement(etree.SubElement(fault, f"{{{SOAP}}}Detail"), f"{{{SIRAM}}}Erreur", nsmap={"siram": SIRAM})
        detail.set("code", subcode)
        detail.set("messageID", ex.facts.get("message_id", ""))
        detail.set("severite", "erreur")
        detail.text = text
        ex.facts.update({"outcome": "fault", "fault": subcode, "reason": text[:300]})
        return Response(status or (400 if code == "Sender" else 500), etree.tostring(env, xml_declaration=True, encoding="UTF-8"),
                        CONTENT_TYPE, close=close)

    # -- running --------------------------------------------------------------------------------

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._credentials.close()


def _asked(body: bytes) -> dict | None:
    """What a request asked, when it can be read (recorded for a call the service did not answer:
    whose registration it was)."""
    try:
        envelope = parse_xml(body).getroot()
        question = next(iter(envelope.find(f"{{{SOAP}}}Body")), None)
        return insi.read_query(question).facts() if question is not None else None
    except (UnsafeInput, insi.InsiError, TypeError, AttributeError):
        return None


def _text(parent: etree._Element | None, tag: str) -> str:
    found = parent.find(tag) if parent is not None else None
    return "".join(found.itertext()).strip()[:200] if found is not None else ""

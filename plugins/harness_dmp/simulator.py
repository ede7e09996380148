"""The DMP simulator: an XDS.b registry and repository on loopback, over TLS with client
certificates, that records every connection and every exchange.

Built on the services kit (:class:`harness.HttpService`: one thread per connection, the TLS
handshake in it, bounds, the journal) and its test PKI (:class:`harness.TestPKI`: root,
intermediate, OCSP responder and CRL). A failed handshake (no certificate accepted, an
expired one, an unknown authority) is recorded with its reason; a certificate the PKI has
revoked is refused once its OCSP responder says so (the DMP blocks expired and revoked
certificates). Each request is read whole within bounds, recorded raw, then parsed (MTOM,
SOAP, metadata, documents, VIHF) and answered: the transaction's response, a registry error
list, or a SOAP fault. Nothing a client sends makes it crash: an unexpected error is
answered as a Receiver fault and recorded.

Collectors find the running simulator of their process through :func:`running`.
"""
from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from lxml import etree

from harness import ConnectionBounds, Exchange, HttpService, Request, Response, catalogue, pki

from . import soap, vihf
from harness_xds.registry import Outcome, Registry

M = catalogue(__name__)

ACTIONS = {
    "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b": "ITI-41",
    "urn:ihe:iti:2007:RegistryStoredQuery": "ITI-18",
    "urn:ihe:iti:2007:RetrieveDocumentSet": "ITI-43",
    "urn:ihe:iti:2010:UpdateDocumentSet": "ITI-57",
}
BODIES = {"ProvideAndRegisterDocumentSetRequest": "ITI-41", "AdhocQueryRequest": "ITI-18", "RetrieveDocumentSetRequest": "ITI-43",
          "SubmitObjectsRequest": "ITI-57"}
RESPONSE_ACTIONS = {t: a + "Response" for a, t in ACTIONS.items()}
MAX_REQUEST = 64 * 1024 * 1024
MAX_DOCUMENT = 32 * 1024 * 1024
READ_TIMEOUT = 10.0  # seconds without a byte from the client
REQUEST_DEADLINE = 60.0  # seconds to read one request in all
REVOCATION_DEADLINE = 5.0  # seconds to learn a client certificate's status
CA_FILE = "ca.pem"
SERVER = "server"
# the client certificates a vendor (and the demo) may present: a good one, and one for each
# case the simulator must tell apart
CLIENT_VALIDITY = {"client": "valid", "client-expired": "expired", "client-not-yet-valid": "not-yet-valid",
                   "client-expiring": "short", "client-revoked": "valid"}
_FAULTS = {"broken": ("Sender", "BrokenRequest", "sim.read_failed", "error"), "too-large": ("Sender", "RequestTooLarge", "sim.too_large", "limit"),
           "deadline": ("Sender", "RequestTimeout", "sim.too_slow", "seconds"), "internal": ("Receiver", "InternalError", "sim.internal", "error")}


def running(base_url: str) -> "DmpSimulator | None":
    return DmpSimulator.running(base_url)


@dataclass
class XdsExchange(Exchange):
    transaction: str = ""
    action: str = ""
    outcome: str = ""  # Success, PartialSuccess, Failure, Fault
    errors: list[tuple[str, str]] = field(default_factory=list)
    documents: list[tuple[str, bytes]] = field(default_factory=list)
    metadata: bytes | None = None
    assertion: bytes | None = None


class DmpSimulator(HttpService):
    """The simulator: its PKI, its TLS server, its registry, its journal."""

    name = "dmp-simulator"
    server_header = "HarnessDMPSimulator/1"
    # a client's connections: 32 at once, 5 minutes each in all (a keep-alive session of
    # several transactions), READ_TIMEOUT without a byte
    bounds = ConnectionBounds(max_connections=32, deadline=300.0, idle=READ_TIMEOUT)
    request_deadline = REQUEST_DEADLINE
    exchange_type = XdsExchange

    def __init__(self, *, port: int = 0, credentials: Path | None = None, trust: list[Path] = (), refuse: bool = False,
                 max_request: int = MAX_REQUEST, max_document: int = MAX_DOCUMENT, patients: tuple[str, ...] = ()) -> None:
        self.max_request = max_request
        self.refuse = refuse
        # the patients it knows: the test INS of the DMP platform (DMP-REG-01), and those the
        # target declares (``[services.dmp] patients``, as CX: ``ID^^^&OID&ISO``)
        self.registry = Registry(max_document, patients=patients)
        self._credentials = pki.ServiceCredentials("Harness DMP", org="Harness DMP simulator (test)", folder=credentials, prefix="harness-dmp-")
        self.pki, self.credentials = self._credentials.pki, self._credentials.folder
        try:
            self._write_client_certificates()
        except BaseException:
            self._credentials.close()
            raise
        self.trusted: list[x509.Certificate] = self.pki.anchors + [c for p in trust for c in x509.load_pem_x509_certificates(Path(p).read_bytes())]
        try:
            super().__init__(port=port, tls=self._context())
        except BaseException:
            self._credentials.close()
            raise

    def _write_client_certificates(self) -> None:
        key = None  # the variants share one key: they differ only in what the simulator must tell apart
        for stem, validity in CLIENT_VALIDITY.items():
            issued = self.pki.issue("Cabinet Démo (test)", org="Éditeur Exemple SAS", validity=validity, key=key)
            key = issued.key
            issued.write(self.credentials, stem)
            if stem == "client-revoked":
                self.pki.revoke(issued.cert)
        stranger = pki.self_signed_ca("Unknown CA")
        pki.issue(stranger, "Cabinet Démo (test)", org="Éditeur Exemple SAS", key=key).write(self.credentials, "client-unknown-ca")

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.credentials / f"{SERVER}.pem", self.credentials / f"{SERVER}.key")
        if self.refuse:
            # the addresses of systems that keep calling with a refused certificate are
            # blocked: every certificate fails (a trust store of an authority nobody uses)
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=pki.pem(pki.self_signed_ca("Nobody").cert).decode())
        else:
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_verify_locations(cadata="".join(pki.pem(c).decode() for c in self.trusted))
        return ctx

    # -- the kit's hooks ------------------------------------------------------------------------

    def accept(self, connection, der: bytes | None) -> bool:
        """A certificate of the simulator's PKI is checked with its OCSP responder (its CRL
        if the responder fails): a revoked one is refused, as the DMP does."""
        return pki.refuse_revoked(connection, der, self.pki.intermediate.cert, deadline=REVOCATION_DEADLINE)

    def refusal(self, exchange, status: int, why: str, detail: str) -> Response:
        code, subcode, key, param = _FAULTS[why]
        return self._fault(exchange, soap.SoapError(code, subcode, M(key, **{param: detail})), status=status if why != "internal" else None,
                           close=why != "internal")

    def handle(self, request: Request) -> Response:
        ex = request.exchange
        if request.method != "POST":
            return Response(405, b"POST only\n", close=True)
        try:
            outcome = self.process(ex)
        except soap.SoapError as exc:
            return self._fault(ex, exc)
        except Exception as exc:  # never a crash: an unexpected error is the Receiver's fault, recorded
            return self._fault(ex, soap.SoapError("Receiver", "InternalError", M("sim.internal", error=f"{type(exc).__name__}: {exc}")))
        env = soap.envelope(RESPONSE_ACTIONS.get(ex.transaction, ""), outcome.body, relates_to=ex.facts.get("message_id", ""))
        content_type, data = soap.package(env, outcome.attachments)
        ex.outcome, ex.errors = outcome.status, outcome.errors
        ex.facts.update(outcome.facts)
        return Response(200, data, content_type)

    def _fault(self, ex, exc: soap.SoapError, status: int | None = None, close: bool = False) -> Response:
        env = soap.fault(exc.code, exc.subcode, exc.reason.render("fr"), ex.facts.get("message_id", ""))
        data = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
        ex.outcome, ex.errors = "Fault", [(exc.subcode, exc.reason.render("fr"))]
        return Response(status or (400 if exc.code in ("Sender", "VersionMismatch") else 500), data,
                        "application/soap+xml; charset=UTF-8", close=close)

    def process(self, ex: "XdsExchange") -> Outcome:
        req = soap.parse(ex.content_type, ex.request)
        ex.facts["message_id"] = req.message_id
        ex.action = req.action
        ex.transaction = ACTIONS.get(req.action) or BODIES.get(etree.QName(req.body).localname if req.body is not None else "", "")
        assertion = vihf.find(req.envelope)
        if assertion is not None:
            ex.assertion = etree.tostring(assertion)
        if req.body is None or not ex.transaction:
            raise soap.SoapError("Sender", "wsa:ActionNotSupported", M("sim.unknown_action", action=req.action or "-"))
        request = None
        if ex.transaction in ("ITI-41", "ITI-57"):
            from harness_xds import ebrim

            request = ebrim.find_request(req.body)
            if request is not None:
                ex.metadata = etree.tostring(request)
        if assertion is None:
            raise soap.SoapError("Sender", "wsse:InvalidSecurity", M("sim.no_vihf"))
        if ex.transaction == "ITI-41":
            outcome = self._provide(req)
        elif ex.transaction == "ITI-43":
            outcome = self.registry.retrieve(req.body, soap.include)
        else:
            outcome = {"ITI-18": self.registry.query, "ITI-57": self.registry.update}[ex.transaction](req.body)
        unused = sorted(set(req.parts) - req.used)
        if unused:
            outcome.facts["unreferenced_parts"] = unused
        ex.documents = outcome.documents
        return outcome

    def _provide(self, req: soap.Request) -> Outcome:
        """ITI-41 over SOAP/MTOM: the documents are the request's attachments."""
        from harness_xds import ebrim

        request = ebrim.find_request(req.body)
        if request is None:
            raise soap.SoapError("Sender", "XDSRegistryMetadataError", M("reg.no_submit_objects"))
        docs = {el.get("id") or "": req.content(el) for el in req.body if isinstance(el.tag, str) and ebrim.local(el) == "Document"}
        return self.registry.provide_set(request, docs)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self._credentials.close()


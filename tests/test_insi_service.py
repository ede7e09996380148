"""The INSi stand-in on loopback (harness_ins.insi_service): a search over mutual TLS answered
from its identities and recorded; the failures a real service has (down, no certificate, a
revoked or expired one); and hostile requests, each answered with a fault and recorded."""
import uuid

import pytest
import requests

from harness import parse_xml
from harness_ins import insi
from harness_ins.insi_service import InsiStandIn

ENVELOPE = """<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope">
<soap:Header><ctxlps:ContexteLPS xmlns:ctxlps="urn:siram:lps:ctxlps" Nature="CTXLPS" Version="01_00"><ctxlps:Id>{id}</ctxlps:Id>
<ctxlps:LPS><ctxlps:IDAM R="4">HARNESS-TEST</ctxlps:IDAM><ctxlps:Version>3.2.1</ctxlps:Version><ctxlps:Nom>Cabinet Démo</ctxlps:Nom></ctxlps:LPS>
</ctxlps:ContexteLPS><wsa:Action xmlns:wsa="http://www.w3.org/2005/08/addressing">{action}</wsa:Action>
<wsa:MessageID xmlns:wsa="http://www.w3.org/2005/08/addressing">uuid:{id}</wsa:MessageID></soap:Header>
<soap:Body>{body}</soap:Body></soap:Envelope>"""
ECETINSI = ("<RECSANSVITALE xmlns='http://www.cnamts.fr/INSiRecSans'><NomNaissance>ECETINSI</NomNaissance><Prenom>PIERRE-ALAIN</Prenom>"
            "<Sexe>M</Sexe><DateNaissance>2009-07-14</DateNaissance></RECSANSVITALE>")


def envelope(body=ECETINSI, action=insi.SEARCH_TRAITS) -> bytes:
    return ENVELOPE.format(id=uuid.uuid4(), action=action, body=body).encode()


@pytest.fixture(scope="module")
def stand_in():
    with InsiStandIn(fail_first=0) as s:
        yield s


def call(s, data: bytes, stem: str | None = "client", timeout: float = 20):
    cert = (str(s.credentials / f"{stem}.pem"), str(s.credentials / f"{stem}.key")) if stem else None
    return requests.post(s.base_url, data=data, headers={"Content-Type": "application/soap+xml; charset=utf-8"}, cert=cert,
                         verify=str(s.credentials / "ca.pem"), timeout=timeout)


def answer(res) -> dict:
    body = parse_xml(res.content).getroot().find("{http://www.w3.org/2003/05/soap-envelope}Body")
    return insi.read_result(body[0])


def fault(res) -> tuple[str, str]:
    root = parse_xml(res.content).getroot()
    err = root.find(".//{urn:siram}Erreur")
    return err.get("code"), err.text


def test_a_search_over_mutual_tls_is_answered_from_the_identities_and_recorded(stand_in):
    res = call(stand_in, envelope())
    assert res.status_code == 200 and res.headers["Content-Type"].startswith("application/soap+xml")
    said = answer(res)
    assert said["code"] == "00" and said["active"] == {"ins": "109076322083489", "oid": "1.2.250.1.213.1.4.8"}
    ex = stand_in.journal.exchanges[-1]
    assert ex.facts["operation"] == "traits" and ex.facts["code"] == "00" and ex.facts["ins"]["ins"] == "109076322083489"
    assert ex.facts["asked"]["birth_name"] == "ECETINSI" and ex.facts["software"]["IDAM"] == "HARNESS-TEST"
    conn = stand_in.journal.connections[ex.connection - 1]
    assert conn.accepted and conn.certificate and "INSI-AUTO" in str(conn.certificate)


def test_no_match_and_several_matches_are_answered_without_an_individual(stand_in):
    none = envelope(ECETINSI.replace("2009-07-14", "2009-07-15"))
    several = ("<RECSANSVITALE xmlns='http://www.cnamts.fr/INSiRecSans'><NomNaissance>HARNESS-JUMEAU</NomNaissance><Prenom>CLAIRE</Prenom>"
               "<Sexe>F</Sexe><DateNaissance>1984-01-01</DateNaissance></RECSANSVITALE>")
    assert answer(call(stand_in, none)) == {"code": "01", "label": "Aucune identite trouvee"}
    assert answer(call(stand_in, envelope(several))) == {"code": "02", "label": "Plusieurs identites trouvees"}


@pytest.mark.parametrize("data, code", [
    (b"<not xml", insi.MALFORMED),
    (b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', insi.MALFORMED),
    (b"<e:Envelope xmlns:e='http://schemas.xmlsoap.org/soap/envelope/'><e:Body/></e:Envelope>", "harness_not_soap12"),
    (envelope(action="urn:ServiceIdentiteCertifiee:1.0.0:supprimerIns"), "harness_unknown_operation"),
    (envelope(action=insi.SEARCH_VITALE), "harness_unknown_operation"),  # the action says one search, the body is the other
    (envelope(ECETINSI.replace("ECETINSI", "X" * 300)), insi.MALFORMED),
    (envelope(ECETINSI.replace("2009-07-14", "14/07/2009")), insi.MALFORMED),
])
def test_a_hostile_request_gets_a_fault_is_recorded_and_the_stand_in_keeps_serving(stand_in, data, code):
    res = call(stand_in, data)
    assert res.status_code == 400 and fault(res)[0] == code
    assert stand_in.journal.exchanges[-1].facts["fault"] == code
    assert answer(call(stand_in, envelope()))["code"] == "00"


def test_a_request_over_the_size_bound_is_refused_at_its_headers_with_a_fault(stand_in):
    import socket
    import ssl

    ctx = ssl.create_default_context(cafile=str(stand_in.credentials / "ca.pem"))
    ctx.load_cert_chain(stand_in.credentials / "client.pem", stand_in.credentials / "client.key")
    with socket.create_connection(("127.0.0.1", stand_in.port), timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        # 1 MiB announced (the bound is 256 KiB): answered once the start it keeps (64 KiB) is read, not the rest
        tls.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\nContent-Length: 1048576\r\n\r\n" + b"<" * 70000)
        data = b""
        while b"</soap:Envelope>" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 413") and b'code="harness_too-large"' in data


def test_a_caller_without_certificate_gets_a_fault(stand_in):
    res = call(stand_in, envelope(), stem=None)
    assert res.status_code == 400 and fault(res)[0] == "harness_no_certificate"


@pytest.mark.parametrize("stem, said", [("client-revoked", "revoked"), ("client-expired", "expired")])
def test_a_revoked_or_expired_certificate_is_refused_and_the_refusal_recorded(stand_in, stem, said):
    before = len(stand_in.journal.connections)
    with pytest.raises(requests.exceptions.RequestException):
        call(stand_in, envelope(), stem=stem, timeout=10)
    import time

    deadline = time.monotonic() + 10  # the server side records the handshake it refused once it is over: after the client saw it
    while not (refused := [c for c in stand_in.journal.connections[before:] if not c.accepted]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert refused and said in refused[0].error.lower(), [c.error for c in refused]


def test_an_unavailable_service_answers_503_to_its_first_calls_then_serves():
    with InsiStandIn(fail_first=2) as s:
        codes = [call(s, envelope()).status_code for _ in range(3)]
        assert codes == [503, 503, 200]
        assert [e.facts.get("outcome") for e in s.journal.exchanges] == ["unavailable", "unavailable", "answered"]


def test_a_target_starts_the_stand_in_through_the_ins_plugin(tmp_path):
    from harness.running.context import ServiceContext
    from harness.running.plugins import get_plugin_manager
    from harness.running.target import Target

    pm = get_plugin_manager()
    svc = pm.hook.harness_start_service(name="insi", options={"fail_first": 1, "credentials_dir": tmp_path / "insi"},
                                        ctx=ServiceContext(Target(None, {}), record=None))
    try:
        assert svc.base_url.startswith("https://127.0.0.1:") and svc.info["fail_first"] == 1
        assert (tmp_path / "insi" / "client.pem").exists()  # the software's credentials, where the target said
        from harness_ins.insi_service import InsiStandIn

        s = InsiStandIn.running(svc.base_url)
        assert [call(s, envelope()).status_code for _ in range(2)] == [503, 200]
    finally:
        svc.stop()


def test_a_schema_validating_soap_client_built_from_the_stand_ins_wsdl_searches_and_reads_its_answers(stand_in):
    """zeep (the SOAP library the demo's INSi client uses) sends each search as the WSDL
    describes it, with WS-Addressing, and reads every answer against the schemas (strict)."""
    from pathlib import Path

    from lxml import etree
    from zeep import Client, Settings
    from zeep.transports import Transport
    from zeep.wsa import WsAddressingPlugin

    import harness_ins

    session = requests.Session()
    session.trust_env = False
    session.cert = (str(stand_in.credentials / "client.pem"), str(stand_in.credentials / "client.key"))
    session.verify = str(stand_in.credentials / "ca.pem")
    wsdl = Path(harness_ins.__file__).with_name("wsdl") / "insi.wsdl"
    client = Client(str(wsdl), transport=Transport(session=session, timeout=20, operation_timeout=20),
                    settings=Settings(strict=True, forbid_dtd=True, forbid_entities=True), plugins=[WsAddressingPlugin()])
    service = client.create_service("{http://www.cnamts.fr/webservice}ICIRServiceBinding", stand_in.base_url)
    lps = etree.fromstring(b"<ctxlps:ContexteLPS xmlns:ctxlps='urn:siram:lps:ctxlps' Nature='CTXLPS' Version='01_00'><ctxlps:LPS>"
                           b"<ctxlps:IDAM R='4'>HARNESS-ZEEP</ctxlps:IDAM><ctxlps:Nom>zeep</ctxlps:Nom></ctxlps:LPS></ctxlps:ContexteLPS>")
    found = service.rechercherInsAvecTraitsIdentite(NomNaissance="ECETINSI", Prenom=["PIERRE-ALAIN"], Sexe="M", DateNaissance="2009-07-14",
                                                    _soapheaders=[lps])
    assert found.CR.CodeCR == "00" and found.INDIVIDU.INSACTIF.IdIndividu.NumIdentifiant == "1090763220834"
    assert [h.IdIndividu.Cle for h in found.INDIVIDU.INSHISTO] == ["39", "55"] and found.INDIVIDU.TIQ.ListePrenom == "PIERRE-ALAIN MURIEL FLORIANT"
    ex = stand_in.journal.exchanges[-1]
    assert ex.facts["action"] == insi.SEARCH_TRAITS and ex.facts["software"]["IDAM"] == "HARNESS-ZEEP" and ex.facts["code"] == "00"
    several = service.rechercherInsAvecTraitsIdentite(NomNaissance="HARNESS-JUMEAU", Prenom=["CLAIRE"], Sexe="F", DateNaissance="1984-01-01")
    assert (several.CR.CodeCR, several.INDIVIDU) == ("02", None)
    vitale = service.rechercherInsAvecCarteVitale(MatriculeIndividu={"NumIdentifiant": "1090763220834", "Cle": "89"}, NomNaissance="ECETINSI",
                                                  DateNaissance="2009-07-14", RangNaissance="1")
    assert vitale.CR.CodeCR == "00" and stand_in.journal.exchanges[-1].facts["operation"] == "vitale"
    checked = service.rechercherInsAvecTraitsIdentite(NomNaissance="ECETINSI", Prenom=["PIERRE-ALAIN"], Sexe="M", DateNaissance="2009-07-14",
                                                      NumIdentifiant="1090763220834", Cle="88")  # a verification, a wrong key
    assert checked.CR.CodeCR == "01" and stand_in.journal.exchanges[-1].facts["asked"]["key"] == "88"

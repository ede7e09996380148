"""The demo vendor's INSi client: how practice software registers a patient's identity with the
INS teleservice, on zeep (a SOAP library that builds each request from the service's WSDL) and the
INS plugin's description of INSi, whose reader takes INSi's answers as INSi sends them (not
always in its published schema's order: :func:`_answer`).

Registering follows the INS referential's identity-vigilance rules as the demo understands
them: the INS is searched with the strict traits the person's document gives; one identity
found (``00``): the identity is recovered (status RECUP) with INSi's traits and its active INS,
not the ones typed, and qualified (QUAL) when a high-trust document was checked; none (``01``)
or several (``02``): no INS (whatever INS the person brings), the identity provisional (PROV), or
validated (VALI) on a checked document; INSi unavailable: a few tries, a short wait between
them, then the user is told and the identity stays provisional. Each defect of
:data:`INSI_DEFECTS` breaks one of these (``--defect``), caught by the INS plugin's lifecycle
scenarios (harness_ins.lifecycle).
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests
from lxml import etree

from harness import Message, catalogue

M = catalogue(__name__)

TRIES = 3  # calls to INSi before the user is told it is unavailable
PAUSE = 0.2  # seconds between two tries
TIMEOUT = 10.0  # seconds for one call
IDAM = "HARNESS-DEMO"  # the demo's software authorisation number (a test value)

INSI_DEFECTS: dict[str, Message] = {  # each breaks one lifecycle rule, on the case named
    "insi-trusts-card": M("defect.insi-trusts-card"),  # INSI-01: the INS a card brings, qualified without calling INSi (card)
    "insi-own-traits": M("defect.insi-own-traits"),  # INSI-02: keeps the traits typed after a 00 (found, found-validated)
    "insi-ins-without-match": M("defect.insi-ins-without-match"),  # INSI-03: keeps the INS the person brings on 02 (several)
    "insi-replaced-ins": M("defect.insi-replaced-ins"),  # INSI-04: takes the INS INSi gave as replaced (replaced)
    "insi-qualified-without-document": M("defect.insi-qualified-without-document"),  # INSI-05: QUAL with no document (found)
    "insi-shares-unqualified": M("defect.insi-shares-unqualified"),  # DMP-INSI-01: a recovered identity's INS sent to the DMP (found)
    "insi-mails-unqualified": M("defect.insi-mails-unqualified"),  # MSS-INSI-01: a recovered identity's INS in a message (found)
    "insi-retry-forever": M("defect.insi-retry-forever"),  # INSI-06: calls an unavailable INSi again and again (unavailable)
    "insi-user-not-told": M("defect.insi-user-not-told"),  # INSI-06: says nothing to its user when INSi is down (unavailable)
}


@dataclass
class Registered:
    """A patient's identity as the demo holds it after registering."""

    status: str  # PROV or RECUP
    traits: dict
    ins: str = ""  # matricule and key, when INSi gave one
    oid: str = ""
    report: str = ""  # INSi's CR, or "unavailable"
    calls: int = 0
    told_user: str = ""
    history: list = field(default_factory=list)


def _service(url: str, credentials: Path, *, timeout: float = TIMEOUT):
    from zeep import Client, Settings
    from zeep.transports import Transport
    from zeep.wsa import WsAddressingPlugin

    import harness_ins

    session = requests.Session()
    session.trust_env = False  # the stand-in's CA only, no proxy
    session.verify = str(credentials / "ca.pem")
    session.cert = (str(credentials / "client.pem"), str(credentials / "client.key"))
    wsdl = Path(harness_ins.__file__).with_name("wsdl") / "insi.wsdl"
    client = Client(str(wsdl), transport=Transport(session=session, timeout=timeout, operation_timeout=timeout),
                    settings=Settings(strict=True, forbid_dtd=True, forbid_entities=True), plugins=[WsAddressingPlugin()])
    return client, client.create_service("{http://www.cnamts.fr/webservice}ICIRServiceBinding", url)


class _Fault(Exception):
    """INSi refused the request itself (a SOAP fault): calling again would not change it."""


def _answer(response) -> dict:
    """INSi's answer, read from the envelope as received: the request is zeep's, built from the
    WSDL, the answer is read by the INS plugin's reader, which takes INSi's answers as INSi
    sends them (3 of the 12 recorded answers put an INS's dates where the published schema does
    not: a client reading them against the schema refuses them, one reading them loosely loses
    the INS they date)."""
    from harness import UnsafeInput, parse_xml
    from harness_ins import insi

    if response.status_code in (502, 503, 504):  # the service (or its gateway) down
        raise requests.ConnectionError(f"HTTP {response.status_code}")
    try:
        envelope = parse_xml(response.content[:1 << 20]).getroot()
    except UnsafeInput as exc:
        raise requests.RequestException(f"HTTP {response.status_code}, answer unreadable: {exc}") from None
    body = envelope.find("{http://www.w3.org/2003/05/soap-envelope}Body")
    fault = body.find("{http://www.w3.org/2003/05/soap-envelope}Fault") if body is not None else None
    if fault is not None:
        raise _Fault(" ".join("".join(fault.itertext()).split())[:200])
    found = body.find(f"{{{insi.NS_RESULTAT}}}RESULTAT") if body is not None else None
    if found is None:
        raise requests.RequestException(f"HTTP {response.status_code}, no RESULTAT")
    return insi.read_result(found)


def _context(release: str) -> etree._Element:
    lps = etree.Element("{urn:siram:lps:ctxlps}ContexteLPS", {"Nature": "CTXLPS", "Version": "01_00"}, nsmap={"ctxlps": "urn:siram:lps:ctxlps"})
    etree.SubElement(lps, "{urn:siram:lps:ctxlps}Id").text = str(uuid.uuid4())
    software = etree.SubElement(lps, "{urn:siram:lps:ctxlps}LPS")
    etree.SubElement(software, "{urn:siram:lps:ctxlps}IDAM", R="4").text = IDAM
    etree.SubElement(software, "{urn:siram:lps:ctxlps}Version").text = release
    etree.SubElement(software, "{urn:siram:lps:ctxlps}Nom").text = "Cabinet Démo"
    return lps


def register(traits: dict, url: str, credentials: Path, *, defects: set[str] = frozenset(), release: str = "3.2.1",
             document: str = "", claimed_ins: str = "", claimed_from: str = "") -> Registered:
    """Register a person from the strict traits typed (``birth_name``, ``first_names`` (list),
    ``sex``, ``birth_date``, optional ``birth_place``) against INSi at ``url``; ``document``: the
    high-trust identity document checked (``"CNI"``), if any; ``claimed_ins``: the INS the person
    brings and where it is written (``claimed_from``: a card, a letter), which the demo does not
    take on trust."""
    from zeep.exceptions import Error as ZeepError

    checked = bool(document)
    held = Registered("VALI" if checked else "PROV", dict(traits))
    if claimed_ins and checked and claimed_from == "carte Vitale" and "insi-trusts-card" in defects:  # the card believed: no call at all
        held.status, held.ins, held.oid, held.report = "QUAL", claimed_ins, "1.2.250.1.213.1.4.10", "not-asked"
        return held
    client, service = _service(url, credentials)
    card = claimed_from == "carte Vitale" and len(claimed_ins) == 15  # searched by the card's data (RECVITALE), its answer checked like any
    tries = TRIES * 3 if "insi-retry-forever" in defects else TRIES  # a badly written client keeps calling
    answer = None
    for attempt in range(tries):
        held.calls += 1
        try:
            with client.settings(raw_response=True):
                if card:  # the carte Vitale read: INSi searched by its matricule, the birth name and date
                    response = service.rechercherInsAvecCarteVitale(
                        MatriculeIndividu={"NumIdentifiant": claimed_ins[:13], "Cle": claimed_ins[13:]}, NomNaissance=traits["birth_name"],
                        DateNaissance=traits["birth_date"], RangNaissance="1", _soapheaders=[_context(release)])
                else:
                    response = service.rechercherInsAvecTraitsIdentite(
                        NomNaissance=traits["birth_name"], Prenom=list(traits["first_names"]), Sexe=traits["sex"], DateNaissance=traits["birth_date"],
                        **({"LieuNaissance": traits["birth_place"]} if traits.get("birth_place") else {}), _soapheaders=[_context(release)])
            answer = _answer(response)
            break
        except _Fault as exc:  # INSi refused the request itself: trying again would not change it
            held.report, held.told_user = "fault", f"INSi a refusé la demande : {exc}"
            held.history.append(f"Fault: {exc}")
            return held
        except (requests.RequestException, ZeepError) as exc:
            held.history.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            if attempt + 1 < tries:
                time.sleep(PAUSE)
    if answer is None:
        held.report = "unavailable"
        if "insi-user-not-told" not in defects:
            held.told_user = "Le téléservice INSi ne répond pas : identité provisoire, réessayez plus tard"
        return held
    held.report = answer["code"]
    if held.report == "00" and answer.get("active"):
        held.status = "QUAL" if checked or "insi-qualified-without-document" in defects else "RECUP"
        held.ins, held.oid = answer["active"]["ins"], answer["active"]["oid"]
        if answer["history"] and "insi-replaced-ins" in defects:  # the INS it held before, kept
            held.ins, held.oid = answer["history"][0]["ins"], answer["history"][0]["oid"]
        if "insi-own-traits" not in defects:  # INSi's traits replace the ones typed
            tiq = answer["traits"]
            held.traits = {"birth_name": tiq["birth_name"], "first_names": tiq["first_names"].split(), "sex": tiq["sex"],
                           "birth_date": tiq["birth_date"], "birth_place": tiq["birth_place"]}
    else:
        held.told_user = {"01": "Aucune identité trouvée par INSi : identité non récupérée",
                          "02": "Plusieurs identités trouvées par INSi : complétez les prénoms ou le lieu de naissance"}.get(held.report, "")
        if held.report == "02" and claimed_ins and "insi-ins-without-match" in defects:  # the INS brought, kept anyway
            held.status, held.ins, held.oid = ("QUAL" if checked else "RECUP"), claimed_ins, "1.2.250.1.213.1.4.10"
    return held

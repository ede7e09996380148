"""The demo vendor's patients, as its three channels show them: an HL7 v2 feed (PAM France
ADT messages sent over MLLP), CDA documents and a FHIR Patient endpoint (FR Core).

Every identity is a test one (OID 1.2.250.1.213.1.4.10). Each INS defect breaks exactly
one rule in one channel; the conformant demo breaks none.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from xml.sax.saxutils import escape, quoteattr

from harness import Message, catalogue

M = catalogue(__name__)

TEST_NIR = "1.2.250.1.213.1.4.10"
FACILITY_OID = "1.2.250.1.999.1.1"  # the demo practice's own identifier domain (IPP)

TERMINOLOGY_DEFECTS: dict[str, Message] = {
    "term-confidentiality": M("defect.term-confidentiality"),
    "term-display": M("defect.term-display"),
    "term-unknown-code": M("defect.term-unknown-code"),
    "term-deprecated": M("defect.term-deprecated"),
}

INS_DEFECTS: dict[str, Message] = {
    "ins-malformed": M("defect.ins-malformed"),
    "ins-key": M("defect.ins-key"),
    "ins-production-oid": M("defect.ins-production-oid"),
    "ins-unknown-authority": M("defect.ins-unknown-authority"),
    "ins-no-status": M("defect.ins-no-status"),
    "ins-fictitious-qualified": M("defect.ins-fictitious-qualified"),
    "ins-doubtful-fictitious": M("defect.ins-doubtful-fictitious"),
    "ins-not-qualified": M("defect.ins-not-qualified"),
    "ins-unknown-attribute": M("defect.ins-unknown-attribute"),
    "ins-no-birth-name": M("defect.ins-no-birth-name"),
    "ins-no-first-given-name": M("defect.ins-no-first-given-name"),
    "ins-given-names": M("defect.ins-given-names"),
    "ins-bad-sex": M("defect.ins-bad-sex"),
    "ins-bad-birth-date": M("defect.ins-bad-birth-date"),
    "ins-no-birth-place": M("defect.ins-no-birth-place"),
    "ins-nir-sex": M("defect.ins-nir-sex"),
    "ins-nir-birth": M("defect.ins-nir-birth"),
    "ins-name-qualifier": M("defect.ins-name-qualifier"),
    "ins-fhir-system": M("defect.ins-fhir-system"),
    "ins-fhir-no-reliability": M("defect.ins-fhir-no-reliability"),
    "ins-fhir-json": M("defect.ins-fhir-json"),
    "ins-channel-mismatch": M("defect.ins-channel-mismatch"),
    "ins-cda-unqualified": M("defect.ins-cda-unqualified"),
    "hl7-line-feeds": M("defect.hl7-line-feeds"),
    "hl7-no-msh": M("defect.hl7-no-msh"),
}


@dataclass(frozen=True)
class Patient:
    ipp: str
    birth_name: str
    used_name: str
    first_given: str
    given_names: str
    sex: str  # M, F
    birth_date: str  # YYYYMMDD
    birth_place: str | None  # INSEE code
    birth_city: str
    ins: str | None  # matricule under the test OID
    status: str  # PROV, RECUP, VALI, QUAL
    attributes: tuple[str, ...] = ()


PATIENTS = (
    Patient("100001", "PAT-TROIS", "PAT-TROIS", "DOMINIQUE", "DOMINIQUE MARIE", "F", "19790328", "51215", "DOMPREMY", "279035121518989", "QUAL"),
    Patient("100002", "MARTIN", "MARTIN", "PAUL", "PAUL HENRI", "M", "19850612", "75056", "PARIS", None, "PROV"),
)


# What each defect changes in the first patient, per channel (HL7 v2, CDA, FHIR).
_CHANGES: dict[str, tuple[int, dict]] = {
    "ins-malformed": (0, {"ins": "27903512151898"}),
    "ins-key": (0, {"ins": "279035121518988"}),
    "ins-no-status": (0, {"status": ""}),
    "ins-fictitious-qualified": (0, {"attributes": ("FICT",)}),
    "ins-doubtful-fictitious": (0, {"status": "PROV", "attributes": ("DOUT", "FICT")}),
    "ins-unknown-attribute": (0, {"attributes": ("HOMX",)}),
    "ins-given-names": (0, {"given_names": ""}),
    "ins-bad-birth-date": (0, {"birth_date": "19790230"}),
    "ins-nir-sex": (0, {"sex": "M"}),
    "ins-cda-unqualified": (0, {"status": "VALI"}),
    "ins-no-birth-name": (1, {"birth_name": ""}),
    "ins-no-birth-place": (1, {"birth_place": None}),
    "ins-nir-birth": (1, {"birth_date": "19800328"}),
    "ins-not-qualified": (2, {"status": "VALI"}),
    "ins-no-first-given-name": (2, {"first_given": ""}),
    "ins-bad-sex": (2, {"sex": "unknown"}),
    "ins-channel-mismatch": (2, {"birth_date": "19790329"}),
}


def patients(defects: set[str], extra: tuple[Patient, ...] = ()) -> tuple[list[Patient], list[Patient], list[Patient]]:
    """The patients as (HL7 v2, CDA, FHIR) show them, defects applied to the first one; then
    ``extra``, the people registered since the demo started (:func:`registered_patient`)."""
    shown = [PATIENTS[0]] * 3
    for defect in sorted(defects & set(_CHANGES)):
        channel, changes = _CHANGES[defect]
        shown[channel] = replace(shown[channel], **changes)
    rest = [*PATIENTS[1:], *extra]
    return [shown[0], *rest], [shown[1], *rest], [shown[2], *rest]


CITIES = {"75056": "PARIS", "69123": "LYON", "13055": "MARSEILLE", "33063": "BORDEAUX", "63220": "ISSOIRE", "2A004": "AJACCIO"}


def registered_patient(n: int, held) -> Patient:
    """A person the demo registered through INSi (harness_demo.insi_client.Registered), as its
    channels show them: the INS only for a qualified identity (the only one whose INS may be
    shared), the status the registration reached."""
    names = [str(x) for x in held.traits.get("first_names") or []]
    born = str(held.traits.get("birth_date") or "").replace("-", "")
    place = held.traits.get("birth_place") or None
    return Patient(f"2{n:05d}", str(held.traits.get("birth_name") or ""), str(held.traits.get("birth_name") or ""), names[0] if names else "",
                   " ".join(names), str(held.traits.get("sex") or ""), born, place, CITIES.get(place or "", ""),
                   held.ins if held.status == "QUAL" and held.ins else None, held.status)


# -- HL7 v2 -------------------------------------------------------------------------------


def hl7_messages(defects: set[str], now: datetime | None = None, extra: tuple[Patient, ...] = ()) -> list[bytes]:
    """One ADT^A28 (add person information) per patient, PAM France 2.11."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%d%H%M%S")
    out = []
    authority = "1.2.250.1.999" if "ins-unknown-authority" in defects else TEST_NIR
    for n, p in enumerate(patients(defects, extra)[0], 1):
        ids = [f"{p.ipp}^^^CABINET-DEMO&{FACILITY_OID}&ISO^PI"]
        if p.ins:
            ids.append(f"{p.ins}^^^ASIP-SANTE-INS-NIR&{authority}&ISO^INS")
        reliability = "~".join(x for x in (p.status, *p.attributes) if x)
        segments = [
            f"MSH|^~\\&|CABINET-DEMO|CABINET|HARNESS|ANS|{stamp}||ADT^A28^ADT_A05|DEMO{n:04d}|P|2.5^FRA^2.11||||||UNICODE UTF-8",
            f"EVN||{stamp}",
            "PID|1||" + "~".join(ids) + f"||{p.birth_name}^{p.first_given}^{p.given_names}^^^^L~{p.used_name}^{p.first_given}^^^^^D||"
            f"{p.birth_date}|{p.sex}|||^^{p.birth_city}^^^^BDL^^{p.birth_place or ''}" + "|" * 21 + reliability,
            "PV1|1|N",
        ]
        if "hl7-no-msh" in defects and n == len(PATIENTS):
            segments = segments[1:]
        sep = "\n" if "hl7-line-feeds" in defects else "\r"
        out.append((sep.join(segments) + sep).encode("utf-8"))
    return out


def send_feed(defects: set[str], host: str, port: int, timeout: float = 5.0, extra: tuple[Patient, ...] = ()) -> list[str]:
    """Send the feed over MLLP (python-hl7's client); the acknowledgement code of each message."""
    from hl7.client import MLLPClient

    codes = []
    with MLLPClient(host, port) as client:
        client.socket.settimeout(timeout)
        for message in hl7_messages(defects, extra=extra):
            try:
                ack = client.send_message(message)
            except OSError:
                codes.append("no-ack")
                continue
            text = ack.decode("utf-8", "replace")
            msa = next((seg for seg in text.replace("\n", "\r").split("\r") if seg.lstrip("\x0b").startswith("MSA|")), "")
            codes.append(msa.split("|")[1] if "|" in msa else "no-ack")
    return codes


# -- CDA ----------------------------------------------------------------------------------


def _record_target(p: Patient, ids: list[str], defects: set[str]) -> str:
    used_qualifier = "" if "ins-name-qualifier" in defects else ' qualifier="CL"'
    family_birth = f'<family qualifier="BR">{escape(p.birth_name)}</family>' if p.birth_name else ""
    city = f"<city>{escape(p.birth_city)}</city>" if p.birth_city else ""
    place = f"<birthplace><place><addr><county>{p.birth_place}</county>{city}</addr></place></birthplace>" if p.birth_place else ""
    return f"""  <recordTarget>
    <patientRole>
      {''.join(ids)}
      <patient>
        <name>
          {family_birth}
          <given>{escape(p.given_names)}</given>
          <given qualifier="BR">{escape(p.first_given)}</given>
          <family{used_qualifier}>{escape(p.used_name)}</family>
          <given qualifier="CL">{escape(p.first_given)}</given>
        </name>
        <administrativeGenderCode code={quoteattr(p.sex)} codeSystem="2.16.840.1.113883.5.1"/>
        <birthTime value="{p.birth_date}"/>
        {place}
      </patient>
    </patientRole>
  </recordTarget>
"""


def _structured_body(defects: set[str]) -> str:
    reason, reason_display = "MOTIF-SUIVI", "Consultation de suivi"
    if "term-unknown-code" in defects:
        reason, reason_display = "MOTIF-INEXISTANT", "Consultation"
    elif "term-deprecated" in defects:
        reason, reason_display = "MOTIF-ANCIEN", "Motif retiré"
    return f"""  <component>
    <structuredBody>
      <component>
        <section>
          <title>Examen</title>
          <text>Consultation de suivi. PA 128/82 mmHg, poids 72 kg.</text>
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="{reason}" codeSystem="1.2.250.1.999.1.9" displayName="{reason_display}"/>
              <statusCode code="completed"/>
            </observation>
          </entry>
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="8480-6" codeSystem="2.16.840.1.113883.6.1" displayName="Pression artérielle systolique"/>
              <statusCode code="completed"/>
              <value xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="PQ" value="128" unit="mm[Hg]"/>
            </observation>
          </entry>
          <entry>
            <observation classCode="OBS" moodCode="EVN">
              <code code="29463-7" codeSystem="2.16.840.1.113883.6.1" displayName="Poids corporel"/>
              <statusCode code="completed"/>
              <value xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="PQ" value="72" unit="kg"/>
            </observation>
          </entry>
        </section>
      </component>
    </structuredBody>
  </component>
"""


# A one-page PDF saying "Compte rendu - Cabinet Démo": the body of the demo's level-1 documents.
PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
       b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>endobj\n"
       b"4 0 obj<</Length 58>>stream\nBT /F1 18 Tf 72 760 Td (Compte rendu - Cabinet Demo) Tj ET\nendstream endobj\n"
       b"5 0 obj<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
DOCUMENT_OID = "1.2.250.1.999.1.2"  # the demo practice's document identifiers
FR_TEMPLATES = '  <templateId root="2.16.840.1.113883.2.8.2.1"/>\n  <templateId root="1.2.250.1.213.1.1.1.1"/>\n'
MEDICAL_DOCUMENT = "1.3.6.1.4.1.19376.1.5.3.1.1.1"  # IHE PCC medical document (structured)
LEVEL1 = "1.3.6.1.4.1.19376.1.2.20"
CDA_DEFECTS: dict[str, Message] = {
    "cda-no-custodian": M("defect.cda-no-custodian"),
    "cda-device-no-version": M("defect.cda-device-no-version"),
    "cda-n1-not-base64": M("defect.cda-n1-not-base64"),
    "cda-n1-media-type": M("defect.cda-n1-media-type"),
    "cda-ins-participant": M("defect.cda-ins-participant"),
}


def _level1_body(defects: set[str]) -> str:
    import base64

    content = base64.b64encode(JPEG_START + PDF if "cda-n1-media-type" in defects else PDF).decode("ascii")
    if "cda-n1-not-base64" in defects:
        content = content[:40] + "*%!" + content[40:]
    lines = "\n".join(content[i:i + 76] for i in range(0, len(content), 76))
    return f"""  <component>
    <nonXMLBody>
      <text mediaType="application/pdf" representation="B64">
{lines}
      </text>
    </nonXMLBody>
  </component>
"""


def cda_document(p: Patient, defects: set[str], n: int, *, release: str = "3.2.1", level1: bool = False, version: int = 1,
                 set_id: str | None = None, replaces: str | None = None, when: str = "20261101100000+0100") -> bytes:
    """A CDA R2 document (CI-SIS minimal structure) about one patient: structured (a
    consultation note with coded entries), or level 1 (a PDF report)."""
    ids = [f'<id root="{FACILITY_OID}" extension="{p.ipp}"/>']
    if p.ins:
        ids.insert(0, f'<id root="{TEST_NIR}" extension="{p.ins}"/>')
    type_code, type_display = "11488-4", "CR ou fiche de consultation ou de visite"
    if "term-display" in defects:
        type_display = "Note de consultation"
    title = "Compte rendu de consultation" if level1 else "Note de consultation"
    custodian = "" if "cda-no-custodian" in defects else """  <custodian>
    <assignedCustodian><representedCustodianOrganization>
      <id root="1.2.250.1.71.4.2.2" extension="399999999900001"/><name>Cabinet Démo</name>
    </representedCustodianOrganization></assignedCustodian>
  </custodian>
"""
    software = "" if "cda-device-no-version" in defects else f"<softwareName>Cabinet Démo {escape(release)}</softwareName>"
    related = (f'  <relatedDocument typeCode="RPLC"><parentDocument><id root="{DOCUMENT_OID}" extension="{replaces}"/></parentDocument></relatedDocument>\n'
               if replaces else "")
    participant = ("""  <participant typeCode="INF">
    <associatedEntity classCode="PROV"><id root="1.2.250.1.213.1.4.10" extension="279035121518988"/></associatedEntity>
  </participant>
""" if "cda-ins-participant" in defects else "")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
  <realmCode code="FR"/>
  <typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
{FR_TEMPLATES}  <templateId root="{LEVEL1 if level1 else MEDICAL_DOCUMENT}"/>
  <id root="{DOCUMENT_OID}" extension="DOC-{n:04d}"/>
  <code code="{type_code}" codeSystem="2.16.840.1.113883.6.1" displayName="{type_display}"/>
  <title>{title}</title>
  <effectiveTime value="{when}"/>
  <confidentialityCode code="{"X" if "term-confidentiality" in defects else "N"}" codeSystem="2.16.840.1.113883.5.25"/>
  <languageCode code="fr-FR"/>
  <setId root="{DOCUMENT_OID}" extension="{set_id or f"SET-{n:04d}"}"/>
  <versionNumber value="{version}"/>
{_record_target(p, ids, defects)}  <author>
    <time value="{when}"/>
    <assignedAuthor>
      <id root="1.2.250.1.71.4.2.1" extension="899700000001"/>
      <code code="G15_10/SM26" codeSystem="1.2.250.1.213.1.1.4.5" displayName="Médecin - Qualifié en Médecine Générale (SM)"/>
      <assignedPerson><name><family>DEMO</family><given>Médecin</given></name></assignedPerson>
      <representedOrganization>
        <id root="1.2.250.1.71.4.2.2" extension="399999999900001"/>
        <name>Cabinet Démo</name>
        <standardIndustryClassCode code="AMBULATOIRE" codeSystem="1.2.250.1.213.1.1.4.9" displayName="Ambulatoire"/>
      </representedOrganization>
    </assignedAuthor>
  </author>
  <author>
    <time value="{when}"/>
    <assignedAuthor>
      <id root="1.2.250.1.71.4.2.2" extension="399999999900001"/>
      <assignedAuthoringDevice><manufacturerModelName>Éditeur Exemple SAS - Cabinet Démo</manufacturerModelName>{software}</assignedAuthoringDevice>
      <representedOrganization><id root="1.2.250.1.71.4.2.2" extension="399999999900001"/><name>Cabinet Démo</name></representedOrganization>
    </assignedAuthor>
  </author>
{custodian}  <legalAuthenticator>
    <time value="{when}"/>
    <signatureCode code="S"/>
    <assignedEntity>
      <id root="1.2.250.1.71.4.2.1" extension="899700000001"/>
      <assignedPerson><name><family>DEMO</family><given>Médecin</given></name></assignedPerson>
    </assignedEntity>
  </legalAuthenticator>
{participant}  <documentationOf>
    <serviceEvent>
      <effectiveTime><low value="{when}"/><high value="{when}"/></effectiveTime>
      <performer typeCode="PRF">
        <assignedEntity>
          <id root="1.2.250.1.71.4.2.1" extension="899700000001"/>
          <code code="G15_10/SM26" codeSystem="1.2.250.1.213.1.1.4.5" displayName="Médecin - Qualifié en Médecine Générale (SM)"/>
          <representedOrganization>
            <standardIndustryClassCode code="AMBULATOIRE" codeSystem="1.2.250.1.213.1.1.4.9" displayName="Ambulatoire"/>
          </representedOrganization>
        </assignedEntity>
      </performer>
    </serviceEvent>
  </documentationOf>
{related}  <componentOf>
    <encompassingEncounter>
      <code code="AMB" codeSystem="2.16.840.1.113883.5.4" displayName="Ambulatoire (hors établissement)"/>
      <effectiveTime value="{when}"/>
      <location><healthCareFacility><code code="SA07" codeSystem="1.2.250.1.71.4.2.4" displayName="Cabinet individuel"/></healthCareFacility></location>
    </encompassingEncounter>
  </componentOf>
{_level1_body(defects) if level1 else _structured_body(defects)}</ClinicalDocument>
""".encode("utf-8")


def cda_documents(defects: set[str], release: str = "3.2.1", extra: tuple[Patient, ...] = ()) -> list[bytes]:
    """The documents the demo lists (``/cda/``): a structured note, then level-1 reports."""
    return [cda_document(p, defects, n, release=release, level1=n > 1) for n, p in enumerate(patients(defects, extra)[1], 1)]


# -- FHIR ---------------------------------------------------------------------------------

_SEX = {"M": "male", "F": "female"}


def fhir_patient(p: Patient, defects: set[str]) -> dict:
    system = "1.2.250.1.213.1.4.8" if "ins-production-oid" in defects else TEST_NIR
    system = system if "ins-fhir-system" in defects else f"urn:oid:{system}"
    identifiers = [{"use": "usual", "system": f"urn:oid:{FACILITY_OID}", "value": p.ipp,
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]}}]
    if p.ins:
        identifiers.append({"use": "official", "system": system, "value": p.ins,
                            "type": {"coding": [{"system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}]}})
    extensions = []
    if not (p.ins and "ins-fhir-no-reliability" in defects):
        extensions.append({"url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability",
                           "extension": [{"url": "identityStatus", "valueCoding": {
                               "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status", "code": p.status}}]})
    if p.birth_place:
        extensions.append({"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {
            "extension": [{"url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-address-insee-code",
                           "valueCoding": {"system": "https://mos.esante.gouv.fr/NOS/TRE_R13-Commune/FHIR/TRE-R13-Commune", "code": p.birth_place}}],
            **({"city": p.birth_city} if p.birth_city else {})}})
    official = {"use": "official", "family": p.birth_name,
                "extension": [{"url": "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-birth-list-given-name",
                               "valueString": p.given_names}]}
    if p.first_given:
        official["given"] = [p.first_given]
    d = p.birth_date
    return {
        "resourceType": "Patient",
        "id": f"demo-{p.ipp}",
        "meta": {"profile": ["https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient-ins"]},
        "extension": extensions,
        "identifier": identifiers,
        "name": [official, {"use": "usual", "family": p.used_name, "given": [p.first_given or p.given_names.split()[0]]}],
        "gender": _SEX.get(p.sex, p.sex),
        "birthDate": f"{d[:4]}-{d[4:6]}-{d[6:8]}",
    }


def fhir_search_page(defects: set[str], base: str, page: int, extra: tuple[Patient, ...] = ()) -> bytes:
    """``GET /fhir/Patient?page=N``: a searchset Bundle, one patient per page (paging shown)."""
    shown = patients(defects, extra)[2]
    page = min(max(page, 1), len(shown))
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(shown),
        "link": [{"relation": "self", "url": f"{base}Patient?page={page}"}],
        "entry": [{"fullUrl": f"{base}Patient/demo-{shown[page - 1].ipp}", "resource": fhir_patient(shown[page - 1], defects),
                   "search": {"mode": "match"}}],
    }
    if page < len(shown):
        bundle["link"].append({"relation": "next", "url": f"{base}Patient?page={page + 1}"})
    body = json.dumps(bundle, ensure_ascii=False).encode("utf-8")
    if "ins-fhir-json" in defects:
        body = body[: len(body) // 2]
    return body


def feed_address(body: bytes) -> tuple[str, int]:
    """The MLLP address a feed request names; only loopback is accepted."""
    data = json.loads(body)
    host, port = str(data["host"]), int(data["port"])
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the demo sends its feed to loopback only")
    if not 0 < port < 65536:
        raise ValueError(f"not a TCP port: {port}")
    return host, port

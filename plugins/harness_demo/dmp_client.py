"""The demo vendor's DMP client: what practice software does with the national shared record.

Asked by ``POST /dmp/feed`` (``{"url": DMP base URL, "credentials": folder}``), it feeds the
DMP of the qualified test patient with two documents (a structured note and a level-1 PDF
report) in one provide-and-register (ITI-41), finds them (ITI-18), replaces the note by a
second version (ITI-41 with an RPLC association), retrieves what is current (ITI-43), and
hides the report from professionals (ITI-57). Each call carries a signed VIHF and the
client certificate of the credentials folder, over TLS.

When the DMP refuses its certificate, it stops and says so (``GET /dmp/status``), unless
the ``dmp-retry-loop`` defect makes it retry like a badly written client.

The harness's XDS metadata library writes the metadata, from each document's header,
like a conformant sender; each defect changes one thing.
"""
from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from harness import parse_xml
from harness_dmp import soap, vihf
from harness_xds import agreement, ebrim, xua

from .patients import PATIENTS, cda_document


CERTIFICATES = {"dmp-cert-expired": "client-expired", "dmp-cert-not-yet-valid": "client-not-yet-valid",
                "dmp-cert-expiring": "client-expiring", "dmp-cert-unknown-ca": "client-unknown-ca",
                "dmp-cert-revoked": "client-revoked"}
INSTITUTION = "Cabinet Démo^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^399999999900001"
CLASS = ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
STRUCTURED_FORMAT = ("urn:asip:ci-sis:2010", "1.2.250.1.213.1.1.4.2.282", "Document à corps structuré")
SOURCE_ID = "1.2.250.1.999.1.3"
TIMEOUT = (5, 20)  # connect, read: seconds
RETRIES = 8  # the retry-loop defect's attempts
PROVIDE = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
QUERY = "urn:ihe:iti:2007:RegistryStoredQuery"
RETRIEVE = "urn:ihe:iti:2007:RetrieveDocumentSet"
UPDATE = "urn:ihe:iti:2010:UpdateDocumentSet"
MASKED = ("MASQUE_PS", "1.2.250.1.213.1.1.4.13", "Masqué aux professionnels de santé")


class Blocked(Exception):
    pass


class DmpClient:
    def __init__(self, url: str, credentials: Path, defects: set[str], release: str, *,
                 professional: tuple[str, str, str] | None = None, mode: str = "INDIRECTE") -> None:
        """``professional``: (national identifier, first name, last name) of who is logged in
        (through Pro Santé Connect), named by the VIHF; else the structure's professional."""
        self.url = url
        self.professional, self.mode = professional, mode
        self.defects = defects
        self.release = release
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(credentials / "ca.pem")
        name = CERTIFICATES.get(next((d for d in sorted(defects) if d in CERTIFICATES), ""), "client")
        if "dmp-cert-none" not in defects:
            self.session.cert = (str(credentials / f"{name}.pem"), str(credentials / f"{name}.key"))
        # the VIHF is signed with the structure's certificate (the good one, whatever TLS presents)
        self.key = serialization.load_pem_private_key((credentials / "client.key").read_bytes(), None)
        self.cert = x509.load_pem_x509_certificate((credentials / "client.pem").read_bytes())
        self.patient = PATIENTS[0]
        self.cx = f"{self.patient.ins}^^^&1.2.250.1.213.1.4.10&ISO^NH"
        self.calls: list[dict] = []

    # -- one call -----------------------------------------------------------------------

    def _vihf(self) -> etree._Element | None:
        if "dmp-no-vihf" in self.defects:
            return None
        attrs = {
            "VIHF_Version": "3.0", "Identifiant_Structure": "3399999999900001", "Secteur_Activite": "SA07^1.2.250.1.71.4.2.4",
            vihf.ROLE: "10^1.2.250.1.71.1.2.7^Médecin", vihf.PURPOSE: "normal", "Authentification_Mode": self.mode,
            vihf.RESOURCE: "162018885045327^^^&1.2.250.1.213.1.4.10&ISO^NH" if "dmp-vihf-patient" in self.defects else self.cx,
            "Ressource_URN": "urn:dmp", vihf.SOFTWARE_NAME: "Cabinet Démo",
            vihf.SOFTWARE_VERSION: "3.1.9" if "dmp-vihf-version-mismatch" in self.defects else self.release,
        }
        if self.professional is not None:  # as the ANS's own client writes it after a PSC login (harness_psc.services)
            attrs[xua.SUBJECT_ID] = f"{self.professional[1]} {self.professional[2]}"
        if "dmp-vihf-no-version" in self.defects:
            del attrs[vihf.SOFTWARE_VERSION]
        now = dt.datetime.now(dt.timezone.utc)
        if "dmp-vihf-expired" in self.defects:
            now -= dt.timedelta(hours=2)
        subject = self.professional[0] if self.professional is not None else "899700000001"
        assertion = vihf.build(attrs, subject=subject, key=self.key, cert=self.cert, now=now)
        if "dmp-vihf-tampered" in self.defects:
            assertion.find(f"{{{vihf.SAML}}}Subject/{{{vihf.SAML}}}NameID").text = "899700000002"
        return assertion

    def call(self, action: str, body: etree._Element, attachments: list[tuple[str, bytes, str]] = ()) -> etree._Element:
        security = etree.Element(f"{{{vihf.WSSE}}}Security", nsmap={"wsse": vihf.WSSE})
        assertion = self._vihf()
        if assertion is not None:
            security.append(assertion)
        env = soap.envelope(action, body, header=[security])
        if "dmp-broken-mtom" in self.defects and attachments:
            attachments = attachments[1:]  # a part the envelope names is not sent
        content_type, data = soap.package(env, list(attachments))
        attempts = RETRIES if "dmp-retry-loop" in self.defects else 1
        for attempt in range(attempts):
            try:
                res = self.session.post(self.url, data=data, headers={"Content-Type": content_type}, timeout=TIMEOUT)
                break
            except requests.exceptions.SSLError as exc:
                if attempt + 1 == attempts:
                    raise Blocked(str(exc)) from None
                time.sleep(0.05)
        parsed = soap.parse(res.headers.get("Content-Type", ""), res.content)
        self.calls.append({"action": action, "http": res.status_code, "answer": etree.QName(parsed.body).localname if parsed.body is not None else ""})
        return parsed.body

    # -- the scenario -------------------------------------------------------------------

    def _documents(self) -> list[bytes]:
        return [cda_document(self.patient, self.defects, 101, release=self.release, when="20261102093000+0100"),
                cda_document(self.patient, self.defects, 102, release=self.release, level1=True, when="20261102094500+0100")]

    def _entry(self, entry_id: str, data: bytes) -> ebrim.NewObject:
        root = parse_xml(data, source=entry_id).getroot()
        level1 = root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}nonXMLBody") is not None
        entry = agreement.derive(entry_id, data, root, class_code=CLASS, format_code=None if level1 else STRUCTURED_FORMAT, institution=INSTITUTION)
        if "dmp-meta-type-code" in self.defects:
            entry.coded["typeCode"] = [("11490-0", "2.16.840.1.113883.6.1", "Lettre de liaison à la sortie d'un établissement de soins")]
        if "dmp-meta-class-code" in self.defects:
            entry.coded["classCode"] = [("99", "1.2.250.1.213.1.1.4.1", "Classe inexistante")]
        if "dmp-meta-hash" in self.defects:
            entry.slots["hash"] = ["da39a3ee5e6b4b0d3255bfef95601890afd80709"]
        if "dmp-meta-no-author" in self.defects:
            entry.authors = []
        return entry

    def _provide(self, documents: list[tuple[str, bytes]], associations: list = ()) -> etree._Element:
        entries = [self._entry(i, d) for i, d in documents]
        ss = ebrim.NewObject("SubmissionSet01", slots={"submissionTime": [dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")]},
                             coded={"contentTypeCode": [("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")]},
                             identifiers={"patientId": self.cx, "sourceId": SOURCE_ID, "uniqueId": f"{SOURCE_ID}.{uuid.uuid4().int % 10**12}"},
                             authors=[{"authorInstitution": [INSTITUTION]}])
        body = etree.Element(f"{{{ebrim.XDSB}}}ProvideAndRegisterDocumentSetRequest", nsmap={"xdsb": ebrim.XDSB})
        body.append(ebrim.write_submission(ss, entries, list(associations)))
        attachments = []
        for n, (entry_id, data) in enumerate(documents, 1):
            cid = f"doc{n}.{uuid.uuid4().hex}@cabinet-demo"
            soap.include(etree.SubElement(body, f"{{{ebrim.XDSB}}}Document", id=entry_id), cid)
            attachments.append((cid, data, "text/xml"))
        return self.call(PROVIDE, body, attachments)

    def _find(self) -> dict[str, str]:
        """uniqueId -> entryUUID of the patient's approved documents."""
        body = etree.Element(f"{{{ebrim.QUERY}}}AdhocQueryRequest", nsmap={"query": ebrim.QUERY, "rim": ebrim.RIM})
        etree.SubElement(body, f"{{{ebrim.QUERY}}}ResponseOption", returnType="LeafClass", returnComposedObjects="true")
        q = etree.SubElement(body, f"{{{ebrim.RIM}}}AdhocQuery", id="urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d")
        for name, value in (("$XDSDocumentEntryPatientId", f"'{self.cx}'"), ("$XDSDocumentEntryStatus", f"('{ebrim.APPROVED}')")):
            slot = etree.SubElement(q, f"{{{ebrim.RIM}}}Slot", name=name)
            etree.SubElement(etree.SubElement(slot, f"{{{ebrim.RIM}}}ValueList"), f"{{{ebrim.RIM}}}Value").text = value
        answer = self.call(QUERY, body)
        found = ebrim.read_submission(answer.find(f"{{{ebrim.RIM}}}RegistryObjectList")) if answer is not None and answer.find(f"{{{ebrim.RIM}}}RegistryObjectList") is not None else None
        return {d.identifiers.get("uniqueId", ""): d.id for d in (found.documents if found else [])}

    def _retrieve(self, unique_ids: list[str]) -> None:
        body = etree.Element(f"{{{ebrim.XDSB}}}RetrieveDocumentSetRequest", nsmap={"xdsb": ebrim.XDSB})
        for unique in unique_ids:
            dr = etree.SubElement(body, f"{{{ebrim.XDSB}}}DocumentRequest")
            etree.SubElement(dr, f"{{{ebrim.XDSB}}}RepositoryUniqueId").text = "1.2.250.1.213.4.1.1.1.999"
            etree.SubElement(dr, f"{{{ebrim.XDSB}}}DocumentUniqueId").text = unique
        self.call(RETRIEVE, body)

    def _hide(self, entry_uuid: str, data: bytes) -> None:
        entry = self._entry("UpdatedEntry", data)
        entry.attributes["lid"] = entry_uuid
        entry.slots["PreviousVersion"] = ["1"]
        entry.coded["confidentialityCode"].append(MASKED)
        ss = ebrim.NewObject("SubmissionSet01", slots={"submissionTime": [dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")]},
                             coded={"contentTypeCode": [("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")]},
                             identifiers={"patientId": self.cx, "sourceId": SOURCE_ID, "uniqueId": f"{SOURCE_ID}.{uuid.uuid4().int % 10**12}"})
        self.call(UPDATE, ebrim.write_submission(ss, [entry]))

    def consult(self) -> dict:
        """The test patient's documents (one query, ITI-18): what a professional sees opening
        the patient's DMP."""
        try:
            found = self._find()
        except Blocked as exc:
            return {"state": "blocked", "reason": exc.args[0][:300], "calls": self.calls}
        except (requests.RequestException, soap.SoapError, OSError) as exc:
            return {"state": "error", "reason": str(exc)[:300], "calls": self.calls}
        return {"state": "done", "documents": len(found), "calls": self.calls}

    def share(self, patient, oid: str) -> dict:
        """A consultation note of ``patient`` (a person registered through INSi) in their DMP, under
        their INS (``oid``: its system, as INSi gave it): one provide-and-register (ITI-41)."""
        self.patient = patient
        self.cx = f"{patient.ins}^^^&{oid}&ISO^NH"
        note = cda_document(patient, self.defects, 300 + int(patient.ipp[-3:]), release=self.release, when="20261203100000+0100")
        try:
            self._provide([("Document01", note)])
        except Blocked as exc:
            return {"state": "blocked", "reason": exc.args[0][:300], "calls": self.calls}
        except (requests.RequestException, soap.SoapError, OSError) as exc:
            return {"state": "error", "reason": str(exc)[:300], "calls": self.calls}
        return {"state": "done", "calls": self.calls}

    def run(self) -> dict:
        note, report = self._documents()
        try:
            self._provide([("Document01", note), ("Document02", report)])
            current = self._find()
            note_unique = agreement.header(parse_xml(note).getroot())["uniqueId"].value
            report_unique = agreement.header(parse_xml(report).getroot())["uniqueId"].value
            target = "urn:uuid:00000000-0000-0000-0000-000000000000" if "dmp-rplc-unknown" in self.defects else current.get(note_unique, "")
            version2 = cda_document(self.patient, self.defects, 103, release=self.release, version=2, set_id="SET-0101", replaces="DOC-0101",
                                    when="20261102110000+0100")
            self._provide([("Document03", version2)], [(ebrim.RPLC, "Document03", target, {})])
            current = self._find()
            self._retrieve(sorted(current))
            if report_unique in current:
                self._hide(current[report_unique], report)
        except Blocked as exc:
            return {"state": "blocked", "reason": exc.args[0][:300], "calls": self.calls}
        except (requests.RequestException, soap.SoapError, OSError) as exc:
            return {"state": "error", "reason": str(exc)[:300], "calls": self.calls}
        return {"state": "done", "calls": self.calls}

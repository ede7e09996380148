"""The demo's PDSm client: an IHE MHD Document Source and Document Consumer over plain
``requests`` (no FHIR client library fits an ITI-65 transaction better than one POST), its
bundles written by the XDS library's FHIR mapping (:func:`harness_xds.mhd.provide_bundle`)
from the metadata it derives for its CDA documents, as its XDS client does.

Asked by ``POST /pdsm/publish`` (``{"url": the PDSm base URL, "credentials": folder}``), it
publishes the test patient's two documents (ITI-65), replaces the first by a new version
(``relatesTo`` ``replaces``), then finds the patient's current documents (ITI-67, every page)
and retrieves each (ITI-68). Each defect of :data:`.pdsm_defects.PDSM_DEFECTS` breaks one rule.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import requests

from harness import parse_xml
from harness_xds import agreement, ebrim, mhd

from .dmp_client import CLASS, INSTITUTION, SOURCE_ID, STRUCTURED_FORMAT
from .patients import Patient, cda_document

TIMEOUT = (5, 30)  # connect, read: seconds
MAX_PAGES = 100  # pages of one search the client reads at most
INS_SYSTEM = "urn:oid:1.2.250.1.213.1.4.10"
CUSTODIAN = {"resourceType": "Organization", "name": "Cabinet Démo", "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "399999999900001"}]}
# the patient whose documents it shares through PDSm: one of its own (a test INS), so that what
# it finds does not depend on what other scenarios of the run fed the DMP's store before it
PATIENT = Patient("100003", "PARTAGE", "PARTAGE", "CAMILLE", "CAMILLE ANNE", "M", "19850612", "75056", "PARIS", "185067505612307", "QUAL")
SOURCE_ROLE = {"resourceType": "PractitionerRole", "organization": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "399999999900001"}}}



class SearchFailed(Exception):
    pass


class PdsmClient:
    def __init__(self, url: str, credentials: Path, defects: set[str], release: str) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.defects, self.release = defects, release
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = str(credentials / "ca.pem")
        self.patient = PATIENT
        self.calls: list[dict] = []

    def _call(self, method: str, url: str, **kw) -> requests.Response:
        res = self.session.request(method, url, timeout=TIMEOUT, **kw)
        self.calls.append({"method": method, "url": url[len(self.url):][:120], "http": res.status_code})
        return res

    def _bundle(self, documents: list[bytes], replaces: str | None = None) -> dict:
        entries = []
        for data in documents:
            root = parse_xml(data, source="demo").getroot()
            level1 = root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}nonXMLBody") is not None
            entry = agreement.derive(f"urn:uuid:{uuid.uuid4()}", data, root, class_code=CLASS, format_code=None if level1 else STRUCTURED_FORMAT,
                                     institution=INSTITUTION)
            if "pdsm-class-code" in self.defects:
                entry.coded["classCode"] = [("99", "1.2.250.1.213.1.1.4.1", "Classe inexistante")]
            if "pdsm-type-code" in self.defects:
                entry.coded["typeCode"] = [("11490-0", "2.16.840.1.113883.6.1", "Lettre de liaison à la sortie d'un établissement de soins")]
            entries.append((entry, data))
        ss = ebrim.NewObject(f"urn:uuid:{uuid.uuid4()}", slots={}, coded={"contentTypeCode": [("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")]},
                             identifiers={"patientId": entries[0][0].identifiers["patientId"], "sourceId": SOURCE_ID,
                                          "uniqueId": f"{SOURCE_ID}.{uuid.uuid4().int % 10**12}"},
                             authors=[{"authorInstitution": [INSTITUTION]}], title="Documents du cabinet")
        bundle = mhd.provide_bundle(ss, entries, custodian=CUSTODIAN, source_role=SOURCE_ROLE, when="2026-12-03T10:00:00+01:00")
        if replaces:
            bundle["entry"][1]["resource"]["relatesTo"] = [{"code": "replaces", "target": {"reference": replaces}}]
        if "pdsm-not-transaction" in self.defects:
            bundle["type"] = "batch"
        if "pdsm-hash" in self.defects:  # the hash of an earlier draft
            bundle["entry"][1]["resource"]["content"][0]["attachment"]["hash"] = "2jmj7l5rSw0yVb/vlWAYkK/YBwk="
        if "pdsm-no-custodian" in self.defects:
            for e in bundle["entry"]:
                e["resource"].pop("custodian", None)
        return bundle

    def _publish(self, bundle: dict) -> requests.Response:
        return self._call("POST", self.url, data=json.dumps(bundle).encode("utf-8"), headers={"Content-Type": "application/fhir+json"})

    def consult(self) -> dict:
        """The patient's current documents, as its screen lists them: their number, or that the
        search failed (the defect: a failed search shown as an empty record)."""
        try:
            found = self._search(strict=True)
        except SearchFailed as exc:
            if "pdsm-error-as-empty" in self.defects:
                return {"state": "done", "documents": 0, "calls": self.calls}
            return {"state": "error", "reason": str(exc), "calls": self.calls}
        except (requests.RequestException, ValueError, KeyError) as exc:
            return {"state": "error", "reason": str(exc)[:300], "calls": self.calls}
        return {"state": "done", "documents": len(found), "calls": self.calls}

    def _search(self, strict: bool = False) -> list[dict]:
        params = {"patient.identifier": f"{INS_SYSTEM}|{self.patient.ins}"}
        if "pdsm-search-no-status" not in self.defects:
            params["status"] = "current"
        res = self._call("GET", f"{self.url}DocumentReference", params=params, headers={"Accept": "application/fhir+json"})
        found: list[dict] = []
        for _ in range(MAX_PAGES):
            if res.status_code != 200:
                if strict:
                    raise SearchFailed(f"HTTP {res.status_code}")
                break
            page = res.json()
            found += [e["resource"] for e in page.get("entry", []) if e.get("resource", {}).get("resourceType") == "DocumentReference"]
            nxt = next((link["url"] for link in page.get("link", []) if link.get("relation") == "next"), None)
            if nxt is None or "pdsm-first-page-only" in self.defects:
                break
            res = self._call("GET", nxt, headers={"Accept": "application/fhir+json"})
        return found

    def run(self) -> dict:
        try:
            first = self._publish(self._bundle([cda_document(self.patient, self.defects, n, release=self.release, level1=n == 602,
                                                             when="20261203093000+0100") for n in (601, 602)]))
            replaced = ""
            if first.status_code == 200:
                location = first.json()["entry"][1]["response"]["location"]  # the first DocumentReference
                replaced = location.split("/_history")[0]
                self._publish(self._bundle([cda_document(self.patient, self.defects, 603, release=self.release, when="20261203110000+0100")],
                                           replaces=replaced))
            for dr in self._search():
                self._call("GET", dr["content"][0]["attachment"]["url"])
            if "pdsm-reads-superseded" in self.defects and replaced:  # the version it kept from before the replacement
                self._call("GET", f"{self.url}Binary/{replaced.rsplit('/', 1)[-1]}")
        except (requests.RequestException, ValueError, KeyError, IndexError) as exc:
            return {"state": "error", "reason": str(exc)[:300], "calls": self.calls}
        return {"state": "done", "calls": self.calls}

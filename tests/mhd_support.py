"""A conformant PDSm ITI-65 bundle for the tests: the demo's CDA documents, their XDS metadata
as a conformant sender derives them (harness_xds.agreement.derive), written in FHIR by the
library's own mapping (harness_xds.mhd.provide_bundle)."""
import uuid

from harness import parse_xml
from harness_demo.dmp_client import CLASS, INSTITUTION, SOURCE_ID, STRUCTURED_FORMAT
from harness_demo.patients import PATIENTS, cda_document
from harness_xds import agreement, ebrim, mhd

CUSTODIAN = {"resourceType": "Organization", "name": "Cabinet Démo", "identifier": [{"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "399999999900001"}]}
SOURCE_ROLE = {"resourceType": "PractitionerRole", "organization": {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.2", "value": "399999999900001"}}}


def documents(patient=PATIENTS[0], first: int = 101) -> list[bytes]:
    return [cda_document(patient, set(), first, when="20261102093000+0100"),
            cda_document(patient, set(), first + 1, level1=True, when="20261102094500+0100")]


def bundle(docs: list[bytes] | None = None, patient=PATIENTS[0]) -> dict:
    docs = docs if docs is not None else documents(patient)
    entries = []
    for data in docs:
        root = parse_xml(data, source="test").getroot()
        level1 = root.find("{urn:hl7-org:v3}component/{urn:hl7-org:v3}nonXMLBody") is not None
        entries.append((agreement.derive(f"urn:uuid:{uuid.uuid4()}", data, root, class_code=CLASS,
                                         format_code=None if level1 else STRUCTURED_FORMAT, institution=INSTITUTION), data))
    ss = ebrim.NewObject(f"urn:uuid:{uuid.uuid4()}", slots={"submissionTime": ["20261102090000"]},
                         coded={"contentTypeCode": [("04", "1.2.250.1.213.2.2", "Hospitalisation de jour")]},
                         identifiers={"patientId": entries[0][0].identifiers["patientId"], "sourceId": SOURCE_ID,
                                      "uniqueId": f"{SOURCE_ID}.{uuid.uuid4().int % 10**12}"},
                         authors=[{"authorInstitution": [INSTITUTION]}], title="Lot")
    return mhd.provide_bundle(ss, entries, custodian=CUSTODIAN, source_role=SOURCE_ROLE, when="2026-11-02T10:00:00+01:00")

"""The label's files as the demo software exports them: its DRC/CISP-2 -> CIM-10 transcoding
table (``GET /label/transcodage.csv``) and its reversibility export (``GET /label/export.zip``),
and the defects a vendor's files are seen to have."""
from __future__ import annotations

import csv
import io
import json
import zipfile

from harness import Message, catalogue

M = catalogue(__name__)

LABEL_DEFECTS: dict[str, Message] = {
    "label-table-unknown-source": M("defect.label-table-unknown-source"),
    "label-table-bad-target": M("defect.label-table-bad-target"),
    "label-table-disagrees": M("defect.label-table-disagrees"),
    "label-table-uncovered": M("defect.label-table-uncovered"),
    "label-table-latin1": M("defect.label-table-latin1"),
    "label-table-formula": M("defect.label-table-formula"),
    "label-export-patient-missing": M("defect.label-export-patient-missing"),
    "label-export-document-missing": M("defect.label-export-document-missing"),
    "label-export-identity": M("defect.label-export-identity"),
    "label-export-blob": M("defect.label-export-blob"),
    "label-export-bad-fhir": M("defect.label-export-bad-fhir"),
    "label-export-csv-schema": M("defect.label-export-csv-schema"),
}

# The CISP-2 rubrics the demo offers for entry, and the CIM-10 category each is transcoded to, with
# the CIM-10 labels the ANS kit's value sets give (harness/terminology/builtin/demo-label.json)
TABLE = [
    ("K86", "Hypertension non compliquée", "I10", "Hypertension essentielle (primitive)"),
    ("P76", "Dépression", "F32.9", "Épisode dépressif, sans précision"),
    ("U71", "Cystite/infection urinaire autre", "N39.0", "Infection des voies urinaires, siège non précisé"),
    ("T82", "Obésité", "E66.9", "Obésité, sans précision"),
    ("T93", "Trouble du métabolisme des lipides", "E78", "Anomalies du métabolisme des lipoprotéines et autres lipidémies"),
    ("T89", "Diabète insulino-dépendant", "E10", "Diabète sucré de type 1"),
    ("T90", "Diabète non insulino-dépendant", "E11", "Diabète sucré de type 2"),
    ("K78", "Fibrillation auriculaire/flutter", "I48", "Fibrillation et flutter auriculaires"),
    ("K77", "Insuffisance cardiaque", "I50.9", "Insuffisance cardiaque, sans précision"),
    ("P17", "Abus de tabac", "F17", "Troubles mentaux et du comportement liés à l'utilisation de tabac"),
]


def transcoding_csv(defects: set[str]) -> bytes:
    """The table as the demo exports it: ';'-separated, UTF-8, one header line."""
    rows = [list(r) for r in TABLE]
    if "label-table-uncovered" in defects:
        rows = [r for r in rows if r[0] != "P17"]  # a code the software offers, left out
    if "label-table-disagrees" in defects:
        rows = [[r[0], r[1], "E10", "Diabète sucré de type 1"] if r[0] == "T90" else r for r in rows]  # type 2 given type 1's code
    if "label-table-bad-target" in defects:
        rows = [[r[0], r[1], "I1O", r[3]] if r[0] == "K86" else r for r in rows]  # the letter O for the digit 0
    if "label-table-unknown-source" in defects:
        rows.append(["A00", "Motif de recours non précisé", "", ""])  # no rubric 00 in the CISP-2 (and, said so, no CIM-10 counterpart)
    if "label-table-formula" in defects:
        rows = [[r[0], r[1], '=RECHERCHEV(A2;CIM10!A:B;2;FAUX)', r[3]] if r[0] == "U71" else r for r in rows]
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["Code CISP-2", "Libellé CISP-2", "Code CIM-10", "Libellé CIM-10"])
    writer.writerows(rows)
    text = out.getvalue()
    return text.encode("cp1252") if "label-table-latin1" in defects else text.encode("utf-8")


CONSULTATIONS_SCHEMA = {  # a Table Schema (Frictionless Data) for the export's consultations
    "fields": [
        {"name": "ipp", "type": "string", "constraints": {"required": True, "pattern": "[0-9]{6}"}},
        {"name": "date", "type": "date", "constraints": {"required": True}},
        {"name": "code_cisp2", "type": "string", "constraints": {"required": True, "pattern": "[A-Z][0-9]{2}"}},
        {"name": "code_cim10", "type": "string"},
    ]
}
README = """Export de réversibilité du Cabinet Démo
patients.json : les patients (Bundle FHIR R4 de ressources Patient, profil FR Core)
documents/N.xml : les documents (CDA R2, CI-SIS)
consultations.csv : les consultations (CSV UTF-8, séparateur ;), décrit par consultations.schema.json (Table Schema, Frictionless Data)
"""


def export_zip(defects: set[str], extra: tuple = (), release: str = "3.2.1") -> bytes:
    """The demo's reversibility export: every patient (FHIR), every document (CDA), the
    consultations (CSV and its Table Schema), a README; the same patients and documents its
    channels show (``/fhir/Patient``, ``/cda/``)."""
    from . import patients as demo

    people = list(demo.patients(defects, extra)[2])
    documents = list(enumerate(demo.cda_documents(defects, release, extra), 1))
    if "label-export-patient-missing" in defects:  # the second patient and their documents left out
        gone = people.pop(1)
        documents = [(n, d) for n, d in documents if gone.birth_name.encode() not in d]
    if "label-export-document-missing" in defects:
        documents = documents[1:]
    resources = [demo.fhir_patient(p, defects) for p in people]
    if "label-export-identity" in defects:  # a birth date shifted by a day in the export
        resources[0]["birthDate"] = resources[0]["birthDate"][:-2] + f"{int(resources[0]['birthDate'][-2:]) % 28 + 1:02d}"
    if "label-export-bad-fhir" in defects:
        resources[0]["active"] = "oui"  # a FHIR boolean written in words
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": r}
                                                                       for n, r in enumerate(resources, 1)]}
    rows = [[p.ipp, "2026-11-02", code, cim] for p, (code, _, cim, _) in zip(people, TABLE)]
    if "label-export-csv-schema" in defects:
        rows[0][1] = "02/11/2026"  # a French date where the schema says ISO 8601
    out = io.StringIO()
    w = csv.writer(out, delimiter=";", lineterminator="\r\n")
    w.writerow([f["name"] for f in CONSULTATIONS_SCHEMA["fields"]])
    w.writerows(rows)
    members = [("LISEZMOI.txt", README.encode("utf-8")), ("patients.json", json.dumps(bundle, ensure_ascii=False, indent=1).encode("utf-8")),
               *((f"documents/{n}.xml", d) for n, d in documents), ("consultations.csv", out.getvalue().encode("utf-8")),
               ("consultations.schema.json", json.dumps(CONSULTATIONS_SCHEMA, indent=1).encode("utf-8"))]
    if "label-export-blob" in defects:  # the practice's database file, in a format nobody describes
        members.append(("data/cabinet.dat", b"CDMDB\x03\x00\x00" + bytes(range(256)) * 16))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, (2026, 11, 2, 12, 0, 0)), data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()

"""Patient identities in CDA documents: ``recordTarget/patientRole`` (CI-SIS header).

* ``patientRole/id``: one per identifier; an INS has ``root`` = an INS OID and
  ``extension`` = the matricule;
* ``patient/name``: ``family qualifier="BR"`` (birth name) and ``"CL"`` (used name; ``SP``
  occurs in official examples and is disputed), ``given qualifier="BR"`` the first given
  name, ``given`` without qualifier the list of given names;
* ``administrativeGenderCode/@code`` (M, F, U), ``birthTime/@value``,
  ``birthplace/place/addr/county`` the INSEE code of the birth place.

A CDA document carries no identity status: an INS in a document sent to the DMP means a
qualified identity, which the cross-channel check confronts with the status other
channels give.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from harness import Problem, Severity, catalogue

from .identity import Traits

M = catalogue(__name__)

NS = {"cda": "urn:hl7-org:v3"}
INS_ARC = "1.2.250.1.213.1.4."
_SEX = {"M": "M", "F": "F", "U": "I", "UN": "I"}


@dataclass
class CdaIdentifier:
    root: str
    extension: str
    location: str


@dataclass
class CdaIdentity:
    location: str
    identifiers: list[CdaIdentifier] = field(default_factory=list)
    traits: Traits = field(default_factory=Traits)
    families: list[tuple[str | None, str]] = field(default_factory=list)  # (qualifier, text)


def _text(node) -> str:
    return " ".join("".join(node.itertext()).split()) if node is not None else ""


def clinical_document(doc: etree._ElementTree) -> tuple[etree._Element | None, str]:
    """The ClinicalDocument and its path: the root, or the one a self-presenting document
    (an XSLT stylesheet that carries its CDA inside) embeds."""
    root = doc.getroot()
    if root is None:
        return None, ""
    if root.tag == f"{{{NS['cda']}}}ClinicalDocument":
        return root, "/ClinicalDocument"
    inner = next(root.iter(f"{{{NS['cda']}}}ClinicalDocument"), None)
    return inner, (doc.getpath(inner) if inner is not None else "")


def read_identities(doc: etree._ElementTree) -> list[CdaIdentity]:
    """Each ``recordTarget/patientRole`` of the document, with positional locations."""
    out = []
    clinical, base = clinical_document(doc)
    targets = clinical.findall("cda:recordTarget", NS) if clinical is not None else []
    for n, rt in enumerate(targets, 1):
        where = f"{base}/recordTarget[{n}]/patientRole"
        role = rt.find("cda:patientRole", NS)
        ident = CdaIdentity(where)
        if role is None:
            out.append(ident)
            continue
        for k, el in enumerate(role.findall("cda:id", NS), 1):
            ident.identifiers.append(CdaIdentifier((el.get("root") or "").strip(), (el.get("extension") or "").strip(), f"{where}/id[{k}]"))
        patient = role.find("cda:patient", NS)
        if patient is not None:
            name = patient.find("cda:name", NS)
            if name is not None:
                for fam in name.findall("cda:family", NS):
                    ident.families.append((fam.get("qualifier"), _text(fam)))
                births = [t for q, t in ident.families if q == "BR"]
                ident.traits.birth_name = births[0] if births else None
                givens = name.findall("cda:given", NS)
                first = [_text(g) for g in givens if g.get("qualifier") == "BR"]
                listed = [_text(g) for g in givens if g.get("qualifier") is None]
                ident.traits.first_given_name = first[0] if first else None
                ident.traits.given_names = " ".join(listed).split()
            gender = patient.find("cda:administrativeGenderCode", NS)
            code = (gender.get("code") or "").strip().upper() if gender is not None else ""
            ident.traits.sex = _SEX.get(code, code) or None
            born = patient.find("cda:birthTime", NS)
            ident.traits.birth_date = ((born.get("value") or "").strip()[:8] or None) if born is not None else None
            county = patient.find("cda:birthplace/cda:place/cda:addr/cda:county", NS)
            ident.traits.birth_place = _text(county) or None
        out.append(ident)
    return out


_TRAIT_PATH = {
    "INS-TRA-01": "patient/name/family[@qualifier='BR']",
    "INS-TRA-02": "patient/name/given[@qualifier='BR']",
    "INS-TRA-03": "patient/name/given",
    "INS-TRA-04": "patient/administrativeGenderCode",
    "INS-TRA-05": "patient/birthTime",
    "INS-TRA-06": "patient/birthplace/place/addr/county",
}


def check_identity(ident: CdaIdentity) -> list[tuple[str, Problem, CdaIdentifier | None]]:
    """Every INS rule for one patientRole: (location, problem, the identifier concerned)."""
    from .identity import check_coherence, check_matricule, check_traits, classify_system

    out: list[tuple[str, Problem, CdaIdentifier | None]] = []
    if not ident.identifiers and not ident.traits.birth_name and not ident.families:
        out.append((ident.location, Problem("INS-CDA-00", Severity.ERROR, message=M("cda.no_patient_role")), None))
        return out
    for i in ident.identifiers:
        system = classify_system(i.root)
        if not system.is_ins:
            if i.root.startswith(INS_ARC):
                out.append((i.location, Problem("INS-SYS-02", Severity.WARNING, message=M("cda.ins_arc", oid=i.root)), i))
            continue
        out += [(i.location, p, i) for p in check_matricule(i.extension)]
        out += [(i.location, p, i) for p in check_coherence(i.extension, ident.traits)]
    # Strict traits: with an INS they travel with it; without one they are the identity.
    out += [(f"{ident.location}/{_TRAIT_PATH[p.rule]}", p, None) for p in check_traits(ident.traits)]
    for n, (qualifier, text) in enumerate(ident.families, 1):
        where = f"{ident.location}/patient/name/family[{n}]"
        if qualifier is None:
            out.append((where, Problem("INS-CDA-01", Severity.ERROR, message=M("cda.no_qualifier", name=text)), None))
        elif qualifier == "SP":
            out.append((where, Problem("INS-CDA-01", Severity.WARNING, message=M("cda.sp_qualifier")), None))
        elif qualifier not in ("BR", "CL"):
            out.append((where, Problem("INS-CDA-01", Severity.ERROR, message=M("cda.unknown_qualifier", qualifier=qualifier)), None))
    return out

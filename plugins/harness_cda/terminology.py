"""Coded values of a CDA document, for the terminology scenarios (``harness_coded_values``).

Header: the elements the CI-SIS minimal structure binds to a value set, typed from the
specification and confirmed against the kit's header schematron
(``profils/structurationMinimale``, template 1.2.250.1.213.1.1.1.1): document type (J07),
confidentiality, administrative gender (J143), author function (J47) and specialty (J01),
practice settings (J04), patient relations (J11), encounter type (J142), facility type (J02).

Body: every element of the structured body that carries both ``@code`` and
``@codeSystem`` (``code``, ``value`` of type CD/CE, ``translation``, ``methodCode``...). No
value set is bound there in this version: each code is checked against its code system
(exists, not deprecated, display), which is where a remote server (LOINC, SNOMED CT, CIM-10,
NOS) adds most.
"""
from __future__ import annotations

from lxml import etree

from harness import CheckContext, Message, UnsafeInput, catalogue
from harness.terminology import CodedValue, ValueSetRef

from .document import HL7, NotCda, read_cda

M = catalogue(__name__)
NOS = "https://mos.esante.gouv.fr/NOS"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


def _nos(oid: str, name: str) -> ValueSetRef:
    """A NOS value set: ``JDV_J07-XdsTypeCode-CISIS`` -> its canonical URL, and its OID."""
    return ValueSetRef(url=f"{NOS}/{name}/FHIR/{name.replace('_', '-')}", oid=oid, name=name)


J01 = _nos("1.2.250.1.213.1.1.5.461", "JDV_J01-XdsAuthorSpecialty-CISIS")
J02 = _nos("1.2.250.1.213.1.1.5.466", "JDV_J02-XdsHealthcareFacilityTypeCode-CISIS")
J04 = _nos("1.2.250.1.213.1.1.5.467", "JDV_J04-XdsPracticeSettingCode-CISIS")
J07 = _nos("1.2.250.1.213.1.1.5.471", "JDV_J07-XdsTypeCode-CISIS")
J11 = _nos("1.2.250.1.213.3.3.16", "JDV_J11-RelationPatient-CISIS")
J47 = _nos("1.2.250.1.213.1.1.5.124", "JDV_J47-FunctionCode-CISIS")
J142 = _nos("1.2.250.1.213.1.1.5.589", "JDV_J142-TypeRencontre-CISIS")
J143 = _nos("1.2.250.1.213.1.1.5.590", "JDV_J143-AdministrativeGender-CISIS")
CONFIDENTIALITY = ValueSetRef(oid="2.16.840.1.113883.1.11.10228", name="JDV_HL7_Confidentiality_CISIS")

# (path from ClinicalDocument, value set, what it is)
HEADER_BINDINGS: tuple[tuple[str, ValueSetRef, Message], ...] = (
    ("cda:code", J07, M("binding.document_type")),
    ("cda:confidentialityCode", CONFIDENTIALITY, M("binding.confidentiality")),
    ("cda:recordTarget/cda:patientRole/cda:patient/cda:administrativeGenderCode", J143, M("binding.patient_sex")),
    ("cda:author/cda:functionCode", J47, M("binding.author_function")),
    ("cda:author/cda:assignedAuthor/cda:code", J01, M("binding.author_specialty")),
    ("cda:author/cda:assignedAuthor/cda:representedOrganization/cda:standardIndustryClassCode", J04, M("binding.author_setting")),
    ("cda:informant/cda:assignedEntity/cda:representedOrganization/cda:standardIndustryClassCode", J04, M("binding.informant_setting")),
    ("cda:informant/cda:relatedEntity/cda:code", J11, M("binding.informant_relation")),
    ("cda:legalAuthenticator/cda:assignedEntity/cda:code", J01, M("binding.authenticator_specialty")),
    ("cda:legalAuthenticator/cda:assignedEntity/cda:representedOrganization/cda:standardIndustryClassCode", J04, M("binding.authenticator_setting")),
    ("cda:participant/cda:functionCode", J47, M("binding.participant_function")),
    ("cda:participant/cda:associatedEntity/cda:code", J01, M("binding.participant_specialty")),
    ("cda:documentationOf/cda:serviceEvent/cda:performer/cda:assignedEntity/cda:code", J01, M("binding.performer_specialty")),
    ("cda:documentationOf/cda:serviceEvent/cda:performer/cda:assignedEntity/cda:representedOrganization/cda:standardIndustryClassCode", J04, M("binding.performer_setting")),
    ("cda:componentOf/cda:encompassingEncounter/cda:code", J142, M("binding.encounter_type")),
    ("cda:componentOf/cda:encompassingEncounter/cda:location/cda:healthCareFacility/cda:code", J02, M("binding.facility_type")),
)
NS = {"cda": HL7}
_COMPILED = tuple((etree.XPath(path, namespaces=NS), vs, what) for path, vs, what in HEADER_BINDINGS)
_BODY = etree.XPath("cda:component/cda:structuredBody//*[@code and @codeSystem]", namespaces=NS)
NULL = "nullFlavor"


def readable_path(el: etree._Element, root: etree._Element) -> str:
    """``/ClinicalDocument/component/structuredBody/component[2]/section/entry[1]/...``"""
    parts = []
    node = el
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if node is root or parent is None:
            parts.append(name)
            break
        same = [s for s in parent if s.tag == node.tag]
        parts.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
        node = parent
    return "/" + "/".join(reversed(parts))


def _value(name: str, el: etree._Element, root: etree._Element, vs: ValueSetRef | None, what: Message | None) -> CodedValue:
    return CodedValue(artefact=name, location=readable_path(el, root), code=el.get("code"), system=el.get("codeSystem"),
                      display=el.get("displayName"), value_set=vs, context=what, null_flavor=el.get(NULL))


def coded_values(ctx: CheckContext, name: str) -> list[CodedValue] | None:
    art = ctx.artefact(name)
    if "xml" not in art.media_type or art.media_type.startswith("application/svrl"):
        return None
    data = ctx.read(name)
    try:
        doc = read_cda(data, name)
    except NotCda:
        return None  # XML, but not a CDA document: not this extractor's kind
    except UnsafeInput as exc:
        if exc.reason == "xml-malformed" and b"ClinicalDocument" not in data:
            return None  # malformed XML that is no CDA document (XDS metadata, say): another extractor's
        raise
    # a document that cannot be read (malformed, hostile) raises UnsafeInput: its codes
    # cannot be judged, which the terminology checks report
    root = doc.root
    found: list[CodedValue] = []
    # the bound elements themselves, not their id(): lxml proxies that are not kept alive
    # are freed, and a later element may reuse the id of an earlier one
    bound: list[etree._Element] = []
    for xpath, vs, what in _COMPILED:
        for el in xpath(root):
            bound.append(el)
            found.append(_value(name, el, root, vs, what))
    for el in _BODY(root):
        if any(el is b for b in bound) or el.get(XSI_TYPE, "CD").split(":")[-1] not in ("CD", "CE", "CV", "CO", "CS"):
            continue
        found.append(_value(name, el, root, None, None))
    return found

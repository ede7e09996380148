"""Coded values of XDS metadata, for the terminology scenarios (``harness_coded_values``).

Each classification of a document entry or submission set is one coded value
(``nodeRepresentation`` in the ``codingScheme`` system), bound to the French value set its
attribute requires (CI-SIS, volet partage de documents de santé): classCode JDV_J06,
typeCode JDV_J07, healthcareFacilityTypeCode JDV_J02, practiceSettingCode JDV_J04,
confidentialityCode JDV_J08, authorSpecialty JDV_J01. formatCode (JDV_J10), the submission
set's contentTypeCode and the event codes are not extracted in this version: their value
sets are not in the corpus this project was built from, and no identifier or code list is
taken on trust.
"""
from __future__ import annotations

from harness import CheckContext, UnsafeInput, catalogue, parse_xml
from harness.terminology import CodedValue, ValueSetRef

from . import ebrim

M = catalogue(__name__)
NOS = "https://mos.esante.gouv.fr/NOS"


def _nos(oid: str, name: str) -> ValueSetRef:
    return ValueSetRef(url=f"{NOS}/{name}/FHIR/{name.replace('_', '-')}", oid=oid, name=name)


BINDINGS = {
    "classCode": _nos("1.2.250.1.213.1.1.5.462", "JDV_J06-XdsClassCode-CISIS"),
    "typeCode": _nos("1.2.250.1.213.1.1.5.471", "JDV_J07-XdsTypeCode-CISIS"),
    "healthcareFacilityTypeCode": _nos("1.2.250.1.213.1.1.5.466", "JDV_J02-XdsHealthcareFacilityTypeCode-CISIS"),
    "practiceSettingCode": _nos("1.2.250.1.213.1.1.5.467", "JDV_J04-XdsPracticeSettingCode-CISIS"),
    "confidentialityCode": _nos("1.2.250.1.213.1.1.5.463", "JDV_J08-XdsConfidentialityCode-CISIS"),
}
J01 = _nos("1.2.250.1.213.1.1.5.461", "JDV_J01-XdsAuthorSpecialty-CISIS")


def coded_values(ctx: CheckContext, name: str) -> list[CodedValue] | None:
    art = ctx.artefact(name)
    if "xml" not in art.media_type or art.media_type.startswith("application/svrl"):
        return None
    if b"SubmitObjectsRequest" not in ctx.read(name):
        return None  # not XDS metadata (a CDA document, say): not parsed a second time
    try:
        tree = ctx.xml(name)
    except UnsafeInput as exc:
        if exc.reason != "xml-malformed":
            return None  # unreadable (a DTD, too large): the metadata checks report it
        try:  # not well formed (an undeclared prefix, as in the wild): the metadata checks say
            tree = parse_xml(ctx.read(name), source=name, recover=True)  # so; its codes are judged all the same
        except UnsafeInput:
            return None
    request = ebrim.find_request(tree.getroot())
    if request is None:
        return None  # XML, but not XDS metadata
    return submission_values(ebrim.read_submission(request), name)


def submission_values(sub: ebrim.Submission, name: str) -> list[CodedValue]:
    """The coded values of a submission's metadata, each at the place it was read (an ebRIM
    path, or a FHIR path when the metadata came from FHIR: :mod:`.mhd`)."""
    found = []
    for obj in sub.submission_sets + sub.documents:
        for attribute, codes in sorted(obj.classifications.items()):
            if attribute not in BINDINGS:
                continue
            for c in codes:
                found.append(CodedValue(artefact=name, location=c.location, code=c.code or None, system=c.scheme or None, display=c.display or None,
                                        value_set=BINDINGS[attribute], context=M("binding.attribute", attribute=attribute)))
        for author in obj.authors:
            for value in author.specialties:  # code^display^system
                parts = value.split("^")
                system = parts[2] if len(parts) > 2 else ""
                if system.startswith("&"):  # a HD: &OID&ISO
                    system = system.split("&")[1] if system.count("&") >= 2 else ""
                found.append(CodedValue(artefact=name, location=author.location, code=parts[0] or None, system=system or None,
                                        display=parts[1] if len(parts) > 1 else None, value_set=J01,
                                        context=M("binding.attribute", attribute="authorSpecialty")))
    return found

"""XDS metadata in ebRIM 3.0: reading a ``SubmitObjectsRequest``, and writing one.

A domain library shared by the DMP plugin (ITI-41 / ITI-57 requests) and the MSSanté/XDM
plugin (``METADATA.XML``): pure functions of parsed XML and values, no pytest or pluggy.

Reading is by local name: the same code reads the namespaced metadata of an XDS.b request
and a ``METADATA.XML`` whose elements lost their namespace (the real sample of the corpus
declares none for its children). Every value keeps the path it was read from, so that a
finding can name it.

Identifiers are those of IHE ITI TF-3 4.2 (classification schemes, external identifiers,
object types, association types, status) and of the CI-SIS "volet partage de documents de
santé" for the French extensions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"

SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
FOLDER_NODE = "urn:uuid:d9d542f3-6cc4-48b6-8870-ea235fbc94c2"
DOCUMENT_ENTRY_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
ON_DEMAND_ENTRY_TYPE = "urn:uuid:34268e47-fdf5-41a6-ba33-82133c465248"

# classification schemes: name -> UUID (ITI TF-3 Table 4.2.5-1)
SS_SCHEMES = {
    "author": "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d",
    "contentTypeCode": "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500",
}
DE_SCHEMES = {
    "author": "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d",
    "classCode": "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a",
    "confidentialityCode": "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f",
    "eventCodeList": "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4",
    "formatCode": "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d",
    "healthcareFacilityTypeCode": "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1",
    "practiceSettingCode": "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead",
    "typeCode": "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983",
}
# external identifiers: name -> UUID
SS_IDENTIFIERS = {
    "patientId": "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446",
    "sourceId": "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832",
    "uniqueId": "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8",
}
FOLDER_IDENTIFIERS = {
    "patientId": "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a",
    "uniqueId": "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a",
}
DE_IDENTIFIERS = {
    "patientId": "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
    "uniqueId": "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab",
}
CODED = ("classCode", "typeCode", "formatCode", "healthcareFacilityTypeCode", "practiceSettingCode")  # one each
CODED_LISTS = ("confidentialityCode", "eventCodeList")  # zero or more

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
UPDATE_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
ERROR_SEVERITY = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"


@dataclass(frozen=True)
class Coded:
    code: str
    scheme: str  # codingScheme slot (an OID in France)
    display: str
    location: str


@dataclass
class Author:
    person: str = ""
    institutions: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    specialties: list[str] = field(default_factory=list)
    location: str = ""


@dataclass
class RegistryObject:
    """What an ExtrinsicObject or a RegistryPackage says, as read."""

    id: str
    location: str
    slots: dict[str, list[str]] = field(default_factory=dict)
    classifications: dict[str, list[Coded]] = field(default_factory=dict)  # by name (see *_SCHEMES)
    identifiers: dict[str, str] = field(default_factory=dict)  # by name (see *_IDENTIFIERS)
    authors: list[Author] = field(default_factory=list)
    title: str = ""
    unknown_schemes: list[tuple[str, str]] = field(default_factory=list)  # (scheme UUID, location)
    attributes: dict[str, str] = field(default_factory=dict)  # mimeType, objectType, status, lid...
    # where an attribute was read when the object did not come from ebRIM (FHIR: MHD's mapping)
    places: dict[str, str] = field(default_factory=dict)

    def place(self, name: str) -> str:
        """Where the attribute ``name`` (a slot, ``title``, ``mimeType``) was read."""
        if name in self.places:
            return self.places[name]
        if name == "title":
            return f"{self.location}/Name"
        if name == "mimeType":
            return f"{self.location}/@mimeType"
        return f"{self.location}/Slot[@name='{name}']"

    def slot(self, name: str) -> str | None:
        values = self.slots.get(name)
        return values[0] if values else None

    def coded(self, name: str) -> list[Coded]:
        return self.classifications.get(name, [])


ASSOCIATION_DOCUMENTATION = "urn:uuid:abd807a3-4432-4053-87b4-fd82c643d1f3"  # why a lifecycle change was made (ITI TF-3)


@dataclass
class Association:
    id: str
    type: str
    source: str
    target: str
    slots: dict[str, list[str]]
    location: str
    documentation: list[str] = field(default_factory=list)  # codes of its association documentation classification


@dataclass
class Submission:
    submission_sets: list[RegistryObject]
    documents: list[RegistryObject]
    associations: list[Association]
    other: list[str]  # locations of registry objects that are none of the above
    folders: list[RegistryObject] = field(default_factory=list)

    def document(self, entry_id: str) -> RegistryObject | None:
        return next((d for d in self.documents if d.id == entry_id), None)


def local(el: etree._Element) -> str:
    """The element's local name; a prefix left in the name (an undeclared prefix, read by a
    recovering parser) is dropped too."""
    if not isinstance(el.tag, str):
        return ""
    return el.tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def children(el: etree._Element, name: str) -> list[etree._Element]:
    return [c for c in el if local(c) == name]


def _path(el: etree._Element) -> str:
    parts = []
    node = el
    while node is not None:
        name = local(node)
        parent = node.getparent()
        ident = node.get("id")
        if ident and name in ("ExtrinsicObject", "RegistryPackage", "Association", "Classification", "ExternalIdentifier"):
            parts.append(f"{name}[@id='{ident}']")
        elif parent is not None:
            same = [s for s in parent if isinstance(s.tag, str) and local(s) == name]
            parts.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
        else:
            parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))


def slots(el: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in children(el, "Slot"):
        values = [("".join(v.itertext())).strip() for vl in children(slot, "ValueList") for v in children(vl, "Value")]
        out.setdefault(slot.get("name") or "", []).extend(values)
    return out


def _name(el: etree._Element) -> str:
    for name in children(el, "Name"):
        for ls in children(name, "LocalizedString"):
            return ls.get("value") or ""
    return ""


def _read_object(el: etree._Element, schemes: dict[str, str], identifiers: dict[str, str]) -> RegistryObject:
    obj = RegistryObject(el.get("id") or "", _path(el), slots(el), title=_name(el),
                         attributes={k: v for k, v in el.attrib.items() if k in ("mimeType", "objectType", "status", "lid", "home")})
    by_uuid = {v: k for k, v in schemes.items()}
    for cl in children(el, "Classification"):
        scheme = cl.get("classificationScheme")
        if scheme is None:
            continue  # a classificationNode (what the object is), read by the caller
        name = by_uuid.get(scheme)
        if name is None:
            obj.unknown_schemes.append((scheme, _path(cl)))
        elif name == "author":
            s = slots(cl)
            obj.authors.append(Author((s.get("authorPerson") or [""])[0], s.get("authorInstitution", []), s.get("authorRole", []),
                                      s.get("authorSpecialty", []), _path(cl)))
        else:
            obj.classifications.setdefault(name, []).append(
                Coded(cl.get("nodeRepresentation") or "", (slots(cl).get("codingScheme") or [""])[0], _name(cl), _path(cl)))
    by_id = {v: k for k, v in identifiers.items()}
    for ei in children(el, "ExternalIdentifier"):
        scheme = ei.get("identificationScheme") or ""
        name = by_id.get(scheme)
        if name is None:
            obj.unknown_schemes.append((scheme, _path(ei)))
        else:
            obj.identifiers[name] = ei.get("value") or ""
    return obj


def read_object(el: etree._Element, schemes: dict[str, str], identifiers: dict[str, str]) -> RegistryObject:
    """One ``ExtrinsicObject`` or ``RegistryPackage`` as read (``DE_SCHEMES``/``DE_IDENTIFIERS``
    for a document entry, ``SS_*`` for a submission set)."""
    return _read_object(el, schemes, identifiers)


def find_request(root: etree._Element) -> etree._Element | None:
    """The ``SubmitObjectsRequest`` at or under ``root`` (a ProvideAndRegister request, a
    SOAP body, a METADATA.XML)."""
    if local(root) == "SubmitObjectsRequest":
        return root
    return next((el for el in root.iter() if isinstance(el.tag, str) and local(el) == "SubmitObjectsRequest"), None)


def read_submission(request: etree._Element) -> Submission:
    """The submission sets, document entries and associations of a ``SubmitObjectsRequest``
    (or of any ``RegistryObjectList``)."""
    sub = Submission([], [], [], [])
    lists = [request] if local(request) == "RegistryObjectList" else children(request, "RegistryObjectList")
    # a submission set is classified inside its RegistryPackage or by a Classification of the list
    standalone = {cl.get("classifiedObject") for rol in lists for cl in children(rol, "Classification")
                  if cl.get("classificationNode") == SUBMISSION_SET_NODE}
    folders = {cl.get("classifiedObject") for rol in lists for cl in children(rol, "Classification")
               if cl.get("classificationNode") == FOLDER_NODE}
    for rol in lists:
        for el in rol:
            name = local(el)
            if name == "RegistryPackage":
                nodes = {cl.get("classificationNode") for cl in children(el, "Classification")}
                if SUBMISSION_SET_NODE in nodes or el.get("id") in standalone:
                    sub.submission_sets.append(_read_object(el, SS_SCHEMES, SS_IDENTIFIERS))
                elif FOLDER_NODE in nodes or el.get("id") in folders:
                    sub.folders.append(_read_object(el, {}, FOLDER_IDENTIFIERS))
                else:
                    sub.other.append(_path(el))
            elif name == "ExtrinsicObject":
                sub.documents.append(_read_object(el, DE_SCHEMES, DE_IDENTIFIERS))
            elif name == "Association":
                sub.associations.append(Association(el.get("id") or "", el.get("associationType") or "", el.get("sourceObject") or "",
                                                    el.get("targetObject") or "", slots(el), _path(el),
                                                    [cl.get("nodeRepresentation") or "" for cl in children(el, "Classification")
                                                     if cl.get("classificationScheme") == ASSOCIATION_DOCUMENTATION]))
            elif name in ("Classification", "ObjectRef"):
                continue  # a classification standing alone (submission set node), a reference
            elif isinstance(el.tag, str):
                sub.other.append(_path(el))
    return sub


# -- writing ------------------------------------------------------------------------------


def _e(parent: etree._Element | None, ns: str, tag_name: str, **attrs: str) -> etree._Element:
    tag = f"{{{ns}}}{tag_name}"
    el = etree.Element(tag, attrs, nsmap={"rim": RIM}) if parent is None else etree.SubElement(parent, tag, attrs)
    return el


def _slot(parent: etree._Element, name: str, values: list[str]) -> None:
    slot = _e(parent, RIM, "Slot", name=name)
    vl = _e(slot, RIM, "ValueList")
    for v in values:
        _e(vl, RIM, "Value").text = v


def _localized(parent: etree._Element, tag: str, value: str) -> None:
    if value:
        _e(_e(parent, RIM, tag), RIM, "LocalizedString", value=value, charset="UTF-8", **{"{http://www.w3.org/XML/1998/namespace}lang": "fr-FR"})


@dataclass
class NewObject:
    """A document entry or submission set to write."""

    id: str
    slots: dict[str, list[str]] = field(default_factory=dict)
    coded: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # name -> [(code, scheme, display)]
    identifiers: dict[str, str] = field(default_factory=dict)
    authors: list[dict[str, list[str]]] = field(default_factory=list)  # slots of each author classification
    title: str = ""
    attributes: dict[str, str] = field(default_factory=dict)


def _write_object(parent: etree._Element, tag: str, obj: NewObject, schemes: dict[str, str], identifiers: dict[str, str]) -> etree._Element:
    el = _e(parent, RIM, tag, id=obj.id, **obj.attributes)
    for name, values in obj.slots.items():
        _slot(el, name, values)
    _localized(el, "Name", obj.title)
    n = 0
    for author in obj.authors:
        n += 1
        cl = _e(el, RIM, "Classification", id=f"{obj.id}-cl{n}", classificationScheme=schemes["author"], classifiedObject=obj.id, nodeRepresentation="")
        for name, values in author.items():
            _slot(cl, name, values)
    for name, codes in obj.coded.items():
        for code, scheme, display in codes:
            n += 1
            cl = _e(el, RIM, "Classification", id=f"{obj.id}-cl{n}", classificationScheme=schemes[name], classifiedObject=obj.id, nodeRepresentation=code)
            _slot(cl, "codingScheme", [scheme])
            _localized(cl, "Name", display)
    if tag == "RegistryPackage":
        n += 1
        _e(el, RIM, "Classification", id=f"{obj.id}-cl{n}", classificationNode=SUBMISSION_SET_NODE, classifiedObject=obj.id)
    for name, value in obj.identifiers.items():
        n += 1
        ei = _e(el, RIM, "ExternalIdentifier", id=f"{obj.id}-ei{n}", identificationScheme=identifiers[name], registryObject=obj.id, value=value)
        _localized(ei, "Name", f"{'XDSSubmissionSet' if tag == 'RegistryPackage' else 'XDSDocumentEntry'}.{name}")
    return el


def write_submission(submission_set: NewObject, documents: list[NewObject], associations: list[tuple[str, str, str, dict]] = ()) -> etree._Element:
    """A ``lcm:SubmitObjectsRequest``: the submission set, its documents, a HasMember
    association for each, then ``associations`` given as (type, source, target, slots)."""
    request = etree.Element(f"{{{LCM}}}SubmitObjectsRequest", nsmap={"lcm": LCM, "rim": RIM})
    rol = _e(request, RIM, "RegistryObjectList")
    for doc in documents:
        _write_object(rol, "ExtrinsicObject", doc, DE_SCHEMES, DE_IDENTIFIERS)
    _write_object(rol, "RegistryPackage", submission_set, SS_SCHEMES, SS_IDENTIFIERS)
    links = [(HAS_MEMBER, submission_set.id, d.id, {"SubmissionSetStatus": ["Original"]}) for d in documents] + list(associations)
    for n, (kind, source, target, slots) in enumerate(links, 1):
        assoc = _e(rol, RIM, "Association", id=f"assoc{n}", associationType=kind, sourceObject=source, targetObject=target)
        for name, values in slots.items():
            _slot(assoc, name, values)
    return request

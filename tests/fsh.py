"""A reader of FHIR Shorthand *instances*, enough for the examples of the PDSm guide: the IG
publishes its examples as FSH (input/fsh/Examples), compiled by SUSHI, which needs the FHIR
package registry (not reachable here). Each rule ``* path = value`` is typed by the FHIR R4
model of the element it sets (fhir.resources): a code, a Coding, a CodeableConcept, a
Reference, a primitive. Slices are named as the PDSm and MHD profiles name them
(:data:`SLICES`); anything else this reader does not know raises, so a test never reads an
example differently from the guide without saying so."""
from __future__ import annotations

import importlib
import re
import typing
from dataclasses import dataclass, field

from harness_xds import mhd

# profile (InstanceOf) -> resource type
PROFILES = {"PDSm_ComprehensiveDocumentReference": "DocumentReference", "pdsm-simplified-publish": "DocumentReference",
            "PDSm_SubmissionSetComprehensive": "List", "PDSm_FolderComprehensive": "List",
            "IHE.MHD.ProvideDocumentBundleResponse": "Bundle", "FRCorePatientProfile": "Patient"}
ISARCHIVED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-isarchived"
INTENDED = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/pdsm-ext-intended-recipient"
# named slices of the profiles: (element, slice) -> what a new item of the slice is
SLICES = {("identifier", "uniqueId"): {"use": "usual"}, ("identifier", "entryUUID"): {"use": "official"},
          ("extension", "designationType"): {"url": mhd.DESIGNATION_TYPE}, ("extension", "ihe-sourceId"): {"url": mhd.SOURCE_ID},
          ("extension", "isArchived"): {"url": ISARCHIVED}, ("extension", "PDSmintendedRecipient"): {"url": INTENDED},
          ("extension", "authorOrg"): {"url": mhd.AUTHOR_ORG}}


@dataclass
class Instance:
    name: str
    of: str
    usage: str = ""
    rules: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> tuple[dict[str, Instance], dict[str, str]]:
    aliases: dict[str, str] = {}
    found: dict[str, Instance] = {}
    current: Instance | None = None
    for raw in text.splitlines():
        line = re.sub(r"\s//.*$", "", raw).strip()
        if not line or line.startswith("//"):
            continue
        if m := re.match(r"Alias:\s*(\S+)\s*=\s*(\S+)", line):
            aliases[m.group(1)] = m.group(2)
        elif m := re.match(r"Instance:\s*(\S+)", line):
            current = found[m.group(1)] = Instance(m.group(1), "")
        elif current is not None and (m := re.match(r"InstanceOf:\s*(\S+)", line)):
            current.of = m.group(1)
        elif current is not None and (m := re.match(r"Usage:\s*#(\S+)", line)):
            current.usage = m.group(1)
        elif current is not None and line.startswith("* "):
            path, _, value = line[2:].partition(" = ")
            current.rules.append((path.strip(), value.strip()))
    return found, aliases


def _model(type_name: str, near: type | None = None) -> type:
    name = type_name.removesuffix("Type")
    for module in ([near.__module__] if near is not None else []) + [f"fhir.resources.R4B.{name.lower()}"]:
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            cls = None
        if cls is not None:
            return cls
    raise KeyError(f"no FHIR model for {type_name}")


def _field(cls: type, name: str) -> tuple[str, bool]:
    """The element's type name and whether it repeats."""
    info = cls.model_fields.get(name) or cls.model_fields.get(f"{name}__ext")
    if info is None:
        raise KeyError(f"{cls.__name__}.{name}: not an element")
    ann = info.annotation
    text = str(ann)
    many = "List[" in text
    m = re.search(r"abc\.(\w+)", text)
    if m:
        return m.group(1), many
    args = [a for a in typing.get_args(ann) if a is not type(None)]
    base = args[0] if args else ann
    inner = typing.get_args(base)
    return (str(inner[0] if inner and "Annotated" in str(base) else base)), many


def _literal(value: str, type_name: str, aliases: dict[str, str], ref, contained):
    if value.startswith("Reference("):
        return ref(value[10:-1].strip())
    m = re.match(r'^(\S*)#(\S+)(?:\s+"(.*)")?$', value)
    if m and not value.startswith('"'):
        system, code, display = aliases.get(m.group(1), m.group(1)), m.group(2), m.group(3)
        coding = {k: v for k, v in (("system", system), ("code", code), ("display", display)) if v}
        if "CodeableConcept" in type_name:
            return {"coding": [coding]}
        if "Coding" in type_name:
            return coding
        return code
    if value.startswith('"'):
        return value[1:value.rindex('"')]
    if value in ("true", "false"):
        return value == "true"
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if type_name.startswith("Resource") or type_name == "ResourceType":
        return contained(value)
    raise ValueError(f"value {value!r} for {type_name}")


def resource(name: str, instances: dict[str, Instance], aliases: dict[str, str]) -> dict:
    inst = instances[name]
    kind = PROFILES.get(inst.of, inst.of)
    out: dict = {"resourceType": kind, "id": name}
    root = _model(kind)
    # references to a contained instance are local (#id), whatever the order of the rules (as SUSHI does)
    contained_ids = {value for path, value in inst.rules if re.fullmatch(r"contained(\[\d+\])?", path)}

    def ref(target: str) -> dict:
        if target in contained_ids:
            return {"reference": f"#{target}"}
        other = instances.get(target)
        return {"reference": f"{PROFILES.get(other.of, other.of)}/{target}" if other else target}

    def contained(target: str) -> dict:
        return resource(target, instances, aliases)

    for path, value in inst.rules:
        if path == "id":
            out["id"] = _literal(value, "str", aliases, ref, contained)
            continue
        node, cls, parts = out, root, re.findall(r"([A-Za-z0-9_\-]+)(?:\[([^\]]+)\])?", path)
        for i, (elem, index) in enumerate(parts):
            if elem.startswith("value") and elem not in cls.model_fields and cls.__name__ == "Extension":
                type_name, many = elem[5:], False
            else:
                type_name, many = _field(cls, elem)
            last = i == len(parts) - 1
            if many:
                items = node.setdefault(elem, [])
                if index in ("", None) or index == "0" and not items:
                    index = "0" if not items else "="
                if (elem, index) in SLICES:
                    template = SLICES[(elem, index)]
                    pos = next((k for k, it in enumerate(items) if all(it.get(a) == b for a, b in template.items())), None)
                    if pos is None:
                        items.append(dict(template))
                        pos = len(items) - 1
                elif index == "+":
                    items.append({})
                    pos = len(items) - 1
                elif index == "=":
                    pos = len(items) - 1
                elif index.isdigit():
                    pos = int(index)
                    while len(items) <= pos:
                        items.append({})
                else:
                    raise KeyError(f"{path}: slice {index} unknown to this reader")
                if last:
                    items[pos] = _literal(value, type_name, aliases, ref, contained)
                else:
                    node = items[pos]
            elif last:
                node[elem] = _literal(value, type_name, aliases, ref, contained)
            else:
                node = node.setdefault(elem, {})
            if not last:
                cls = _model(type_name, cls)
    return out

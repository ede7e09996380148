"""An offline terminology snapshot: value sets and code systems read from files.

Formats read (a folder is walked recursively):

* IHE SVS XML (``RetrieveValueSetResponse`` / ``RetrieveMultipleValueSetsResponse``), as the
  ANS publishes its value sets (``JDV_*.xml``): value set OID, ``urlFichier``, concepts with
  their code system OID and ``dateFin`` (end of validity: the code is deprecated from then);
* FHIR R4 JSON: ``ValueSet`` (``compose`` and/or ``expansion``), ``CodeSystem``,
  ``ConceptMap``, and ``Bundle`` of those, as the NOS IG publishes them.

A snapshot answers only what it knows. A value set it does not hold, a code system it
holds only as fragments (codes seen in value sets), or a value set marked *partial* (the
project's own small snapshot, typed from the specifications) give no answer rather than
a wrong "no": the check then says it could not conclude.

Files that cannot be read are listed as problems (the ANS kit ships three empty ones) and
never stop the load.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterable

from ..errors import HarnessError, UnsafeInput
from ..messages import Localized, catalogue
from ..safety.inputs import parse_xml
from .engine import PARTIAL_EXTENSION, Engine
from .model import NOS_SYSTEMS, WELL_KNOWN_SYSTEMS, Answer, Expansion, bare_oid, error_record

M = catalogue(__name__)

SVS = "urn:ihe:iti:svs:2008"
MAX_FILE = 64 * 1024 * 1024
INACTIVE_STATUSES = {"retired", "deprecated", "inactive"}


@dataclass
class Concept:
    display: str | None = None
    end: str | None = None  # ISO date from which the code is no longer valid
    inactive: bool = False  # marked inactive by its source, whatever the date

    def is_inactive(self, as_of: str) -> bool:
        return self.inactive or (self.end is not None and self.end <= as_of)


@dataclass
class ValueSetDef:
    url: str | None
    oid: str | None
    name: str | None
    version: str | None
    file: str
    members: dict[tuple[str, str], Concept] = field(default_factory=dict)  # raw (system, code)
    whole_systems: list[str] = field(default_factory=list)
    partial: bool = False
    svs: bool = False  # read from an IHE SVS file (a list of concepts), not a FHIR resource

    @property
    def label(self) -> str:
        return self.name or self.url or self.oid or self.file


@dataclass
class CodeSystemDef:
    url: str | None
    oid: str | None
    version: str | None
    complete: bool
    file: str
    concepts: dict[str, Concept] = field(default_factory=dict)


@dataclass
class ConceptMapDef:
    url: str | None
    file: str
    # (source system, code) -> [(target system, code, display, equivalence)]
    elements: dict[tuple[str, str], list[tuple[str, str, str | None, str]]] = field(default_factory=dict)


def _svs_date(value: str | None) -> str | None:
    """``20241213120000`` -> ``2024-12-13``; empty or malformed -> None."""
    value = (value or "").strip()
    if len(value) >= 8 and value[:8].isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    return None


def _name_key(name: str) -> str:
    """``JDV_J07_XdsTypeCode_CISIS``, ``JDV-J07-XdsTypeCode-CISIS``, ``JDV_J07-XdsTypeCode-CISIS``: one key."""
    return "".join(ch for ch in name.casefold() if ch.isalnum())


def _canonical_from_svs(url_fichier: str | None) -> str | None:
    """``https://mos.esante.gouv.fr/NOS/JDV_J07-XdsTypeCode-CISIS`` -> the FHIR canonical
    ``.../JDV_J07-XdsTypeCode-CISIS/FHIR/JDV-J07-XdsTypeCode-CISIS`` (the NOS convention)."""
    if not url_fichier or "/NOS/" not in url_fichier:
        return None
    base = url_fichier.rstrip("/")
    name = base.rsplit("/", 1)[-1]
    return f"{base}/FHIR/{name.replace('_', '-')}"


class Snapshot:
    """Value sets and code systems loaded from files, indexed for answering."""

    def __init__(self, name: str = "snapshot") -> None:
        self.name = name
        self.value_sets: list[ValueSetDef] = []
        self.code_systems: list[CodeSystemDef] = []
        self.concept_maps: list[ConceptMapDef] = []
        self.files: list[tuple[str, str]] = []  # (relative path, sha256)
        self.resources: list[dict] = []  # every FHIR ValueSet, CodeSystem and ConceptMap read
        self.problems: list[dict[str, str]] = []
        self._oid_to_uri: dict[str, str] = dict(WELL_KNOWN_SYSTEMS)
        self._uri_to_oid: dict[str, str] = {**{v: k for k, v in WELL_KNOWN_SYSTEMS.items()}, **NOS_SYSTEMS}

    # -- loading ------------------------------------------------------------------------

    @classmethod
    def load(cls, folders: Iterable[Path], name: str | None = None) -> "Snapshot":
        folders = [Path(f) for f in folders]
        snap = cls(name or "+".join(f.name for f in folders) or "empty")
        for folder in folders:
            if folder.is_file():
                snap._load_file(folder, folder.name)
                continue
            if not folder.is_dir():
                raise HarnessError(M("snapshot.not_found", folder=str(folder)))
            for path in sorted(folder.rglob("*")):
                if path.is_file() and path.suffix.lower() in (".xml", ".json"):
                    snap._load_file(path, f"{folder.name}/{path.relative_to(folder).as_posix()}")
        snap._build()
        return snap

    def _problem(self, rel: str, message: Localized) -> None:
        self.problems.append({"file": rel, **message.texts()})

    def _load_file(self, path: Path, rel: str) -> None:
        size = path.stat().st_size
        if size == 0:
            self._problem(rel, M("snapshot.empty_file"))
            return
        if size > MAX_FILE:
            self._problem(rel, M("snapshot.file_too_large", limit=MAX_FILE))
            return
        data = path.read_bytes()
        self.files.append((rel, hashlib.sha256(data).hexdigest()))
        before = (len(self.value_sets), len(self.code_systems), len(self.concept_maps))
        try:
            if path.suffix.lower() == ".xml":
                self._load_svs(data, rel)
            else:
                self._load_fhir(json.loads(data), rel)
        except UnsafeInput as exc:
            self._problem(rel, exc.detail)
        except (ValueError, RecursionError) as exc:
            self._problem(rel, M("snapshot.bad_json", error=str(exc)))
        except (TypeError, KeyError, AttributeError) as exc:
            self._problem(rel, M("snapshot.bad_structure", error=str(exc)))
        if (len(self.value_sets), len(self.code_systems), len(self.concept_maps)) == before and not any(p["file"] == rel for p in self.problems):
            self._problem(rel, M("snapshot.nothing"))

    def _load_svs(self, data: bytes, rel: str) -> None:
        root = parse_xml(data, source=rel).getroot()
        if not isinstance(root.tag, str) or not root.tag.startswith(f"{{{SVS}}}"):
            self._problem(rel, M("snapshot.not_svs"))
            return
        for vs in root.iter(f"{{{SVS}}}ValueSet", f"{{{SVS}}}DescribedValueSet"):
            oid = bare_oid(vs.get("id", "") or "")
            url_fichier = vs.get("urlFichier")
            d = ValueSetDef(
                url=_canonical_from_svs(url_fichier),
                oid=oid,
                name=(vs.get("displayName") or "").removesuffix(".tabs") or None,
                version=vs.get("version") or vs.get("dateMaj") or vs.get("revisionDate"),
                file=rel,
            )
            for c in vs.iter(f"{{{SVS}}}Concept"):
                code, system = c.get("code"), c.get("codeSystem")
                if not code or not system:
                    continue
                d.members[(system, code)] = Concept(c.get("displayName"), _svs_date(c.get("dateFin")))
            d.svs = True
            self.value_sets.append(d)

    def _load_fhir(self, res: Any, rel: str) -> None:
        if not isinstance(res, dict):
            self._problem(rel, M("snapshot.not_fhir"))
            return
        kind = res.get("resourceType")
        if kind in ("ValueSet", "CodeSystem", "ConceptMap"):
            self.resources.append(res)
        if kind == "Bundle":
            for entry in res.get("entry") or []:
                if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                    self._load_fhir(entry["resource"], rel)
        elif kind == "ValueSet":
            self._load_fhir_value_set(res, rel)
        elif kind == "CodeSystem":
            self._load_fhir_code_system(res, rel)
        elif kind == "ConceptMap":
            self._load_fhir_concept_map(res, rel)
        else:
            self._problem(rel, M("snapshot.unsupported", kind=kind))

    def _identifier_oid(self, res: dict) -> str | None:
        ids = res.get("identifier") or []
        if isinstance(ids, dict):
            ids = [ids]
        for ident in ids:
            if isinstance(ident, dict):
                oid = bare_oid(str(ident.get("value", "")))
                if oid:
                    return oid
        return None

    def _alias(self, uri: str | None, oid: str | None) -> None:
        if uri and oid and not bare_oid(uri):
            self._oid_to_uri.setdefault(oid, uri)
            self._uri_to_oid.setdefault(uri, oid)

    def _load_fhir_value_set(self, res: dict, rel: str) -> None:
        partial = any(isinstance(e, dict) and e.get("url") == PARTIAL_EXTENSION and e.get("valueBoolean") for e in res.get("extension") or [])
        d = ValueSetDef(res.get("url"), self._identifier_oid(res), res.get("name") or res.get("title"), res.get("version"), rel, partial=partial)
        compose = res.get("compose") or {}
        if compose.get("exclude") or any(isinstance(i, dict) and i.get("valueSet") for i in compose.get("include") or []):
            # included value sets and exclusions are not resolved here: neither a "yes" nor a
            # "no" from the list of concepts alone would be proven (the engine answers them)
            d.partial = True
        for inc in compose.get("include") or []:
            system = inc.get("system")
            if not system:
                continue
            concepts = inc.get("concept") or []
            if not concepts and not inc.get("filter"):
                d.whole_systems.append(system)
            if inc.get("filter"):
                d.partial = True  # filters need the full code system: we cannot enumerate
            for c in concepts:
                for des in c.get("designation") or []:
                    if isinstance(des, dict) and (des.get("use") or {}).get("code") == "OID":
                        self._alias(system, bare_oid(str(des.get("value", ""))))
                d.members[(system, c["code"])] = Concept(c.get("display"))
        for c in self._walk((res.get("expansion") or {}).get("contains") or [], "contains"):
            if c.get("system") and c.get("code"):
                d.members[(c["system"], c["code"])] = Concept(c.get("display"), inactive=bool(c.get("inactive")))
        self.value_sets.append(d)

    @staticmethod
    def _walk(items: list, child: str) -> Iterable[dict]:
        stack = list(reversed(items))
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                yield item
                stack.extend(reversed(item.get(child) or []))

    def _load_fhir_code_system(self, res: dict, rel: str) -> None:
        oid = self._identifier_oid(res)
        self._alias(res.get("url"), oid)
        d = CodeSystemDef(res.get("url"), oid, res.get("version"), res.get("content", "complete") == "complete", rel)
        for c in self._walk(res.get("concept") or [], "concept"):
            if not c.get("code"):
                continue
            concept = Concept(c.get("display"))
            for p in c.get("property") or []:
                code = p.get("code")
                if code == "inactive" and p.get("valueBoolean"):
                    concept.inactive = True
                elif code in ("status", "statut") and str(p.get("valueCode") or p.get("valueString") or "").lower() in INACTIVE_STATUSES:
                    concept.inactive = True
                elif code in ("deprecationDate", "dateFin"):
                    concept.end = (p.get("valueDateTime") or p.get("valueDate") or "")[:10] or None
            d.concepts[c["code"]] = concept
        self.code_systems.append(d)

    def _load_fhir_concept_map(self, res: dict, rel: str) -> None:
        d = ConceptMapDef(res.get("url"), rel)
        for group in res.get("group") or []:
            src, tgt = group.get("source"), group.get("target")
            for el in group.get("element") or []:
                targets = d.elements.setdefault((src, el.get("code")), [])
                for t in el.get("target") or []:
                    targets.append((tgt, t.get("code"), t.get("display"), t.get("equivalence") or t.get("relationship") or "equivalent"))
        self.concept_maps.append(d)

    # -- indexes ------------------------------------------------------------------------

    def system_key(self, system: str) -> str:
        """One key per code system, whether named by OID, ``urn:oid:`` or URI."""
        oid = bare_oid(system)
        if oid:
            return oid
        return self._uri_to_oid.get(system, system)

    def system_uri(self, system: str) -> str:
        """The URI a FHIR server knows a code system by (``urn:oid:`` when none is known)."""
        oid = bare_oid(system)
        if oid is None:
            return system
        return self._oid_to_uri.get(oid, f"urn:oid:{oid}")

    def _build(self) -> None:
        self._vs_index: dict[str, ValueSetDef] = {}
        self._members: dict[int, dict[tuple[str, str], Concept]] = {}
        self._fragments: dict[tuple[str, str], tuple[Concept, ValueSetDef]] = {}
        for vs in self.value_sets:
            for alias in filter(None, (vs.url, vs.oid and f"urn:oid:{vs.oid}", vs.oid, vs.name)):
                self._vs_index.setdefault(alias, vs)
                if vs.version:
                    self._vs_index.setdefault(f"{alias}|{vs.version}", vs)
            for alias in filter(None, (vs.name, vs.url and vs.url.rstrip("/").rsplit("/", 1)[-1])):
                self._vs_index.setdefault(f"name:{_name_key(alias)}", vs)
            members = {(self.system_key(s), c): concept for (s, c), concept in vs.members.items()}
            self._members[id(vs)] = members
            for key, concept in members.items():
                self._fragments.setdefault(key, (concept, vs))
        self._cs_index: dict[str, CodeSystemDef] = {}
        for cs in self.code_systems:
            for alias in filter(None, (cs.url, cs.oid)):
                self._cs_index.setdefault(self.system_key(alias), cs)
        self._maps = {m.url: m for m in self.concept_maps if m.url}
        self._map_index: dict[int, dict[tuple[str, str], list]] = {}
        digest = hashlib.sha256()
        for rel, sha in sorted(self.files):
            digest.update(f"{rel}\0{sha}\n".encode("utf-8"))
        self.sha256 = digest.hexdigest()

    def find_value_set(self, ref: str) -> ValueSetDef | None:
        found = self._vs_index.get(ref)
        if found is None and "|" in ref:
            found = self._vs_index.get(ref.split("|", 1)[0])
            if found is not None and found.version and found.version != ref.split("|", 1)[1]:
                return None  # another version than the one pinned: no answer
        if found is None:
            oid = bare_oid(ref)
            found = self._vs_index.get(oid) if oid else None
        if found is None and "/" in ref:
            # a NOS canonical URL this snapshot knows only by OID and name (SVS files without urlFichier)
            found = self._vs_index.get(f"name:{_name_key(ref.split('|', 1)[0].rstrip('/').rsplit('/', 1)[-1])}")
        return found

    def canonical_value_set(self, ref: str) -> str:
        """The canonical URL a server knows ``ref`` by, when this snapshot can tell."""
        vs = self.find_value_set(ref)
        if vs is not None and vs.url:
            return vs.url + (ref[ref.index("|"):] if "|" in ref else "")
        return ref

    def source(self) -> dict[str, Any]:
        return {"kind": "snapshot", "name": self.name, "sha256": self.sha256}

    def describe(self) -> dict[str, Any]:
        return {**self.source(), "files": len(self.files), "value_sets": len(self.value_sets),
                "code_systems": len(self.code_systems), "concept_maps": len(self.concept_maps),
                "problems": self.problems}


    def engine(self, as_of: str) -> Engine:
        """The snapshot as FHIR resources for the terminology engine (what the stand-in answers
        from): code systems named by URI, SVS value sets as enumerated FHIR value sets, and each
        code system known only from value sets as a *fragment* (its codes are not all known)."""
        resources: list[dict] = []
        # systems held whole: the codes value sets list of any other are added to it as a fragment
        held = {self.system_uri(cs.url or f"urn:oid:{cs.oid}") for cs in self.code_systems if cs.complete}
        fragments: dict[str, dict[str, Concept]] = {}

        def seen(system: str, code: str, concept: Concept) -> None:
            if system not in held:
                fragments.setdefault(system, {}).setdefault(code, concept)

        for res in self.resources:
            res = copy.deepcopy(res)
            if res.get("resourceType") == "ValueSet":
                for part in ("include", "exclude"):
                    for inc in (res.get("compose") or {}).get(part) or []:
                        if isinstance(inc, dict) and inc.get("system"):
                            inc["system"] = self.system_uri(str(inc["system"]))
                            for c in inc.get("concept") or []:
                                if isinstance(c, dict) and c.get("code"):
                                    seen(inc["system"], str(c["code"]), Concept(c.get("display")))
                for c in self._walk((res.get("expansion") or {}).get("contains") or [], "contains"):
                    if c.get("system") and c.get("code"):
                        c["system"] = self.system_uri(str(c["system"]))
                        seen(c["system"], str(c["code"]), Concept(c.get("display"), inactive=bool(c.get("inactive"))))
            resources.append(res)
        for vs in self.value_sets:
            if not vs.svs:
                continue
            by_system: dict[str, list[dict]] = {}
            for (system, code), concept in vs.members.items():
                uri = self.system_uri(system)
                by_system.setdefault(uri, []).append({"code": code, **({"display": concept.display} if concept.display else {})})
                seen(uri, code, concept)
            resources.append({"resourceType": "ValueSet", "url": vs.url or f"urn:oid:{vs.oid}", "version": vs.version,
                              "name": vs.name, "status": "active",
                              "compose": {"include": [{"system": s, "concept": cs} for s, cs in by_system.items()]}})
        for res in resources:
            if res.get("resourceType") == "CodeSystem" and res.get("url") in fragments:
                known = {c.get("code") for c in self._walk(res.get("concept") or [], "concept")}
                extra = fragments.pop(res["url"])
                res["concept"] = list(res.get("concept") or []) + [
                    {"code": code, **({"display": c.display} if c.display else {})} for code, c in extra.items() if code not in known]
        for system, concepts in fragments.items():
            resources.append({"resourceType": "CodeSystem", "url": system, "status": "active", "content": "fragment",
                              "extension": [{"url": PARTIAL_EXTENSION, "valueBoolean": True}],
                              "concept": [{"code": code, **({"display": c.display} if c.display else {}),
                                           **({"property": [{"code": "inactive", "valueBoolean": True}]} if c.is_inactive(as_of) else {})}
                                          for code, c in concepts.items()]})
        return Engine(resources)


class SnapshotTerminology:
    """A :class:`TerminologyService` answering from a :class:`Snapshot`.

    ``as_of`` (ISO date) decides whether a code with an end of validity is deprecated; a
    run fixes it once, so that every answer of the run uses the same day.
    """

    def __init__(self, snapshot: Snapshot, as_of: str | None = None) -> None:
        self.snapshot = snapshot
        self.as_of = as_of or date.today().isoformat()

    def _answer(self, op: str, question: dict, result: bool | None, **kw: Any) -> Answer:
        return Answer(op, question, result, source=self.snapshot.source(), **kw)


    def validate_code(self, value_set: str, system: str, code: str) -> Answer:
        q = {"value_set": value_set, "system": system, "code": code}
        snap = self.snapshot
        vs = snap.find_value_set(value_set)
        if vs is None:
            return self._answer("validate-code", q, None, error=error_record("unknown-value-set", M("snapshot.no_value_set", value_set=value_set)))
        key = (snap.system_key(system), code)
        members = snap._members[id(vs)]
        concept = members.get(key)
        if concept is not None:
            return self._answer("validate-code", q, True, display=concept.display, inactive=concept.is_inactive(self.as_of))
        if key[0] in {snap.system_key(s) for s in vs.whole_systems}:
            cs = snap._cs_index.get(key[0])
            if cs is not None and (code in cs.concepts or cs.complete):
                c = cs.concepts.get(code)
                return self._answer("validate-code", q, c is not None, display=c.display if c else None,
                                    inactive=c.is_inactive(self.as_of) if c else None)
            return self._answer("validate-code", q, None, error=error_record(
                "code-system-not-held", M("snapshot.whole_system", value_set=vs.label, system=system)))
        if vs.partial:
            return self._answer("validate-code", q, None, error=error_record("partial-snapshot", M("snapshot.partial", value_set=vs.label, name=snap.name)))
        same_code = sorted(s for (s, c) in members if c == code)
        hint = f" (code present under {', '.join(same_code)})" if same_code else ""
        return self._answer("validate-code", q, False, message=f"{code} ({system}) not in {vs.label}{hint}")

    def lookup(self, system: str, code: str) -> Answer:
        q = {"system": system, "code": code}
        snap = self.snapshot
        key = snap.system_key(system)
        cs = snap._cs_index.get(key)
        if cs is not None:
            c = cs.concepts.get(code)
            if c is not None:
                return self._answer("lookup", q, True, display=c.display, inactive=c.is_inactive(self.as_of))
            if cs.complete:
                return self._answer("lookup", q, False, message=f"{code} unknown in {cs.url or cs.oid}")
        found = snap._fragments.get((key, code))
        if found is not None:
            concept, vs = found
            return self._answer("lookup", q, True, display=concept.display, inactive=concept.is_inactive(self.as_of),
                                message=f"known from value set {vs.label}")
        return self._answer("lookup", q, None, error=error_record("code-system-not-held", M("snapshot.no_system", system=system)))

    def expand(self, value_set: str) -> Expansion:
        snap = self.snapshot
        vs = snap.find_value_set(value_set)
        if vs is None and value_set.split("|", 1)[0].endswith("?fhir_vs"):
            # the implicit value set of a whole code system (FHIR R4 §4.9.8): its codes, when held whole
            system = value_set.split("|", 1)[0][: -len("?fhir_vs")]
            cs = snap._cs_index.get(snap.system_key(system))
            if cs is None:
                raise HarnessError(M("snapshot.no_value_set", value_set=value_set))
            concepts = [{"system": snap.system_uri(system), "code": c, "display": v.display or ""} for c, v in cs.concepts.items()]
            return Expansion(value_set, concepts, len(concepts), snap.source(), cs.complete)
        if vs is None:
            raise HarnessError(M("snapshot.no_value_set", value_set=value_set))
        concepts = [{"system": snap.system_uri(s), "code": c, "display": concept.display or ""}
                    for (s, c), concept in vs.members.items()]
        complete = not vs.partial
        for system in vs.whole_systems:
            cs = snap._cs_index.get(snap.system_key(system))
            if cs is None or not cs.complete:
                complete = False
                continue
            concepts += [{"system": snap.system_uri(system), "code": c, "display": v.display or ""} for c, v in cs.concepts.items()]
        return Expansion(value_set, concepts, len(concepts), snap.source(), complete)

    def translate(self, concept_map: str, system: str, code: str) -> Answer:
        q = {"concept_map": concept_map, "system": system, "code": code}
        snap = self.snapshot
        cm = snap._maps.get(concept_map) or snap._maps.get(concept_map.split("|", 1)[0])
        if cm is None:
            return self._answer("translate", q, None, error=error_record("unknown-concept-map", M("snapshot.no_concept_map", concept_map=concept_map)))
        index = snap._map_index.get(id(cm))
        if index is None:  # (system key, code) -> targets, built once per map
            index = {}
            for (src, c), targets in cm.elements.items():
                index.setdefault((snap.system_key(src or ""), c), []).extend(targets)
            snap._map_index[id(cm)] = index
        targets = index.get((snap.system_key(system), code), [])
        matches = [{"system": snap.system_uri(t[0] or ""), "code": t[1], "relationship": t[3]} for t in targets if t[1]]
        good = [t for t in targets if t[3] not in ("unmatched", "disjoint", "not-related-to")]
        if good:
            return self._answer("translate", q, True, display=good[0][2], message=f"{good[0][0]}|{good[0][1]}", matches=matches)
        return self._answer("translate", q, False, matches=matches)

    def describe(self) -> dict[str, Any]:
        return {**self.snapshot.describe(), "as_of": self.as_of}

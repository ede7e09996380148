"""A FHIR terminology engine over code systems and value sets held as resources.

What the stand-in server answers with (``$expand``, ``$validate-code`` on a value set or a
code system, ``$lookup``, ``$translate``), and what the snapshot asks when a value set is
more than a list of codes. Semantics follow FHIR R5 (terminology service, ValueSet and
CodeSystem resources) as the HL7 terminology ecosystem test suite (HL7/fhir-tx-ecosystem-ig,
``tests/``) exercises them:

* code systems in several versions side by side; the version used is the one forced
  (``force-system-version``), else the one named (``coding.version``, ``systemVersion``,
  the include's ``version``), else the default given (``system-version``), else the most
  recent; ``check-system-version`` refuses another; a version may end with a wildcard
  (``1.0.x``, ``1.*``);
* ``compose``: enumerated concepts, filters on the hierarchy (``is-a``, ``descendent-of``,
  ``is-not-a``, ``generalizes``, ``child-of``, ``descendent-leaf``) and on properties
  (``=``, ``in``, ``not-in``, ``regex``, ``exists``), included value sets (intersected),
  ``exclude``, ``inactive``; ``activeOnly``, paging (``offset``, ``count``), ``filter``,
  designations and languages;
* validation of a code, a coding or a codeable concept, with the display checked and every
  problem given as an ``issues`` OperationOutcome (tx-issue-type codes).

Supplements are applied when asked for (``useSupplement``, the value set's
``valueset-supplement``). What it does not support is an explicit :class:`TxError`
(``not-supported``) with its reason, never a silent wrong answer: SNOMED CT expression
constraints, grammar-based code systems (UCUM, BCP-47, MIME types...), a filter operator it
does not know, a regular expression RE2 cannot run, an expansion parameter a value set fixes
that it does not know.
"""
from __future__ import annotations

import copy
import re
import uuid

import re2
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

TX_ISSUE = "http://hl7.org/fhir/tools/CodeSystem/tx-issue-type"
# The harness's marker for a value set whose concept list is knowingly incomplete (its own
# small snapshot lists only the codes its fixtures use): absence from it proves nothing.
PARTIAL_EXTENSION = "urn:ehealth-harness:snapshot-partial"
MAX_EXPANSION = 100_000  # above this (or the client's X-TOO-COSTLY-THRESHOLD), "too costly"
MAX_REGEX = 1000
INACTIVE_STATUSES = {"retired", "inactive"}
_VERSION_PART = re.compile(r"(\d+)|(\D+)")
_LANGUAGE = re.compile(r"^(\*|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*)$")


class TxError(Exception):
    """An answer that is an OperationOutcome: ``status`` (HTTP), ``code`` (issue type)."""

    def __init__(self, status: int, code: str, text: str, tx_code: str | None = None) -> None:
        super().__init__(text)
        self.status, self.code, self.text, self.tx_code = status, code, text, tx_code

    def outcome(self) -> dict:
        issue: dict[str, Any] = {"severity": "error", "code": self.code, "diagnostics": self.text,
                                 "details": {"text": self.text}}
        if self.tx_code:
            issue["details"]["coding"] = [{"system": TX_ISSUE, "code": self.tx_code}]
        return {"resourceType": "OperationOutcome", "issue": [issue]}


def not_supported(text: str) -> TxError:
    return TxError(422, "not-supported", f"Not supported by the harness's terminology stand-in: {text}")


# -- versions ------------------------------------------------------------------------------

def _version_key(version: str | None) -> tuple:
    parts = []
    for num, text in _VERSION_PART.findall(version or ""):
        parts.append((0, int(num), "") if num else (1, 0, text))
    return tuple(parts)


def _is_wildcard(version: str) -> bool:
    return any(p in ("x", "X", "*") for p in version.split("."))


def version_matches(pattern: str, version: str | None) -> bool:
    """``1.0.x`` matches ``1.0.0`` and ``1.0.7``; a plain version matches itself only."""
    if version is None:
        return False
    if not _is_wildcard(pattern):
        return pattern == version
    want, have = pattern.split("."), version.split(".")
    for i, w in enumerate(want):
        if w in ("x", "X", "*"):
            return True if w == "*" or i == len(want) - 1 else (i < len(have))
        if i >= len(have) or have[i] != w:
            return False
    return len(have) == len(want)


def _latest(versions: Iterable[str | None]) -> str | None:
    return max(versions, key=_version_key, default=None)


# -- code systems --------------------------------------------------------------------------

@dataclass
class Concept:
    code: str
    display: str | None
    definition: str | None = None
    designations: list[dict] = field(default_factory=list)
    properties: list[tuple[str, Any, str]] = field(default_factory=list)  # (code, value, value[x] key)
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    abstract: bool = False
    inactive: bool = False
    status: str | None = None

    def property_values(self, name: str) -> list[Any]:
        return [v for c, v, _ in self.properties if c == name]


class CodeSystem:
    """One version of a code system, indexed."""

    def __init__(self, res: dict) -> None:
        self.resource = res
        self.url: str = res.get("url") or ""
        self.version: str | None = res.get("version")
        self.name = res.get("name") or res.get("title") or self.url
        self.content = res.get("content") or "complete"
        self.case_sensitive = res.get("caseSensitive", True) is not False
        self.used_supplements: list[str] = []  # the supplements merged into this one (see Engine._supplemented)
        self.language = res.get("language")
        self.property_defs = {p.get("code"): p for p in res.get("property") or [] if isinstance(p, dict)}
        # a code system may name the standard properties its own way: known by their URI
        self._meaning = {code: str(d.get("uri", "")).rsplit("#", 1)[-1] for code, d in self.property_defs.items()
                         if str(d.get("uri", "")).startswith("http://hl7.org/fhir/concept-properties#")}
        self.concepts: dict[str, Concept] = {}
        self._folded: dict[str, str] = {}
        self.order: list[str] = []
        self._read(res.get("concept") or [], None)
        for c in list(self.concepts.values()):
            for parent in c.property_values("parent"):
                if parent in self.concepts and parent not in c.parents:
                    c.parents.append(parent)
                    self.concepts[parent].children.append(c.code)
            for child in c.property_values("child"):
                if child in self.concepts and child not in c.children:
                    c.children.append(child)
                    self.concepts[child].parents.append(c.code)

    @property
    def ref(self) -> str:
        return f"{self.url}|{self.version}" if self.version else self.url

    def _read(self, items: list, parent: str | None) -> None:
        for item in items:
            if not isinstance(item, dict) or not item.get("code"):
                continue
            code = str(item["code"])
            c = Concept(code, item.get("display"), item.get("definition"),
                        [d for d in item.get("designation") or [] if isinstance(d, dict)])
            for p in item.get("property") or []:
                if not isinstance(p, dict):
                    continue
                key = next((k for k in p if k.startswith("value")), None)
                if key is not None:
                    c.properties.append((p.get("code"), p[key], key))
            for pcode, value in ((n, v) for n, v, _ in c.properties):
                names = {pcode, self._meaning.get(pcode, pcode)}  # its own code, or the standard property its URI names
                if "status" in names:
                    c.status = str(value)
                    c.inactive = c.inactive or str(value).lower() in INACTIVE_STATUSES
                elif "inactive" in names and value is True:
                    c.inactive = True
                elif names & {"notSelectable", "abstract"} and value is True:
                    c.abstract = True
            standards = _extension(item, "http://hl7.org/fhir/StructureDefinition/structuredefinition-standards-status")
            if standards in ("deprecated", "withdrawn") and c.status is None:
                c.status = standards
                c.inactive = c.inactive or standards == "withdrawn"
            if parent is not None:
                c.parents.append(parent)
            existing = self.concepts.get(code)
            if existing is None:
                self.concepts[code] = c
                self.order.append(code)
                self._folded.setdefault(code.casefold(), code)
            elif parent is not None and parent not in existing.parents:
                existing.parents.append(parent)
            if parent is not None:
                self.concepts[parent].children.append(code)
            self._read(item.get("concept") or [], code)

    def get(self, code: str) -> Concept | None:
        found = self.concepts.get(code)
        if found is None and not self.case_sensitive:
            real = self._folded.get(code.casefold())
            found = self.concepts.get(real) if real else None
        return found

    def descendants(self, code: str) -> list[str]:
        out: list[str] = []
        seen = {code}
        stack = list(reversed(self.concepts[code].children)) if code in self.concepts else []
        while stack:
            c = stack.pop()
            if c in seen:
                continue
            seen.add(c)
            out.append(c)
            stack.extend(reversed(self.concepts[c].children))
        return out

    def ancestors(self, code: str) -> set[str]:
        out: set[str] = set()
        stack = list(self.concepts[code].parents) if code in self.concepts else []
        while stack:
            c = stack.pop()
            if c not in out:
                out.add(c)
                stack.extend(self.concepts[c].parents)
        return out

    def display_for(self, concept: Concept, languages: list[str]) -> str | None:
        """The concept's display in the first language asked that it has; its own otherwise."""
        for lang in languages:
            if lang == "*":
                break
            if self.language and _lang_match(lang, self.language) and concept.display:
                return concept.display
            for d in concept.designations:
                if d.get("language") and _lang_match(lang, d["language"]) and _is_display_use(d):
                    return d.get("value")
        return concept.display


def _lang_match(wanted: str, have: str) -> bool:
    wanted, have = wanted.lower(), have.lower()
    return have == wanted or have.startswith(wanted + "-")


def _is_display_use(d: dict) -> bool:
    use = d.get("use") or {}
    return not use or use.get("code") in ("display", "900000000000013009", "preferredForLanguage")


def _extension(res: dict, url: str) -> Any:
    for e in res.get("extension") or []:
        if isinstance(e, dict) and e.get("url") == url:
            return next((v for k, v in e.items() if k.startswith("value")), None)
    return None


def parse_languages(header: str | None) -> list[str]:
    """``de, en;q=0.4`` -> ``["de", "en"]`` in order of preference."""
    out = []
    for i, part in enumerate((header or "").split(",")):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        out.append((-q, i, bits[0]))
    return [lang for _, _, lang in sorted(out)]


# -- requests ------------------------------------------------------------------------------

class Params:
    """A FHIR ``Parameters`` request, read once: single values by name, repeated ones as lists."""

    def __init__(self, values: dict[str, list[Any]] | None = None) -> None:
        self.values: dict[str, list[Any]] = values or {}

    @classmethod
    def from_resource(cls, res: dict | None, query: dict[str, list[str]] | None = None) -> "Params":
        values: dict[str, list[Any]] = {k: list(v) for k, v in (query or {}).items()}
        for p in (res or {}).get("parameter") or []:
            if not isinstance(p, dict) or not p.get("name"):
                continue
            if "resource" in p:
                value: Any = p["resource"]
            elif "part" in p:
                value = {part.get("name"): next((v for k, v in part.items() if k.startswith("value")), None)
                         for part in p["part"] if isinstance(part, dict)}
            else:
                value = next((v for k, v in p.items() if k.startswith("value")), None)
            values.setdefault(p["name"], []).append(value)
        return cls(values)

    def get(self, name: str, default: Any = None) -> Any:
        v = self.values.get(name)
        return v[0] if v else default

    def all(self, name: str) -> list[Any]:
        return list(self.values.get(name) or [])

    def flag(self, name: str, default: bool = False) -> bool:
        v = self.get(name)
        if v is None:
            return default
        return v is True or str(v).lower() == "true"

    def merge(self, other: "Params") -> "Params":
        merged = {k: list(v) for k, v in self.values.items()}
        for k, v in other.values.items():
            merged.setdefault(k, []).extend(v)
        return Params(merged)


@dataclass
class Issue:
    severity: str
    code: str
    tx: str
    text: str
    expression: str | None = None

    def to_fhir(self) -> dict:
        d: dict[str, Any] = {"severity": self.severity, "code": self.code,
                             "details": {"coding": [{"system": TX_ISSUE, "code": self.tx}], "text": self.text}}
        if self.expression:
            d["location"] = [self.expression]
            d["expression"] = [self.expression]
        return d


@dataclass
class Entry:
    """A concept of an expansion: the code system version it comes from and its concept."""

    cs: CodeSystem
    concept: Concept
    display: str | None = None  # a display the value set gives (compose concept display)
    designations: list[dict] = field(default_factory=list)
    deprecated: bool = False  # the value set marks the code's presence deprecated (valueset-deprecated)


@dataclass
class VersionRules:
    force: dict[str, str] = field(default_factory=dict)
    default: dict[str, str] = field(default_factory=dict)
    check: dict[str, str] = field(default_factory=dict)
    supplements: tuple[str, ...] = ()  # supplements asked for (useSupplement, the value set's valueset-supplement)

    @classmethod
    def from_params(cls, p: Params) -> "VersionRules":
        def table(name: str) -> dict[str, str]:
            out = {}
            for v in p.all(name):
                if isinstance(v, str) and "|" in v:
                    url, ver = v.split("|", 1)
                    out[url] = ver
            return out
        return cls(table("force-system-version"), table("system-version"), table("check-system-version"),
                   tuple(str(v) for v in p.all("useSupplement") if v))

    def with_value_set(self, vs: dict) -> "VersionRules":
        """These rules, and the supplements the value set asks for (valueset-supplement)."""
        wanted = tuple(str(e.get("valueCanonical") or e.get("valueUri") or "") for e in vs.get("extension") or []
                       if isinstance(e, dict) and e.get("url") == SUPPLEMENT_EXTENSION)
        return VersionRules(self.force, self.default, self.check, self.supplements + tuple(w for w in wanted if w))


# -- the engine ----------------------------------------------------------------------------

class Engine:
    """Code systems, value sets and concept maps by canonical URL and version."""

    def __init__(self, resources: Iterable[dict] = (), parent: "Engine | None" = None) -> None:
        self.parent = parent
        self.code_systems: dict[str, dict[str | None, CodeSystem]] = {}
        self.supplement_urls: dict[str, dict] = {}  # a supplement by its own url
        self.value_sets: dict[str, dict[str | None, dict]] = {}
        self.concept_maps: dict[str, dict[str | None, dict]] = {}
        self.maps: list[dict] = []
        for res in resources:
            self.add(res)

    def add(self, res: dict) -> None:
        kind = res.get("resourceType") if isinstance(res, dict) else None
        url = res.get("url") if kind else None
        if kind == "Bundle":
            for e in res.get("entry") or []:
                if isinstance(e, dict) and isinstance(e.get("resource"), dict):
                    self.add(e["resource"])
        elif kind == "CodeSystem" and url:
            if res.get("content") == "supplement":
                self.supplement_urls[url] = res
            else:
                self.code_systems.setdefault(url, {})[res.get("version")] = CodeSystem(res)
        elif kind == "ValueSet" and url:
            self.value_sets.setdefault(url, {})[res.get("version")] = res
        elif kind == "ConceptMap" and url:
            self.concept_maps.setdefault(url, {})[res.get("version")] = res
            self.maps.append(res)  # all of them, for a translation through every map (two may share url and version)

    def overlay(self, resources: list[dict]) -> "Engine":
        """This engine with the request's own resources (``tx-resource``) in front."""
        return Engine(resources, parent=self) if resources else self

    # -- finding resources ---------------------------------------------------------------

    def _versions(self, table: str, url: str) -> dict[str | None, Any]:
        out: dict[str | None, Any] = dict(self.parent._versions(table, url)) if self.parent else {}
        out.update(getattr(self, table).get(url) or {})
        return out

    def code_system_versions(self, url: str) -> dict[str | None, CodeSystem]:
        return self._versions("code_systems", url)

    def supplement(self, url: str) -> dict | None:
        """The supplement whose own url this is (a supplement names no code of its own)."""
        return self.supplement_urls.get(url) or (self.parent.supplement(url) if self.parent else None)

    def check_supplements(self, rules: VersionRules) -> None:
        """Every supplement asked for is held, or the request is refused (FHIR: a required
        supplement that cannot be found is an error)."""
        for ref in rules.supplements:
            url, _, version = ref.partition("|")
            found = self.supplement(url)
            if found is None or (version and found.get("version") != version):
                raise TxError(404, "not-found", f"Required supplement not found: {ref}", "not-found")

    def _supplemented(self, cs: CodeSystem, rules: VersionRules) -> CodeSystem:
        """``cs`` with the designations and properties of the supplements asked for that
        supplement it (CodeSystem.content = supplement)."""
        sups = [self.supplement(ref.partition("|")[0]) for ref in rules.supplements]
        sups = [x for x in sups if x is not None and str(x.get("supplements", "")).partition("|")[0] == cs.url]
        if not sups:
            return cs
        res = copy.deepcopy(cs.resource)
        index: dict[str, dict] = {}
        stack = list(res.get("concept") or [])
        while stack:
            c = stack.pop()
            if isinstance(c, dict) and c.get("code"):
                index[str(c["code"])] = c
                stack.extend(c.get("concept") or [])
        for sup in sups:
            stack = list(sup.get("concept") or [])
            while stack:
                c = stack.pop()
                if not isinstance(c, dict):
                    continue
                stack.extend(c.get("concept") or [])
                target = index.get(str(c.get("code")))
                if target is None:
                    continue  # a supplement adds to codes; it defines none
                source = f"{sup.get('url')}|{sup.get('version')}" if sup.get("version") else sup.get("url")
                target.setdefault("designation", []).extend({**d, "source": source} for d in c.get("designation") or [] if isinstance(d, dict))
                target.setdefault("property", []).extend(p for p in c.get("property") or [] if isinstance(p, dict))
        merged = CodeSystem(res)
        merged.used_supplements = [f"{x.get('url')}|{x.get('version')}" if x.get("version") else x.get("url") for x in sups]
        return merged

    def find_value_set(self, ref: str) -> dict | None:
        url, _, version = ref.partition("|")
        versions = self._versions("value_sets", url)
        held = self.code_system_versions(url[: -len("?fhir_vs")]) if not versions and url.endswith("?fhir_vs") else {}
        if held:
            # the implicit value set of a whole code system (FHIR R4 §4.9.8, "http://snomed.info/sct?fhir_vs"): all its
            # codes, which a code system held as a fragment cannot list
            if all(cs.content != "complete" for cs in held.values()):
                raise TxError(422, "incomplete", f"The code system {url[: -len('?fhir_vs')]} is held as a fragment: all its codes cannot be listed",
                              "not-found")
            return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": {"include": [{"system": url[: -len("?fhir_vs")]}]}}
        if not versions:
            return None
        if version:
            if version in versions:
                return versions[version]
            matching = [v for v in versions if version_matches(version, v)]
            return versions[_latest(matching)] if matching else None
        return versions[_latest(versions)] if None not in versions or len(versions) > 1 else versions[None]

    def find_concept_map(self, url: str) -> dict | None:
        url, _, version = url.partition("|")
        versions = self._versions("concept_maps", url)
        if not versions:
            return None
        return versions.get(version) if version else versions[_latest(versions)]

    def resolve_cs(self, url: str, version: str | None, rules: VersionRules, *, named: bool = False) -> CodeSystem:
        """The code system version to use; raises :class:`Unknown` when none is held."""
        versions = self.code_system_versions(url)
        check = rules.check.get(url)
        if url in rules.force:
            version = rules.force[url]
        elif version is None and url in rules.default:
            version = rules.default[url]
        elif version is None and check:
            version = check
        if not versions:
            raise Unknown(url, version)
        if version is None:
            chosen = versions[_latest(versions)] if (len(versions) > 1 or None not in versions) else versions[None]
        elif version in versions:
            chosen = versions[version]
        else:
            matching = [v for v in versions if version_matches(version, v)]
            if not matching:
                raise Unknown(url, version, known=[v for v in versions if v])
            chosen = versions[_latest(matching)]
        if check and not version_matches(check, chosen.version):
            raise TxError(422, "exception", f"The version '{chosen.version}' is not allowed for system '{url}': required to be "
                          f"'{check}' by a version-check parameter", "version-error")
        return self._supplemented(chosen, rules) if rules.supplements else chosen

    # -- compose -------------------------------------------------------------------------

    def expand_entries(self, vs: dict, p: Params, rules: VersionRules, stack: tuple[str, ...] = (),
                       used: dict[str, str] | None = None) -> list[Entry]:
        """Every concept of the value set, in order, before paging and text filtering."""
        key = f"{vs.get('url')}|{vs.get('version')}"
        if key in stack:
            raise TxError(422, "processing", f"Cyclic reference to value set {vs.get('url')}: the value set includes itself", "vs-invalid")
        stack = stack + (key,)
        compose = vs.get("compose")
        if not isinstance(compose, dict):
            expansion = vs.get("expansion")
            if isinstance(expansion, dict):
                return self._from_expansion(expansion, rules)
            raise TxError(422, "invalid", f"The value set {vs.get('url')} has no compose and no expansion", "vs-invalid")
        out: dict[tuple[str, str | None, str], Entry] = {}
        for inc in compose.get("include") or []:
            for e in self._include(inc, p, rules, stack, used, vs):
                out.setdefault((e.cs.url, e.cs.version, e.concept.code), e)
        by_version = expansion_parameters(vs).get("versionsMatch") == "false"
        for exc in compose.get("exclude") or []:
            # the codes an exclusion lists or filters are those of its version; a whole code system
            # excluded takes its codes out whatever their version (unless versionsMatch is false),
            # as the HL7 terminology suite expects
            versioned = isinstance(exc, dict) and bool(exc.get("version")) and (by_version or bool(exc.get("concept") or exc.get("filter")))
            for e in self._include(exc, p, rules, stack, None, vs):
                for key in [k for k in out if k[0] == e.cs.url and k[2] == e.concept.code and (not versioned or k[1] == e.cs.version)]:
                    del out[key]
        entries = list(out.values())
        if compose.get("inactive") is False:
            entries = [e for e in entries if not e.concept.inactive]
        fixed = expansion_parameters(vs)
        unknown = set(fixed) - {"displayLanguage", "versionsMatch", "activeOnly", "includeDesignations"}
        if unknown:
            raise not_supported(f"the expansion parameter(s) {', '.join(sorted(unknown))} the value set {vs.get('url')} fixes")
        if fixed.get("versionsMatch") == "true":  # one entry per code: its latest version
            merged: dict[tuple[str, str], Entry] = {}
            for e in entries:
                key = (e.cs.url, e.concept.code)
                if key not in merged or _version_key(e.cs.version) > _version_key(merged[key].cs.version):
                    merged[key] = e
            entries = [e for e in entries if merged[(e.cs.url, e.concept.code)] is e]
        if fixed.get("activeOnly") == "true":
            entries = [e for e in entries if not e.concept.inactive]
        return entries

    def _from_expansion(self, expansion: dict, rules: VersionRules) -> list[Entry]:
        out = []
        for c in _walk(expansion.get("contains") or []):
            if not c.get("system") or not c.get("code"):
                continue
            try:
                cs = self.resolve_cs(c["system"], c.get("version"), rules)
                concept = cs.get(c["code"])
            except Unknown:
                concept, cs = None, None
            if cs is None or concept is None:
                cs = CodeSystem({"url": c["system"], "version": c.get("version"), "content": "fragment",
                                 "concept": [{"code": c["code"], "display": c.get("display")}]})
                concept = cs.concepts[c["code"]]
                concept.inactive = bool(c.get("inactive"))
                concept.abstract = bool(c.get("abstract"))
            out.append(Entry(cs, concept, c.get("display")))
        return out

    def _include(self, inc: dict, p: Params, rules: VersionRules, stack: tuple[str, ...],
                 used: dict[str, str] | None, owner: dict) -> list[Entry]:
        sets: list[list[Entry]] = []
        defaults = dict(str(v).split("|", 1) for v in p.all("default-valueset-version") if isinstance(v, str) and "|" in v)
        for ref in inc.get("valueSet") or []:
            if "|" not in str(ref) and str(ref) in defaults:  # a version given for references that pin none
                ref = f"{ref}|{defaults[str(ref)]}"
            sub = self.find_value_set(ref) if not str(ref).startswith("#") else next(
                (c for c in owner.get("contained") or [] if isinstance(c, dict) and c.get("id") == str(ref)[1:]), None)
            if sub is None:
                raise TxError(404, "not-found", f"Unable to find included value set '{ref}'", "not-found")
            sets.append(self.expand_entries(sub, p, rules, stack, used))
        system = inc.get("system")
        if system:
            cs = self._include_cs(system, inc.get("version"), rules)
            if used is not None:
                used[cs.ref] = "codesystem"
                used.update({ref: "supplement" for ref in cs.used_supplements})
            sets.append(self._from_system(cs, inc))
        elif inc.get("concept") or inc.get("filter"):
            raise TxError(422, "invalid", "An include with concepts or filters names no system", "vs-invalid")
        if not sets:
            return []
        result = sets[0]
        for other in sets[1:]:
            keys = {(e.cs.url, e.concept.code) for e in other}
            result = [e for e in result if (e.cs.url, e.concept.code) in keys]
        return result

    def _include_cs(self, system: str, version: str | None, rules: VersionRules) -> CodeSystem:
        try:
            cs = self.resolve_cs(system, version, rules)
        except Unknown as u:
            known = f" (versions held: {', '.join(u.known)})" if u.known else ""
            raise TxError(404, "not-found", f"A definition for CodeSystem '{u.ref}' could not be found, so the value set "
                          f"cannot be expanded{known}", "not-found") from None
        if cs.content not in ("complete", "fragment", "example"):
            raise not_supported(f"code system {cs.ref} with content '{cs.content}'")
        return cs

    def _from_system(self, cs: CodeSystem, inc: dict) -> list[Entry]:
        concepts = inc.get("concept") or []
        filters = inc.get("filter") or []
        if concepts:
            out = []
            for c in concepts:
                concept = cs.get(str(c.get("code", "")))
                if concept is not None:
                    flag = _extension(c, "http://hl7.org/fhir/StructureDefinition/valueset-deprecated")
                    status = _extension(c, "http://hl7.org/fhir/StructureDefinition/structuredefinition-standards-status")
                    out.append(Entry(cs, concept, c.get("display"), [d for d in c.get("designation") or [] if isinstance(d, dict)],
                                     deprecated=flag in (True, "true") or status in ("deprecated", "withdrawn")))
            if not filters:
                return out
            codes = {e.concept.code for e in out}
            return [e for e in self._filtered(cs, filters) if e.concept.code in codes]
        if filters:
            return self._filtered(cs, filters)
        if cs.content != "complete" and (cs.content != "fragment" or is_partial(cs.resource)):
            raise TxError(422, "incomplete", f"The code system {cs.ref} is a {cs.content}: all its codes cannot be listed", "not-found")
        return [Entry(cs, cs.concepts[code]) for code in cs.order]

    def _filtered(self, cs: CodeSystem, filters: list[dict]) -> list[Entry]:
        codes: list[str] | None = None
        for f in filters:
            selected = self._filter(cs, f)
            codes = selected if codes is None else [c for c in codes if c in set(selected)]
        return [Entry(cs, cs.concepts[c]) for c in codes or []]

    def _filter(self, cs: CodeSystem, f: dict) -> list[str]:
        prop, op, value = f.get("property"), f.get("op"), f.get("value")
        if not prop or not op or value is None:
            raise TxError(422, "invalid", f"A filter of the value set is incomplete (property, op and value are required): {f}", "vs-invalid")
        value = str(value)
        if prop in ("concept", "code") and op in ("is-a", "descendent-of", "is-not-a", "generalizes", "child-of", "descendent-leaf"):
            if cs.get(value) is None:
                return [] if op != "is-not-a" else list(cs.order)
            value = cs.get(value).code
            if op == "is-a":
                return [value] + cs.descendants(value)
            if op == "descendent-of":
                return cs.descendants(value)
            if op == "is-not-a":
                excluded = set([value] + cs.descendants(value))
                return [c for c in cs.order if c not in excluded]
            if op == "generalizes":
                return [c for c in cs.order if c == value or c in cs.ancestors(value)]
            if op == "child-of":
                return list(cs.concepts[value].children)
            return [c for c in cs.descendants(value) if not cs.concepts[c].children]
        if prop in ("concept", "code"):
            if op == "=":
                return [value] if cs.get(value) else []
            if op in ("in", "not-in"):
                wanted = {v.strip() for v in value.split(",")}
                return [c for c in cs.order if (c in wanted) == (op == "in")]
            if op == "regex":
                rx = _regex(value)
                return [c for c in cs.order if rx.fullmatch(c)]
            raise not_supported(f"filter operator '{op}' on property '{prop}'")
        if prop == "display" and op in ("=", "regex"):
            rx = _regex(value) if op == "regex" else None
            return [c for c in cs.order if (rx.fullmatch(cs.concepts[c].display or "") if rx else cs.concepts[c].display == value)]
        known = set(cs.property_defs) | {"inactive", "status", "notSelectable", "parent", "child", "deprecated"}
        if prop not in known:
            raise TxError(422, "invalid", f"The filter property '{prop}' is not defined by the code system {cs.ref}", "vs-invalid")

        def values(c: Concept) -> list[str]:
            if prop == "inactive":
                return ["true" if c.inactive else "false"]
            if prop == "parent" and not c.property_values(prop):
                return list(c.parents)
            if prop == "child" and not c.property_values(prop):
                return list(c.children)
            return [_text(v) for v in c.property_values(prop)]

        if op == "=":
            return [c for c in cs.order if value in values(cs.concepts[c])]
        if op in ("in", "not-in"):
            wanted = {v.strip() for v in value.split(",")}
            return [c for c in cs.order if bool(wanted & set(values(cs.concepts[c]))) == (op == "in")]
        if op == "regex":
            rx = _regex(value)
            return [c for c in cs.order if any(rx.fullmatch(v) for v in values(cs.concepts[c]))]
        if op == "exists":
            want = value.lower() == "true"
            return [c for c in cs.order if bool(values(cs.concepts[c])) == want]
        raise not_supported(f"filter operator '{op}' on property '{prop}'")

    # -- $expand ---------------------------------------------------------------------------

    def expand(self, p: Params, *, languages: list[str] | None = None, threshold: int | None = None) -> dict:
        vs = self._requested_value_set(p)
        if is_partial(vs):
            raise TxError(422, "incomplete", f"The value set {vs.get('url')} is held only in part here (the codes the "
                          "harness's fixtures use): it cannot be expanded", "not-found")
        rules = VersionRules.from_params(p).with_value_set(vs)
        self.check_supplements(rules)
        used: dict[str, str] = {}
        entries = self.expand_entries(vs, p, rules, used=used)
        if p.flag("activeOnly"):
            entries = [e for e in entries if not e.concept.inactive]
        text = p.get("filter")
        langs = self._languages(p, languages, vs)
        if text:
            needle = str(text).casefold()
            entries = [e for e in entries if needle in (e.display or e.cs.display_for(e.concept, langs) or "").casefold()
                       or needle in e.concept.code.casefold()]
        total = len(entries)
        offset = int(p.get("offset") or 0)
        count = p.get("count")
        limit = threshold if threshold is not None else MAX_EXPANSION
        if count is None and total > limit:
            raise TxError(422, "too-costly", f"The value set {vs.get('url')} has {total} codes, more than the {limit} "
                          "this server expands at once: ask for a page (count, offset)", "too-costly")
        page = entries[offset:] if count is None else entries[offset: offset + int(count)]
        props = [str(x) for x in p.all("property")]
        contains = [self._contains(e, p, langs, props) for e in page]
        parameters: list[dict] = []
        for name in ("activeOnly", "excludeNested", "includeDesignations", "displayLanguage", "filter", "offset", "count"):
            v = p.get(name)
            if v is not None:
                parameters.append(_param(name, v))
        for ref, kind in used.items():
            parameters.append({"name": f"used-{kind}", "valueUri": ref})
        out = {k: v for k, v in vs.items() if k not in ("compose", "expansion", "text", "meta")}
        out["expansion"] = {"identifier": f"urn:uuid:{uuid.uuid4()}",
                            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "total": total, "offset": offset, "parameter": parameters, "contains": contains}
        if not contains:
            del out["expansion"]["contains"]
        return out

    def _contains(self, e: Entry, p: Params, langs: list[str], props: list[str]) -> dict:
        c: dict[str, Any] = {"system": e.cs.url}
        if e.cs.version and len(self.code_system_versions(e.cs.url)) > 1:
            c["version"] = e.cs.version
        if e.concept.abstract:
            c["abstract"] = True
        if e.concept.inactive:
            c["inactive"] = True
        c["code"] = e.concept.code
        display = e.display or e.cs.display_for(e.concept, langs)
        if display is not None:
            c["display"] = display
        if p.flag("includeDesignations"):
            des = [d for d in e.concept.designations] + e.designations
            if des:
                c["designation"] = des
        out_props = []
        for name in props:
            if name == "definition" and e.concept.definition:
                out_props.append({"code": "definition", "valueString": e.concept.definition})
            for pc, value, key in e.concept.properties:
                if pc == name:
                    out_props.append({"code": pc, key: value})
        if out_props:
            c["property"] = out_props
        return c

    def _languages(self, p: Params, header: list[str] | None, vs: dict | None = None) -> list[str]:
        """The languages displays are wanted in: ``displayLanguage``, else the request's
        ``Accept-Language``, else the value set's own ``language``."""
        if p.get("displayLanguage"):
            langs = parse_languages(str(p.get("displayLanguage")))
            if not langs or not all(_LANGUAGE.match(lang) for lang in langs):
                raise TxError(400, "processing", f"Invalid displayLanguage: '{p.get('displayLanguage')}'", "invalid-data")
            return langs
        if header:
            return list(header)
        fixed = expansion_parameters(vs).get("displayLanguage") if vs else None
        if fixed:
            return parse_languages(fixed)
        return [vs["language"]] if vs and isinstance(vs.get("language"), str) else []

    def _requested_value_set(self, p: Params) -> dict:
        vs = p.get("valueSet")
        if isinstance(vs, dict):
            return vs
        url = p.get("url")
        if not url:
            raise TxError(400, "required", "A value set is required: url (with valueSetVersion) or valueSet", "invalid-data")
        url = str(url)
        version = p.get("valueSetVersion")
        ref = f"{url}|{version}" if version and "|" not in url else url
        found = self.find_value_set(ref)
        if found is None:
            raise TxError(404, "not-found", f"A definition for the value set '{ref}' could not be found", "not-found")
        return found

    # -- $validate-code --------------------------------------------------------------------

    def validate_vs(self, p: Params, *, languages: list[str] | None = None) -> dict:
        vs = self._requested_value_set(p)
        rules = VersionRules.from_params(p).with_value_set(vs)
        self.check_supplements(rules)
        vs_ref = f"{vs.get('url')}|{vs.get('version')}" if vs.get("version") else str(vs.get("url"))
        langs = self._languages(p, languages, vs)
        codings, mode = self._codings(p)
        membership = _Membership(self, vs, p, rules)
        try:
            results = [self._check_coding(c, membership, vs_ref, p, langs, path) for c, path in codings]
        except TxError as exc:
            if exc.status != 404:
                raise
            # a value set it includes is not held: the code cannot be found in it
            return {"resourceType": "Parameters", "parameter": [
                {"name": "result", "valueBoolean": False},
                {"name": "issues", "resource": {"resourceType": "OperationOutcome", "issue": [
                    Issue("error", "not-found", exc.tx_code or "not-found", exc.text).to_fhir()]}},
                {"name": "message", "valueString": exc.text}]}
        for r in results:
            if r.valid and r.cs is not None:
                r.issues[:0] = self._status_notes("CodeSystem", r.cs.resource, r.cs.ref)
        if any(r.valid for r in results):
            results[0].issues[:0] = self._status_notes("ValueSet", vs, vs_ref) + [
                i for sub in membership.sub_value_sets() for i in self._status_notes("ValueSet", sub, f"{sub.get('url')}|{sub.get('version')}")]
        if is_partial(vs) and not any(r.valid for r in results) and any(r.not_in_vs_text for r in results):
            raise TxError(422, "incomplete", f"The value set {vs_ref} is held only in part here (the codes the harness's "
                          "fixtures use): that a code is absent from it proves nothing", "not-found")
        return self._verdict(results, mode, vs_ref, p)

    def validate_cs(self, p: Params, *, languages: list[str] | None = None) -> dict:
        rules = VersionRules.from_params(p)
        self.check_supplements(rules)
        langs = self._languages(p, languages)
        codings, mode = self._codings(p, cs_url=p.get("url"), cs_version=p.get("version"))
        results = [self._check_coding(c, None, None, p, langs, path) for c, path in codings]
        return self._verdict(results, mode, None, p)

    def _codings(self, p: Params, cs_url: Any = None, cs_version: Any = None) -> tuple[list[tuple[dict, str]], str]:
        cc = p.get("codeableConcept")
        if isinstance(cc, dict):
            return [(c, f"CodeableConcept.coding[{i}]") for i, c in enumerate(cc.get("coding") or []) if isinstance(c, dict)], "codeableConcept"
        coding = p.get("coding")
        if isinstance(coding, dict):
            return [(coding, "Coding")], "coding"
        code = p.get("code")
        if code is None:
            raise TxError(400, "required", "A code is required: code (with system), coding or codeableConcept", "invalid-data")
        system = p.get("system") or cs_url
        c = {"code": str(code)}
        if system:
            c["system"] = str(system)
        version = p.get("systemVersion") or p.get("version") if cs_url is None else cs_version
        if version:
            c["version"] = str(version)
        if p.get("display") is not None:
            c["display"] = str(p.get("display"))
        return [(c, "")], "code"

    def _check_coding(self, coding: dict, membership: "_Membership | None", vs_ref: str | None, p: Params,
                      langs: list[str], path: str) -> "_CodingResult":
        r = _CodingResult(coding, path)
        code = str(coding.get("code") or "")
        system = coding.get("system")
        where = (lambda leaf: f"{path}.{leaf}" if path else leaf)
        if not system:
            if membership is None:
                raise TxError(400, "required", "A code system is required to validate a code", "invalid-data")
            if path:  # a coding without a system is not inferred (only a bare code is)
                r.issues.append(Issue("warning", "invalid", "invalid-data",
                                      "Coding has no system. A code with no system has no defined meaning, and it cannot be "
                                      "validated. A system should be provided", path))
                r.not_in_vs_text = f"The provided code '#{code}' was not found in the value set '{vs_ref}'"
                return r
            systems = membership.systems_for(code)
            if len(systems) != 1:
                r.issues.append(Issue("error", "code-invalid", "not-in-vs",
                                      f"The provided code '#{code}' was not found in the value set '{vs_ref}'", where("code")))
                r.issues.append(Issue("error", "not-found", "cannot-infer",
                                      f"The System URI could not be determined for the code '{code}' in the ValueSet '{vs_ref}'", where("code")))
                return r
            system = systems[0]
        system = str(system)
        r.system = system
        not_in_vs = f"The provided code '{system}#{code}' was not found in the value set '{vs_ref}'"
        if membership is not None and self.find_value_set(system) is not None and not self.code_system_versions(system):
            r.issues.append(Issue("error", "invalid", "invalid-data",
                                  f"The Coding references a value set, not a code system ('{system}')", where("system")))
            r.not_in_vs_text = not_in_vs
            return r
        sup = self.supplement(system)
        if sup is not None:
            r.issues.append(Issue("error", "invalid", "invalid-data",
                                  f"CodeSystem {system}|{sup.get('version')} is a supplement, so can't be used as a value in "
                                  f"{path or 'Coding'}.system", where("system")))
            return r
        if "://" not in system and not system.startswith("urn:"):
            r.issues.append(Issue("error", "invalid", "invalid-data",
                                  f"The system '{system}' must be an absolute reference, not a local reference", where("system")))
        rules = membership.rules if membership else VersionRules.from_params(p)
        wanted = coding.get("version")
        try:
            if membership is not None:
                cs = membership.effective(system, wanted, r, where)
            else:
                cs = self.resolve_cs(system, wanted, rules)
                self._check_version(cs, rules, r)
        except Unknown as u:
            versions = self.code_system_versions(system)
            if u.version and versions:
                r.unknown_system, r.unknown_kind = u.ref, "x-caused-by-unknown-system"
                text = (f"A definition for CodeSystem '{system}' version '{u.version}' could not be found, so the code cannot be "
                        f"validated. Valid versions: {' or '.join(sorted(v for v in versions if v))}")
            else:
                r.unknown_system, r.unknown_kind = system, "x-unknown-system"
                text = f"A definition for CodeSystem '{system}' could not be found, so the code cannot be validated"
            r.issues.append(Issue("error", "not-found", "not-found", text, where("system")))
            if membership is not None and not membership.includes_system(system):
                r.not_in_vs_text = not_in_vs
            if u.version and versions and r.fallback is None:
                fallback = versions[_latest(versions)]
                r.version, r.display = fallback.version, None
                found = fallback.get(code)
                if found is not None:
                    r.display = fallback.display_for(found, langs)
                    r.concept_hint = found
            elif r.fallback is not None:
                r.version = r.fallback.version
                found = r.fallback.get(code)
                if found is not None:
                    r.display = r.fallback.display_for(found, langs)
                    r.concept_hint = found
            return r
        r.version = cs.version
        concept = cs.get(code)
        if concept is None:
            if cs.content in ("fragment", "example", "not-present"):
                if membership is not None and not membership.includes_whole(system):
                    # the value set lists what it holds of this code system: the code is not one
                    r.not_in_vs_text = f"The provided code '{system}#{code}' was not found in the value set '{vs_ref}'"
                    return r
                r.issues.append(Issue("warning", "code-invalid", "invalid-code",
                                      f"Unknown code '{code}' in the CodeSystem {_cs_name(cs)}: the code system is held only in part "
                                      f"(a {cs.content}), so this may be a valid code", where("code")))
                if membership is not None and not is_partial(cs.resource):
                    r.valid = True  # the whole of a fragment: the code may be one (FHIR: a warning, not an error)
                else:
                    r.unsure = True
                return r
            if not p.flag("valueset-membership-only"):  # only membership asked: the code system's verdict is not given
                r.issues.append(Issue("error", "code-invalid", "invalid-code",
                                      f"Unknown code '{code}' in the CodeSystem {_cs_name(cs)}", where("code")))
            if membership is not None:
                r.not_in_vs_text = f"The provided code '{system}#{code}' was not found in the value set '{vs_ref}'"
            return r
        r.concept, r.cs = concept, cs
        r.display = cs.display_for(concept, langs)
        if concept.code != code:
            r.issues.append(Issue("information", "business-rule", "code-rule",
                                  f"The code '{code}' differs from the correct code '{concept.code}' by case. Although the code "
                                  f"system '{cs.ref}' is case insensitive, the correct case should be used", where("code")))
            r.normalized = concept.code
        if r.version_error:
            return r
        if membership is not None:
            inside = membership.contains(cs, concept)
            active_only = (membership.vs.get("compose") or {}).get("inactive") is False or p.flag("activeOnly")
            if not inside or (p.flag("activeOnly") and concept.inactive):
                r.not_in_vs_text = not_in_vs
                if concept.inactive and active_only:  # out because it is inactive: said so
                    r.issues.append(Issue("error", "business-rule", "code-rule",
                                          f"The code '{code}' is valid but is not active, and only active codes are allowed here",
                                          where("code")))
                    r.issues.append(Issue("warning", "business-rule", "code-comment",
                                          f"The concept '{code}' has a status of {concept.status or 'inactive'} and its use should be reviewed",
                                          where("code")))
                return r
        if p.flag("abstract", True) is False and concept.abstract:
            r.issues.append(Issue("error", "business-rule", "code-rule",
                                  f"The code '{code}' is abstract, and not allowed in this context", where("code")))
            if membership is not None:
                r.not_in_vs_text = not_in_vs
            return r
        r.valid = True
        entry = membership.entry(cs, concept) if membership is not None else None
        if entry is not None and entry.deprecated:
            r.issues.append(Issue("warning", "business-rule", "code-comment",
                                  f"The presence of the concept '{code}' in the system '{system}' in the value set {vs_ref} is marked "
                                  "with a status of deprecated and its use should be reviewed", where("code")))
        if concept.inactive:
            r.issues.append(Issue("warning", "business-rule", "code-comment",
                                  f"The concept '{code}' has a status of {concept.status or 'inactive'} and its use should be reviewed",
                                  where("code")))
        elif concept.status == "deprecated":
            r.issues.append(Issue("warning", "business-rule", "code-comment",
                                  f"The concept '{code}' is deprecated and its use should be reviewed", where("code")))
        display = coding.get("display")
        if display is not None and display != "" and not p.flag("valueset-membership-only"):
            allowed = self._allowed_displays(cs, concept, langs)
            in_any = self._allowed_displays(cs, concept, [])
            retired = [d.get("value") for d in concept.designations if _extension(
                d, "http://hl7.org/fhir/StructureDefinition/structuredefinition-standards-status") in ("deprecated", "withdrawn")]
            if display in retired:
                shown = ", ".join(f'"{a}"' for a in allowed if a not in retired) or "(none)"
                r.issues.append(Issue("warning", "invalid", "display-comment",
                                      f"'{display}' is no longer considered a correct display for code '{concept.code}' "
                                      f"(status = deprecated). The correct display is one of {shown}.", where("display")))
            elif langs and display not in allowed and display in in_any and not self._has_language(cs, concept, langs):
                # nothing is written in the language asked for: a display of the default language is right
                r.issues.append(Issue("information", "invalid", "invalid-display",
                                      f"There are no valid display names found for the code {system}#{concept.code} for language(s) "
                                      f"'{', '.join(langs)}'. The display is '{display}' which is a valid display for the default language",
                                      where("display")))
            elif display not in allowed and not (not cs.case_sensitive and display.casefold() in {a.casefold() for a in allowed}):
                lenient = p.flag("lenient-display-validation")
                sev = "warning" if lenient else "error"
                shown = ", ".join(f"'{a}'" for a in allowed[:5]) or "(none)"
                r.issues.append(Issue(sev, "invalid", "invalid-display",
                                      f"Wrong Display Name '{display}' for {system}#{concept.code}. Valid display is one of {shown}",
                                      where("display")))
                if not lenient:
                    r.valid = False
                    r.display_error = True
        return r

    @staticmethod
    def _status_notes(kind: str, res: dict, ref: str) -> list[Issue]:
        """A reference to a draft, experimental, deprecated or withdrawn resource: information."""
        status = _extension(res, "http://hl7.org/fhir/StructureDefinition/structuredefinition-standards-status")
        if status in ("deprecated", "withdrawn"):
            label = status
        elif res.get("status") in ("draft", "retired"):
            label = res["status"]
        elif res.get("experimental") is True:
            label = "experimental"
        else:
            return []
        return [Issue("information", "business-rule", "status-check", f"Reference to {label} {kind} {ref}")]

    @staticmethod
    def _check_version(cs: CodeSystem, rules: VersionRules, r: "_CodingResult") -> None:
        check = rules.check.get(cs.url)
        if check and not version_matches(check, cs.version):
            r.issues.append(Issue("error", "exception", "version-error",
                                  f"The version '{cs.version}' is not allowed for system '{cs.url}': required to be '{check}' "
                                  "by a version-check parameter"))
            r.version_error = True

    @staticmethod
    def _has_language(cs: CodeSystem, concept: Concept, langs: list[str]) -> bool:
        """Whether the concept has a display in one of ``langs`` (its own, in the code system's language, counts)."""
        if any(l == "*" for l in langs):
            return True
        if cs.language and concept.display and any(_lang_match(l, cs.language) for l in langs):
            return True
        return any(d.get("language") and any(_lang_match(l, d["language"]) for l in langs) for d in concept.designations)

    @staticmethod
    def _allowed_displays(cs: CodeSystem, concept: Concept, langs: list[str]) -> list[str]:
        """The displays a coding may carry: in ``langs`` when given (the concept's own display
        counts when the code system's language is one of them, or unknown), else any."""
        own = not langs or any(l == "*" for l in langs) or not cs.language or any(_lang_match(l, cs.language) for l in langs)
        allowed = [concept.display] if concept.display and own else []
        for d in concept.designations:
            lang = d.get("language")
            if not langs or (not lang and own) or (lang and any(_lang_match(l, lang) or l == "*" for l in langs)):
                if d.get("value") and d["value"] not in allowed:
                    allowed.append(d["value"])
        return allowed

    def _verdict(self, results: list["_CodingResult"], mode: str, vs_ref: str | None, p: Params) -> dict:
        issues: list[Issue] = []
        good = next((r for r in results if r.valid), None)
        for r in results:
            issues.extend(r.issues)
            if r.not_in_vs_text:
                if mode == "codeableConcept":
                    issues.append(Issue("information", "code-invalid", "this-code-not-in-vs", r.not_in_vs_text, f"{r.path}.code"))
                else:
                    issues.append(Issue("error", "code-invalid", "not-in-vs", r.not_in_vs_text, f"{r.path}.code" if r.path else "code"))
        if mode == "codeableConcept" and good is None and vs_ref is not None and \
                any(r.not_in_vs_text or r.unknown_kind == "x-unknown-system" and r.unknown_system for r in results) and \
                not any(r.display_error for r in results):
            issues.insert(0, Issue("error", "code-invalid", "not-in-vs", f"No valid coding was found for the value set '{vs_ref}'"))
        unsure = good is None and any(r.unsure for r in results)
        # a codeable concept with one good coding and another whose code its code system does not
        # define is not valid (the wrong code is an error, whatever the good one)
        result = good is not None and not any(i.severity == "error" and i.tx == "invalid-code" for r in results for i in r.issues)
        chosen = good or next((r for r in results if r.concept is not None or r.concept_hint is not None), None) or \
            (results[0] if results and mode != "codeableConcept" else None)
        out: list[dict] = [{"name": "result", "valueBoolean": result}]
        if chosen is not None:
            out.append({"name": "code", "valueCode": str(chosen.coding.get("code"))})
            if chosen.normalized:
                out.append({"name": "normalized-code", "valueCode": chosen.normalized})
            if chosen.system:
                out.append({"name": "system", "valueUri": chosen.system})
            if chosen.version:
                out.append({"name": "version", "valueString": chosen.version})
            if chosen.display:
                out.append({"name": "display", "valueString": chosen.display})
            concept = chosen.concept or chosen.concept_hint
            if concept is not None and concept.inactive:
                out.append({"name": "inactive", "valueBoolean": True})
            if concept is not None and (concept.inactive or concept.status == "deprecated") and concept.status:
                out.append({"name": "status", "valueCode": concept.status})
        if mode == "codeableConcept":
            out.append({"name": "codeableConcept", "valueCodeableConcept": p.get("codeableConcept")})
        for r in results:
            if r.unknown_system:
                out.append({"name": r.unknown_kind, "valueCanonical": r.unknown_system})
        if unsure:
            out.append({"name": "x-unsure", "valueBoolean": True})
        if issues:
            out.append({"name": "issues", "resource": {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}})
            texts = [i.text for i in issues if i.severity in ("error", "warning")]
            if texts:
                out.append({"name": "message", "valueString": "; ".join(texts)})
        return {"resourceType": "Parameters", "parameter": out}

    # -- $lookup ---------------------------------------------------------------------------

    def lookup(self, p: Params, *, languages: list[str] | None = None) -> dict:
        coding = p.get("coding") if isinstance(p.get("coding"), dict) else {"system": p.get("system"), "code": p.get("code"),
                                                                             "version": p.get("version")}
        system, code = coding.get("system"), coding.get("code")
        if not system or not code:
            raise TxError(400, "required", "system and code are required", "invalid-data")
        rules = VersionRules.from_params(p)
        self.check_supplements(rules)
        try:
            cs = self.resolve_cs(str(system), coding.get("version"), rules)
        except Unknown as u:
            raise TxError(404, "not-found", f"A definition for CodeSystem '{u.ref}' could not be found", "not-found") from None
        concept = cs.get(str(code))
        if concept is None:
            if cs.content != "complete":
                raise TxError(404, "not-found", f"Code '{code}' is not among the codes this server holds of the CodeSystem "
                              f"{_cs_name(cs)}, which it holds only in part (a {cs.content}): that proves nothing", "not-found")
            raise TxError(404, "not-found", f"Unknown code '{code}' in the CodeSystem {_cs_name(cs)}", "invalid-code")
        langs = self._languages(p, languages)
        out: list[dict] = [{"name": "code", "valueCode": concept.code}, {"name": "system", "valueUri": cs.url},
                           {"name": "name", "valueString": cs.name}]
        if cs.version:
            out.append({"name": "version", "valueString": cs.version})
        out += [{"name": "used-supplement", "valueCanonical": ref} for ref in cs.used_supplements]
        display = cs.display_for(concept, langs)
        if display:
            out.append({"name": "display", "valueString": display})
        if concept.definition:
            out.append({"name": "definition", "valueString": concept.definition})
        out.append({"name": "abstract", "valueBoolean": concept.abstract})
        for d in concept.designations:
            parts = [{"name": k, ("valueCode" if k == "language" else "valueCoding" if k == "use" else "valueString"): v}
                     for k, v in d.items() if k in ("language", "use", "value")]
            out.append({"name": "designation", "part": parts})
        props = [str(x) for x in p.all("property")]
        for name, value, key in concept.properties:
            if not props or name in props:
                out.append({"name": "property", "part": [{"name": "code", "valueCode": name}, {"name": "value", key: value}]})
        out.append({"name": "property", "part": [{"name": "code", "valueCode": "inactive"}, {"name": "value", "valueBoolean": concept.inactive}]})
        for parent in concept.parents:
            if not props or "parent" in props:
                out.append({"name": "property", "part": [{"name": "code", "valueCode": "parent"}, {"name": "value", "valueCode": parent}]})
        for child in concept.children:
            if not props or "child" in props:
                out.append({"name": "property", "part": [{"name": "code", "valueCode": "child"}, {"name": "value", "valueCode": child}]})
        return {"resourceType": "Parameters", "parameter": out}

    # -- $translate ------------------------------------------------------------------------

    def all_concept_maps(self) -> list[dict]:
        return (self.parent.all_concept_maps() if self.parent else []) + self.maps

    def translate(self, p: Params) -> dict:
        """$translate: with a concept map (``url``, ``conceptMap``), or through every concept
        map held from the source system to the target system; ``targetCode`` translates back
        (the source concepts that map to it)."""
        url = p.get("url")
        coding = p.get("coding") if isinstance(p.get("coding"), dict) else None
        system = (coding or {}).get("system") or p.get("system") or p.get("sourceSystem")
        code = (coding or {}).get("code") or p.get("code") or p.get("sourceCode")
        target_code = p.get("targetCode")
        target_system = p.get("targetSystem") or p.get("targetsystem")
        if isinstance(p.get("conceptMap"), dict):
            maps = [p.get("conceptMap")]
        elif url:
            found = self.find_concept_map(str(url))
            if found is None:
                raise TxError(404, "not-found", f"A definition for the concept map '{url}' could not be found", "not-found")
            maps = [found]
        elif (code or target_code) and (system or target_system):
            maps = self.all_concept_maps()
        else:
            raise TxError(400, "required", "$translate needs a code and its system (or a target code), and a concept map or "
                          "the systems to translate between", "invalid-data")
        matches = []
        for cm in maps:
            origin = f"{cm.get('url')}|{cm.get('version')}" if cm.get("version") else cm.get("url")
            for group in cm.get("group") or []:
                if system and group.get("source") and group.get("source") != system:
                    continue
                if target_system and group.get("target") != target_system:
                    continue
                for el in group.get("element") or []:
                    for t in el.get("target") or []:
                        if target_code is not None:  # back: the source concepts that map to the target code
                            if t.get("code") != target_code:
                                continue
                            concept = {"system": group.get("source"), "code": el.get("code")}
                        else:
                            if el.get("code") != code:
                                continue
                            concept = {"system": group.get("target"), "code": t.get("code")}
                            if t.get("display"):
                                concept["display"] = t["display"]
                        rel = t.get("relationship") or t.get("equivalence") or "equivalent"
                        matches.append({"name": "match", "part": [{"name": "relationship", "valueCode": rel},
                                                                  {"name": "concept", "valueCoding": concept},
                                                                  {"name": "originMap", "valueCanonical": origin}]})
        good = [m for m in matches if m["part"][0]["valueCode"] not in ("not-related-to", "unmatched", "disjoint")]
        out: list[dict] = [{"name": "result", "valueBoolean": bool(good)}]
        if not good:
            out.append({"name": "message", "valueString": f"No translations found for {system}#{code or target_code}"})
        out.extend(matches)
        return {"resourceType": "Parameters", "parameter": out}


class Unknown(Exception):
    """No version of this code system held (or not the one asked for)."""

    def __init__(self, url: str, version: str | None, known: list[str] | None = None) -> None:
        super().__init__(url)
        self.url, self.version, self.known = url, version, known or []

    @property
    def ref(self) -> str:
        return f"{self.url}|{self.version}" if self.version else self.url


@dataclass
class _CodingResult:
    coding: dict
    path: str
    valid: bool = False
    system: str | None = None
    version: str | None = None
    display: str | None = None
    concept: Concept | None = None
    cs: CodeSystem | None = None
    unknown_system: str | None = None
    not_in_vs_text: str | None = None
    display_error: bool = False
    unsure: bool = False
    unknown_kind: str = "x-caused-by-unknown-system"
    version_error: bool = False
    normalized: str | None = None
    fallback: "CodeSystem | None" = None  # the version reported when the one asked for is unknown
    concept_hint: "Concept | None" = None
    issues: list[Issue] = field(default_factory=list)


class _Membership:
    """Whether a concept is in a value set, and which version of its code system the value
    set means, computed once per request."""

    def __init__(self, engine: Engine, vs: dict, p: Params, rules: VersionRules) -> None:
        self.engine, self.vs, self.p, self.rules = engine, vs, p, rules
        self._entries: dict[tuple[str, str | None] | None, list[Entry]] = {}
        self._includes = [inc for inc in (vs.get("compose") or {}).get("include") or [] if isinstance(inc, dict)]

    def entries(self, pin: tuple[str, str | None] | None = None) -> list[Entry]:
        if pin not in self._entries:
            rules = self.rules
            if pin is not None:
                rules = VersionRules({**self.rules.force, pin[0]: pin[1]}, self.rules.default, {}, self.rules.supplements)
            self._entries[pin] = self.engine.expand_entries(self.vs, self.p, rules)
        return self._entries[pin]

    def sub_value_sets(self) -> list[dict]:
        out = []
        for inc in self._includes:
            for ref in inc.get("valueSet") or []:
                found = self.engine.find_value_set(str(ref)) if not str(ref).startswith("#") else None
                if found is not None:
                    out.append(found)
        return out

    def includes_whole(self, system: str) -> bool:
        return any(inc.get("system") == system and not inc.get("concept") and not inc.get("filter") for inc in self._includes)

    def includes_system(self, system: str) -> bool:
        return any(inc.get("system") == system for inc in self._includes)

    def effective(self, system: str, wanted: str | None, r: "_CodingResult", where: Any) -> CodeSystem:
        """The version of ``system`` the value set means for this coding; version conflicts
        are issues of ``r`` (the coding then fails), an unknown version raises :class:`Unknown`."""
        e, rules = self.engine, self.rules
        versions = e.code_system_versions(system)
        if not versions:
            raise Unknown(system, None)
        explicit = [inc.get("version") for inc in self._includes if inc.get("system") == system and inc.get("version")]
        check = rules.check.get(system)

        def implicit() -> CodeSystem:
            if check:
                matching = [v for v in versions if version_matches(check, v)]
                if matching:
                    return versions[_latest(matching)]
            return versions[_latest(versions)]

        severity = "error"
        if system in rules.force:
            cs = e.resolve_cs(system, None, rules)
        elif wanted and wanted in versions and any(version_matches(v, wanted) for v in explicit):
            cs = versions[wanted]
        elif explicit:
            try:
                # several includes of the system in several versions: those that list the code when
                # some do, then the latest that holds it (with the coding's display, when it has one)
                code = str(r.coding.get("code") or "")
                listing = [inc.get("version") for inc in self._includes if inc.get("system") == system and inc.get("version")
                           and any(isinstance(c, dict) and c.get("code") == code for c in inc.get("concept") or [])]
                chosen = [e.resolve_cs(system, v, VersionRules(supplements=rules.supplements)) for v in (listing or explicit)]
                holding = [c for c in chosen if code and c.get(code) is not None]
                display = r.coding.get("display")
                fitting = [c for c in holding if display and display in e._allowed_displays(c, c.get(code), [])]
                cs = max(fitting or holding or chosen, key=lambda c: _version_key(c.version))
            except Unknown:
                r.fallback = implicit()
                if wanted and wanted != explicit[0]:
                    r.issues.append(Issue("error", "invalid", "vs-invalid",
                                          f"The code system '{system}' version '{explicit[0]}' in the ValueSet include is different "
                                          f"to the one in the value ('{wanted}')", where("version")))
                raise
        elif wanted and wanted in versions:
            cs = versions[_latest(versions)]
        elif wanted:
            cs = e.resolve_cs(system, None, VersionRules({}, rules.default, {}, rules.supplements)) if system in rules.default else implicit()
            severity = "error" if system in rules.default or check else "warning"
        elif system in rules.default:
            cs = e.resolve_cs(system, None, rules)
        else:
            cs = implicit()
        if wanted and cs.version != wanted and not version_matches(wanted, cs.version):
            r.issues.append(Issue(severity, "invalid", "vs-invalid",
                                  f"The code system '{system}' version '{cs.version}' in the ValueSet include is different to "
                                  f"the one in the value ('{wanted}')", where("version")))
            r.version_error = True
            if wanted not in versions and not any(version_matches(wanted, v) for v in versions):
                r.unknown_system, r.unknown_kind = f"{system}|{wanted}", "x-caused-by-unknown-system"
                r.issues.append(Issue("error", "not-found", "not-found",
                                      f"A definition for CodeSystem '{system}' version '{wanted}' could not be found, so the code "
                                      f"cannot be validated. Valid versions: {' or '.join(sorted(v for v in versions if v))}",
                                      where("system")))
        e._check_version(cs, rules, r)
        return e._supplemented(cs, rules) if rules.supplements else cs

    def contains(self, cs: CodeSystem, concept: Concept) -> bool:
        return self.entry(cs, concept) is not None

    def entry(self, cs: CodeSystem, concept: Concept) -> Entry | None:
        # the value set evaluated with the version meant for this coding, unless its includes
        # name exact versions themselves (then as it is written, exclusions included)
        exact = any(inc.get("system") == cs.url and inc.get("version") and not _is_wildcard(inc["version"]) for inc in self._includes)
        entries = self.entries() if exact else self.entries((cs.url, cs.version))
        return next((x for x in entries if x.cs.url == cs.url and x.concept.code == concept.code and
                     (not exact or x.cs.version == cs.version)), None)

    def systems_for(self, code: str) -> list[str]:
        return sorted({x.cs.url for x in self.entries() if x.concept.code == code})


EXPANSION_PARAMETER = "http://hl7.org/fhir/StructureDefinition/valueset-expansion-parameter"
SUPPLEMENT_EXTENSION = "http://hl7.org/fhir/StructureDefinition/valueset-supplement"


def expansion_parameters(vs: dict) -> dict[str, str]:
    """The expansion parameters a value set fixes for itself (``compose`` extension
    valueset-expansion-parameter): name -> value, as text."""
    out = {}
    for ext in (vs.get("compose") or {}).get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == EXPANSION_PARAMETER:
            parts = {e.get("url"): next((v for k, v in e.items() if k.startswith("value")), None)
                     for e in ext.get("extension") or [] if isinstance(e, dict)}
            if parts.get("name"):
                out[str(parts["name"])] = "" if parts.get("value") is None else str(parts["value"]).lower() \
                    if isinstance(parts.get("value"), bool) else str(parts["value"])
    return out


def _cs_name(cs: "CodeSystem") -> str:
    return f"'{cs.url}' version '{cs.version}'" if cs.version else f"'{cs.url}'"


def is_partial(vs: dict) -> bool:
    return any(isinstance(e, dict) and e.get("url") == PARTIAL_EXTENSION and e.get("valueBoolean") for e in vs.get("extension") or [])


def _walk(items: list) -> Iterator[dict]:
    stack = list(reversed(items))
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(reversed(item.get("contains") or []))


def _regex(pattern: str) -> Any:
    """A filter's regular expression, compiled by RE2: linear-time matching, so a pattern
    written to backtrack for ever (``(a+)+``) costs no more than any other."""
    if len(pattern) > MAX_REGEX:
        raise TxError(422, "too-costly", f"A regular expression of more than {MAX_REGEX} characters is refused", "vs-invalid")
    try:
        return re2.compile(pattern)
    except re2.error as exc:
        raise not_supported(f"the regular expression '{pattern}' ({exc}: back-references and look-arounds "
                            "cannot be matched in linear time)") from None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return str(value.get("code", ""))
    return str(value)


def _param(name: str, value: Any) -> dict:
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, int):
        return {"name": name, "valueInteger": value}
    return {"name": name, "valueString": str(value)}

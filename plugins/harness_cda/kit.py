"""The official ANS CDA kit as a user downloaded it: identity, quirks, compiled cache."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lxml import etree

from harness import HarnessError, UnsafeInput, atomic_write, catalogue, parse_xml

from .local import KIT_PARTS, cache_root
from .schematron import Quirk, SchematronError, compile_schema, resolve_case_insensitive

SVS = "{urn:ihe:iti:svs:2008}"
# a variable holding a file name, as the volets declare their value sets: <let value="'../jeuxDeValeurs/X.xml'"/>
_FILE_VARIABLE = re.compile(r"""<xsl:variable name="[^"]+" select="'([^'"$]+\.xml)'"/>""")
_VOC = re.compile(r"voc-([0-9.]+)-DYNAMIC\.xml$")
M = catalogue(__name__)


def _compiler_fingerprint() -> str:
    """The code that turns a kit into stylesheets: a change to it invalidates the cache even
    when the harness version number did not move (a development install)."""
    digest = hashlib.sha256()
    for name in ("schematron.py", "selection.py", "documents.py", "kit.py", "volets.py"):
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:12]


COMPILER = _compiler_fingerprint()


class KitError(HarnessError):
    pass


@dataclass
class CompiledSchematron:
    """A schematron compiled to XSLT and stored in the cache."""

    schematron: str  # path relative to the kit
    xslt_path: str
    phase: str
    rule_count: int
    assert_count: int
    files: list[str]
    quirks: list[dict] = field(default_factory=list)
    error: dict | None = None  # {"fr":..., "en":...} when the schematron cannot be compiled
    documents: dict[str, str] = field(default_factory=dict)  # stylesheet parameter -> file to preload


def content_digest(root: Path) -> tuple[list[Path], str]:
    """The files of a kit's parts (``schematrons/``, ``jeuxDeValeurs/``, ``infrastructure/``)
    and their digest: each file's path relative to ``root`` and the SHA-256 of its bytes, in
    order. A kit's identity whatever archive or folder it came in."""
    files = sorted(p for part in KIT_PARTS if (root / part).exists() for p in (root / part).rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(p.read_bytes()).digest())
    return files, digest.hexdigest()


class Kit:
    """A kit folder: ``schematrons/``, ``jeuxDeValeurs/``, ``infrastructure/cda/CDA_extended.xsd``."""

    def __init__(self, root: Path, harness_version: str) -> None:
        self.root = Path(root).resolve()
        if not (self.root / "schematrons").is_dir():
            raise KitError(M("kit.not_a_kit", root=str(self.root)))
        self.harness_version = harness_version
        self.files, self.sha256 = content_digest(self.root)
        # Compiled stylesheets carry the kit's location (document() resolves against it),
        # so the location is part of the key along with the content hash and our version.
        where = hashlib.sha256(str(self.root).encode()).hexdigest()[:8]
        self.cache_dir = cache_root() / "cda-kit" / f"{harness_version}-{COMPILER}-{self.sha256[:24]}-{where}"

    @property
    def xsd(self) -> Path:
        return self.root / "infrastructure" / "cda" / "CDA_extended.xsd"

    def volet_schematrons(self) -> list[Path]:
        return sorted((self.root / "schematrons").glob("CI-SIS_*.sch"))

    def profile_schematrons(self) -> list[Path]:
        profils = self.root / "schematrons" / "profils"
        return [p for p in (
            profils / "structurationMinimale" / "ASIP-STRUCT-MIN-StrucMin.sch",
            profils / "IHE.sch",
            profils / "CI-SIS_ModelesDeContenusCDA.sch",
            profils / "CI-SIS_Modeles_ANS.sch",
        ) if p.exists()]

    def identity(self) -> dict:
        return {"root": self.root.name, "sha256": self.sha256, "files": len(self.files)}

    # -- value sets the kit forgot ---------------------------------------------------

    def _value_set_files(self) -> dict[str, Path]:
        """OID -> SVS file of jeuxDeValeurs/, for OIDs that exactly one file declares."""
        found: dict[str, list[Path]] = {}
        for p in sorted((self.root / "jeuxDeValeurs").glob("*.xml")):
            try:
                root = parse_xml(p.read_bytes(), source=str(p)).getroot()
            except (UnsafeInput, OSError):
                continue
            vs = root.find(f"{SVS}ValueSet")
            if vs is not None and vs.get("id"):
                found.setdefault(vs.get("id"), []).append(p)
        return {oid: files[0] for oid, files in found.items() if len(files) == 1}

    def _synthesise_voc(self, oid: str, svs_file: Path, out: Path) -> None:
        """Write an ART-DECOR ``voc-<oid>-DYNAMIC.xml`` from the kit's own SVS value set."""
        root = parse_xml(svs_file.read_bytes(), source=str(svs_file)).getroot()
        vs = root.find(f"{SVS}ValueSet")
        sets = etree.Element("{urn:hl7-org:v3}valueSets", nsmap={None: "urn:hl7-org:v3"})
        value_set = etree.SubElement(sets, "valueSet", nsmap={None: ""})
        value_set.set("id", oid)
        value_set.set("name", (vs.get("displayName") or "").removesuffix(".tabs"))
        value_set.set("displayName", value_set.get("name"))
        concepts = etree.SubElement(value_set, "conceptList")
        for c in vs.iter(f"{SVS}Concept"):
            concept = etree.SubElement(concepts, "concept")
            for attr in ("code", "codeSystem", "displayName"):
                if c.get(attr) is not None:
                    concept.set(attr, c.get(attr))
            concept.set("level", "0")
            concept.set("type", "L")
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, etree.tostring(sets, xml_declaration=True, encoding="UTF-8"))

    def _fix_missing_documents(self, compiled, schematron: Path) -> tuple[bytes, list[Quirk], dict[str, str]]:
        """Resolve the files the rules read: (XSLT, quirks, {parameter: file to preload}).

        A file that is absent is replaced when the right one is certain: a
        ``voc-<oid>-DYNAMIC.xml`` value set whose OID exactly one file of ``jeuxDeValeurs/``
        declares (synthesised in the cache), or a file whose name differs from a real one
        only by letter case. Any other absent file is reported; a rule that reads it fails
        when it fires, which makes that document's result ERROR.
        """
        quirks: list[Quirk] = []
        text = compiled.xslt.decode("utf-8")
        value_sets: dict[str, Path] | None = None
        where = str(schematron.relative_to(self.root))
        resolved: dict[str, Path] = {}
        literals = set(compiled.documents.values()) | {m.group(1) for m in _FILE_VARIABLE.finditer(text)}
        for literal in sorted(literals):
            if "://" in literal:
                continue
            if (schematron.parent / literal).is_file():
                resolved[literal] = (schematron.parent / literal).resolve()
                continue
            m = _VOC.search(literal)
            if m:
                if value_sets is None:
                    value_sets = self._value_set_files()
                source = value_sets.get(m.group(1))
                if source is not None:
                    out = self.cache_dir / "synthesised" / Path(literal).name
                    self._synthesise_voc(m.group(1), source, out)
                    resolved[literal] = out
                    quirks.append(Quirk("value-set-synthesised", where, M("quirk.value_set_synthesised", literal=literal, source=source.name, oid=m.group(1))))
                    continue
            found = resolve_case_insensitive(schematron.parent, literal)
            if found is not None:
                resolved[literal] = found.resolve()
                quirks.append(Quirk("file-case", where, M("quirk.file_case", literal=literal, found=os.path.relpath(found, schematron.parent))))
                continue
            quirks.append(Quirk("file-missing", where, M("quirk.file_missing", literal=literal)))
        for literal, path in resolved.items():
            if path != (schematron.parent / literal).resolve():
                # only the reads themselves: the SVRL still shows the rules as the kit wrote them
                text = text.replace(f"select=\"doc('{literal}')\"", f"select=\"doc('{path.as_uri()}')\"")
                text = text.replace(f"select=\"'{literal}'\"", f"select=\"'{path.as_uri()}'\"")
        preload = {param: str(resolved[file]) for param, file in compiled.documents.items() if file in resolved}
        return text.encode("utf-8"), quirks, preload

    def volet_identities(self) -> list:
        """Identity assertions of every volet schematron, computed once per kit (cached)."""
        from .volets import Identity, identity_of

        path = self.cache_dir / "volet-identities.json"
        if path.exists():
            try:
                return [Identity(**d) for d in json.loads(path.read_text())]
            except (ValueError, TypeError):
                pass
        identities = [identity_of(p, p.relative_to(self.root).as_posix()) for p in self.volet_schematrons()]
        atomic_write(path, json.dumps([i.to_dict() for i in identities], ensure_ascii=False).encode("utf-8"))
        return identities

    # -- compile cache -------------------------------------------------------------

    def compiled(self, schematron: Path) -> CompiledSchematron:
        """The compiled form of ``schematron``, from the cache or compiled now and cached."""
        schematron = Path(schematron).resolve()  # the kit root is resolved: a kit reached through a link works
        rel = schematron.relative_to(self.root).as_posix()
        meta_path = self.cache_dir / (rel + ".json")
        if meta_path.exists():
            try:
                return CompiledSchematron(**json.loads(meta_path.read_text()))
            except (ValueError, TypeError):
                pass  # a damaged cache entry is recompiled
        xslt_path = self.cache_dir / (rel + ".xsl")
        try:
            c = compile_schema(schematron)
            xslt, extra, documents = self._fix_missing_documents(c, schematron)
            quirks = c.quirks + extra
            atomic_write(xslt_path, xslt)
            entry = CompiledSchematron(
                rel, str(xslt_path), c.phase, c.rule_count, c.assert_count,
                [p.relative_to(self.root).as_posix() for p in c.files if p.is_relative_to(self.root)],
                [_quirk_dict(q, self.root) for q in quirks], None, documents,
            )
        except SchematronError as exc:
            entry = CompiledSchematron(rel, "", "", 0, 0, [], [], exc.messages)
        atomic_write(meta_path, json.dumps(asdict(entry), ensure_ascii=False, indent=1).encode())
        return entry


def _quirk_dict(q: Quirk, root: Path) -> dict:
    file = Path(q.file)
    return {"kind": q.kind, "file": file.relative_to(root).as_posix() if file.is_absolute() and file.is_relative_to(root) else q.file,
            "detail": q.detail.texts()}

"""The reversibility export the label convention asks for: a practice can leave with its data.

**Collected** (``label.export``): the export the software produced from its demo environment
(``[reversibility] file``, or the software's own download, ``[endpoints] label_export``),
recorded as it is. The environment itself is read through the channels the INS plugin
collects (``ins.fhir``: its FHIR Patient resources; ``ins.cda``: its documents; ``ins.hl7v2``:
its patient feed): a scenario collects with both, and the checks compare what they recorded.

**Judged**, each a requirement of its own:

- *format* (``LES-REV-FORMAT``): every member parses with its format's own tools: JSON through
  the bounded parser then FHIR R4 through ``fhir.resources`` (each resource by its type); XML
  through the hardened parser, a CDA document judged by the CDA plugin's built-in CI-SIS rules
  (header, body: the rules a document sent to the DMP or by MSSanté meets) and its patient read;
  CSV against the Table Schema (Frictionless Data, https://specs.frictionlessdata.io/table-schema/)
  the export carries beside it (``NAME.schema.json``) or the target declares;
- *open* (``LES-REV-OPEN``): every member is in an open, identified format, by its name and by
  its first bytes (JSON, XML, CSV or plain text in UTF-8, PDF, PNG, JPEG, TIFF, DICOM, SQLite): a binary
  of no known structure is a proprietary blob unless the target names the document that
  describes it (``documented = ["data/*.bin=URL or title of its description"]``);
- *complete* (``LES-REV-COMPLETE``): every patient the environment shows (by INS, else by the
  strict traits) and every document it lists (by its ``ClinicalDocument/id``) is in the export;
  what is missing is said per patient. The export's patients are read from its FHIR resources,
  its documents, and the CSV files the target names (``csv_patients``) with the columns it maps
  to the traits (``csv_traits = ["ins=INS", "birth_name=NOM", ...]``);
- *identity* (``LES-REV-IDENTITY``): each patient found in both has, in the export, the same INS
  (matricule and OID) and the same strict traits (birth name, first given name, given names,
  sex, birth date, birth place) as in the environment.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from harness import (ArchiveLimits, CheckContext, CollectContext, Evaluation, HarnessError, SafeArchive, UnsafeInput, catalogue, check, collector,
                     parse_json, parse_xml)
from harness_cda import rules as cda_rules
from harness_cda.document import CdaDocument, NotCda, read_cda
from harness_ins import cda as ins_cda
from harness_ins import fhir as ins_fhir
from harness_ins import hl7v2 as ins_hl7v2
from harness_ins.identity import Traits, classify_system

from .files import file_name, vendor_file
from .said import EXAMPLES, Said

M = catalogue(__name__)

SECTION = "reversibility"
EXPORT = "label.export"
ENDPOINT = "label_export"
MAX_EXPORT = 512 * 1024 * 1024
LIMITS = ArchiveLimits(max_entries=20_000, max_total_bytes=2 * 1024 * 1024 * 1024, max_entry_bytes=256 * 1024 * 1024, max_ratio=200.0)
MAX_MEMBER_READ = 64 * 1024 * 1024  # a member parsed whole (JSON, XML): larger ones are said, not parsed
HL7 = "{urn:hl7-org:v3}"
HEAD = 132  # first bytes read of every member, however large: enough for every signature below

# What the first bytes of an open format look like (the formats' own specifications: PDF ISO
# 32000-1 §7.5.2, PNG ISO/IEC 15948 §5.2, JPEG ISO/IEC 10918-1 (SOI marker), TIFF 6.0 §2,
# DICOM PS3.10 §7.1 (the "DICM" prefix after a 128-byte preamble), the SQLite database file
# format §1.3 (public domain, documented: https://www.sqlite.org/fileformat.html))
MAGIC = {"pdf": lambda b: b.startswith(b"%PDF-"), "png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
         "jpeg": lambda b: b.startswith(b"\xff\xd8\xff"), "tiff": lambda b: b[:4] in (b"II*\x00", b"MM\x00*"),
         "dicom": lambda b: b[128:132] == b"DICM", "sqlite": lambda b: b.startswith(b"SQLite format 3\x00")}
# what a CSV of patients may carry, named by the target (``csv_traits = ["birth_name=NOM", ...]``)
CSV_TRAITS = ("ins", "ins_system", "birth_name", "first_given_name", "given_names", "sex", "birth_date", "birth_place")
CSV_SEX = {"M": "M", "F": "F", "I": "I", "MALE": "M", "FEMALE": "F", "OTHER": "I", "H": "M", "HOMME": "M", "FEMME": "F"}
TEXT_KINDS = {".json": "json", ".xml": "xml", ".csv": "csv", ".txt": "text", ".md": "text", ".html": "text", ".htm": "text"}
BINARY_KINDS = {".pdf": "pdf", ".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff", ".tiff": "tiff", ".dcm": "dicom", ".sqlite": "sqlite",
                ".db": "sqlite"}


@dataclass(frozen=True)
class Settings:
    format: str | None  # zip, fhir, cda, csv; None: by its first bytes
    documented: tuple[tuple[str, str], ...]  # (member pattern, the description the vendor gives)
    csv_schema: str | None
    csv_patients: tuple[str, ...]  # member patterns of CSV files of patients
    csv_traits: tuple[tuple[str, str], ...]  # (trait, column)
    name: str  # the export's file name, as findings locate it


def _settings(target) -> Settings:
    conf = target.section(SECTION)
    fmt = str(conf.get("format") or "").lower() or None
    if fmt is not None and fmt not in ("zip", "fhir", "cda", "csv"):
        raise HarnessError(M("export.format", format=fmt))
    documented = []
    for item in conf.get("documented") or []:
        pattern, _, description = str(item).partition("=")
        if not pattern.strip() or not description.strip():
            raise HarnessError(M("export.documented", item=item))
        documented.append((pattern.strip(), description.strip()))
    traits = []
    for item in conf.get("csv_traits") or []:
        trait, _, column = str(item).partition("=")
        if trait.strip() not in CSV_TRAITS or not column.strip():
            raise HarnessError(M("export.csv_traits", item=item, known=", ".join(CSV_TRAITS)))
        traits.append((trait.strip(), column.strip()))
    if conf.get("csv_patients") and not ({"ins", "birth_name"} & {t for t, _ in traits}):
        raise HarnessError(M("export.csv_traits_none"))
    return Settings(fmt, tuple(documented), str(conf["csv_schema"]) if conf.get("csv_schema") else None,
                    tuple(str(x) for x in conf.get("csv_patients") or []), tuple(traits),
                    file_name(conf, target.section("endpoints"), ENDPOINT, "export"))


@collector(produces=[EXPORT, f"{EXPORT}.exchange", f"{EXPORT}.csv-schema"])
def collect_export(ctx: CollectContext) -> dict:
    s = _settings(ctx.target)
    outputs: dict = {}
    schema = ctx.target.section(SECTION).get("csv_schema")
    if schema:
        data = ctx.read_file(Path(schema), limit=1024 * 1024)
        if data is not None:
            outputs[f"{EXPORT}.csv-schema"] = ctx.record(data, media_type="application/json", label=f"{EXPORT}.csv-schema")
    taken, _ = vendor_file(ctx, section=SECTION, endpoint=ENDPOINT, none=M("export.none", endpoint=ENDPOINT, section=SECTION), name=EXPORT,
                           limit=MAX_EXPORT, media_type=_media(s.name))
    return {**outputs, **taken}


def _media(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    return {".zip": "application/zip", ".json": "application/fhir+json", ".xml": "application/xml", ".csv": "text/csv"}.get(suffix, "application/octet-stream")


# -- the export's members -----------------------------------------------------------------------


@dataclass
class Member:
    name: str  # its path in the archive (or the file's name)
    data: bytes | None  # None: too large to parse whole (said)
    size: int
    head: bytes  # its first HEAD bytes, whatever its size

    def where(self, s: Settings) -> str:
        return f"{s.name}!{self.name}" if self.name != s.name else self.name


def _members(ctx: CheckContext, s: Settings) -> Iterator[Member]:
    """Each member of the export (the export itself when it is not a zip), through the safe
    archive reader. :class:`UnsafeInput` when the archive is refused."""
    with ctx.open(EXPORT) as fh:
        head = fh.read(4)
        fh.seek(0)
        if s.format == "zip" or (s.format is None and head == b"PK\x03\x04"):
            with SafeArchive(fh, limits=LIMITS, name=s.name) as archive:
                for name in archive.names():
                    size = archive.size(name)
                    if size <= MAX_MEMBER_READ:
                        data = archive.read(name)
                        yield Member(name, data, size, data[:HEAD])
                    else:
                        first = archive.chunks(name, size=HEAD)
                        yield Member(name, None, size, next(first, b""))
                        first.close()
            return
        data = fh.read(MAX_MEMBER_READ + 1)
    yield Member(s.name, data if len(data) <= MAX_MEMBER_READ else None, len(data), data[:HEAD])


def _kind(member: Member, fmt: str | None) -> str:
    """What a member is by its name (``schema``, ``json``, ``xml``, ``csv``, ``text``, a binary format, ``unknown``)."""
    suffix = PurePosixPath(member.name).suffix.lower()
    if member.name.endswith(".schema.json"):
        return "schema"
    if fmt in ("fhir", "cda", "csv") and "/" not in member.name:
        return {"fhir": "json", "cda": "xml", "csv": "csv"}[fmt]
    return TEXT_KINDS.get(suffix) or BINARY_KINDS.get(suffix) or "unknown"


# -- format --------------------------------------------------------------------------------------


def _fhir_problems(resource: Any, where: str) -> list[tuple[str, str]]:
    """(location, error) of a FHIR resource, or a Bundle and each of its entries, by ``fhir.resources`` (R4B models)."""
    from fhir.resources.R4B import get_fhir_model_class
    from pydantic import ValidationError

    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return [(where, "no resourceType")]
    try:
        model = get_fhir_model_class(resource["resourceType"])
    except (KeyError, ValueError):
        return [(where, f"unknown resourceType {resource['resourceType']}")]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [(f"{where}.{'.'.join(str(p) for p in e.get('loc', ()))}", str(e.get("msg"))) for e in exc.errors()[:EXAMPLES]]
    except Exception as exc:  # the model library's own failure: said, never a crash
        return [(where, f"{type(exc).__name__}")]
    return []


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool
    unique: bool
    pattern: str | None
    enum: tuple[str, ...] | None
    max_length: int | None


def _schema(data: Any) -> list[Column]:
    """A Table Schema's fields (name, type, constraints required, unique, pattern, enum, maxLength)."""
    if not isinstance(data, dict) or not isinstance(data.get("fields"), list) or not data["fields"]:
        raise ValueError("a Table Schema has a non-empty list of fields")
    out = []
    for f in data["fields"]:
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise ValueError("each field has a name")
        c = f.get("constraints") if isinstance(f.get("constraints"), dict) else {}
        kind = str(f.get("type") or "string")
        if kind not in ("string", "integer", "number", "boolean", "date", "datetime", "year", "any"):
            raise ValueError(f"field {f['name']}: type {kind} not read by the harness")
        out.append(Column(f["name"], kind, bool(c.get("required")), bool(c.get("unique")), c.get("pattern"),
                          tuple(map(str, c["enum"])) if isinstance(c.get("enum"), list) else None,
                          int(c["maxLength"]) if isinstance(c.get("maxLength"), int) else None))
    return out


def _typed(value: str, column: Column) -> bool:
    """Whether a cell is of its field's type (Table Schema, default formats)."""
    if column.type in ("string", "any"):
        return True
    try:
        if column.type == "integer":
            int(value)
        elif column.type == "number":
            float(value)
        elif column.type == "boolean":
            return value.lower() in ("true", "false", "1", "0", "yes", "no")
        elif column.type == "date":
            date.fromisoformat(value)
            return len(value) == 10
        elif column.type == "datetime":
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif column.type == "year":
            return len(value) == 4 and value.isdigit()
    except ValueError:
        return False
    return True


def _csv_problems(data: bytes, columns: list[Column], where: str) -> Iterator[tuple[str, Any]]:
    """(location, message) of each way a CSV breaks its Table Schema (header, types, constraints)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        yield where, M("export.csv_encoding", position=exc.start)
        return
    sample = text.split("\n", 1)[0]
    delimiter = max((";", ",", "\t"), key=sample.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header != [c.name for c in columns]:
        yield f"{where}:1", M("export.csv_header", found=", ".join(header or []) or "-", expected=", ".join(c.name for c in columns))
        return
    seen: dict[int, set[str]] = {i: set() for i, c in enumerate(columns) if c.unique}
    for record in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in record):
            continue
        if len(record) != len(columns):
            yield f"{where}:{line}", M("export.csv_width", found=len(record), expected=len(columns))
            continue
        for i, (cell, column) in enumerate(zip(record, columns)):
            if cell == "":
                if column.required:
                    yield f"{where}:{line}", M("export.csv_required", field=column.name)
                continue
            if not _typed(cell, column):
                yield f"{where}:{line}", M("export.csv_type", field=column.name, type=column.type, value=cell[:40])
            elif column.pattern and not re.fullmatch(column.pattern, cell):
                yield f"{where}:{line}", M("export.csv_pattern", field=column.name, pattern=column.pattern, value=cell[:40])
            elif column.enum is not None and cell not in column.enum:
                yield f"{where}:{line}", M("export.csv_enum", field=column.name, value=cell[:40], allowed=", ".join(column.enum))
            elif column.max_length is not None and len(cell) > column.max_length:
                yield f"{where}:{line}", M("export.csv_length", field=column.name, limit=column.max_length)
            if i in seen:
                if cell in seen[i]:
                    yield f"{where}:{line}", M("export.csv_unique", field=column.name, value=cell[:40])
                seen[i].add(cell)


def _judge_cda(doc: CdaDocument, where: str, said: Said) -> None:
    """A CDA document of the export, as the CDA plugin's built-in rules judge the documents a DMP or
    MSSanté exchange carries: the CI-SIS header and body (:mod:`harness_cda.rules`), its patient."""
    base = doc.tree.getpath(doc.root) if doc.embedded else "/ClinicalDocument"
    problems = cda_rules.check_header(doc.root, base) + cda_rules.check_body(doc.root, base)
    if not ins_cda.read_identities(doc.tree):
        said.fail("LABEL-REV-F04", where, M("export.cda_no_patient"))
    for p in problems:
        if p.severity.fails:
            said.fail(p.rule, f"{where} {p.location}", p.message)
        else:
            said.ev.add(rule=p.rule, severity=p.severity, location=f"{where} {p.location}", message=p.message, artefact=said.artefact)
    if not problems:
        said.ev.judged()


def _refused(ctx: CheckContext, ev: Evaluation, exc: UnsafeInput, s: Settings) -> None:
    ev.check(False, rule="LABEL-REV-00", location=s.name, artefact=ctx.artefact(EXPORT).sha256, message=M("export.refused", reason=exc.detail))


@check(reads=[EXPORT], optional=[f"{EXPORT}.csv-schema"])
def check_format(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-REV-FORMAT: every member parses with its format's own tools."""
    s = _settings(ctx.target)
    said = Said(ev, s.name, ctx.artefact(EXPORT).sha256, assertions=True)
    declared = None
    if ctx.has(f"{EXPORT}.csv-schema"):
        try:
            declared = _schema(parse_json(ctx.read(f"{EXPORT}.csv-schema"), source="csv_schema"))
        except (UnsafeInput, ValueError) as exc:
            ev.error(M("export.schema_bad", name=s.csv_schema or "csv_schema", reason=str(getattr(exc, "detail", exc))))
            return
    schemas: dict[str, Any] = {}
    csvs: list[Member] = []
    try:
        for m in _members(ctx, s):
            kind = _kind(m, s.format)
            where = m.where(s)
            if m.data is None and kind in ("json", "xml", "csv", "schema"):
                said.fail("LABEL-REV-F00", where, M("export.too_large", size=m.size, limit=MAX_MEMBER_READ))
                continue
            if kind in ("json", "schema"):
                try:
                    data = parse_json(m.data, source=m.name)
                except UnsafeInput as exc:
                    said.fail("LABEL-REV-F01", where, M("export.json", reason=exc.detail))
                    continue
                if kind == "schema":
                    schemas[m.name[: -len(".schema.json")] + ".csv"] = data
                    continue
                problems = _fhir_problems(data, "$")
                if problems:
                    for loc, error in problems:
                        said.fail("LABEL-REV-F02", f"{where} {loc}", M("export.fhir", error=error))
                else:
                    ev.judged()
            elif kind == "xml":
                try:
                    _judge_cda(read_cda(m.data, m.name), where, said)
                except NotCda:
                    ev.judged()  # XML, not a CDA document: read by the hardened parser
                except UnsafeInput as exc:
                    said.fail("LABEL-REV-F03", where, M("export.xml", reason=exc.detail))
            elif kind == "csv":
                csvs.append(m)
    except UnsafeInput as exc:
        _refused(ctx, ev, exc, s)
        return
    for m in csvs:
        where = m.where(s)
        columns = declared
        if m.name in schemas:
            try:
                columns = _schema(schemas[m.name])
            except ValueError as exc:
                said.fail("LABEL-REV-F05", where, M("export.schema_member", reason=str(exc)))
                continue
        if columns is None:
            said.fail("LABEL-REV-F05", where, M("export.csv_no_schema", name=PurePosixPath(m.name).stem))
            continue
        bad = False
        for location, message in _csv_problems(m.data, columns, where):
            said.fail("LABEL-REV-F06", location, message)
            bad = True
        if not bad:
            ev.judged()
    said.close()


@check(reads=[EXPORT])
def check_open(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-REV-OPEN: every member is in an open format, known by its name and by its first bytes,
    or described by a document the target names."""
    s = _settings(ctx.target)
    said = Said(ev, s.name, ctx.artefact(EXPORT).sha256, assertions=True)
    try:
        for m in _members(ctx, s):
            where = m.where(s)
            documented = next((d for p, d in s.documented if fnmatch.fnmatch(m.name, p)), None)
            if documented:
                ev.judged()
                ev.add(rule="LABEL-REV-O00", location=where, message=M("export.documented_member", description=documented),
                       artefact=ctx.artefact(EXPORT).sha256)
                continue
            kind = _kind(m, s.format)
            if kind in ("json", "xml", "csv", "text", "schema"):
                if not (_text(m.data) if m.data is not None else _text(m.head, whole=False)):
                    said.fail("LABEL-REV-O02", where, M("export.not_text", kind=kind))
                    continue
            elif kind in MAGIC:
                if not MAGIC[kind](m.head):
                    said.fail("LABEL-REV-O02", where, M("export.not_what_it_says", kind=kind))
                    continue
            else:
                if not any(test(m.head) for test in MAGIC.values()):
                    said.fail("LABEL-REV-O01", where, M("export.blob", size=m.size))
                    continue
            ev.judged()
    except UnsafeInput as exc:
        _refused(ctx, ev, exc, s)
        return
    said.close()


def _text(data: bytes, whole: bool = True) -> bool:
    """UTF-8 text (its BOM allowed), no NUL byte; of a member's first bytes only (``whole``
    false), a character its end cuts is no fault."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return not whole and exc.reason == "unexpected end of data"
    return True


# -- patients and documents ----------------------------------------------------------------------


@dataclass
class Person:
    """One patient as a source shows them: INS (matricule, OID) and strict traits, where."""

    ins: str | None
    ins_system: str | None
    traits: Traits
    where: str
    documents: set[str] = field(default_factory=set)  # ClinicalDocument/id of the documents about them
    record: bool = False  # the patient's own record (a FHIR Patient), not a document about them

    def key(self) -> str:
        if self.ins:
            return f"INS:{self.ins.strip().upper()}"
        return self.traits_key()

    def traits_key(self) -> str:
        t = self.traits
        return "TRAITS:" + "|".join(_fold(x) for x in (t.birth_name, t.first_given_name, (t.birth_date or "").replace("-", ""), t.sex))


class Views:
    """Every view of a patient the export gives (a FHIR resource, a document's patient, a CSV row),
    indexed by INS and by strict traits once (an export of thousands of patients is looked up once
    per patient of the environment)."""

    def __init__(self, views: list[Person]) -> None:
        self.all = views
        self.by_key: dict[str, list[Person]] = {}
        self.by_traits: dict[str, list[Person]] = {}
        for v in views:
            self.by_key.setdefault(v.key(), []).append(v)
            self.by_traits.setdefault(v.traits_key(), []).append(v)

    def of(self, person: Person) -> list[Person]:
        """The views of ``person``: by INS, else by the strict traits (an export that lost or
        changed the INS still shows whom it is about)."""
        return self.by_key.get(person.key()) or self.by_traits.get(person.traits_key(), [])


def _fold(value: str | None) -> str:
    text = unicodedata.normalize("NFKD", value or "")
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).upper().replace("-", " ").split())


def _person_of_fhir(ident, where: str) -> Person:
    ins = next((i for i in ident.identifiers if classify_system(i.system).is_ins), None)
    return Person(ins.value if ins else None, classify_system(ins.system).oid if ins else None, ident.traits, where, record=True)


def _person_of_cda(ident, where: str) -> Person:
    ins = next((i for i in ident.identifiers if classify_system(i.root).is_ins), None)
    return Person(ins.extension if ins else None, classify_system(ins.root).oid if ins else None, ident.traits, where)


def _person_of_hl7(ident, where: str) -> Person:
    ins = next((i for i in ident.identifiers if classify_system(i.system).is_ins or i.type_code.upper() == "INS"), None)
    return Person(ins.value if ins else None, classify_system(ins.system).oid if ins else None, ident.traits, where)


def _document_id(doc) -> str | None:
    root, _ = ins_cda.clinical_document(doc)
    if root is None:
        return None
    el = root.find(f"{HL7}id")
    if el is None or not el.get("root"):
        return None
    return f"{el.get('root')}^{el.get('extension') or ''}"


def _merge(people: dict[str, Person], person: Person) -> Person:
    kept = people.setdefault(person.key(), person)
    if kept is not person:
        kept.documents |= person.documents
    return kept


def _environment(ctx: CheckContext) -> tuple[dict[str, Person], dict[str, str]]:
    """The patients (by key) and documents (id -> the patient's key) the environment's channels
    showed: its documents first, then its FHIR resources and its HL7 v2 feed (each patient's first
    view is the one its identity is compared with)."""
    people: dict[str, Person] = {}
    documents: dict[str, str] = {}
    for name in sorted(ctx.inputs):
        group = name.split("/", 1)[0]
        try:
            if group in ("fhir", "fhir-live") and not name.endswith(".exchange"):
                for ident in ins_fhir.read_patients(ctx.read(name)).identities:
                    _merge(people, _person_of_fhir(ident, f"{name} {ident.location}"))
            elif group in ("hl7", "mllp"):
                for n, data in enumerate(ins_hl7v2.split_messages(ctx.read(name)), 1):
                    for ident in ins_hl7v2.read_message(data).identities:
                        _merge(people, _person_of_hl7(ident, f"{name}#{n} {ident.location}"))
            elif group in ("cda", "cda-live") and not name.endswith(".exchange"):
                doc = ctx.xml(name)
                doc_id = _document_id(doc)
                for ident in ins_cda.read_identities(doc):
                    person = _merge(people, _person_of_cda(ident, f"{name} {ident.location}"))
                    if doc_id:
                        person.documents.add(doc_id)
                        documents.setdefault(doc_id, person.key())
        except UnsafeInput:
            continue  # an unreadable channel input is the INS scenarios' finding; here it shows nobody
    return people, documents


def _csv_people(data: bytes, where: str, s: Settings) -> list[Person]:
    """The patients of a CSV the target maps (``csv_patients``, ``csv_traits``): one a row."""
    text = data.decode("utf-8-sig", errors="replace")
    delimiter = max((";", ",", "\t"), key=text.split("\n", 1)[0].count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    cols = dict(s.csv_traits)
    out = []
    for record in reader:
        get = lambda trait: (record.get(cols[trait]) or "").strip() or None if trait in cols else None  # noqa: E731
        traits = Traits(birth_name=get("birth_name"), first_given_name=get("first_given_name"),
                        given_names=(get("given_names") or "").split(), sex=CSV_SEX.get((get("sex") or "").upper(), get("sex")),
                        birth_date=get("birth_date"), birth_place=get("birth_place"))
        system = get("ins_system")
        out.append(Person(get("ins"), classify_system(system).oid if system else None, traits, f"{where}:{reader.line_num}", record=True))
    return out


def _exported(ctx: CheckContext, s: Settings) -> tuple[Views, set[str]]:
    """Every view of a patient the export gives (a FHIR resource, a document's patient), and its
    documents' ids."""
    views: list[Person] = []
    documents: set[str] = set()
    for m in _members(ctx, s):
        if m.data is None:
            continue
        kind = _kind(m, s.format)
        where = m.where(s)
        try:
            if kind == "json":
                views += [_person_of_fhir(ident, f"{where} {ident.location}") for ident in ins_fhir.read_patients(m.data).identities]
            elif kind == "xml":
                doc = parse_xml(m.data, source=m.name)
                doc_id = _document_id(doc)
                views += [_person_of_cda(ident, f"{where} {ident.location}") for ident in ins_cda.read_identities(doc)]
                if doc_id:
                    documents.add(doc_id)
            elif kind == "csv" and any(fnmatch.fnmatch(m.name, pattern) for pattern in s.csv_patients):
                views += _csv_people(m.data, where, s)
        except UnsafeInput:
            continue  # the format scenario says it
    return Views(views), documents


def _shown(ctx: CheckContext, person: Person) -> str:
    if person.ins:
        return f"NIR#{ctx.mask(person.ins.strip().upper())}"
    t = person.traits
    return f"{t.birth_name or '?'} {t.first_given_name or '?'} ({t.birth_date or '?'})"


ENV_INPUTS = ["fhir", "fhir-live", "cda", "cda-live", "hl7", "mllp"]


_COMPARED: dict[tuple, tuple] = {}


def _both(ctx: CheckContext, ev: Evaluation, s: Settings):
    """(the environment's patients and documents, the export's views and documents), or None when
    there is nothing to compare (said) or the export is refused (a finding). Read once per process
    for the two scenarios that compare them (the same recorded inputs)."""
    key = (s, ctx.artefact(EXPORT).sha256, tuple(sorted((n, ctx.artefact(n).sha256) for n in ctx.inputs)))
    if key not in _COMPARED:
        env_people, env_docs = _environment(ctx)
        if not env_people and not env_docs:
            ev.inconclusive(M("export.no_environment"))
            return None
        try:
            exported = _exported(ctx, s)
        except UnsafeInput as exc:
            _refused(ctx, ev, exc, s)
            return None
        _COMPARED.clear()  # one export at a time
        _COMPARED[key] = (env_people, env_docs, *exported)
    return _COMPARED[key]


@check(reads=[EXPORT], optional=ENV_INPUTS)
def check_complete(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-REV-COMPLETE: every patient and every document of the environment is in the export."""
    s = _settings(ctx.target)
    artefact = ctx.artefact(EXPORT).sha256
    both = _both(ctx, ev, s)
    if both is None:
        return
    env_people, env_docs, out_people, out_docs = both
    said = Said(ev, s.name, artefact, assertions=True)
    for key, person in env_people.items():
        ev.judged()
        if not out_people.of(person):
            said.fail("LABEL-REV-C01", person.where, M("export.patient_missing", patient=_shown(ctx, person), documents=len(person.documents)))
            continue
        missing = sorted(d for d in person.documents if d not in out_docs)
        if missing:
            said.fail("LABEL-REV-C02", person.where, M("export.documents_missing", patient=_shown(ctx, person), count=len(missing),
                                                      documents=", ".join(missing[:10])))
    orphans = sorted(d for d, k in env_docs.items() if k not in env_people)
    for d in orphans:
        said.fail("LABEL-REV-C02", s.name, M("export.document_missing", document=d))
    said.close()
    ev.add(rule="LABEL-REV-C00", location=s.name, artefact=artefact,
           message=M("export.counts", patients=len(env_people), documents=len(env_docs),
                     exported_patients=len(out_people.by_key), exported_documents=len(out_docs)))


TRAITS = {"birth_name": M("trait.birth_name"), "first_given_name": M("trait.first_given_name"), "given_names": M("trait.given_names"),
          "sex": M("trait.sex"), "birth_date": M("trait.birth_date"), "birth_place": M("trait.birth_place")}


def _trait(traits: Traits, name: str) -> str | None:
    value = getattr(traits, name)
    if name == "given_names":
        value = " ".join(value) if value else None
    if name == "birth_date" and value:
        value = value.replace("-", "")
    return _fold(value) if value else None


@check(reads=[EXPORT], optional=ENV_INPUTS)
def check_identity(ctx: CheckContext, ev: Evaluation) -> None:
    """LES-REV-IDENTITY: each patient found in both keeps in the export the INS and the strict
    traits the environment shows."""
    s = _settings(ctx.target)
    artefact = ctx.artefact(EXPORT).sha256
    both = _both(ctx, ev, s)
    if both is None:
        return
    env_people, _, out_people, _ = both
    said = Said(ev, s.name, artefact, assertions=True)
    compared = 0
    for key, person in env_people.items():
        views = out_people.of(person)
        if views:
            compared += 1
        for other in views:  # its FHIR resource and each of its documents alike
            ev.judged()
            if person.ins and (other.ins or "").strip().upper() != person.ins.strip().upper():
                said.fail("LABEL-REV-I03", other.where, M("export.ins_lost", patient=_shown(ctx, person),
                                                          found=f"NIR#{ctx.mask(other.ins.strip().upper())}" if other.ins else "-"))
            elif person.ins and (other.ins_system or "") != (person.ins_system or ""):
                said.fail("LABEL-REV-I01", other.where, M("export.ins_system", patient=_shown(ctx, person), found=other.ins_system or "-",
                                                          expected=person.ins_system or "-"))
            for name, label in TRAITS.items():
                a, b = _trait(person.traits, name), _trait(other.traits, name)
                if a is not None and b is not None and a != b:
                    said.fail("LABEL-REV-I02", other.where, M("export.trait", patient=_shown(ctx, person), trait=label, found=b, expected=a))
                elif a is not None and b is None and other.record:  # a document need not carry every trait; the record does
                    said.fail("LABEL-REV-I02", other.where, M("export.trait", patient=_shown(ctx, person), trait=label, found="-", expected=a))
    said.close()
    if compared == 0:
        ev.inconclusive(M("export.nobody_to_compare"))

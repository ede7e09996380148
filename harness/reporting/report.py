"""The reports a person reads, rendered from what a bundle seals: a self-contained HTML page
and the requirement coverage matrix (CSV and XLSX).

Both are written beside the bundle (``<run-id>.html``, ``<run-id>.coverage.csv``,
``<run-id>.coverage.xlsx``) and inside it (``reports/…``), and ``harness report BUNDLE``
writes them again from any bundle, an earlier version's included. The copy inside the
bundle cannot name the bundle's own hash; the copy beside it does, with the signature's
status. The HTML page loads nothing: no script, styles inline, screenshots as ``data:``
URIs, and a Content-Security-Policy that forbids any other source, so that a text the
vendor's software produced cannot make the page reach out either.
"""
from __future__ import annotations

import base64
import csv
import functools
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..errors import BundleError, UnsafeInput
from ..files import atomic_write
from ..safety.inputs import parse_json
from ..messages import catalogue
from ..verdicts import Verdict

M = catalogue(__name__)

REPORTS = "reports/"  # the bundle's folder of reports
HTML, CSV, XLSX = "report.html", "coverage.csv", "coverage.xlsx"
MAX_INLINE_IMAGES = 24 * 1024 * 1024  # bytes of screenshots inlined in one page; the rest are listed by hash
MAX_EXCHANGE_READ = 256 * 1024  # an exchange record larger than this is listed, not read
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
NO_SCENARIO = "NO_SCENARIO"  # a requirement of a selected tag that no scenario of the run proves


@dataclass
class BundleFacts:
    """What only the bundle's file knows: its name, hash and signature (the copy beside it)."""

    file: str
    sha256: str
    size: int
    signature: Any = None  # harness.evidence.signature.SignatureReport


@dataclass
class Source:
    """What a report reads: the manifest (as sealed), the findings of each scenario, the
    artefacts by hash, and, for a report beside a bundle, the bundle's own facts."""

    manifest: Mapping[str, Any]
    findings: Mapping[str, list[dict]]
    read: Callable[[str], bytes]
    bundle: BundleFacts | None = None
    equivalence: Any = None  # harness.proof.equivalence.Equivalence, for its section
    head: Callable[[str, int], bytes] | None = None  # an artefact's first bytes (a bundle's: read no more than needed)

    @classmethod
    def of_bundle(cls, bundle: Any, facts: BundleFacts | None = None) -> "Source":
        findings = {r["scenario"]: bundle.findings(r["scenario"]) for r in bundle.manifest.get("results", [])}
        return cls(bundle.manifest, findings, bundle.read_artefact, facts, head=bundle.read_artefact_head)

    @classmethod
    def derived(cls, manifest: Any, findings: Mapping[str, list[Any]], read: Callable[[str], bytes],
                head: Callable[[str, int], bytes] | None = None, facts: BundleFacts | None = None) -> "Source":
        """What a run or a replay derived: a :class:`~harness.evidence.manifest.Manifest` and its findings."""
        return cls(manifest.to_json(), {sid: [f.to_json() for f in items] for sid, items in findings.items()}, read, facts, head=head)

    def read_at_most(self, digest: str, limit: int) -> bytes | None:
        """The artefact's bytes if it holds no more than ``limit`` of them, else None: what a
        manifest declares of a size is not trusted, the bytes are counted as read."""
        data = self.read(digest) if self.head is None else self.head(digest, limit)
        return data if len(data) <= limit else None


def _text(value: Any, lang: str) -> str:
    if isinstance(value, Mapping):
        return str(value.get(lang) or value.get("fr") or "")
    return "" if value is None else str(value)


def _label(meta: Mapping[str, Any] | None) -> str:
    return str((meta or {}).get("label", ""))


def _by_label(item: tuple[str, Any]) -> tuple[str, str]:
    """Artefacts in the order of their labels, then of their hashes: the same page whatever
    order the store listed them in (replay renders it again and compares)."""
    return _label(item[1]), item[0]


# -- the coverage matrix ---------------------------------------------------------------

COLUMNS = ("requirement", "official_ids", "level", "text", "requirement_verdict", "scenario", "scenario_verdict", "findings",
           "evidence")


def _column_titles() -> list:
    return [M("matrix.col.requirement"), M("matrix.col.official_ids"), M("matrix.col.level"), M("matrix.col.text"),
            M("matrix.col.requirement_verdict"), M("matrix.col.scenario"), M("matrix.col.scenario_verdict"),
            M("matrix.col.findings"), M("matrix.col.evidence")]


def _evidence(result: Mapping[str, Any], findings: list[dict], artefacts: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The members a scenario's verdict rests on: what its checks read, and what its findings cite."""
    digests = dict.fromkeys(result.get("inputs", {}).values())
    digests.update(dict.fromkeys(f["artefact"] for f in findings if f.get("artefact")))
    return [(f"artefacts/{d}", d, _label(artefacts.get(d))) for d in digests]


def coverage_rows(source: Source, lang: str) -> list[dict[str, Any]]:
    """One row per requirement and scenario proving it, then one per requirement of a selected
    tag that no scenario of the run proves (``coverage`` in the manifest)."""
    m = source.manifest
    results = {r["scenario"]: r for r in m.get("results", [])}
    artefacts = m.get("artefacts", {})
    rows = []
    for req_id, req in sorted(m.get("requirements", {}).items()):
        for sid in req.get("scenarios", []):
            r = results.get(sid, {})
            f = source.findings.get(sid, [])
            rows.append({
                "requirement": req_id, "official_ids": list(req.get("official_ids", [])), "level": req.get("level", ""),
                "text": _text(req.get("text"), lang), "requirement_verdict": req.get("verdict", ""), "scenario": sid,
                "scenario_verdict": r.get("verdict", ""), "findings": len(f), "evidence": _evidence(r, f, artefacts),
            })
    for req_id, req in sorted(m.get("coverage", {}).get("unproven", {}).items()):
        rows.append({
            "requirement": req_id, "official_ids": list(req.get("official_ids", [])), "level": req.get("level", ""),
            "text": _text(req.get("text"), lang), "requirement_verdict": NO_SCENARIO, "scenario": "",
            "scenario_verdict": "", "findings": 0, "evidence": [],
        })
    return rows


def _cell(value: Any) -> str:
    """A cell's text; one a spreadsheet would take for a formula (=, +, -, @, tab, CR) is
    quoted, since labels and findings carry what the vendor's software sent."""
    if isinstance(value, list) and value and isinstance(value[0], tuple):  # evidence: member, hash, label
        value = "\n".join(f"{member} ({label})" if label else member for member, _digest, label in value)
    elif isinstance(value, list):
        value = " ".join(map(str, value))
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def coverage_csv(source: Source, lang: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([t.render(lang) for t in _column_titles()])
    for row in coverage_rows(source, lang):
        writer.writerow([_cell(row[c]) for c in COLUMNS])
    return ("\ufeff" + out.getvalue()).encode("utf-8")  # the BOM makes spreadsheets read UTF-8


def coverage_xlsx(source: Source, lang: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    ws.title = M("matrix.sheet.coverage").render(lang)[:31]
    ws.append([t.render(lang) for t in _column_titles()])
    for row in coverage_rows(source, lang):
        values = [_cell(row[c]) if c != "findings" else row[c] for c in COLUMNS]
        ws.append(values)
    _shape(ws, (14, 18, 8, 60, 16, 30, 16, 10, 90), Font, Alignment)
    members = wb.create_sheet(M("matrix.sheet.evidence").render(lang)[:31])
    members.append([M("matrix.col.member").render(lang), "SHA-256", M("matrix.col.label").render(lang),
                    M("matrix.col.media_type").render(lang), M("matrix.col.size").render(lang)])
    for digest, meta in sorted(source.manifest.get("artefacts", {}).items(), key=_by_label):
        members.append([f"artefacts/{digest}", digest, _cell(_label(meta)), _cell(meta.get("media_type", "")), int(meta.get("size", 0))])
    _shape(members, (80, 66, 40, 24, 12), Font, Alignment)
    for sheet in (ws, members):  # a value is text, whatever its first character (no formula from a label)
        for cells in sheet.iter_rows(min_row=2):
            for c in cells:
                if isinstance(c.value, str):
                    c.data_type = "s"
    when = _when(source.manifest.get("finished_at"))
    wb.properties.created = wb.properties.modified = when
    out = io.BytesIO()
    wb.save(out)
    return _fixed_zip(out.getvalue(), when.strftime("%Y-%m-%dT%H:%M:%SZ"))


def _when(stamp: Any) -> Any:
    """The run's end as the workbook's date (the same bytes whenever it is rendered)."""
    from datetime import datetime

    try:
        return datetime.strptime(str(stamp)[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return datetime(1980, 1, 1)


def _fixed_zip(data: bytes, when: str) -> bytes:
    """``data`` (a workbook) the same whenever it is written: openpyxl dates its zip members
    and the workbook's "modified" property now; they take the run's end (the members 1980)."""
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", lambda m: m.group(1) + when.encode(), body)
            dst.writestr(zipfile.ZipInfo(info.filename, (1980, 1, 1, 0, 0, 0)), body, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _shape(ws: Any, widths: Iterable[int], Font: Any, Alignment: Any) -> None:
    from openpyxl.utils import get_column_letter

    for i, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    for c in ws[1]:
        c.font = Font(bold=True)
    for cells in ws.iter_rows(min_row=2):
        for c in cells:
            c.alignment = Alignment(wrap_text=True, vertical="top")
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = ws.dimensions


# -- the HTML page -----------------------------------------------------------------------


@dataclass
class _Image:
    label: str
    digest: str
    media_type: str
    size: int
    uri: str | None  # None: over the page's budget, listed by hash


@dataclass
class _Scenario:
    id: str
    title: str
    verdict: str
    criticality: str
    tags: list[str]
    requirements: list[str]
    reason: str
    collect: list[dict]
    checks: list[dict]
    findings: list[dict]
    meta: str = ""
    images: list[_Image] = field(default_factory=list)


def _exchange(source: Source, digest: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    row = {"label": _label(meta), "digest": digest, "size": meta.get("size", 0), "media_type": meta.get("media_type", ""),
           "method": None, "url": None, "status": None, "elapsed_ms": None, "started_at": None, "error": None}
    if _label(meta).startswith("exchange:") and int(meta.get("size", 0)) <= MAX_EXCHANGE_READ:
        try:
            record = parse_json(source.read(digest), source=digest)  # a bundle may be hostile: bounded depth and size
        except (UnsafeInput, ValueError, KeyError, OSError):
            return row
        if isinstance(record, dict):
            row.update({k: record.get(k) for k in ("method", "url", "status", "elapsed_ms", "started_at")})
            row["error"] = record.get("error")
    return row


# What a label names when its artefact is an exchange with the software or a simulator (the
# core's HTTP records, and the plugins' protocol transcripts: SOAP, SMTP/IMAP sessions,
# MLLP, FHIR searches); the other artefacts (documents, metadata, renderings) are listed
# with every artefact.
_EXCHANGE = re.compile(r"^(exchange|request):|(^|[.\-])(request|response|session|mllp|mllp-ack|mllp-session|message|delivered|reply|"
                       r"receive|send|fhir-search|feed)(:|/|$)")


def _is_exchange(label: str) -> bool:
    return bool(_EXCHANGE.search(label))


def _labels() -> dict[str, Any]:
    return {
        "title": M("html.title"), "run": M("html.run"), "product": M("html.product"), "started": M("html.started"),
        "finished": M("html.finished"), "harness": M("html.harness"), "bundle": M("html.bundle"), "inside": M("html.inside"),
        "signature": M("html.signature"), "requirements": M("html.requirements"), "scenarios": M("html.scenarios"),
        "verdict": M("html.verdict"), "rule": M("html.rule"), "severity": M("html.severity"),
        "location": M("html.location"), "message": M("html.message"), "evidence": M("html.evidence"),
        "exchanges": M("html.exchanges"), "screenshots": M("html.screenshots"), "not_inlined": M("html.not_inlined"),
        "collect": M("html.collect"), "checks": M("html.checks"), "assertions": M("html.assertions"), "none": M("html.none"),
        "official_ids": M("html.official_ids"), "level": M("html.level"), "incidents": M("html.incidents"),
        "coverage_unproven": M("html.unproven"), "equivalence": M("html.equivalence"), "artefacts": M("html.artefacts"),
        "why": M("html.why"), "status": M("html.status"),
        "size": M("html.size"), "generated": M("html.generated"), "bytes": M("html.bytes"),
    }


def _signature_text(facts: BundleFacts | None) -> Any:
    if facts is None:
        return M("html.signature_inside")
    sig = facts.signature
    if sig is None or sig.status == "unsigned":
        return M("html.unsigned")
    if sig.status == "valid":
        when = sig.timestamped_at and M("html.timestamped", at=sig.timestamped_at, tsa=sig.tsa or "-")
        return M("html.signed", signer=sig.signer, issuer=sig.issuer, at=sig.signed_at or "-",
                 timestamp=when.render() if when else "-")
    return M("html.signature_invalid", problems="; ".join(p.render() for p in sig.problems) or "-")


def _inline(source: Source, digest: str, meta: Mapping[str, Any], budget: int) -> tuple[_Image, int]:
    """An image as a ``data:`` URI while the page's budget lasts; past it, listed by hash.
    The budget counts the bytes read, not the size the manifest declares."""
    size = int(meta.get("size", 0))
    uri = None
    if size <= budget:
        try:
            data = source.read_at_most(digest, budget)
        except (KeyError, OSError, BundleError):
            data = None
        if data is not None:
            uri = f"data:{meta['media_type']};base64," + base64.b64encode(data).decode("ascii")
            budget -= len(data)
    return _Image(_label(meta), digest, meta["media_type"], size, uri), budget


def html_model(source: Source, lang: str) -> dict[str, Any]:
    m = source.manifest
    artefacts = m.get("artefacts", {})
    scenarios_def = {s["id"]: s for s in m.get("scenarios", [])}
    budget = MAX_INLINE_IMAGES
    scenarios = []
    seen_images: set[str] = set()
    for r in m.get("results", []):
        sid = r["scenario"]
        d = scenarios_def.get(sid, {})
        found = source.findings.get(sid, [])
        sc = _Scenario(
            id=sid, title=_text(d.get("title"), lang), verdict=r["verdict"], criticality=d.get("criticality", ""),
            tags=list(d.get("tags", [])), requirements=list(r.get("requirements", [])), reason=_text(r.get("reason"), lang),
            collect=[{"name": c["name"], "status": c["status"], "message": _text(c.get("message"), lang),
                      "outputs": [(k, v, _label(artefacts.get(v))) for k, v in sorted(c.get("outputs", {}).items())],
                      "refused": [(x["item"], _text(x["reason"], lang)) for x in c.get("refused", [])]} for c in r.get("collect", [])],
            checks=[{"name": c["name"], "verdict": c["verdict"], "assertions": c.get("assertions", 0),
                     "reasons": [_text(x, lang) for x in c.get("reasons", [])]} for c in r.get("checks", [])],
            findings=[{"rule": f["rule"], "severity": f["severity"], "requirement": f["requirement"], "location": f["location"],
                       "message": _text(f.get("message"), lang), "artefact": f.get("artefact")} for f in found],
        )
        sc.meta = (M("html.scenario_meta_tags", requirements=", ".join(sc.requirements), criticality=sc.criticality, tags=", ".join(sc.tags))
                   if sc.tags else M("html.scenario_meta", requirements=", ".join(sc.requirements), criticality=sc.criticality)).render(lang)
        for digest in list(r.get("inputs", {}).values()) + [f["artefact"] for f in found if f.get("artefact")]:
            meta = artefacts.get(digest, {})
            if meta.get("media_type") not in IMAGE_TYPES or digest in seen_images:
                continue
            seen_images.add(digest)
            image, budget = _inline(source, digest, meta, budget)
            sc.images.append(image)
        scenarios.append(sc)
    # screenshots no scenario's inputs name (a collector's extra views) still belong in the page
    loose = []
    for digest, meta in sorted(artefacts.items(), key=_by_label):
        if meta.get("media_type") in IMAGE_TYPES and digest not in seen_images:
            image, budget = _inline(source, digest, meta, budget)
            loose.append(image)
    verdicts = {r["scenario"]: r["verdict"] for r in m.get("results", [])}
    requirements = [{"id": k, "verdict": v.get("verdict", ""), "text": _text(v.get("text"), lang), "source": v.get("source", ""),
                     "level": v.get("level", ""), "official_ids": list(v.get("official_ids", [])),
                     "scenarios": [(s, verdicts.get(s, "")) for s in v.get("scenarios", [])]}
                    for k, v in sorted(m.get("requirements", {}).items())]
    unproven = [{"id": k, "text": _text(v.get("text"), lang), "official_ids": list(v.get("official_ids", [])), "tags": v.get("tags", [])}
                for k, v in sorted(m.get("coverage", {}).get("unproven", {}).items())]
    exchanges = [_exchange(source, d, meta) for d, meta in sorted(artefacts.items(), key=_by_label)
                 if _is_exchange(_label(meta))]
    counts: dict[str, int] = {}
    for verdict in verdicts.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    product = m.get("target", {}).get("product", {})
    return {
        "lang": lang, "L": {k: v.render(lang) for k, v in _labels().items()},
        "run_id": m.get("run_id", ""), "started_at": m.get("started_at", ""), "finished_at": m.get("finished_at", ""),
        "harness_version": m.get("harness", {}).get("version", ""),
        "format": m.get("format", ""), "product": product,
        "bundle": source.bundle, "signature": _signature_text(source.bundle).render(lang),
        "counts": sorted(counts.items(), key=lambda kv: list(Verdict.__members__).index(kv[0]) if kv[0] in Verdict.__members__ else 99),
        "requirements": requirements, "unproven": unproven, "scenarios": scenarios, "loose_images": loose,
        "exchanges": exchanges, "incidents": [_text(i, lang) for i in m.get("incidents", [])],
        "artefacts": [(d, _label(meta), meta.get("media_type", ""), meta.get("size", 0))
                      for d, meta in sorted(artefacts.items(), key=_by_label)],
        "equivalence": source.equivalence.rows(lang) if source.equivalence is not None else None,
        "equivalence_summary": source.equivalence.summary().render(lang) if source.equivalence is not None else "",
    }


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("harness", "templates"), autoescape=select_autoescape(default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2")


def render_html(source: Source, lang: str) -> bytes:
    return _template().render(**html_model(source, lang)).encode("utf-8")


# -- writing -------------------------------------------------------------------------------


def members(source: Source, lang: str) -> dict[str, bytes]:
    """The reports as bundle members (``reports/…``)."""
    return {REPORTS + HTML: render_html(source, lang), REPORTS + CSV: coverage_csv(source, lang),
            REPORTS + XLSX: coverage_xlsx(source, lang)}


def bundle_facts(bundle: Any) -> BundleFacts:
    """An open :class:`~harness.evidence.bundle.Bundle`'s file hash (read a piece at a time: a bundle
    may hold gigabytes) and signature status, from the verification it already passed."""
    import hashlib

    from ..evidence.signature import verify_signature

    digest, size = hashlib.sha256(), 0
    with open(bundle.path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(chunk)
            size += len(chunk)
    report = bundle.verified
    return BundleFacts(bundle.path.name, digest.hexdigest(), size, verify_signature(report.manifest_bytes, report.signature, []))


def write_beside(bundle_path: Path, lang: str, out_dir: Path | None = None, equivalence: Any = None, replayed: Any = None,
                 sealed_here: bool = False) -> list[Path]:
    """Write ``<run-id>.html`` and the matrix beside the bundle (or in ``out_dir``), rendered,
    never copied: from ``replayed`` (a :class:`~harness.proof.replay.ReplayReport`: what the checks
    conclude again from the artefacts) when given, else from the sealed record of the run that
    has just derived it. ``sealed_here``: this process has just sealed the bundle, rendering its
    matrix from that same record in ``lang``: the matrix members are taken from the verified
    bundle (the same bytes, measured: rendering the spreadsheet again cost 0.34 s of a 4 s run);
    a bundle from elsewhere is always rendered."""
    from ..evidence.bundle import Bundle

    bundle_path = Path(bundle_path)
    out_dir = Path(out_dir) if out_dir else bundle_path.parent
    stem = bundle_path.name[:-4] if bundle_path.name.endswith(".zip") else bundle_path.name
    with Bundle(bundle_path) as bundle:
        facts = bundle_facts(bundle)
        if replayed is not None and replayed.manifest is not None:
            source = Source.derived(replayed.manifest, replayed.findings, bundle.read_artefact, bundle.read_artefact_head, facts)
        else:
            source = Source.of_bundle(bundle, facts)
        source.equivalence = equivalence
        outputs = {f"{stem}.html": render_html(source, lang)}
        for suffix, member, render in ((".coverage.csv", CSV, coverage_csv), (".coverage.xlsx", XLSX, coverage_xlsx)):
            kept = bundle.read_member(REPORTS + member) if sealed_here and replayed is None and equivalence is None else b""
            outputs[stem + suffix] = kept or render(source, lang)
    written = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in outputs.items():
        atomic_write(out_dir / name, data, shared=True)
        written.append(out_dir / name)
    return written

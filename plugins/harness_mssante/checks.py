"""Checks of the MSSanté plugin: the SMTP exchanges, each message, its XDM archive, the
archive's metadata and their agreement with the documents, from the recorded bytes alone
(archives read a piece at a time through ``ctx.open``)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from harness import CheckContext, Evaluation, SafeArchive, Severity, UnsafeInput, catalogue, check
from harness_cda.document import NotCda, read_cda

from . import mail

M = catalogue(__name__)

JUDGED = ("accepted", "file")  # messages whose content is judged (the others were refused)
OUTCOMES = {"too-large": "transport.too_large", "line-too-long": "transport.line_too_long", "bare-lf": "transport.bare_lf",
            "deadline": "transport.message_deadline",
            "interrupted": "transport.interrupted"}
MAX_DOCUMENT = 32 * 1024 * 1024
HL7 = {"cda": "urn:hl7-org:v3"}


def _session(ctx: CheckContext, ev: Evaluation) -> dict | None:
    if not ctx.has("mss.session"):
        ev.error(M("check.no_session"))
        return None
    return ctx.json("mss.session")


def _messages(ctx: CheckContext, ev: Evaluation, session: dict) -> list[dict]:
    judged = [m for m in session["messages"] if m["outcome"] in JUDGED]
    if not judged:
        ev.inconclusive(M("check.no_message_refused", count=len(session["messages"])) if session["messages"] else M("check.no_message"))
    return judged


def _where(m: dict) -> str:
    return m["input"] + (f" ({m['file']})" if m.get("file") else "")


@check(reads=["mss.session"])
def check_transport(ctx: CheckContext, ev: Evaluation) -> None:
    """Each message accepted by the operator (simulator): within the size, lines within the
    SMTP limit, sent in time; over TLS (STARTTLS) when the operator offers it."""
    session = _session(ctx, ev)
    if session is None:
        return
    if session["source"] != "simulator":
        ev.inconclusive(M("transport.files", folder=session.get("folder", "-")))
        return
    if not session["connections"]:
        ev.inconclusive(M("check.no_connection"))
        return
    tls_offered = session["tls"] != "plain"
    by_connection: dict[int, list[dict]] = {}
    for m in session["messages"]:
        by_connection.setdefault(m["connection"], []).append(m)
    for c in session["connections"]:
        where = f"{session['simulator']} connection {c['n']} ({c['peer']})"
        ev.judged()
        for reply in c["replies"]:
            code = reply[:3]
            if code in ("552", "530", "554", "550") and not by_connection.get(c["n"]):
                rule = "MSS-SMTP-02" if code == "530" else "MSS-SMTP-01"
                ev.add(rule=rule, severity=Severity.ERROR, location=where, message=M("transport.refused_command", reply=reply[:200]))
        if c.get("closed") == "deadline" and not by_connection.get(c["n"]):
            ev.add(rule="MSS-SMTP-01", severity=Severity.ERROR, location=where, message=M("transport.deadline"))
    if not session["messages"] and not ev.findings:
        ev.inconclusive(M("check.no_message"))  # connected, sent nothing: no message to judge
    for m in session["messages"]:
        where = f"{_where(m)} (connection {m['connection']})"
        ev.check(m["outcome"] == "accepted", rule="MSS-SMTP-01", location=where,
                 message=M(OUTCOMES.get(m["outcome"], "transport.refused"), reply=m["reply"] or "-", read=m["read"], kept=m["kept"],
                           limit=session.get("max_message", 0)))
        if tls_offered:
            ev.check(bool(m["tls"]), rule="MSS-SMTP-02", location=where, message=M("transport.no_tls"))


@check(reads=["mss.session", "mss-raw"])
def check_message(ctx: CheckContext, ev: Evaluation) -> None:
    """MIME structure, the XDM attachment (once, its name, media type and encoding), the
    text for the person, and the human-readable copy when the target expects one."""
    session = _session(ctx, ev)
    if session is None:
        return
    human_copy = bool(ctx.target.section("mssante").get("human_copy", False))
    for m in _messages(ctx, ev, session):
        ev.judged()
        reading = mail.read(ctx.read(m["input"]), human_copy=human_copy)
        for p in reading.problems:
            if p.rule.startswith(("MSS-MIME", "MSS-XDM", "MSS-HUMAN")):
                ev.add(rule=p.rule, severity=p.severity, location=f"{_where(m)} {p.location}", artefact=ctx.artefact(m["input"]).sha256,
                       message=p.message)


def _patient(root) -> tuple[str, list[str], str]:
    def text(path: str) -> list[str]:
        return [" ".join("".join(e.itertext()).split()) for e in root.xpath(path, namespaces=HL7)]

    base = "cda:recordTarget/cda:patientRole/cda:patient"
    family = (text(f"{base}/cda:name/cda:family[@qualifier='BR']") or text(f"{base}/cda:name/cda:family") or [""])[0]
    # INS in CDA (CI-SIS): the first given name (qualifier BR), the used one (CL), the list (no qualifier)
    listed = text(f"{base}/cda:name/cda:given[not(@qualifier)]")
    givens = [g for g in dict.fromkeys(text(f"{base}/cda:name/cda:given[@qualifier='BR']") + text(f"{base}/cda:name/cda:given[@qualifier='CL']")
                                       + [x.split()[0] for x in listed if x.split()] + listed) if g]
    birth = (root.xpath(f"{base}/cda:birthTime/@value", namespaces=HL7) or [""])[0]
    return family, givens, birth


@check(reads=["mss.session", "mss-raw", "mss-doc"])
def check_subject(ctx: CheckContext, ev: Evaluation) -> None:
    """The subject follows ``XDM/1.0/DDM+<title> <NAME> <given name> <birth date>``, and
    says the title, patient and birth date of the document the archive carries."""
    session = _session(ctx, ev)
    if session is None:
        return
    for m in _messages(ctx, ev, session):
        reading = mail.read(ctx.read(m["input"]))
        ev.judged()
        content, problems = mail.check_subject(reading.subject)
        for p in problems:
            ev.add(rule=p.rule, severity=p.severity, location=f"{_where(m)} {p.location}", message=p.message)
        if content is None or problems:
            continue
        documents = [d["input"] for a in m["archives"] for d in a["documents"]]
        if not documents:
            ev.inconclusive(M("subject.no_document", message=_where(m)))
        for name in documents:
            try:
                doc = read_cda(ctx.read(name), name)
            except UnsafeInput as exc:
                ev.inconclusive(M("subject.unreadable", document=name, reason=exc.detail))
                continue
            title = " ".join("".join(doc.root.xpath("cda:title//text()", namespaces=HL7)).split())
            family, givens, birth = _patient(doc.root)
            ev.judged()
            for p in mail.subject_agreement(content, title=title, family=family, givens=givens, birth=birth, doc=name):
                ev.add(rule=p.rule, severity=p.severity, location=f"{_where(m)} {p.location}", message=p.message)


@check(reads=["mss.session", "mss-raw"])
def check_addresses(ctx: CheckContext, ev: Evaluation) -> None:
    """Every address of the message and of its envelope is well formed and in an MSSanté
    domain (``[mssante] domains``, each covering its subdomains)."""
    session = _session(ctx, ev)
    if session is None:
        return
    domains = tuple(ctx.target.section("mssante").get("domains") or mail.DEFAULT_DOMAINS)
    for m in _messages(ctx, ev, session):
        headers = mail.header_addresses(ctx.read(m["input"]))
        envelope = (m["mail_from"], m["rcpt_tos"]) if session["source"] == "simulator" else None
        ev.judged()
        if not any(h == "To" for h, _ in headers):
            ev.add(rule="MSS-ADDR-01", severity=Severity.ERROR, location=f"{_where(m)} header To", message=M("address.no_recipient"))
        for p in mail.check_addresses(headers, envelope, domains):
            ev.add(rule=p.rule, severity=p.severity, location=f"{_where(m)} {p.location}", message=p.message)


@contextmanager
def _archive(ctx: CheckContext, name: str) -> Iterator[SafeArchive]:
    from harness_xds.xdm import LIMITS

    archive = SafeArchive(ctx.open(name), name=name, limits=LIMITS)  # raises UnsafeInput: said by the caller
    try:
        yield archive
    finally:
        archive.close()


# XDM readings by (archive SHA-256, input name): the archive, metadata and agreement checks
# judge the same archive; its documents are hashed once per process, not once per check.
_XDM: dict[tuple[str, str], object] = {}
_XDM_MAX = 32


def _reading(ctx: CheckContext, name: str, archive: SafeArchive):
    from harness_xds import xdm

    key = (ctx.artefact(name).sha256, name)
    if key not in _XDM:
        if len(_XDM) >= _XDM_MAX:
            _XDM.pop(next(iter(_XDM)))
        _XDM[key] = xdm.read(archive, source=name)
    return _XDM[key]


def _readings(ctx: CheckContext, ev: Evaluation, *, archive_check: bool = False):
    """(message, archive input, open archive, XDM reading) of each archive judged; an archive
    the safe reader refuses is a finding (XDM-ARC-00) of the archive check only."""
    session = _session(ctx, ev)
    if session is None:
        return
    seen = 0
    for m in _messages(ctx, ev, session):
        for a in m["archives"]:
            seen += 1
            try:
                with _archive(ctx, a["input"]) as archive:
                    yield m, a, archive, _reading(ctx, a["input"], archive)
            except UnsafeInput as exc:
                ev.judged()
                if archive_check:
                    ev.add(rule="XDM-ARC-00", severity=Severity.ERROR, location=a["input"], artefact=ctx.artefact(a["input"]).sha256,
                           message=M("archive.refused", reason=exc.detail))
                else:
                    ev.inconclusive(M("archive.unreadable", archive=a["input"]))
    if not seen and session["messages"] and any(m["outcome"] in JUDGED for m in session["messages"]):
        ev.inconclusive(M("archive.none"))


def _report(ctx: CheckContext, ev: Evaluation, keep, *, archive_check: bool = False) -> None:
    for m, a, archive, reading in _readings(ctx, ev, archive_check=archive_check):
        ev.judged()
        for p in reading.problems:
            if keep(p.rule):
                ev.add(rule=p.rule, severity=p.severity, location=p.location, artefact=ctx.artefact(a["input"]).sha256, message=p.message)


@check(reads=["mss.session", "mss-xdm"])
def check_archive(ctx: CheckContext, ev: Evaluation) -> None:
    """Layout (README.TXT, INDEX.HTM, IHE_XDM/<subset>/METADATA.XML), every listed document
    present and every document listed, hash and size of the bytes, URI resolution."""
    _report(ctx, ev, lambda rule: rule.startswith("XDM-") and rule != "XDM-MD-00", archive_check=True)


@check(reads=["mss.session", "mss-xdm"])
def check_metadata(ctx: CheckContext, ev: Evaluation) -> None:
    """Each subset's METADATA.XML: namespace-well-formed, one submission set, document
    entries with what IHE XDM and the French profile require, schemes, associations."""
    _report(ctx, ev, lambda rule: rule.startswith("XDS-MD-") or rule == "XDM-MD-00")


@check(reads=["mss.session", "mss-xdm"])
def check_metadata_agreement(ctx: CheckContext, ev: Evaluation) -> None:
    """Each CDA document of each archive against its metadata entry; each disagreement
    names the metadata and the document, both inside the archive."""
    from harness_xds import agreement

    seen = 0
    for m, a, archive, reading in _readings(ctx, ev):
        for subset in reading.subsets:
            if subset.submission is None:
                continue
            for d in subset.documents:
                entry = subset.submission.document(d.entry_id) if d.entry_id else None
                if entry is None or "xml" not in (entry.attributes.get("mimeType") or "") or d.size > MAX_DOCUMENT:
                    continue
                data = archive.read(d.path)
                where_doc = f"{a['input']}:{d.path}"
                try:
                    doc = read_cda(data, where_doc)
                except NotCda:
                    continue  # XML that is no CDA document (an IHE DSG signature, say): no header to agree with
                except UnsafeInput as exc:
                    ev.check(False, rule="CDA-DOC-01", location=where_doc, message=M("agreement.unreadable", reason=exc.detail))
                    continue
                seen += 1
                ev.judged()
                for p in agreement.located(agreement.disagreements(entry, data, doc.root), f"{a['input']}:{subset.metadata_path}", where_doc):
                    ev.add(rule=p.rule, severity=p.severity, location=p.location, artefact=ctx.artefact(a["input"]).sha256, message=p.message)
    if not seen and not ev.inconclusive_reasons and not ev.errors:
        ev.inconclusive(M("agreement.no_document"))


def document_checks() -> dict:
    """The built-in CDA checks (header, body, INS) on the documents of the archives."""
    from harness_cda.builtin import RULES, document_check

    return {f"mssante.{key}": document_check(rules, ("mss-doc",)) for key, rules in RULES.items()}


@check(reads=["mss.receive", "mss-delivered", "mss-reply"])
def check_integration(ctx: CheckContext, ev: Evaluation) -> None:
    """Each delivered message opened; each archive the software cannot integrate answered by
    a KO (``[KO Intégration système !]`` mail or an MDN saying the failure) to its sender,
    naming it; no KO for the conformant one."""
    from . import receive

    if not ctx.has("mss.receive"):
        ev.error(M("check.no_receive"))
        return
    record = ctx.json("mss.receive")
    if not record["delivered"]:
        ev.inconclusive(M("receive.nothing_delivered"))
        return
    opened = {s["message_id"] for s in record["mailbox_state"] if "\\Seen" in s["flags"]}
    replies = []
    for r in record["replies"]:
        if r["outcome"] != "accepted":
            continue  # refused by the operator: the transport scenario says so
        replies.append((r["input"], receive.read_reply(ctx.read(r["input"]))))
    named = set()
    for d in record["delivered"]:
        where = f"{d['input']} ({d['id']}, {d['message_id']})"
        answers = [(name, r) for name, r in replies if d["message_id"] in r.refers_to]
        named.update(name for name, _ in answers)
        kos = [(name, r) for name, r in answers if r.ko]
        if not ev.check(d["message_id"] in opened or bool(answers), rule="MSS-RECV-01", location=where, message=M("receive.unread")):
            continue
        if d["expected"] == "rejected":
            ev.check(bool(kos), rule="MSS-RECV-02", location=where, message=M("receive.no_ko", faults=", ".join(d["faults"])))
        else:
            ev.check(not kos, rule="MSS-RECV-03", location=f"{where} ↔ {', '.join(n for n, _ in kos)}",
                     message=M("receive.ko_on_good", subject=kos[0][1].subject[:200] if kos else "-"))
        for name, r in kos:
            ev.check(d["sender"].lower() in r.to, rule="MSS-RECV-04", location=f"{name} ↔ {where}",
                     message=M("receive.ko_not_to_sender", to=", ".join(r.to) or "-", sender=d["sender"]))
    # the software reads its mailbox over TLS: a login sent in clear, even refused, gave the
    # password away (a record of an earlier version has no logins: nothing to judge)
    for login in record.get("imap_logins", []):
        ev.check(login["tls"], rule="MSS-RECV-06", location=f"imap {record['mailbox']} (port {login['port']}, {login['user'] or '-'})",
                 message=M("receive.imap_plain", outcome=login["outcome"]))
    for name, r in replies:
        if r.ko and name not in named:
            ev.add(rule="MSS-RECV-05", severity=Severity.WARNING, location=name, message=M("receive.ko_unnamed", subject=r.subject[:200]))

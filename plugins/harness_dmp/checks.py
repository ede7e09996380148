"""Checks of the DMP plugin: the built-in CDA rules (:mod:`harness_cda.builtin`, no kit) on
every document judged, and what the software sent to the simulator, from the recorded bytes
alone, so that replay re-derives them offline."""
from __future__ import annotations

from harness import CheckContext, Evaluation, Severity, Text, UnsafeInput, catalogue, check
from harness_cda.builtin import RULES, document_check
from harness_cda.document import read_cda

M = catalogue(__name__)

# Where documents come from: files and the software's index ([cda] documents, cda_index,
# collected by the kit plugin's ``cda.files``), or what the software submitted to the DMP
# simulator.
FILES = ("doc", "doc-live")
SUBMITTED = ("dmp-doc",)


def document_checks() -> dict:
    """``dmp.cda_header`` and the like on files and index documents; ``dmp.submitted_header``
    and the like on what the software submitted to the simulator."""
    out = {}
    for key, rules in RULES.items():
        out[f"dmp.{key}"] = document_check(rules, FILES)
        out[f"dmp.submitted_{key.removeprefix('cda_')}"] = document_check(rules, SUBMITTED)
    return out


# -- what the software sent to the DMP simulator ------------------------------------------

UNKNOWN_CA = {2, 18, 19, 20, 21}  # OpenSSL: issuer unknown, self-signed, local issuer unknown, cannot verify leaf
CERT_REVOKED = 23  # OpenSSL's X509_V_ERR_CERT_REVOKED: the simulator records a certificate its OCSP responder says revoked so
WARNING_DAYS = 30
MAX_ATTEMPTS = 3


def _session(ctx: CheckContext, ev: Evaluation) -> dict | None:
    if not ctx.has("dmp.session"):
        ev.error(M("dmp.no_session"))
        return None
    return ctx.json("dmp.session")


def _where(e: dict) -> str:
    return f"dmp-request/{e['n']:03d} ({e['transaction'] or '?'})"


def _exchanges(ctx: CheckContext, ev: Evaluation, session: dict) -> list[dict]:
    exchanges = session["exchanges"]
    if not exchanges:
        refused = [c for c in session["connections"] if not c["accepted"]]
        ev.inconclusive(M("dmp.no_exchange_refused", count=len(refused)) if refused else M("dmp.no_exchange"))
    return exchanges


def _answered(ev: Evaluation, e: dict) -> bool:
    """One exchange answered with success; each IHE error it got is a finding."""
    ok = ev.check(e["outcome"] == "Success", rule="DMP-TX-01", location=_where(e),
                  message=M("dmp.not_success", transaction=e["transaction"] or "?", outcome=e["outcome"] or "-", status=e["http_status"]))
    for err in e["errors"]:
        ev.add(rule="DMP-TX-02", severity=Severity.ERROR, location=_where(e),
               message=M("dmp.registry_error", code=err["code"], context=Text.same(err["context"])))
    return ok


@check(reads=["dmp.session"])
def check_feed(ctx: CheckContext, ev: Evaluation) -> None:
    """ITI-41: every submission accepted, and a document replaced through RPLC."""
    session = _session(ctx, ev)
    if session is None:
        return
    provides = [e for e in _exchanges(ctx, ev, session) if e["transaction"] == "ITI-41"]
    if session["exchanges"]:
        ev.check(bool(provides), rule="DMP-FEED-01", location=session["simulator"], message=M("dmp.no_provide"))
    for e in provides:
        _answered(ev, e)
    if provides:
        ev.check(any(e["outcome"] == "Success" and e["facts"].get("replaced") for e in provides), rule="DMP-FEED-02",
                 location=session["simulator"], message=M("dmp.no_replacement"))


@check(reads=["dmp.session"])
def check_consult(ctx: CheckContext, ev: Evaluation) -> None:
    """ITI-18 and ITI-43 answered, the documents retrieved are those submitted; ITI-57."""
    session = _session(ctx, ev)
    if session is None:
        return
    exchanges = _exchanges(ctx, ev, session)
    if not exchanges:
        return
    for transaction, rule in (("ITI-18", "DMP-CONS-01"), ("ITI-43", "DMP-CONS-02")):
        done = [e for e in exchanges if e["transaction"] == transaction]
        ev.check(bool(done), rule=rule, location=session["simulator"], message=M("dmp.missing_transaction", transaction=transaction))
        for e in done:
            _answered(ev, e)
    submitted = {d["unique"]: d["sha256"] for e in exchanges if e["transaction"] == "ITI-41" for d in e["facts"].get("submitted", [])}
    for e in exchanges:
        for unique, digest in e["facts"].get("returned", {}).items():
            if unique in submitted:  # what the run submitted comes back byte for byte
                ev.check(submitted[unique] == digest, rule="DMP-CONS-03", location=_where(e), message=M("dmp.retrieved_differs", unique=unique))
    updates = [e for e in exchanges if e["transaction"] == "ITI-57"]
    if not updates:
        ev.add(rule="DMP-CONS-04", severity=Severity.WARNING, location=session["simulator"], message=M("dmp.no_update"))
    for e in updates:
        _answered(ev, e)


def _submissions(ctx: CheckContext, session: dict):
    from harness_xds import ebrim

    for e in session["exchanges"]:
        name = f"dmp-meta/{e['n']:03d}"
        if e["transaction"] != "ITI-41" or not ctx.has(name):
            continue
        yield e, name, ebrim.read_submission(ebrim.find_request(ctx.xml(name).getroot()))


@check(reads=["dmp.session", "dmp-meta"])
def check_metadata(ctx: CheckContext, ev: Evaluation) -> None:
    """The metadata of each submission: IHE XDS and the French profile."""
    from harness_xds import rules

    session = _session(ctx, ev)
    if session is None:
        return
    seen = 0
    for e, name, sub in _submissions(ctx, session):
        seen += 1
        ev.judged()
        for p in rules.check_submission(sub, "xds"):
            ev.add(rule=p.rule, severity=p.severity, location=f"{name} {p.location}", artefact=ctx.artefact(name).sha256, message=p.message)
    if not seen:
        ev.inconclusive(M("dmp.no_metadata"))


@check(reads=["dmp.session", "dmp-meta", "dmp-doc"])
def check_metadata_agreement(ctx: CheckContext, ev: Evaluation) -> None:
    """Each submitted document's metadata against its CDA header."""
    from harness_xds import agreement

    session = _session(ctx, ev)
    if session is None:
        return
    seen = 0
    for e, name, sub in _submissions(ctx, session):
        for d in next((x["documents"] for x in session["exchanges"] if x["n"] == e["n"]), []):
            entry = sub.document(d["entry"])
            if entry is None:
                continue
            data = ctx.read(d["input"])
            try:
                doc = read_cda(data, d["input"])
            except UnsafeInput as exc:
                ev.check(False, rule="CDA-DOC-01", location=d["input"], message=M("check.unreadable", reason=exc.detail))
                continue
            seen += 1
            ev.judged()
            for p in agreement.located(agreement.disagreements(entry, data, doc.root), name, d["input"]):
                ev.add(rule=p.rule, severity=p.severity, location=p.location, artefact=ctx.artefact(d["input"]).sha256, message=p.message)
    if not seen:
        ev.inconclusive(M("dmp.no_document_submitted"))


@check(reads=["dmp.session", "dmp.trust", "dmp-vihf"])
def check_vihf(ctx: CheckContext, ev: Evaluation) -> None:
    """The VIHF of each call: present, signed by a trusted certificate, valid when received,
    with the attributes required, about the request's patient; its software version is the
    product's."""
    import datetime as dt

    from cryptography import x509

    from . import vihf

    session = _session(ctx, ev)
    if session is None:
        return
    trusted = x509.load_pem_x509_certificates(ctx.read("dmp.trust"))
    declared = str(ctx.target.product.get("version", ""))
    for e in _exchanges(ctx, ev, session):
        name = f"dmp-vihf/{e['n']:03d}"
        at = dt.datetime.strptime(e["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        assertion = ctx.xml(name).getroot() if ctx.has(name) else None
        reading = vihf.check(assertion, trusted=trusted, at=at, patient=e["facts"].get("patient"))
        ev.judged()
        for p in reading.problems:
            ev.add(rule=p.rule, severity=p.severity, location=f"{_where(e)} {p.location}", message=p.message)
        software = reading.software
        if software is not None and software[1] and declared:
            ev.check(software[1] == declared, rule="DMP-VIHF-06", location=f"{name} LPS_Version",
                     message=M("dmp.vihf_version", vihf=software[1], declared=declared))


@check(reads=["dmp.session"])
def check_tls(ctx: CheckContext, ev: Evaluation) -> None:
    """The client certificate of each connection: present, trusted, valid, not about to expire."""
    import datetime as dt

    session = _session(ctx, ev)
    if session is None:
        return
    connections = session["connections"]
    if not connections:
        ev.inconclusive(M("dmp.no_connection"))
        return
    days = int(ctx.target.section("dmp").get("certificate_warning_days", WARNING_DAYS))
    for c in connections:
        where = f"{session['simulator']} connection {c['n']} ({c['peer']})"
        ev.judged()
        if not c["accepted"]:
            code = c.get("verify_code")
            rule, key = (("DMP-TLS-02", "dmp.tls_expired") if code == 10 else ("DMP-TLS-03", "dmp.tls_not_yet") if code == 9
                         else ("DMP-TLS-04", "dmp.tls_unknown_ca") if code in UNKNOWN_CA
                         else ("DMP-TLS-07", "dmp.tls_revoked") if code == CERT_REVOKED else ("DMP-TLS-06", "dmp.tls_failed"))
            ev.add(rule=rule, severity=Severity.ERROR, location=where, message=M(key, error=c["error"]))
            continue
        cert = c.get("certificate")
        if cert is None:
            ev.add(rule="DMP-TLS-01", severity=Severity.ERROR, location=where, message=M("dmp.tls_none"))
            continue
        at = dt.datetime.strptime(c["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
        end = dt.datetime.strptime(cert["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
        revocation = c.get("revocation") or {}
        if revocation.get("status") == "unchecked":  # accepted, but nobody could say it was not revoked: not proven
            ev.inconclusive(M("dmp.tls_unchecked", error=revocation.get("error", "")))
        if end - at < dt.timedelta(days=days):
            ev.add(rule="DMP-TLS-05", severity=Severity.WARNING, location=where,
                   message=M("dmp.tls_expiring", subject=cert["subject"], end=cert["not_after"], days=days))


@check(reads=["dmp.session", "dmp.status"])
def check_blocked(ctx: CheckContext, ev: Evaluation) -> None:
    """Refused by the DMP, the software stops and says so; it does not call again and again."""
    session = _session(ctx, ev)
    if session is None:
        return
    attempts = session["connections"]
    if not attempts:
        ev.inconclusive(M("dmp.blocked_no_attempt"))
        return
    limit = int(ctx.target.section("dmp").get("max_attempts", MAX_ATTEMPTS))
    first, last = attempts[0]["at"], attempts[-1]["at"]
    ev.check(len(attempts) <= limit, rule="DMP-BLOCK-01", location=session["simulator"],
             message=M("dmp.blocked_retries", count=len(attempts), first=first, last=last, limit=limit))
    if any(c["accepted"] for c in attempts):
        ev.error(M("dmp.blocked_accepted"))
    if not ctx.has("dmp.status"):
        ev.manual_pending(M("dmp.blocked_tell_user"))
        return
    try:
        state = ctx.json("dmp.status").get("dmp", {}).get("state")
    except (UnsafeInput, AttributeError):
        state = None
    ev.check(state == "blocked", rule="DMP-BLOCK-02", location="dmp.status", message=M("dmp.blocked_not_said", state=str(state)))

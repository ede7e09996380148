"""Checks: findings from the recorded XSD results and SVRL, offline and replayable."""
from __future__ import annotations

import json

from harness import CheckContext, Evaluation, Severity

from .engine import EngineError, read_svrl

REQ_XSD = "CISIS-CDA-XSD"
REQUIREMENTS = {
    "header": "CISIS-CDA-STRUCMIN",
    "ihe": "CISIS-CDA-IHE",
    "content-models": "CISIS-CDA-MODELES",
    "ans-models": "CISIS-CDA-MODELES-ANS",
}
_PREFIXES = {"urn:hl7-org:v3": "cda", "urn:hl7-org:sdtc": "sdtc", "http://www.w3.org/2001/XMLSchema-instance": "xsi"}
_ROLE = {"warning": Severity.WARNING, "warn": Severity.WARNING, "info": Severity.INFO, "information": Severity.INFO}


def _pretty(location: str) -> str:
    """``/Q{urn:hl7-org:v3}ClinicalDocument[1]`` -> ``/cda:ClinicalDocument[1]``."""
    for uri, prefix in _PREFIXES.items():
        location = location.replace(f"Q{{{uri}}}", f"{prefix}:")
    return location


def _documents(ctx: CheckContext) -> list[str]:
    return sorted(name[4:] for name in ctx.inputs if name.startswith("doc/"))


def check_xsd(ctx: CheckContext, ev: Evaluation) -> None:
    docs = _documents(ctx)
    if not docs:
        ev.inconclusive(fr="Aucun document CDA dans le dossier indiqué", en="No CDA document in the given folder")
    for doc in docs:
        result = ctx.json(f"xsd/{doc}")
        art = ctx.artefact(f"doc/{doc}").sha256
        if "error" in result:
            ev.error(**result["error"])
            return
        if "unreadable" in result:
            ev.check(False, rule="CDA-DOC-01", requirement=REQ_XSD, location=doc, artefact=art,
                     fr=f"Document illisible : {result['unreadable']['fr']}", en=f"Unreadable document: {result['unreadable']['en']}")
            continue
        ev.check(not result["errors"], rule="CDA-XSD-00", requirement=REQ_XSD, location=doc, artefact=art,
                 fr=f"{len(result['errors'])} erreur(s) de validation XSD (CDA_extended.xsd)",
                 en=f"{len(result['errors'])} XSD validation error(s) (CDA_extended.xsd)")
        for err in result["errors"]:
            ev.add(rule="CDA-XSD-01", requirement=REQ_XSD, severity=Severity.ERROR, location=f"{doc}:{err['line']}:{err['column']}",
                   artefact=art, fr=f"XSD : {err['message']}", en=f"XSD: {err['message']}")


def _schematron_check(key: str):
    requirement = REQUIREMENTS[key]

    def check(ctx: CheckContext, ev: Evaluation) -> None:
        meta = ctx.json(f"sch/{key}")
        for q in meta["quirks"]:
            ev.add(rule="CDA-KIT-01", requirement=requirement, severity=Severity.WARNING if q["kind"] == "include-case" else Severity.INFO,
                   location=f"kit:{q['file']}",
                   fr=f"Particularité du kit ({q['kind']}) : {q['detail']}", en=f"Kit quirk ({q['kind']}): {q['detail']}")
        if meta["error"]:
            ev.error(fr=f"{meta['schematron']} : {meta['error']['fr']}", en=f"{meta['schematron']}: {meta['error']['en']}")
            return
        docs = _documents(ctx)
        if not docs:
            ev.inconclusive(fr="Aucun document CDA dans le dossier indiqué", en="No CDA document in the given folder")
        for doc in docs:
            name = f"svrl/{key}/{doc}"
            if not ctx.has(name):
                ev.error(fr=f"{doc} : aucun rapport SVRL", en=f"{doc}: no SVRL report")
                continue
            art = ctx.artefact(name)
            if art.media_type == "application/json":
                err = json.loads(ctx.read(name))["error"]
                ev.error(fr=f"{doc} : {err['fr']}", en=f"{doc}: {err['en']}")
                continue
            try:
                items = read_svrl(ctx.read(name))
            except EngineError as exc:
                ev.error(fr=f"{doc} : SVRL illisible : {exc.messages['fr']}", en=f"{doc}: unreadable SVRL: {exc.messages['en']}")
                continue
            ev.assertions += 1  # the document was evaluated against every active pattern
            for item in items:
                severity = _ROLE.get((item.role or "").lower(), Severity.ERROR)
                test = " ".join(item.test.split())
                verb_fr = "assertion non vérifiée" if item.kind == "failed-assert" else "rapport émis"
                verb_en = "assertion failed" if item.kind == "failed-assert" else "report fired"
                ev.add(rule=f"{meta['schematron']}#{item.id or item.pattern}", requirement=requirement, severity=severity,
                       location=f"{doc} {_pretty(item.location)}", artefact=art.sha256,
                       fr=f"{item.text} ({verb_fr} : {test})",
                       en=f"{verb_en} in pattern {item.pattern}: {test} — kit message (fr): {item.text}")

    return check


def schematron_checks() -> dict:
    return {f"cda.schematron.{key}": _schematron_check(key) for key in REQUIREMENTS}

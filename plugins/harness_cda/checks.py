"""Checks: findings from the recorded XSD results and SVRL, offline and replayable."""
from __future__ import annotations

import json

from harness import CheckContext, Evaluation, Severity

from .engine import EngineError, read_svrl

REQ_XSD = "CISIS-CDA-XSD"
REQ_VOLET = "CISIS-CDA-VOLET"
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


def _documents(ctx: CheckContext, ev: Evaluation) -> list[str]:
    """The recorded documents; none at all makes the check inconclusive, never PASS."""
    docs = sorted(name[4:] for name in ctx.inputs if name.startswith("doc/"))
    if not docs:
        ev.inconclusive(fr="Aucun document CDA dans le dossier indiqué", en="No CDA document in the given folder")
    return docs


def check_xsd(ctx: CheckContext, ev: Evaluation) -> None:
    for doc in _documents(ctx, ev):
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


def _svrl_findings(ctx: CheckContext, name: str, doc: str, schematron: str, requirement: str) -> tuple[list[dict], dict | None]:
    """Findings of one recorded SVRL (as Evaluation.add keyword sets), or the error it recorded."""
    art = ctx.artefact(name)
    if art.media_type == "application/json":
        return [], json.loads(ctx.read(name))["error"]
    try:
        items = read_svrl(ctx.read(name))
    except EngineError as exc:
        return [], {"fr": f"SVRL illisible : {exc.messages['fr']}", "en": f"unreadable SVRL: {exc.messages['en']}"}
    out = []
    for item in items:
        test = " ".join(item.test.split())
        verb_fr = "assertion non vérifiée" if item.kind == "failed-assert" else "rapport émis"
        verb_en = "assertion failed" if item.kind == "failed-assert" else "report fired"
        out.append(dict(
            rule=f"{schematron}#{item.id or item.pattern}", requirement=requirement,
            severity=_ROLE.get((item.role or "").lower(), Severity.ERROR),
            location=f"{doc} {_pretty(item.location)}", artefact=art.sha256,
            fr=f"{item.text} ({verb_fr} : {test})",
            en=f"{verb_en} in pattern {item.pattern}: {test} — kit message (fr): {item.text}",
        ))
    return out, None


def check_volets(ctx: CheckContext, ev: Evaluation) -> None:
    from .volets import family_and_version

    if ctx.has("sch/volets"):
        for _, meta in sorted(ctx.json("sch/volets").items()):
            _quirks(ev, meta, REQ_VOLET)
    for doc in _documents(ctx, ev):
        chosen = ctx.json(f"volets/{doc}")
        if "unreadable" in chosen:
            continue  # reported by the XSD check (CDA-DOC-01)
        if chosen["basis"] is None:
            ev.add(rule="CDA-VOLET-00", requirement=REQ_VOLET, severity=Severity.WARNING, location=doc,
                   fr="Aucun volet du kit ne reconnaît ce document (code et templateIds) : seuls les profils génériques s'appliquent",
                   en="No volet of the kit recognises this document (code and templateIds): only the generic profiles apply")
            continue
        names = [v.rsplit("/", 1)[-1].removesuffix(".sch") for v in chosen["volets"]]
        if chosen["basis"] == "code":
            ev.add(rule="CDA-VOLET-01", requirement=REQ_VOLET, severity=Severity.INFO, location=doc,
                   fr=f"Volet choisi par le seul code du document (templateIds du volet absents) : {', '.join(names)}",
                   en=f"Volet chosen by the document code only (the volet's templateIds are missing): {', '.join(names)}")
        families: dict[str, list[str]] = {}
        for volet in chosen["volets"]:
            families.setdefault(family_and_version(volet.rsplit("/", 1)[-1].removesuffix(".sch"))[0], []).append(volet)
        for family, volets in sorted(families.items()):
            results = {}
            for volet in sorted(volets, key=lambda v: family_and_version(v.rsplit("/", 1)[-1].removesuffix(".sch"))[1]):
                results[volet] = _svrl_findings(ctx, f"svrl/volet/{doc}/{volet}", doc, volet, REQ_VOLET)
            usable = {v: f for v, (f, err) in results.items() if err is None}
            for v, (_, err) in results.items():
                if err is not None:
                    ev.add(rule="CDA-VOLET-02", requirement=REQ_VOLET, severity=Severity.WARNING, location=f"{doc} {v}",
                           fr=f"Volet {v} non exécutable : {err['fr']}", en=f"Volet {v} could not run: {err['en']}")
            if not usable:
                ev.error(fr=f"{doc} : aucun volet {family} exécutable", en=f"{doc}: no runnable {family} volet")
                continue
            passing = [v for v, f in usable.items() if not any(x["severity"].fails for x in f)]
            latest = list(usable)[-1]
            ev.check(bool(passing), rule="CDA-VOLET-03", requirement=REQ_VOLET, location=doc,
                     fr=f"Non conforme à aucune version du volet {family} ({', '.join(usable)}) ; détail pour {latest}",
                     en=f"Conforms to no version of volet {family} ({', '.join(usable)}); details for {latest}")
            if passing:
                ev.add(rule="CDA-VOLET-04", requirement=REQ_VOLET, severity=Severity.INFO, location=doc,
                       fr=f"Conforme à : {', '.join(passing)}", en=f"Conforms to: {', '.join(passing)}")
                shown = usable[passing[-1]]
            else:
                shown = usable[latest]
            for f in shown:
                if not passing or not f["severity"].fails:
                    ev.add(**f)


def _quirks(ev: Evaluation, meta: dict, requirement: str) -> None:
    """Each way the kit departs from what it should be, and how it was handled."""
    for q in meta["quirks"]:
        ev.add(rule="CDA-KIT-01", requirement=requirement, severity=Severity.INFO if q["kind"] == "value-set-synthesised" else Severity.WARNING,
               location=f"kit:{q['file']}",
               fr=f"Particularité du kit ({q['kind']}) : {q['detail']}", en=f"Kit quirk ({q['kind']}): {q['detail']}")


def _schematron_check(key: str):
    requirement = REQUIREMENTS[key]

    def check(ctx: CheckContext, ev: Evaluation) -> None:
        meta = ctx.json(f"sch/{key}")
        _quirks(ev, meta, requirement)
        if meta["error"]:
            ev.error(fr=f"{meta['schematron']} : {meta['error']['fr']}", en=f"{meta['schematron']}: {meta['error']['en']}")
            return
        for doc in _documents(ctx, ev):
            name = f"svrl/{key}/{doc}"
            if not ctx.has(name):
                ev.error(fr=f"{doc} : aucun rapport SVRL", en=f"{doc}: no SVRL report")
                continue
            found, err = _svrl_findings(ctx, name, doc, meta["schematron"], requirement)
            if err is not None:
                ev.error(fr=f"{doc} : {err['fr']}", en=f"{doc}: {err['en']}")
                continue
            ev.assertions += 1  # the document was evaluated against every active pattern
            for f in found:
                ev.add(**f)

    return check


def schematron_checks() -> dict:
    return {**{f"cda.schematron.{key}": _schematron_check(key) for key in REQUIREMENTS}, "cda.volets": check_volets}

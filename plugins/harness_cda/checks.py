"""Checks: findings from the recorded XSD results and SVRL, offline and replayable."""
from __future__ import annotations


from harness import CheckContext, Evaluation, Localized, Severity, Text, catalogue, check

from .engine import EngineError, read_svrl

M = catalogue(__name__)

# the kit's schematron profiles, each checked by cda.schematron.<profile>; the requirement
# each proves is written once, in scenarios/cda-kit.toml
PROFILES = ("header", "ihe", "content-models", "ans-models")
_PREFIXES = {"urn:hl7-org:v3": "cda", "urn:hl7-org:sdtc": "sdtc", "http://www.w3.org/2001/XMLSchema-instance": "xsi"}
_ROLE = {"warning": Severity.WARNING, "warn": Severity.WARNING, "info": Severity.INFO, "information": Severity.INFO}


def _pretty(location: str) -> str:
    """``/Q{urn:hl7-org:v3}ClinicalDocument[1]`` -> ``/cda:ClinicalDocument[1]``."""
    for uri, prefix in _PREFIXES.items():
        location = location.replace(f"Q{{{uri}}}", f"{prefix}:")
    return location


def _documents(ctx: CheckContext, ev: Evaluation) -> list[str]:
    """The recorded documents; none at all makes the check inconclusive, never PASS."""
    docs = list(ctx.items("doc"))
    if not docs:
        ev.inconclusive(M("check.no_document"))
    return docs


@check(reads=["doc", "xsd"])
def check_xsd(ctx: CheckContext, ev: Evaluation) -> None:
    for doc in _documents(ctx, ev):
        result = ctx.json(f"xsd/{doc}")
        art = ctx.artefact(f"doc/{doc}").sha256
        if "error" in result:
            ev.error(Text.of(result["error"]))
            return
        if "unreadable" in result:
            _unreadable(ev, ctx, doc, result["unreadable"])
            continue
        ev.check(not result["errors"], rule="CDA-XSD-00", location=doc, artefact=art,
                 message=M("check.xsd_errors", count=len(result["errors"])))
        for err in result["errors"]:
            ev.add(rule="CDA-XSD-01", severity=Severity.ERROR, location=f"{doc}:{err['line']}:{err['column']}",
                   artefact=art, message=M("check.xsd_error", message=err["message"]))


def _unreadable(ev: Evaluation, ctx: CheckContext, doc: str, reason: dict) -> None:
    """A document that could not be read (malformed, hostile) fails every CDA requirement."""
    ev.check(False, rule="CDA-DOC-01", location=doc, artefact=ctx.artefact(f"doc/{doc}").sha256,
             message=M("check.unreadable", reason=Text.of(reason)))


def _svrl_findings(ctx: CheckContext, name: str, doc: str, schematron: str) -> tuple[list[dict], Localized | None]:
    """Findings of one recorded SVRL (as Evaluation.add keyword sets), or the error it recorded."""
    art = ctx.artefact(name)
    if art.media_type == "application/json":
        return [], Text.of(ctx.json(name)["error"])
    try:
        items = read_svrl(ctx.read(name))
    except EngineError as exc:
        return [], M("check.svrl_unreadable", reason=exc.detail)
    out = []
    for item in items:
        test = " ".join(item.test.split())
        key = "svrl.failed_assert" if item.kind == "failed-assert" else "svrl.report"
        out.append(dict(
            rule=f"{schematron}#{item.id or item.pattern}", severity=_ROLE.get((item.role or "").lower(), Severity.ERROR),
            location=f"{doc} {_pretty(item.location)}", artefact=art.sha256,
            message=M(key, text=item.text, test=test, pattern=item.pattern),
        ))
    return out, None


@check(reads=["doc", "volets", "svrl", "sch"])
def check_volets(ctx: CheckContext, ev: Evaluation) -> None:
    from .volets import family_and_version

    if ctx.has("sch/volets"):
        for _, meta in sorted(ctx.json("sch/volets").items()):
            _quirks(ev, meta)
    for doc in _documents(ctx, ev):
        chosen = ctx.json(f"volets/{doc}")
        if "unreadable" in chosen:  # no volet can be run on it: it does not conform to one
            _unreadable(ev, ctx, doc, chosen["unreadable"])
            continue
        if chosen.get("level1"):
            _level1(ctx, ev, doc)
        if chosen["basis"] == "level1":
            continue
        if chosen["basis"] is None:
            ev.add(rule="CDA-VOLET-00", severity=Severity.WARNING, location=doc, message=M("volet.none"))
            continue
        names = [v.rsplit("/", 1)[-1].removesuffix(".sch") for v in chosen["volets"]]
        if chosen["basis"] == "code":
            ev.add(rule="CDA-VOLET-01", severity=Severity.INFO, location=doc, message=M("volet.by_code", volets=", ".join(names)))
        families: dict[str, list[str]] = {}
        for volet in chosen["volets"]:
            families.setdefault(family_and_version(volet.rsplit("/", 1)[-1].removesuffix(".sch"))[0], []).append(volet)
        for family, volets in sorted(families.items()):
            results = {}
            for volet in sorted(volets, key=lambda v: family_and_version(v.rsplit("/", 1)[-1].removesuffix(".sch"))[1]):
                results[volet] = _svrl_findings(ctx, f"svrl/volet/{doc}/{volet}", doc, volet)
            usable = {v: f for v, (f, err) in results.items() if err is None}
            for v, (_, err) in results.items():
                if err is not None:
                    ev.add(rule="CDA-VOLET-02", severity=Severity.WARNING, location=f"{doc} {v}",
                           message=M("volet.not_runnable", volet=v, reason=err))
            if not usable:
                ev.error(M("volet.no_runnable", doc=doc, family=family))
                continue
            passing = [v for v, f in usable.items() if not any(x["severity"].fails for x in f)]
            latest = list(usable)[-1]
            ev.check(bool(passing), rule="CDA-VOLET-03", location=doc,
                     message=M("volet.conforms_to_none", family=family, volets=", ".join(usable), latest=latest))
            if passing:
                ev.add(rule="CDA-VOLET-04", severity=Severity.INFO, location=doc,
                       message=M("volet.conforms_to", volets=", ".join(passing)))
                shown = usable[passing[-1]]
            else:
                shown = usable[latest]
            for f in shown:
                if not passing or not f["severity"].fails:
                    ev.add(**f)


def _level1(ctx: CheckContext, ev: Evaluation, doc: str) -> None:
    """A level-1 document against the level-1 model (templateIds, body), from its recorded bytes."""
    from . import level1
    from .document import read_cda

    name = f"doc/{doc}"
    art = ctx.artefact(name).sha256
    cda = read_cda(ctx.read(name), doc)  # it was read when recorded: the volets collector found it level 1
    base = cda.tree.getpath(cda.root) if cda.embedded else "/ClinicalDocument"
    body, problems = level1.check(cda.root, base)
    ev.judged()
    for p in problems:
        ev.add(rule=p.rule, severity=p.severity, location=f"{doc} {p.location}", artefact=art, message=p.message)
    if not any(p.severity.fails for p in problems):
        ev.add(rule="CDA-VOLET-05", severity=Severity.INFO, location=doc, artefact=art,
               message=M("volet.level1", media_type=body.media_type if body else "-"))


def _quirks(ev: Evaluation, meta: dict) -> None:
    """Each way the kit departs from what it should be, and how it was handled."""
    for q in meta["quirks"]:
        # recorded as a text per language; bundles of harness-bundle/1 hold one English text
        detail = Text.of(q["detail"]) if isinstance(q["detail"], dict) else Text.same(str(q["detail"]))
        ev.add(rule="CDA-KIT-01", severity=Severity.INFO if q["kind"] == "value-set-synthesised" else Severity.WARNING,
               location=f"kit:{q['file']}", message=M("kit.quirk", kind=q["kind"], detail=detail))


def _schematron_check(key: str):
    @check(reads=["doc", "sch", "svrl"])
    def check_profile(ctx: CheckContext, ev: Evaluation) -> None:
        meta = ctx.json(f"sch/{key}")
        _quirks(ev, meta)
        if meta["error"]:
            ev.error(M("check.schematron_error", schematron=meta["schematron"], reason=Text.of(meta["error"])))
            return
        for doc in _documents(ctx, ev):
            name = f"svrl/{key}/{doc}"
            if not ctx.has(name):
                ev.error(M("check.no_svrl", doc=doc))
                continue
            if ctx.artefact(name).media_type == "application/json" and "unreadable" in ctx.json(name):
                _unreadable(ev, ctx, doc, ctx.json(name)["unreadable"])
                continue
            found, err = _svrl_findings(ctx, name, doc, meta["schematron"])
            if err is not None:
                ev.error(M("check.doc_error", doc=doc, reason=err))
                continue
            ev.judged()  # the document was evaluated against every active pattern
            for f in found:
                ev.add(**f)

    return check_profile


def schematron_checks() -> dict:
    return {**{f"cda.schematron.{key}": _schematron_check(key) for key in PROFILES}, "cda.volets": check_volets}


def kit_checks() -> dict:
    """The kit's checks: the plugin registers them, and a judge (:mod:`.judge`) runs them on one document."""
    return {"cda.xsd": check_xsd, **schematron_checks()}

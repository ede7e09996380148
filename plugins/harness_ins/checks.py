"""Checks of the INS plugin: pure functions of what the collectors recorded.

Every channel is read into :class:`Observation` records (one per patient occurrence), so
that the channel checks, the cross-channel check and the data-protection check judge the
same reading. No matricule is ever written in a finding, not even a test one: a check sees
only its own scenario's inputs, so it cannot know that the same number is not shown as a
production one elsewhere in the run. It is replaced by ``NIR#<12 hex>``, an HMAC under the
run's salt (``ctx.mask``): the same number gives the same stand-in throughout the run, and
the location (file, segment, element) leads to the value in the sealed artefact.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from harness import CheckContext, Evaluation, Localized, Message, Problem, Severity, UnsafeInput, catalogue, check

from . import cda, fhir, hl7v2
from .mllp import MAX_FRAME
from .identity import SystemClass, Traits, classify_system, parse_date, production_problem

SENSITIVE = "production-identity"
M = catalogue(__name__)

# the inputs each channel's collector produces (files, then what the live software sent)
CHANNEL_INPUTS = {
    "hl7v2": ("hl7", "mllp"),
    "cda": ("cda", "cda-live"),
    "fhir": ("fhir", "fhir-live"),
}
ALL_CHANNELS = tuple(name for names in CHANNEL_INPUTS.values() for name in names)


@dataclass
class Ins:
    value: str
    system: str
    location: str


@dataclass
class Observation:
    """One patient as one channel showed it."""

    channel: str
    source: str  # input name (and message number in a file of several)
    artefact: str
    location: str
    ins: list[Ins] = field(default_factory=list)
    traits: Traits = field(default_factory=Traits)
    status: str | None = None
    problems: list[tuple[str, Problem, str | None]] = field(default_factory=list)  # (location, problem, matricule concerned)


@dataclass
class Reading:
    """A channel's inputs read: observations, and problems that belong to no patient."""

    observations: list[Observation] = field(default_factory=list)
    problems: list[tuple[str, str, str, Problem]] = field(default_factory=list)  # (source, artefact, location, problem)
    units: int = 0  # messages / documents / resources read


def _inputs(ctx: CheckContext, channel: str) -> list[str]:
    return sorted(f"{group}/{item}" for group in CHANNEL_INPUTS[channel] for item in ctx.items(group))


def _refused_frames(ctx: CheckContext, reading: Reading) -> None:
    """Frames the MLLP receiver refused whole (larger than it reads): a finding each."""
    for item, art in ctx.items("mllp-refused").items():
        reading.units += 1
        reading.problems.append((f"mllp-refused/{item}", art.sha256, "MLLP",
                                 Problem("HL7-FRAME-01", Severity.ERROR, message=M("hl7.frame_refused", limit=MAX_FRAME, kept=art.size))))


def _read_hl7(ctx: CheckContext) -> Reading:
    reading = Reading()
    for name in _inputs(ctx, "hl7v2"):
        chunks = hl7v2.split_messages(ctx.read(name))
        for n, data in enumerate(chunks, 1):
            source = name if len(chunks) == 1 else f"{name}#{n}"
            msg = hl7v2.read_message(data)
            reading.units += 1
            problems = hl7v2.check_message(msg)
            for loc, p in problems:
                if not loc.startswith("PID"):
                    reading.problems.append((source, ctx.artefact(name).sha256, loc, p))
            for ident in msg.identities:
                obs = Observation("hl7v2", source, ctx.artefact(name).sha256, ident.location, traits=ident.traits, status=ident.status)
                for i in ident.identifiers:
                    if classify_system(i.system).is_ins or i.type_code.upper() == "INS":
                        obs.ins.append(Ins(i.value, i.system, i.location))
                values = {i.location: i.value for i in obs.ins}
                obs.problems = [(loc, p, values.get(loc)) for loc, p in problems if loc.split("-")[0] == ident.location]
                reading.observations.append(obs)
    return reading


def _read_cda(ctx: CheckContext) -> Reading:
    reading = Reading()
    for name in _inputs(ctx, "cda"):
        try:
            doc = ctx.xml(name)
        except UnsafeInput as exc:
            reading.problems.append((name, ctx.artefact(name).sha256, "/", Problem("INS-CDA-00", Severity.ERROR, message=M("check.cda_unreadable", reason=exc.detail))))
            continue
        reading.units += 1
        identities = cda.read_identities(doc)
        if not identities:
            reading.problems.append((name, ctx.artefact(name).sha256, "/ClinicalDocument", Problem("INS-CDA-00", Severity.ERROR, message=M("check.no_record_target"))))
        for ident in identities:
            obs = Observation("cda", name, ctx.artefact(name).sha256, ident.location, traits=ident.traits)
            obs.ins = [Ins(i.extension, i.root, i.location) for i in ident.identifiers if classify_system(i.root).is_ins]
            obs.problems = [(loc, p, i.extension if i else None) for loc, p, i in cda.check_identity(ident)]
            reading.observations.append(obs)
    return reading


def _read_fhir(ctx: CheckContext) -> Reading:
    reading = Reading()
    for name in _inputs(ctx, "fhir"):
        read = fhir.read_patients(ctx.read(name))
        reading.units += 1
        reading.problems += [(name, ctx.artefact(name).sha256, loc, p) for loc, p in read.problems]
        for ident in read.identities:
            obs = Observation("fhir", name, ctx.artefact(name).sha256, ident.location, traits=ident.traits, status=ident.status)
            obs.ins = [Ins(i.value, i.system, i.location) for i in ident.identifiers if classify_system(i.system).is_ins]
            obs.problems = [(loc, p, i.value if i else None) for loc, p, i in fhir.check_identity(ident)]
            reading.observations.append(obs)
    return reading


READERS = {"hl7v2": _read_hl7, "cda": _read_cda, "fhir": _read_fhir}


# -- showing matricules -------------------------------------------------------------------


def shown(ctx: CheckContext, value: str) -> str:
    """A matricule as a report may show it: masked."""
    return f"NIR#{ctx.mask(value.strip().upper())}"


def _masked(ctx: CheckContext, message: Localized, obs: Observation, value: str | None) -> Localized:
    """``message`` with every matricule of the observation replaced in its parameters."""
    values = {v for i in obs.ins for v in (i.value, i.value.strip())}
    if value is not None:
        values |= {value, value.strip()}
    ordered = sorted((v for v in values if v), key=len, reverse=True)

    def mask(param):
        if isinstance(param, Message):
            return param.replace(**{k: mask(v) for k, v in param.params})
        if isinstance(param, str):
            for v in ordered:
                param = param.replace(v, shown(ctx, v))
        return param

    return mask(message)


def _flag_production(ev: Evaluation, observations: list[Observation]) -> None:
    if any(classify_system(i.system).cls is SystemClass.PRODUCTION for o in observations for i in o.ins):
        ev.holds_sensitive(SENSITIVE)


# per channel: (nothing received, no patient in what was received)
UNREAD = {
    "hl7v2": (M("nothing.hl7v2"), M("no_identity.hl7v2")),
    "cda": (M("nothing.cda"), M("no_identity.cda")),
    "fhir": (M("nothing.fhir"), M("no_identity.fhir")),
}


def _judge(ctx: CheckContext, ev: Evaluation, reading: Reading, channel: str) -> None:
    for source, artefact, loc, p in reading.problems:
        ev.add(rule=p.rule, severity=p.severity, location=f"{source} {loc}", artefact=artefact, message=p.message)
    for obs in reading.observations:
        ev.judged()
        for loc, p, value in obs.problems:
            ev.add(rule=p.rule, severity=p.severity, location=f"{obs.source} {loc}", artefact=obs.artefact,
                   message=_masked(ctx, p.message, obs, value))
    _flag_production(ev, reading.observations)
    nothing, no_identity = UNREAD[channel]
    if reading.units == 0:
        ev.inconclusive(nothing)
    elif not reading.observations:
        # what could not be read is a finding (FAIL outranks this); a PASS needs a patient judged
        ev.inconclusive(no_identity)


@check(reads=CHANNEL_INPUTS["hl7v2"] + ("mllp-refused",))
def check_hl7v2(ctx: CheckContext, ev: Evaluation) -> None:
    reading = _read_hl7(ctx)
    _refused_frames(ctx, reading)
    _judge(ctx, ev, reading, "hl7v2")


@check(reads=CHANNEL_INPUTS["cda"])
def check_cda(ctx: CheckContext, ev: Evaluation) -> None:
    _judge(ctx, ev, _read_cda(ctx), "cda")


@check(reads=CHANNEL_INPUTS["fhir"])
def check_fhir(ctx: CheckContext, ev: Evaluation) -> None:
    _judge(ctx, ev, _read_fhir(ctx), "fhir")


def _all(ctx: CheckContext) -> list[Observation]:
    return [o for read in READERS.values() for o in read(ctx).observations]


# -- data protection ----------------------------------------------------------------------


@check(reads=ALL_CHANNELS)
def check_no_production_identity(ctx: CheckContext, ev: Evaluation) -> None:
    """Every INS identifier collected in the run is a test or demo one."""
    observations = _all(ctx)
    for obs in observations:
        for i in obs.ins:
            ev.judged()
            p = production_problem(classify_system(i.system))
            if p is not None:
                ev.add(rule=p.rule, severity=p.severity, location=f"{obs.source} {i.location}",
                       artefact=obs.artefact, message=M("check.production", problem=p.message, matricule=shown(ctx, i.value)))
    _flag_production(ev, observations)
    if ev.assertions == 0:
        ev.inconclusive(M("check.no_ins"))


# -- cross-channel consistency ------------------------------------------------------------


def _norm_text(value: str | None) -> str | None:
    if not value:
        return None
    text = unicodedata.normalize("NFKD", value)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.upper().replace("-", " ").replace("'", " ").split()) or None


def _norm_date(value: str | None) -> str | None:
    d = parse_date(value)
    return d.isoformat() if d else (value or None)


FIELDS = (
    ("status", M("field.status"), lambda o: o.status),
    ("birth_name", M("field.birth_name"), lambda o: _norm_text(o.traits.birth_name)),
    ("first_given_name", M("field.first_given_name"), lambda o: _norm_text(o.traits.first_given_name)),
    ("given_names", M("field.given_names"), lambda o: _norm_text(" ".join(o.traits.given_names))),
    ("sex", M("field.sex"), lambda o: (o.traits.sex or "").upper() or None),
    ("birth_date", M("field.birth_date"), lambda o: _norm_date(o.traits.birth_date)),
    ("birth_place", M("field.birth_place"), lambda o: (o.traits.birth_place or "").upper() or None),
)


@check(reads=ALL_CHANNELS)
def check_cross_channel(ctx: CheckContext, ev: Evaluation) -> None:
    """For each INS matricule, every occurrence agrees with the first one on the issuing
    system, the status and the strict traits; an INS in a CDA document needs a qualified
    identity wherever the status is known. The first disagreement per field is reported."""
    observations = _all(ctx)
    by_ins: dict[str, list[tuple[Observation, Ins]]] = {}
    for obs in observations:
        for i in obs.ins:
            if i.value.strip():
                by_ins.setdefault(i.value.strip().upper(), []).append((obs, i))
    compared = 0
    for key, seen in by_ins.items():
        if len(seen) < 2:
            continue
        first_obs, first_ins = seen[0]
        label = shown(ctx, key)
        reported: set[str] = set()
        for obs, i in seen[1:]:
            compared += 1
            ev.judged()
            here = f"{obs.source} {i.location}"
            there = f"{first_obs.source} {first_ins.location}"
            if classify_system(i.system).oid != classify_system(first_ins.system).oid and "system" not in reported:
                reported.add("system")
                ev.add(rule="INS-XCH-01", severity=Severity.ERROR, location=f"{here} ≠ {there}", artefact=obs.artefact,
                       message=M("xch.system", ins=label, system=classify_system(i.system).oid or M("system.missing"), channel=obs.channel,
                                 first_system=classify_system(first_ins.system).oid or M("system.missing"), first_channel=first_obs.channel))
            for name, field_name, get in FIELDS:
                a, b = get(first_obs), get(obs)
                if a is None or b is None or a == b or name in reported:
                    continue  # a missing trait is its channel's own finding
                reported.add(name)
                ev.add(rule="INS-XCH-01", severity=Severity.ERROR,
                       location=f"{obs.source} {obs.location} ≠ {first_obs.source} {first_obs.location}", artefact=obs.artefact,
                       message=M("xch.field", ins=label, field=field_name, value=b, channel=obs.channel, first=a, first_channel=first_obs.channel))
        statuses = [(o, o.status) for o, _ in seen if o.status]
        for obs, i in seen:
            if obs.channel != "cda":
                continue
            for other, status in statuses:
                if status != "QUAL" and "cda-status" not in reported:
                    reported.add("cda-status")
                    ev.add(rule="INS-XCH-02", severity=Severity.ERROR,
                           location=f"{obs.source} {i.location} ↔ {other.source} {other.location}", artefact=obs.artefact,
                           message=M("xch.cda_status", ins=label, status=status, channel=other.channel))
    _flag_production(ev, observations)
    if compared == 0:
        ev.inconclusive(M("xch.nothing", count=len(observations)))

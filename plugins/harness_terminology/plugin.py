"""Hooks of the terminology plugin: the answers collector, the coded-values checks, the
``terminology`` service (the loopback stand-in of the SMT), and the summary's section
naming the terminology each verdict relied on."""
from __future__ import annotations

from pathlib import Path

from harness import HarnessError, ReportSection, Service, SummaryContext, Text, UnsafeInput, catalogue, hookimpl, parse_json

from . import checks, collect, consumption

SERVICE = "terminology"
M = catalogue(__name__)


@hookimpl
def harness_scenario_dirs():
    """Its scenario files, shipped with it (a third party ships theirs the same way)."""
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {f"services.{SERVICE}": {"snapshot": "list[path]", "builtin_snapshot": "bool", "port": "int", "faults": "list[str]",
                                    "delay": "int", "stall": "int", "user": "str", "password": "secret"}}


@hookimpl
def harness_collectors():
    return {"terminology.answers": collect.collect_answers, "terminology.consumption": consumption.collect_consumption}


@hookimpl
def harness_checks():
    return {"terminology.value_sets": checks.check_value_sets, "terminology.codes": checks.check_codes,
            "terminology.consumption": consumption.check_consumption}


@hookimpl
def harness_start_service(name, options, ctx):
    if name != SERVICE:
        return None
    from harness.terminology import BUILTIN_SNAPSHOT, Snapshot, SnapshotTerminology, TerminologyServer

    folders = [Path(p) for p in options.get("snapshot", [])]
    if options.get("builtin_snapshot", not folders):
        folders.append(BUILTIN_SNAPSHOT)
    users = {}
    if options.get("user"):
        password = ctx.target.resolve_secret(options["password"]) if options.get("password") else None
        if not password:
            raise HarnessError(M("service.password"))
        users[options["user"]] = password
    try:
        server = TerminologyServer(SnapshotTerminology(Snapshot.load(folders)), port=options.get("port", 0), users=users,
                                   faults=tuple(options.get("faults", [])), delay=float(options.get("delay", 0)))
    except HarnessError as exc:
        raise HarnessError(M("service.error", reason=exc.detail)) from None
    if options.get("stall") is not None:  # seconds a silent answer is held (the stall fault), a setting: no national figure
        if not 1 <= int(options["stall"]) <= 60:
            raise HarnessError(M("service.stall", value=options["stall"]))
        server.stall = float(options["stall"])
    server.start()
    # the service's root: the FHIR base is service://terminology/fhir/, the token endpoint service://terminology/token
    root = server.base_url.removesuffix("fhir/")
    return Service(SERVICE, root, server.stop, {"fhir": server.base_url, "token_url": server.token_url, "server": server})


def _source_line(scenario: str, record: dict):
    setup = record.get("setup", {})
    questions = record.get("questions", 0)
    if setup.get("unavailable"):
        return M("section.unavailable", scenario=scenario, server=setup.get("server"), reason=Text.of(setup["unavailable"]))
    if setup.get("server"):
        return M("section.server", scenario=scenario, server=setup["server"], software=setup.get("software") or "?",
                 version=setup.get("version") or "?", questions=questions, calls=setup.get("remote_calls", 0))
    snapshot = setup.get("snapshot", {})
    return M("section.snapshot", scenario=scenario, name=snapshot.get("name", "?"), sha=str(snapshot.get("sha256", "?"))[:12], questions=questions)


@hookimpl
def harness_report_sections(summary: SummaryContext):
    """Which terminology each terminology scenario relied on (server and version, or snapshot)."""
    lines = []
    for result in summary.manifest.results:
        digest = result.inputs.get(collect.ANSWERS)
        if digest is None:
            continue
        try:
            record = parse_json(summary.read_artefact(digest), source=digest)
        except UnsafeInput:
            continue
        lines.append(_source_line(result.scenario, record))
    return [ReportSection(M("section.title"), lines)] if lines else []

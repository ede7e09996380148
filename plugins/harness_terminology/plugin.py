"""Hooks of the terminology plugin: the answers collector, the coded-values check, and the
``terminology`` service (the loopback stand-in of the SMT)."""
from __future__ import annotations

from pathlib import Path

from harness import HarnessError, Service, hookimpl, resolve_secret

from . import checks, collect

SERVICE = "terminology"


@hookimpl
def harness_target_schema():
    return {f"services.{SERVICE}": {"snapshot": "list[path]", "builtin_snapshot": "bool", "port": "int", "faults": "list[str]",
                                    "delay": "int", "user": "str", "password": "secret"}}


@hookimpl
def harness_collectors():
    return {"terminology.answers": collect.collect_answers}


@hookimpl
def harness_checks():
    return {"terminology.value_sets": checks.check_value_sets, "terminology.codes": checks.check_codes}


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
        password = resolve_secret(options["password"], ctx.target.folder) if options.get("password") else None
        if not password:
            raise HarnessError("services.terminology : user demande password (env:NOM ou file:CHEMIN, défini)",
                               "services.terminology: user needs password (env:NAME or file:PATH, set)")
        users[options["user"]] = password
    try:
        server = TerminologyServer(SnapshotTerminology(Snapshot.load(folders)), port=options.get("port", 0), users=users,
                                   faults=tuple(options.get("faults", [])), delay=float(options.get("delay", 0)))
    except ValueError as exc:
        raise HarnessError(f"services.terminology : {exc}", f"services.terminology: {exc}") from None
    server.start()
    # the service's root: the FHIR base is service://terminology/fhir/, the token endpoint service://terminology/token
    root = server.base_url.removesuffix("fhir/")
    return Service(SERVICE, root, server.stop, {"fhir": server.base_url, "token_url": server.token_url, "server": server})

"""Hooks of the DMP plugin: the DMP simulator (a target service), what the software sends
it, and built-in CDA checks (no kit).

Domain libraries it uses: :mod:`harness_cda.document` and :mod:`harness_cda.level1` (CDA
reading, level-1 model), :mod:`harness_ins.identity` and :mod:`harness_ins.cda` (INS
rules), :mod:`harness_xds` (XDS metadata, its agreement with the CDA header).
"""
from __future__ import annotations

from pathlib import Path

from harness import HarnessError, Service, catalogue, hookimpl

from . import checks, collect, lifecycle

M = catalogue(__name__)
SERVICES = ("dmp", "dmp-blocked")
SERVICE_OPTIONS = {"port": "int", "credentials_dir": "path", "trust": "list[path]", "refuse_certificates": "bool", "max_request": "int",
                   "max_document": "int", "patients": "list[str]"}


@hookimpl
def harness_scenario_dirs():
    """Its scenario files, shipped with it (a third party ships theirs the same way)."""
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {"dmp": {"wait": "int", "quiet": "int", "watch": "int", "certificate_warning_days": "int", "max_attempts": "int"},
            **{f"services.{name}": SERVICE_OPTIONS for name in SERVICES}}


@hookimpl
def harness_collectors():
    return {"dmp.exchanges": collect.collect_exchanges, "dmp.blocked": collect.collect_blocked, "dmp.journal": collect.collect_journal}


@hookimpl
def harness_checks():
    return {**checks.document_checks(), "dmp.feed": checks.check_feed, "dmp.consult": checks.check_consult,
            "dmp.metadata": checks.check_metadata, "dmp.metadata_agreement": checks.check_metadata_agreement, "dmp.vihf": checks.check_vihf,
            "dmp.tls": checks.check_tls, "dmp.blocked": checks.check_blocked,
            "dmp.insi_shared": lifecycle.check_insi_shared}


@hookimpl
def harness_start_service(name, options, ctx):
    if name not in SERVICES:
        return None
    from harness_xds import registry

    from .simulator import DmpSimulator

    folder = options.get("credentials_dir")
    try:
        sim = DmpSimulator(port=options.get("port", 0), credentials=Path(folder) if folder else None,
                           trust=[Path(p) for p in options.get("trust", [])],
                           refuse=bool(options.get("refuse_certificates", name == "dmp-blocked")),
                           patients=tuple(options.get("patients", ())),
                           **{k: options[k] for k in ("max_request", "max_document") if k in options})
    except (OSError, ValueError) as exc:
        raise HarnessError(M("service.failed", name=name, error=str(exc))) from None
    sim.start()
    registry.share(name, sim.registry)  # a PDSm stand-in of the run that fronts this DMP uses the same store

    def stop() -> None:
        registry.unshare(name, sim.registry)
        sim.stop()

    def received() -> list[dict]:  # every request, as received (the INS lifecycle reads what reached the DMP)
        return [{"n": ex.n, "at": ex.at, "media_type": ex.content_type, "data": ex.request,
                 "facts": {"transaction": ex.transaction, "http_status": ex.http_status}} for ex in list(sim.journal.exchanges)]

    return Service(name, sim.base_url, stop, {"credentials": str(sim.credentials), "refuses_certificates": sim.refuse}, received)

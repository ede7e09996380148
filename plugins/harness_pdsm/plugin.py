"""Hooks of the PDSm plugin: the FHIR document sharing stand-in (a target service).

Domain libraries it uses: :mod:`harness_xds` (XDS metadata, its FHIR form, the registry, the
bindings of its coded values), :mod:`harness_cda` (CDA reading, the built-in CI-SIS rules).
"""
from __future__ import annotations

from pathlib import Path

from harness import HarnessError, Service, catalogue, hookimpl

from . import checks, collect, terminology

M = catalogue(__name__)
SERVICE_OPTIONS = {"port": "int", "credentials_dir": "path", "store": "str", "max_request": "int", "max_document": "int",
                   "patients": "list[str]", "page_size": "int"}


@hookimpl
def harness_scenario_dirs():
    """Its scenario files, shipped with it (a third party ships theirs the same way)."""
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {"pdsm": {"wait": "int", "quiet": "int"}, "services.pdsm": SERVICE_OPTIONS}


@hookimpl
def harness_collectors():
    return {"pdsm.exchanges": collect.collect_exchanges}


@hookimpl
def harness_checks():
    from harness_cda.builtin import RULES, document_check

    # the built-in CDA rules (no kit) on every document published, as the DMP and MSSanté plugins do
    documents = {f"pdsm.{key}": document_check(rules, ("pdsm-doc",)) for key, rules in RULES.items()}
    return {**documents, "pdsm.publish": checks.check_publish, "pdsm.consult": checks.check_consult}


@hookimpl
def harness_coded_values():
    return {"pdsm": terminology.coded_values}


@hookimpl
def harness_start_service(name, options, ctx):
    if name != "pdsm":
        return None
    from .standin import PdsmStandIn

    folder = options.get("credentials_dir")
    try:
        standin = PdsmStandIn(port=options.get("port", 0), credentials=Path(folder) if folder else None, store=str(options.get("store", "")),
                              patients=tuple(options.get("patients", ())),
                              **{k: options[k] for k in ("max_request", "max_document", "page_size") if k in options})
    except (OSError, ValueError) as exc:
        raise HarnessError(M("service.failed", error=str(exc))) from None
    standin.start()

    def received() -> list[dict]:  # every request, as received
        return [{"n": ex.n, "at": ex.at, "media_type": ex.content_type, "data": ex.request,
                 "facts": {"transaction": ex.facts.get("transaction"), "http_status": ex.http_status}} for ex in list(standin.journal.exchanges)]

    return Service(name, standin.base_url, standin.stop, {"credentials": str(standin.credentials), "store": standin.store or "own"}, received)

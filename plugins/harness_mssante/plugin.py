"""Hooks of the MSSanté plugin: the mail simulator (a target service), the messages the
software sends, their IHE XDM archives, metadata and documents.

Domain libraries it uses: :mod:`harness_xds` (XDM archive, ebRIM metadata and their
agreement with the CDA header), :mod:`harness_cda.document` and the built-in CDA checks of
:mod:`harness_dmp.checks`.
"""
from __future__ import annotations

from harness import HarnessError, Service, catalogue, hookimpl

from . import checks, collect

M = catalogue(__name__)
SERVICE = "mssante"


@hookimpl
def harness_target_schema():
    return {"mssante": {"domains": "list[str]", "human_copy": "bool", "messages": "path", "wait": "int", "quiet": "int"},
            f"services.{SERVICE}": {"port": "int", "tls": "str", "max_message": "int", "deadline": "int", "idle": "int"}}


@hookimpl
def harness_collectors():
    return {"mssante.messages": collect.collect_messages}


@hookimpl
def harness_checks():
    return {**checks.document_checks(), "mssante.transport": checks.check_transport, "mssante.message": checks.check_message,
            "mssante.subject": checks.check_subject, "mssante.addresses": checks.check_addresses,
            "mssante.archive": checks.check_archive, "mssante.metadata": checks.check_metadata,
            "mssante.metadata_agreement": checks.check_agreement}


@hookimpl
def harness_start_service(name, options, ctx):
    if name != SERVICE:
        return None
    from .simulator import MailSimulator

    try:
        sim = MailSimulator(port=options.get("port", 0), tls=options.get("tls", "starttls"),
                            **{k: options[k] for k in ("max_message", "deadline", "idle") if k in options})
        sim.start()
    except (OSError, ValueError, RuntimeError) as exc:
        raise HarnessError(M("service.failed", name=name, error=str(exc))) from None
    return Service(name, sim.base_url, sim.stop, {"tls": sim.tls, "certificate": str(sim.certificate) if sim.certificate else None})

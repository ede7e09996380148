"""Hooks of the MSSanté plugin: the mail simulator (a target service), the messages the
software sends, their IHE XDM archives, metadata and documents.

Domain libraries it uses: :mod:`harness_xds` (XDM archive, ebRIM metadata and their
agreement with the CDA header), :mod:`harness_cda.document` and the built-in CDA checks of
:mod:`harness_cda.builtin`.
"""
from __future__ import annotations

from pathlib import Path

from harness import HarnessError, Service, catalogue, hookimpl

from . import checks, collect, lifecycle

M = catalogue(__name__)
SERVICE = "mssante"
MAILBOX = "mssante-mailbox"


@hookimpl
def harness_scenario_dirs():
    """Its scenario files, shipped with it (a third party ships theirs the same way)."""
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {"mssante": {"domains": "list[str]", "human_copy": "bool", "messages": "path", "wait": "int", "quiet": "int"},
            f"services.{SERVICE}": {"port": "int", "tls": "str", "max_message": "int", "deadline": "int", "idle": "int"},
            f"services.{MAILBOX}": {"port": "int", "tls": "str", "address": "str"}}


@hookimpl
def harness_collectors():
    return {"mssante.messages": collect.collect_messages, "mssante.received": collect.collect_received}


@hookimpl
def harness_checks():
    return {**checks.document_checks(), "mssante.transport": checks.check_transport, "mssante.message": checks.check_message,
            "mssante.subject": checks.check_subject, "mssante.addresses": checks.check_addresses,
            "mssante.archive": checks.check_archive, "mssante.metadata": checks.check_metadata,
            "mssante.metadata_agreement": checks.check_metadata_agreement, "mssante.integration": checks.check_integration,
            "mssante.insi_sent": lifecycle.check_insi_sent}


def _mailbox(name, options):
    from .mailbox import Mailbox, MailboxError, dovecot_binary

    if dovecot_binary() is None:
        raise HarnessError(M("service.no_dovecot", name=name))
    box = Mailbox(port=options.get("port", 0), tls=options.get("tls", "starttls"),
                  **({"address": options["address"]} if "address" in options else {}))
    try:
        box.start()
    except (MailboxError, OSError, ValueError, KeyError) as exc:
        box.stop()
        raise HarnessError(M("service.failed", name=name, error=str(exc)[:500])) from None
    return Service(name, box.base_url, box.stop, {"tls": box.tls, "address": box.address})


@hookimpl
def harness_start_service(name, options, ctx):
    if name == MAILBOX:
        return _mailbox(name, options)
    if name != SERVICE:
        return None
    from .simulator import MailSimulator

    try:
        sim = MailSimulator(port=options.get("port", 0), tls=options.get("tls", "starttls"),
                            **{k: options[k] for k in ("max_message", "deadline", "idle") if k in options})
        sim.start()
    except (OSError, ValueError, RuntimeError) as exc:
        raise HarnessError(M("service.failed", name=name, error=str(exc))) from None
    def received() -> list[dict]:  # every message, as received (the INS lifecycle reads what reached the operator)
        with sim.journal.lock:
            return [{"n": m.n, "at": m.at, "media_type": "message/rfc822", "data": m.raw,
                     "facts": {"mail_from": m.mail_from, "rcpt_tos": list(m.rcpt_tos), "outcome": m.outcome, "tls": m.tls}}
                    for m in sim.journal.messages]

    return Service(name, sim.base_url, sim.stop, {"tls": sim.tls, "certificate": str(sim.certificate) if sim.certificate else None,
                                                  "port": sim.port}, received)

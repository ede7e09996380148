"""Hooks of the INS plugin: identity rules in HL7 v2, CDA and FHIR, across channels."""
from __future__ import annotations

from pathlib import Path

from harness import hookimpl

from . import checks, collect, lifecycle


@hookimpl
def harness_scenario_dirs():
    """Its scenario files, shipped with it (a third party ships theirs the same way)."""
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {"ins": {"hl7v2": "path", "cda": "path", "fhir": "path", "mllp_port": "int", "mllp_messages": "int", "mllp_wait": "int",
                    "insi_max_tries": "int"},  # calls to INSi for one registration while it is down (harness_ins.lifecycle)
            # the INSi stand-in (harness_ins.insi_service): where it listens, where it writes the
            # software's credentials, and how it fails (unavailable for its first calls, slow)
            "services.insi": {"port": "int", "credentials_dir": "path", "fail_first": "int", "delay": "int", "history_order": "str"}}


@hookimpl
def harness_collectors():
    return {"ins.hl7v2": collect.collect_hl7v2, "ins.cda": collect.collect_cda, "ins.fhir": collect.collect_fhir,
            "ins.insi_register": lifecycle.collect_register}


@hookimpl
def harness_checks():
    return {
        "ins.hl7v2": checks.check_hl7v2,
        "ins.cda": checks.check_cda,
        "ins.fhir": checks.check_fhir,
        "ins.cross_channel": checks.check_cross_channel,
        "ins.no_production_identity": checks.check_no_production_identity,
        "ins.insi_qualification": lifecycle.check_qualification,
        "ins.insi_unavailable": lifecycle.check_unavailable,
    }


@hookimpl
def harness_start_service(name, options, ctx):
    """The INSi stand-in, for a target's ``service://insi/``."""
    if name != "insi":
        return None
    from harness import HarnessError, Service, catalogue

    from .insi_service import InsiStandIn

    try:
        standin = InsiStandIn(port=options.get("port", 0), credentials=options.get("credentials_dir"), fail_first=options.get("fail_first", 0),
                              delay=options.get("delay", 0), history_order=options.get("history_order", "schema")).start()
    except (OSError, ValueError) as exc:
        raise HarnessError(catalogue(__name__)("service.insi_failed", error=str(exc))) from None
    return Service(name, standin.base_url, standin.stop, {"credentials": str(standin.credentials), "fail_first": standin.fail_first,
                                                         "delay": standin.delay, "history_order": standin.history_order})

"""Hooks of the INS plugin: identity rules in HL7 v2, CDA and FHIR, across channels."""
from __future__ import annotations

from pathlib import Path

from harness import hookimpl

from . import checks, collect


@hookimpl
def harness_scenario_dirs():
    """Its scenario files, shipped with it (a third party ships theirs the same way)."""
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {"ins": {"hl7v2": "path", "cda": "path", "fhir": "path", "mllp_port": "int", "mllp_messages": "int", "mllp_wait": "int"}}


@hookimpl
def harness_collectors():
    return {"ins.hl7v2": collect.collect_hl7v2, "ins.cda": collect.collect_cda, "ins.fhir": collect.collect_fhir}


@hookimpl
def harness_checks():
    return {
        "ins.hl7v2": checks.check_hl7v2,
        "ins.cda": checks.check_cda,
        "ins.fhir": checks.check_fhir,
        "ins.cross_channel": checks.check_cross_channel,
        "ins.no_production_identity": checks.check_no_production_identity,
    }

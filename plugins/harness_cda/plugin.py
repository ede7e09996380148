"""Hooks of the CDA kit plugin."""
from __future__ import annotations

from harness import hookimpl

from . import checks, collect


@hookimpl
def harness_target_schema():
    return {"cda": {"kit": "path", "documents": "path"}}


@hookimpl
def harness_collectors():
    return {"cda.documents": collect.collect_documents, "cda.svrl.volets": collect.collect_volets, **collect.profile_collectors()}


@hookimpl
def harness_checks():
    return {"cda.xsd": checks.check_xsd, **checks.schematron_checks()}

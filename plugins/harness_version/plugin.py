"""Hooks of the version-number scenario plugin."""
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
    return {"version": {"api_version_field": "str", "api_fingerprint_field": "str"}}


@hookimpl
def harness_collectors():
    return {
        "version.ui": collect.collect_ui,
        "version.api": collect.collect_api,
        "version.history": collect.collect_history,
    }


@hookimpl
def harness_checks():
    return {
        "version.visible_in_ui": checks.check_visible_in_ui,
        "version.matches_declared": checks.check_matches_declared,
        "version.orderable_scheme": checks.check_orderable_scheme,
        "version.later_than_history": checks.check_later_than_history,
        "version.changes_with_build": checks.check_changes_with_build,
        "version.same_in_channels": checks.check_same_in_channels,
        "version.same_in_documents": checks.check_same_in_documents,
    }

"""Hooks of the CDA kit plugin."""
from __future__ import annotations

from pathlib import Path

from harness import hookimpl

from . import checks, collect, terminology
from .commands import add_kit_commands


@hookimpl
def harness_scenario_dirs():
    """Its scenario files, shipped with it (a third party ships theirs the same way)."""
    return [Path(__file__).with_name("scenarios")]


@hookimpl
def harness_target_schema():
    return {"cda": {"kit": "path"}}  # [cda] documents is the core's: other plugins read it too


@hookimpl
def harness_collectors():
    return {"cda.files": collect.collect_files, **collect.kit_collectors()}


@hookimpl
def harness_checks():
    return checks.kit_checks()


@hookimpl
def harness_coded_values():
    return {"cda": terminology.coded_values}


@hookimpl
def harness_commands(subparsers):
    add_kit_commands(subparsers)

"""Hooks of the XDS metadata library: the coded values of ebRIM metadata, for the
terminology scenarios of every plugin that records metadata (DMP, MSSanté/XDM)."""
from __future__ import annotations

from harness import hookimpl

from . import terminology


@hookimpl
def harness_coded_values():
    return {"xds": terminology.coded_values}

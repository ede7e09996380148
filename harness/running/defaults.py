"""The core's own hook implementations: registered like any plugin."""
from __future__ import annotations

from ..markers import hookimpl
from .target import CORE_SCHEMA


@hookimpl
def harness_target_schema():
    return CORE_SCHEMA

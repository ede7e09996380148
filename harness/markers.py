"""The markers and switches every other core module may need, and that need nothing: the
pluggy project name and its markers, and the variable that blocks plugins. At the bottom of
the core's layering (``pyproject.toml``, ``[tool.importlinter]``): what ``plugins``,
``hookspecs``, ``target`` and ``defaults`` share without importing one another."""
from __future__ import annotations

import os

import pluggy

PROJECT = "harness"
BLOCK_ENV = "HARNESS_BLOCK_PLUGINS"

hookimpl = pluggy.HookimplMarker(PROJECT)
hookspec = pluggy.HookspecMarker(PROJECT)


def blocked_plugins() -> list[str]:
    """Plugin names listed (comma-separated) in the HARNESS_BLOCK_PLUGINS variable."""
    return [n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()]

"""The harness's own pluggy manager: built-in and third-party plugins load the same way."""
from __future__ import annotations

import os
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import HarnessError

PROJECT = "harness"
ENTRY_POINT_GROUP = "harness.plugins"
BLOCK_ENV = "HARNESS_BLOCK_PLUGINS"

# The plugins this distribution ships. They are registered through ENTRY_POINT_GROUP,
# exactly like a third party's; this tuple only lets the harness tell them apart and
# notice a broken installation where one is missing.
BUILTIN_PLUGINS = ("harness-cda", "harness-demo", "harness-ins", "harness-terminology", "harness-version")

hookimpl = pluggy.HookimplMarker(PROJECT)


def blocked_plugins() -> list[str]:
    """Plugin names listed (comma-separated) in the HARNESS_BLOCK_PLUGINS variable."""
    return [n.strip() for n in os.environ.get(BLOCK_ENV, "").split(",") if n.strip()]


def get_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new manager with the core defaults and every installed, non-blocked plugin."""
    from . import defaults

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="harness-core")
    for name in blocked_plugins():
        pm.set_blocked(name)
    if load_entry_points:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        missing = [n for n in BUILTIN_PLUGINS if not pm.is_blocked(n) and pm.get_plugin(n) is None]
        if missing:
            raise HarnessError(
                f"Installation incomplète : greffons intégrés absents : {', '.join(missing)} (réinstaller le paquet)",
                f"Broken installation: built-in plugins missing: {', '.join(missing)} (reinstall the package)",
            )
    pm.check_pending()
    return pm


def plugin_versions(pm: pluggy.PluginManager) -> dict[str, str]:
    """Name -> distribution version of every registered entry-point plugin."""
    versions = {}
    for plugin, dist in pm.list_plugin_distinfo():
        versions[pm.get_name(plugin)] = f"{dist.metadata['name']} {dist.version}"
    return dict(sorted(versions.items()))


def harness_version() -> str:
    try:
        return metadata.version("ehealth-conformity-harness")
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"

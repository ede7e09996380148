"""The harness's own pluggy manager and the plugin contract it enforces at start.

Built-in and third-party plugins load the same way (the ``harness.plugins`` entry-point
group). The contract is closed: every function of a plugin named ``harness_*`` is a hook
implementation, marked with ``@harness.hookimpl`` or not, so a name that matches no hook
is an error at start, with the hooks it may have meant.
"""
from __future__ import annotations

import difflib
import inspect
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from ..errors import HarnessError, PluginError
from ..markers import PROJECT, blocked_plugins, hookimpl  # noqa: F401 (hookimpl: re-exported, harness.hookimpl)
from ..messages import catalogue

M = catalogue(__name__)

PREFIX = "harness_"
ENTRY_POINT_GROUP = "harness.plugins"
DISTRIBUTION = "ehealth-conformity-harness"


def builtin_plugins() -> tuple[str, ...]:
    """The plugins this distribution ships: the entry points its own metadata declares in
    ENTRY_POINT_GROUP (registered exactly like a third party's). Knowing them lets the harness
    notice a broken installation where one did not load."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return ()
    return tuple(sorted(ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP))


class HarnessPluginManager(pluggy.PluginManager):
    """A pluggy manager that takes every ``harness_*`` function as a hook implementation,
    as pytest does with ``pytest_*``: forgetting the marker cannot hide a hook."""

    def parse_hookimpl_opts(self, plugin: Any, name: str):  # type: ignore[override]
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith(PREFIX) and inspect.isroutine(getattr(plugin, name, None)):
            opts = {"wrapper": False, "hookwrapper": False, "optionalhook": False, "tryfirst": False, "trylast": False, "specname": None}
        return opts


def check_contract(pm: pluggy.PluginManager) -> None:
    """Every hook implementation matches a hook: else a :class:`PluginError` naming the
    plugin, the function and the hooks it may have meant."""
    known = sorted(name for name in dir(hookspecs) if name.startswith(PREFIX))
    for name, caller in sorted(vars(pm.hook).items()):
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            # compared without the common prefix, which would make every hook look alike
            close = [PREFIX + c for c in difflib.get_close_matches(name[len(PREFIX):], [k[len(PREFIX):] for k in known], n=2, cutoff=0.75)]
            hint = M("plugin.did_you_mean", names=", ".join(close)) if close else M("plugin.known_hooks", names=", ".join(known))
            raise PluginError(M("plugin.unknown_hook", plugin=impl.plugin_name, name=name, hint=hint))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # a marked optional hook's arguments, and the like
        raise PluginError(M("plugin.invalid", error=str(exc))) from None


def get_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A new manager with the core defaults and every installed, non-blocked plugin."""
    from . import defaults

    pm = HarnessPluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(defaults, name="harness-core")
    for name in blocked_plugins():
        pm.set_blocked(name)
    if load_entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except pluggy.PluginValidationError as exc:  # a hook whose arguments differ from its spec
            raise PluginError(M("plugin.invalid", error=str(exc))) from None
        missing = [n for n in builtin_plugins() if not pm.is_blocked(n) and pm.get_plugin(n) is None]
        if missing:
            raise HarnessError(M("plugin.builtin_missing", names=", ".join(missing)))
    check_contract(pm)
    return pm


def plugin_versions(pm: pluggy.PluginManager) -> dict[str, str]:
    """Name -> distribution version of every registered entry-point plugin."""
    versions = {}
    for plugin, dist in pm.list_plugin_distinfo():
        versions[pm.get_name(plugin)] = f"{dist.metadata['name']} {dist.version}"
    return dict(sorted(versions.items()))


RULE_SUFFIXES = (".py", ".toml", ".sch", ".xsl", ".xslt", ".xsd", ".json", ".xml", ".csv")
_SKIPPED = {"__pycache__", "locale", "templates"}  # wording and presentation are not rules
# the core's modules that present or transport results and derive no verdict (paths in the core)
_PRESENTATION = {"reporting/report.py", "reporting/allure_results.py", "session/liveview.py", "session/events.py", "evidence/summary.py",
                 "cli.py", "running/commands.py"}
CORE = Path(__file__).resolve().parents[1]  # the harness package


def _tree_digest(folder: Path) -> str:
    """SHA-256 over the rule files of a package (path and content), wording aside."""
    import hashlib

    h = hashlib.sha256()
    core = folder.resolve() == CORE
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in RULE_SUFFIXES
                       and not _SKIPPED.intersection(p.relative_to(folder).parts)
                       and not (core and p.relative_to(folder).as_posix() in _PRESENTATION)):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def rules_fingerprints(pm: pluggy.PluginManager) -> dict[str, str]:
    """What the rules are, beyond a version number that may not change with them: the core's
    and each registered plugin's package files, hashed (``harness equivalence`` compares them)."""
    import sys

    out = {"harness": _tree_digest(CORE)}
    for name, plugin in pm.list_name_plugin():
        module = sys.modules.get(getattr(plugin, "__name__", "")) if not hasattr(plugin, "__file__") else plugin
        file = getattr(module, "__file__", None)
        if name and file and getattr(module, "__package__", None) and not Path(file).resolve().is_relative_to(CORE):
            out[name] = _tree_digest(Path(file).parent)
    return dict(sorted(out.items()))


@lru_cache(maxsize=1)
def core_version() -> str:
    """The installed distribution's version, read once per process (reading the package's
    metadata parses it: 2 ms, which every CDA collector of every document paid)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"

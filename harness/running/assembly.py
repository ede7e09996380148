"""Assembling a run's parts: plugin manager, steps, scenario catalogue, target schema.

Everything here happens at start, so that a broken plugin, a misspelt step in a scenario
file or a conflicting target key stops the run before anything is collected.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pluggy

from ..errors import ScenarioError, TargetError
from ..messages import Joined, Message, catalogue
from .plugins import ENTRY_POINT_GROUP, blocked_plugins, builtin_plugins, get_plugin_manager
from .scenarios import Catalogue, load_catalogue
from .steps import Registry, build_registry, wiring_problems
from .target import Target, load_target, merge_schemas

M = catalogue(__name__)


def blocked_scenario_dirs() -> list[Path]:
    """The scenario folders of blocked plugins, read as data only: the ``scenarios`` folder
    beside each blocked plugin's module (the layout the built-in plugins and the guide use),
    found without importing anything of it. Their scenarios are then set aside with the
    reason (:func:`check_wiring`), and the requirements they define stay known to the
    scenarios of other plugins that prove them too."""
    import importlib.util
    from importlib import metadata

    blocked = set(blocked_plugins())
    dirs = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in blocked:
            continue
        top, _, rest = ep.value.partition(":")[0].partition(".")
        try:
            spec = importlib.util.find_spec(top)  # a top-level package: found, not executed
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(location, *rest.split(".")[:-1]) / "scenarios" if rest else Path(location) / "scenarios"
            if folder.is_dir():
                dirs.append(folder)
    return dirs


def scenario_dirs(pm: pluggy.PluginManager, extra: Iterable[str | Path] = ()) -> list[Path]:
    """Every plugin's scenario folders (the built-in ones ship theirs as a third party
    does), the blocked plugins' as data, then the user's ``--scenario-dir`` folders."""
    dirs: list[Path] = []
    # in a stable order: the built-in plugins by name, then the others by name
    builtin = set(builtin_plugins())
    for impl in sorted(pm.hook.harness_scenario_dirs.get_hookimpls(), key=lambda i: (i.plugin_name not in builtin, i.plugin_name)):
        dirs.extend(Path(p) for p in impl.function() or ())
    dirs.extend(blocked_scenario_dirs())
    dirs.extend(Path(p) for p in extra)
    seen: list[Path] = []
    for d in dirs:
        if d.resolve() not in [s.resolve() for s in seen]:
            seen.append(d)
    return seen


def target_schema(pm: pluggy.PluginManager) -> dict[str, dict[str, str]]:
    """Every plugin's target sections merged; a key declared twice is an error naming both."""
    parts = [(impl.plugin_name, impl.function()) for impl in pm.hook.harness_target_schema.get_hookimpls()]
    return merge_schemas((name, part) for name, part in parts if part)


def resolve_target(pm: pluggy.PluginManager, path: str | Path | None, overrides: Iterable[str] = ()) -> Target:
    if path is None:
        path = pm.hook.harness_default_target()
        if path is None:
            raise TargetError("-", "--target", M("target.none"))
    target = load_target(path, target_schema(pm))
    for assignment in overrides:
        target.override(assignment)
    return target


@dataclass
class Assembly:
    pm: pluggy.PluginManager
    registry: Registry
    catalogue: Catalogue
    unavailable: dict[str, Message] = field(default_factory=dict)  # scenario id -> why (a blocked plugin's steps)


def check_wiring(catalogue: Catalogue, registry: Registry) -> dict[str, Message]:
    """Scenarios whose steps are missing: with plugins blocked, they are set aside (the
    reason is kept); without, it is a mistake in a scenario file, refused at start."""
    blocked = blocked_plugins()
    unavailable: dict[str, Message] = {}
    for scenario in list(catalogue.scenarios.values()):
        problems = wiring_problems(scenario, registry)
        if not problems:
            continue
        if not blocked:
            raise ScenarioError(M("scenario.unwired", file=scenario.shown_path, id=scenario.id, problems=Joined(tuple(problems))))
        unavailable[scenario.id] = M("scenario.unavailable", id=scenario.id, problems=Joined(tuple(problems)), blocked=", ".join(blocked))
        del catalogue.scenarios[scenario.id]
    return unavailable


def assemble(extra_scenario_dirs: Iterable[str | Path] = (), pm: pluggy.PluginManager | None = None) -> Assembly:
    pm = pm or get_plugin_manager()
    registry = build_registry(pm)
    target_schema(pm)  # a conflicting declaration is a plugin error, whatever the target
    catalogue = load_catalogue(scenario_dirs(pm, extra_scenario_dirs))
    unavailable = check_wiring(catalogue, registry)
    catalogue.unavailable = unavailable
    return Assembly(pm, registry, catalogue, unavailable)

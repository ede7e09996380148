"""Assembling a run's parts: plugin manager, steps, scenario catalogue, target schema.

Everything here happens at start, so that a broken plugin, a misspelt step in a scenario
file or a conflicting target key stops the run before anything is collected.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable

import pluggy

from .errors import ScenarioError, TargetError
from .messages import Joined, Message, catalogue
from .plugins import blocked_plugins, get_plugin_manager
from .scenarios import Catalogue, load_catalogue
from .steps import Registry, build_registry, wiring_problems
from .target import Target, load_target, merge_schemas

M = catalogue(__name__)


def builtin_scenario_dir() -> Path:
    return Path(str(resources.files("harness_scenarios")))


def scenario_dirs(pm: pluggy.PluginManager, extra: Iterable[str | Path] = ()) -> list[Path]:
    dirs = [builtin_scenario_dir()]
    for contributed in pm.hook.harness_scenario_dirs():
        dirs.extend(Path(p) for p in contributed)
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

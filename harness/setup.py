"""Assembling a run's parts: plugin manager, registry, scenario catalogue, target."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable

import pluggy

from .errors import TargetError
from .plugins import get_plugin_manager
from .runner import Registry, build_registry
from .scenarios import Catalogue, load_catalogue
from .target import Target, load_target


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
    schema: dict[str, dict[str, str]] = {}
    for part in pm.hook.harness_target_schema():
        for section, keys in part.items():
            schema.setdefault(section, {}).update(keys)
    return schema


def resolve_target(pm: pluggy.PluginManager, path: str | Path | None, overrides: Iterable[str] = ()) -> Target:
    if path is None:
        path = pm.hook.harness_default_target()
        if path is None:
            raise TargetError("-", "--target", "aucune cible indiquée et aucune cible par défaut", "no target given and no default target available")
    schema = target_schema(pm)
    target = load_target(path, schema)
    for assignment in overrides:
        target.override(assignment, schema)
    return target


@dataclass
class Assembly:
    pm: pluggy.PluginManager
    registry: Registry
    catalogue: Catalogue


def assemble(extra_scenario_dirs: Iterable[str | Path] = ()) -> Assembly:
    pm = get_plugin_manager()
    return Assembly(pm, build_registry(pm), load_catalogue(scenario_dirs(pm, extra_scenario_dirs)))

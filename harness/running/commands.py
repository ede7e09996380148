"""What a plugin's ``harness`` subcommand receives (``harness_commands``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pluggy

from .context import Service, ServiceContext
from ..errors import HarnessError
from ..messages import catalogue
from .target import Target

M = catalogue(__name__)


@dataclass
class CommandContext:
    """What a plugin's ``harness`` subcommand receives beside its arguments."""

    lang: str
    pm: pluggy.PluginManager

    def load_target(self, path: str | Path | None = None, overrides: Iterable[str] = ()) -> Target:
        """A target file (default: the embedded demo's), validated like a scenario run's."""
        from .assembly import resolve_target

        return resolve_target(self.pm, path, overrides)

    def start_service(self, name: str, options: Mapping[str, Any], target: Target) -> Service:
        """Start ``[services.NAME]`` with ``options`` (nothing is recorded)."""
        svc = self.pm.hook.harness_start_service(name=name, options=options, ctx=ServiceContext(target, lambda *a, **k: None))
        if svc is None:
            raise HarnessError(M("service.unprovided", name=name))
        return svc

"""Running checks the way the core does, for tests of single checks and verdict rules."""
from __future__ import annotations

from pathlib import Path

from harness import Text
from harness.running.checking import evaluate
from harness.results import CollectStep, StepStatus
from harness.running.scenarios import Scenario
from harness.running.steps import Registry, check
from harness.running.target import Target

TARGET = Target.from_record({"product": {"id": "p", "name": "P", "version": "1.0"}}, {})


def scenario(mode: str = "all", checks: tuple[str, ...] = ("c",)) -> Scenario:
    return Scenario("s", {"fr": "s", "en": "s"}, ("R-1",), ("lgc",), "minor", "text", (), (), checks, Path("s.toml"), mode)


def registry(**checks) -> Registry:
    return Registry({}, {name: fn if hasattr(fn, "reads") else check(reads=["*"])(fn) for name, fn in checks.items()})


def step(name: str, status: str, message: str | None = None) -> CollectStep:
    return CollectStep(name, StepStatus(status), Text.same(message) if message else None)


def run(fn, inputs=None, collect=(), mode: str = "all", load=lambda d: b"{}"):
    """(verdict, check steps, findings) of one check ``c`` in a scenario ``s``."""
    return evaluate(scenario(mode), inputs or {}, load, TARGET, registry(c=fn), list(collect))

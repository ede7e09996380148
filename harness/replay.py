"""Offline replay: re-run every check of a bundle from the bundle alone, compare verdicts."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pluggy

from .assembly import target_schema
from .bundle import Bundle
from .checking import evaluate
from .context import Artefact
from .evidence import canonical_json
from .messages import Message, catalogue
from .plugins import core_version, plugin_versions
from .scenarios import Scenario
from .steps import Registry
from .target import Target

M = catalogue(__name__)


class NetworkDisabled(OSError):
    pass


@contextmanager
def no_network() -> Iterator[None]:
    """Any connection attempt fails while replaying: checks must not depend on the network."""

    def refuse(*args: object, **kwargs: object):
        raise NetworkDisabled("network access is disabled during replay")

    saved = socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo
    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse  # type: ignore[assignment]
    socket.getaddrinfo = refuse  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.create_connection, socket.getaddrinfo = saved  # type: ignore[method-assign]


@dataclass
class Difference:
    scenario: str
    recorded: str
    replayed: str
    detail: Message


@dataclass
class ReplayReport:
    format: str = ""
    scenarios: int = 0
    differences: list[Difference] = field(default_factory=list)
    version_notes: list[Message] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def _version_notes(bundle: Bundle, pm: pluggy.PluginManager | None) -> list[Message]:
    recorded = bundle.record
    notes = []
    if recorded.harness.get("version") != core_version():
        notes.append(M("replay.core_version", recorded=recorded.harness.get("version"), now=core_version()))
    if pm is not None:
        now = plugin_versions(pm)
        for name, ver in recorded.plugins.items():
            if now.get(name) != ver:
                notes.append(M("replay.plugin_version", name=name, recorded=ver, now=now.get(name, "-")))
    return notes


def replay_bundle(bundle: Bundle, registry: Registry, pm: pluggy.PluginManager) -> ReplayReport:
    """Re-evaluate each recorded scenario and compare verdict, check steps and findings."""
    recorded = bundle.record
    report = ReplayReport(format=recorded.format, version_notes=_version_notes(bundle, pm))
    scenarios = {s["id"]: Scenario.from_json(s) for s in recorded.scenarios}
    target = Target.from_record(recorded.target, target_schema(pm))
    salt = recorded.masking.get("salt", "")
    with no_network():
        for result in recorded.results:
            report.scenarios += 1
            if result.reason is not None:  # NOT_RUN: nothing was evaluated, nothing to replay
                continue
            inputs = {name: Artefact(digest, **recorded.artefacts[digest].to_json()) for name, digest in result.inputs.items()}
            verdict, checks, findings = evaluate(scenarios[result.scenario], inputs, bundle.read_artefact, target, registry, result.collect, salt)
            sid = result.scenario
            if verdict is not result.verdict:
                report.differences.append(Difference(sid, result.verdict.value, verdict.value, M("replay.verdict")))
            elif canonical_json([c.to_json() for c in checks]) != canonical_json([c.to_json() for c in result.checks]):
                report.differences.append(Difference(sid, result.verdict.value, verdict.value, M("replay.checks")))
            elif canonical_json([f.to_json() for f in findings]) != canonical_json(bundle.findings(sid)):
                report.differences.append(Difference(sid, result.verdict.value, verdict.value, M("replay.findings")))
    return report

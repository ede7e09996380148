"""Offline replay: re-run every check of a bundle from the bundle alone, compare verdicts."""
from __future__ import annotations

import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pluggy

from .bundle import Bundle
from .context import Artefact
from .evidence import canonical_json
from .runner import Registry, evaluate


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
    detail: str


@dataclass
class ReplayReport:
    scenarios: int = 0
    differences: list[Difference] = field(default_factory=list)
    version_notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def replay_bundle(bundle: Bundle, registry: Registry, pm: pluggy.PluginManager | None = None) -> ReplayReport:
    """Re-evaluate each recorded scenario and compare verdict, check steps and findings."""
    from .plugins import harness_version, plugin_versions

    m = bundle.manifest
    report = ReplayReport()
    if m["harness"]["version"] != harness_version():
        report.version_notes.append(f"harness {m['harness']['version']} recorded, {harness_version()} replaying")
    if pm is not None:
        now = plugin_versions(pm)
        for name, ver in m.get("plugins", {}).items():
            if now.get(name) != ver:
                report.version_notes.append(f"plugin {name}: {ver} recorded, {now.get(name, 'absent')} replaying")
    scenarios = {s["id"]: s for s in m["scenarios"]}
    with no_network():
        for result in m["results"]:
            sid = result["scenario"]
            report.scenarios += 1
            if "reason" in result:  # NOT_RUN: nothing was evaluated, nothing to replay
                continue
            inputs = {
                name: Artefact(digest, **m["artefacts"][digest]) for name, digest in result["inputs"].items()
            }
            verdict, checks, findings = evaluate(scenarios[sid], inputs, bundle.read_artefact, m["target"], registry.checks, result["collect"],
                                               m.get("masking", {}).get("salt", ""), registry.extractors)
            recorded_findings = bundle.findings(sid)
            if verdict != result["verdict"]:
                report.differences.append(Difference(sid, result["verdict"], verdict, "verdict"))
            elif canonical_json(checks) != canonical_json(result["checks"]):
                report.differences.append(Difference(sid, result["verdict"], verdict, "check steps differ"))
            elif canonical_json(findings) != canonical_json(recorded_findings):
                report.differences.append(Difference(sid, result["verdict"], verdict, "findings differ"))
    return report

"""Conformity test harness for French e-health software.

The public surface for plugin authors is what this module exports (the services kit among
it: the loopback HTTP(S) server base every simulator stands on, connection bounds, the test
PKI with its OCSP responder and CRL, loaded when first asked for) and the
``harness.terminology`` package; everything else is internal and may change.
"""
from typing import TYPE_CHECKING, Any

# Every name is loaded when first asked for (PEP 562): a process that needs one corner of the
# harness (a browser driver: harness.services.browser; a fork server) does not import the
# rest (measured: 0.20 s of CPU per browser driver started, about a hundred in the suite).
_WHERE = {
    "Bundle": "evidence.bundle", "verify_bundle": "evidence.bundle",
    "CommandContext": "running.commands",
    "Artefact": "running.context", "CheckContext": "running.context", "CollectContext": "running.context", "Service": "running.context",
    "ServiceContext": "running.context",
    "BundleError": "errors", "HarnessError": "errors", "NotApplicable": "errors", "PluginError": "errors", "ScenarioError": "errors",
    "TargetError": "errors", "UnsafeInput": "errors",
    "atomic_write": "files",
    "is_loopback": "safety.http",
    "Catalogue": "messages", "Localized": "messages", "Message": "messages", "Text": "messages", "catalogue": "messages",
    "core_version": "running.plugins", "hookimpl": "running.plugins",
    "ArchiveLimits": "safety.inputs", "SafeArchive": "safety.inputs", "parse_json": "safety.inputs", "parse_xml": "safety.inputs", "iter_xml": "safety.inputs",
    "ANY_INPUT": "running.steps", "check": "running.steps", "collector": "running.steps",
    "RecordedRun": "proof.recorded",
    "ReportSection": "evidence.summary", "SummaryContext": "evidence.summary",
    "Target": "running.target",
    "Evaluation": "verdicts", "Finding": "verdicts", "Problem": "verdicts", "Severity": "verdicts", "Verdict": "verdicts",
}
# the services kit (harness.services), likewise: a run that serves nothing does not pay for
# the HTTP base or the cryptography stack
_SERVICES = ("BoundedServer", "ConnectionBounds", "Exchange", "HttpService", "Issued", "Request", "Response", "Revocation",
             "ServiceStopError", "TestPKI", "browser", "check_revocation", "pki")


def __getattr__(name: str) -> Any:
    from importlib import import_module

    if name in _SERVICES:
        value = getattr(import_module(".services", __name__), name)
    elif name in _WHERE:
        value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static readers (type checkers, editors) see
    from .errors import BundleError, HarnessError, NotApplicable, PluginError, ScenarioError, TargetError, UnsafeInput
    from .evidence.bundle import Bundle, verify_bundle
    from .evidence.summary import ReportSection, SummaryContext
    from .proof.recorded import RecordedRun
    from .files import atomic_write
    from .messages import Catalogue, Localized, Message, Text, catalogue
    from .running.commands import CommandContext
    from .running.context import Artefact, CheckContext, CollectContext, Service, ServiceContext
    from .running.plugins import core_version, hookimpl
    from .running.steps import ANY_INPUT, check, collector
    from .running.target import Target
    from .safety.http import is_loopback
    from .safety.inputs import ArchiveLimits, SafeArchive, iter_xml, parse_json, parse_xml
    from .verdicts import Evaluation, Finding, Problem, Severity, Verdict


__all__ = [*_SERVICES, 
    "ANY_INPUT",
    "ArchiveLimits",
    "Artefact",
    "Bundle",
    "BundleError",
    "Catalogue",
    "CheckContext",
    "CommandContext",
    "CollectContext",
    "Evaluation",
    "Finding",
    "RecordedRun",
    "HarnessError",
    "Localized",
    "Message",
    "NotApplicable",
    "PluginError",
    "Problem",
    "ReportSection",
    "SafeArchive",
    "ScenarioError",
    "Service",
    "ServiceContext",
    "Severity",
    "SummaryContext",
    "Target",
    "TargetError",
    "Text",
    "UnsafeInput",
    "Verdict",
    "atomic_write",
    "catalogue",
    "check",
    "collector",
    "core_version",
    "hookimpl",
    "is_loopback",
    "iter_xml",
    "parse_json",
    "parse_xml",
    "verify_bundle",
]

"""Conformity test harness for French e-health software.

The public surface for plugin authors is what this module exports (the services kit among
it: the loopback HTTP(S) server base every simulator stands on, connection bounds, the test
PKI with its OCSP responder and CRL, loaded when first asked for) and the
``harness.terminology`` package; everything else is internal and may change.
"""
from .evidence.bundle import Bundle, verify_bundle
from .running.commands import CommandContext
from .running.context import Artefact, CheckContext, CollectContext, Service, ServiceContext
from .errors import BundleError, HarnessError, NotApplicable, PluginError, ScenarioError, TargetError, UnsafeInput
from .files import atomic_write
from .safety.http import is_loopback
from .messages import Catalogue, Localized, Message, Text, catalogue
from .running.plugins import core_version, hookimpl
from .safety.inputs import ArchiveLimits, SafeArchive, parse_json, parse_xml
from .running.steps import ANY_INPUT, check, collector
from .evidence.summary import ReportSection, SummaryContext
from .running.target import Target
from .verdicts import Evaluation, Finding, Problem, Severity, Verdict

# the services kit (harness.services), loaded when first asked for: a run that serves nothing
# does not pay for the HTTP base or the cryptography stack
_SERVICES = ("BoundedServer", "ConnectionBounds", "Exchange", "HttpService", "Issued", "Request", "Response", "Revocation",
             "ServiceStopError", "TestPKI", "browser", "check_revocation", "pki")


def __getattr__(name: str):
    if name in _SERVICES:
        from . import services

        return getattr(services, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "parse_json",
    "parse_xml",
    "verify_bundle",
]

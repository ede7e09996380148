"""Conformity test harness for French e-health software.

The public surface for plugin authors is what this module exports; everything else is
internal and may change.
"""
from .bundle import Bundle, verify_bundle
from .context import Artefact, CheckContext, CollectContext, Service, ServiceContext
from .evidence import atomic_write
from .errors import BundleError, HarnessError, NotApplicable, ScenarioError, TargetError, UnsafeInput
from .plugins import hookimpl
from .safety import ArchiveLimits, SafeArchive, parse_xml
from .target import Target, resolve_secret
from .verdicts import Evaluation, Finding, Severity, Verdict

__all__ = [
    "ArchiveLimits",
    "Artefact",
    "Bundle",
    "BundleError",
    "CheckContext",
    "CollectContext",
    "Evaluation",
    "Finding",
    "HarnessError",
    "NotApplicable",
    "SafeArchive",
    "ScenarioError",
    "Service",
    "ServiceContext",
    "Severity",
    "Target",
    "TargetError",
    "UnsafeInput",
    "Verdict",
    "atomic_write",
    "hookimpl",
    "parse_xml",
    "resolve_secret",
    "verify_bundle",
]

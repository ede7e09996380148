"""Terminology access for every plugin: the national FHIR server (SMT), offline
snapshots, a cache, a loopback stand-in, all behind one :class:`TerminologyService`."""
from .model import Answer, CodedValue, Expansion, TerminologyService, ValueSetRef, ask, bare_oid, error_record, question_key
from .remote import PasswordGrant, RemoteTerminology, TerminologyAuthError, TerminologyUnavailable
from .server import TerminologyServer
from .service import BUILTIN_SNAPSHOT, CachedTerminology, FallbackTerminology, TerminologySetup, build
from .snapshot import Snapshot, SnapshotTerminology

__all__ = [
    "Answer", "BUILTIN_SNAPSHOT", "CachedTerminology", "CodedValue", "Expansion", "FallbackTerminology", "PasswordGrant",
    "RemoteTerminology", "Snapshot", "SnapshotTerminology", "TerminologyAuthError", "TerminologyServer", "TerminologyService",
    "TerminologySetup", "TerminologyUnavailable", "ValueSetRef", "ask", "bare_oid", "build", "error_record", "question_key",
]

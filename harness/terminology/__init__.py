"""Terminology access for every plugin: the national FHIR server (SMT), offline
snapshots, a cache, a loopback stand-in, all behind one :class:`TerminologyService`."""
from .model import Answer, CodedValue, Expansion, TerminologyService, ValueSetRef, ask, bare_oid, error_record, question_key, system_oid
from .remote import PasswordGrant, RemoteTerminology, TerminologyAuthError, TerminologyUnavailable
from .service import BUILTIN_SNAPSHOT, CachedTerminology, FallbackTerminology, TerminologySetup, ask_all, build
from .snapshot import Snapshot, SnapshotTerminology



def __getattr__(name: str):
    # the stand-in server (and the HTTP base it stands on) is loaded when a run starts one
    if name == "TerminologyServer":
        from .server import TerminologyServer

        return TerminologyServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Answer", "BUILTIN_SNAPSHOT", "CachedTerminology", "CodedValue", "Expansion", "FallbackTerminology", "PasswordGrant",
    "RemoteTerminology", "Snapshot", "SnapshotTerminology", "TerminologyAuthError", "TerminologyServer", "TerminologyService",
    "TerminologySetup", "TerminologyUnavailable", "ValueSetRef", "ask", "ask_all", "bare_oid", "build", "error_record", "question_key", "system_oid",
]

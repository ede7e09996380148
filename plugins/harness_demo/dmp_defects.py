"""The demo's DMP defects: named apart from the client, so that listing them (every run
validates the --defect option) does not load the client's TLS and XML-signature stack."""
from __future__ import annotations

from harness import Message, catalogue

M = catalogue(__name__)

DMP_DEFECTS: dict[str, Message] = {
    "dmp-no-vihf": M("defect.dmp-no-vihf"),
    "dmp-vihf-tampered": M("defect.dmp-vihf-tampered"),
    "dmp-vihf-expired": M("defect.dmp-vihf-expired"),
    "dmp-vihf-no-version": M("defect.dmp-vihf-no-version"),
    "dmp-vihf-version-mismatch": M("defect.dmp-vihf-version-mismatch"),
    "dmp-vihf-patient": M("defect.dmp-vihf-patient"),
    "dmp-cert-none": M("defect.dmp-cert-none"),
    "dmp-cert-expired": M("defect.dmp-cert-expired"),
    "dmp-cert-not-yet-valid": M("defect.dmp-cert-not-yet-valid"),
    "dmp-cert-expiring": M("defect.dmp-cert-expiring"),
    "dmp-cert-unknown-ca": M("defect.dmp-cert-unknown-ca"),
    "dmp-cert-revoked": M("defect.dmp-cert-revoked"),
    "dmp-meta-type-code": M("defect.dmp-meta-type-code"),
    "dmp-meta-hash": M("defect.dmp-meta-hash"),
    "dmp-meta-class-code": M("defect.dmp-meta-class-code"),
    "dmp-meta-no-author": M("defect.dmp-meta-no-author"),
    "dmp-rplc-unknown": M("defect.dmp-rplc-unknown"),
    "dmp-broken-mtom": M("defect.dmp-broken-mtom"),
    "dmp-retry-loop": M("defect.dmp-retry-loop"),
}

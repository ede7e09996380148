"""The demo's MSSanté defects: one per rule family of the MSSanté plugin (message, subject,
addresses, transport, archive, metadata, agreement), named apart from the client."""
from __future__ import annotations

from harness import Message, catalogue

M = catalogue(__name__)

MSSANTE_DEFECTS: dict[str, Message] = {
    "mss-hash": M("defect.mss-hash"),
    "mss-size": M("defect.mss-size"),
    "mss-no-index": M("defect.mss-no-index"),
    "mss-unlisted": M("defect.mss-unlisted"),
    "mss-missing-document": M("defect.mss-missing-document"),
    "mss-uri-from-root": M("defect.mss-uri-from-root"),
    "mss-path-escape": M("defect.mss-path-escape"),
    "mss-meta-malformed": M("defect.mss-meta-malformed"),
    "mss-meta-no-author": M("defect.mss-meta-no-author"),
    "mss-meta-type-code": M("defect.mss-meta-type-code"),
    "mss-subject": M("defect.mss-subject"),
    "mss-subject-patient": M("defect.mss-subject-patient"),
    "mss-no-attachment": M("defect.mss-no-attachment"),
    "mss-attachment-type": M("defect.mss-attachment-type"),
    "mss-no-human-copy": M("defect.mss-no-human-copy"),
    "mss-broken-mime": M("defect.mss-broken-mime"),
    "mss-address-domain": M("defect.mss-address-domain"),
    "mss-plain": M("defect.mss-plain"),
    "mss-too-large": M("defect.mss-too-large"),
    "mss-recv-unread": M("defect.mss-recv-unread"),
    "mss-recv-silent": M("defect.mss-recv-silent"),
    "mss-recv-ko-all": M("defect.mss-recv-ko-all"),
    "mss-recv-ko-elsewhere": M("defect.mss-recv-ko-elsewhere"),
    "mss-recv-plain": M("defect.mss-recv-plain"),
}

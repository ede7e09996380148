"""The demo's PDSm defects: named apart from its client, so that listing them (every run
validates the --defect option) does not load the FHIR stack."""
from __future__ import annotations

from harness import Message, catalogue

M = catalogue(__name__)

PDSM_DEFECTS: dict[str, Message] = {  # each breaks one rule of the PDSm scenarios
    "pdsm-not-transaction": M("defect.pdsm-not-transaction"),  # MHD-65-01
    "pdsm-hash": M("defect.pdsm-hash"),  # MHD-65-06
    "pdsm-no-custodian": M("defect.pdsm-no-custodian"),  # PDSM-DR-01
    "pdsm-type-code": M("defect.pdsm-type-code"),  # XDS-CDA-01, through MHD's mapping
    "pdsm-class-code": M("defect.pdsm-class-code"),  # SMT-VALUESET (JDV_J06), at the DocumentReference's FHIR path
    "pdsm-search-no-status": M("defect.pdsm-search-no-status"),  # PDSM-CONS-02
    "pdsm-first-page-only": M("defect.pdsm-first-page-only"),  # PDSM-CONS-05
    "pdsm-reads-superseded": M("defect.pdsm-reads-superseded"),  # PDSM-CONS-04
    "pdsm-error-as-empty": M("defect.pdsm-error-as-empty"),  # PDSM-CONS-06
}

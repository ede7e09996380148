"""The demo's Pro Santé Connect and e-ID defects: named apart from its client, so that listing them
(every run validates the --defect option) does not load the OpenID Connect stack."""
from __future__ import annotations

from harness import Message, catalogue

M = catalogue(__name__)

PSC_DEFECTS: dict[str, Message] = {
    "psc-state-unchecked": M("defect.psc-state-unchecked"),
    "psc-nonce-unchecked": M("defect.psc-nonce-unchecked"),
    "psc-signature-unchecked": M("defect.psc-signature-unchecked"),
    "psc-expiry-unchecked": M("defect.psc-expiry-unchecked"),
    "psc-audience-unchecked": M("defect.psc-audience-unchecked"),
    "psc-issuer-unchecked": M("defect.psc-issuer-unchecked"),
    "psc-acr-unchecked": M("defect.psc-acr-unchecked"),
    "psc-error-as-login": M("defect.psc-error-as-login"),
    "psc-no-pkce": M("defect.psc-no-pkce"),
    "psc-no-acr": M("defect.psc-no-acr"),
    "psc-token-in-url": M("defect.psc-token-in-url"),
    "psc-token-in-page": M("defect.psc-token-in-page"),
    "psc-cookie-readable": M("defect.psc-cookie-readable"),
    "psc-logout-local": M("defect.psc-logout-local"),
    # its DMP calls once logged in through PSC
    "psc-dmp-first-professional": M("defect.psc-dmp-first-professional"),
    "psc-dmp-direct-mode": M("defect.psc-dmp-direct-mode"),
    # its own login and sessions (e-ID referential)
    "eid-no-idle-timeout": M("defect.eid-no-idle-timeout"),
    "eid-password-only": M("defect.eid-password-only"),
    "eid-no-lockout": M("defect.eid-no-lockout"),
    "eid-enrol-anonymous": M("defect.eid-enrol-anonymous"),
}

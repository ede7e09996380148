"""The demo's use of the national terminology server (SMT), as its user interface uses it:
check the type of the note it writes (``ValueSet/$validate-code`` in JDV_J07), list the document
classes of its picker (``ValueSet/$expand`` of JDV_J06), show a code's French display
(``CodeSystem/$lookup``). Asked by ``POST /smt/check`` (``{"fhir": base URL}``), it answers what
it concluded for each: ``valid``, ``invalid``, or ``unverified`` when the server did not answer.
Each defect of :data:`SMT_DEFECTS` breaks one rule of the consumption scenario."""
from __future__ import annotations

import time

import requests

from harness import Message, catalogue

M = catalogue(__name__)
TIMEOUT = (2, 2)  # seconds to connect, to wait between bytes: a check behind a form field waits no longer
LOINC = "http://loinc.org"
J07 = "https://mos.esante.gouv.fr/NOS/JDV_J07-XdsTypeCode-CISIS/FHIR/JDV-J07-XdsTypeCode-CISIS"
J07_OID = "urn:oid:1.2.250.1.213.1.1.5.471"
J06 = "https://mos.esante.gouv.fr/NOS/JDV_J06-XdsClassCode-CISIS/FHIR/JDV-J06-XdsClassCode-CISIS"

SMT_DEFECTS: dict[str, Message] = {
    "smt-oid-url": M("defect.smt-oid-url"),  # SMT-USE-01
    "smt-no-system": M("defect.smt-no-system"),  # SMT-USE-02
    "smt-no-language": M("defect.smt-no-language"),  # SMT-USE-03
    "smt-invents-valid": M("defect.smt-invents-valid"),  # SMT-USE-04
    "smt-retry-now": M("defect.smt-retry-now"),  # SMT-USE-05
    "smt-cache-everything": M("defect.smt-cache-everything"),  # SMT-USE-06
    "smt-cache-stale": M("defect.smt-cache-stale"),  # SMT-USE-06 (max-age ignored, no-store honoured)
    "smt-silence-as-invalid": M("defect.smt-silence-as-invalid"),  # SMT-USE-04 (no answer taken for "invalid")
    "smt-no-timeout": M("defect.smt-no-timeout"),  # SMT-USE-07 (waits as long as the server keeps silent)
}
MAX_WAIT = 5.0  # seconds it waits at most when told to (Retry-After), once
SILENT = object()  # what a request that got no answer at all (timed out, connection lost) returns
# its answers kept between checks, as HTTP caching allows (RFC 9111): URL -> (until, answer)
_CACHE: dict[str, tuple[float, dict]] = {}


def check(fhir: str, defects: set[str]) -> dict:
    base = fhir if fhir.endswith("/") else fhir + "/"
    session = requests.Session()
    session.trust_env = False
    session.headers["User-Agent"] = "cabinet-demo/3.2.1"
    language = {} if "smt-no-language" in defects else {"displayLanguage": "fr-FR"}

    def ask(path: str, params: dict) -> dict | None:
        key = requests.Request("GET", base + path, params=params).prepare().url
        kept = _CACHE.get(key)
        if kept is not None and (kept[0] > time.monotonic() or defects & {"smt-cache-everything", "smt-cache-stale"}):
            return kept[1]
        timeout = (2, 30) if "smt-no-timeout" in defects else TIMEOUT
        try:
            res = session.get(key, headers={"Accept": "application/fhir+json"}, timeout=timeout)
            if res.status_code == 429:  # told to wait: once, as long as it says (bounded), unless the defect
                wait = 0.0 if "smt-retry-now" in defects else min(float(res.headers.get("Retry-After", "1") or 1), MAX_WAIT)
                time.sleep(wait)
                res = session.get(key, headers={"Accept": "application/fhir+json"}, timeout=timeout)
        except (requests.ConnectionError, requests.Timeout):
            return SILENT  # no answer at all
        except (requests.RequestException, ValueError):
            return None
        if res.status_code != 200:
            return None
        try:
            body = res.json()
        except ValueError:
            return None
        control = res.headers.get("Cache-Control", "").lower()
        age = next((int(d.split("=", 1)[1]) for d in control.split(",") if d.strip().startswith("max-age=") and d.split("=", 1)[1].strip().isdigit()), 0)
        if "smt-cache-everything" in defects or ("no-store" not in control and "no-cache" not in control and age > 0):
            _CACHE[key] = (time.monotonic() + (3600 if "smt-cache-stale" in defects else age), body)
        return body

    def param(body: dict | None, name: str):
        if not isinstance(body, dict):
            return None
        for p in body.get("parameter", []):
            if p.get("name") == name:
                return next((v for k, v in p.items() if k.startswith("value")), None)
        return None

    def conclude(answer, value: bool) -> str:
        if answer is SILENT and "smt-silence-as-invalid" in defects:
            return "invalid"
        if answer is None or answer is SILENT:
            return "valid" if "smt-invents-valid" in defects else "unverified"
        return "valid" if value else "invalid"

    results = []
    validate = {"url": J07_OID if "smt-oid-url" in defects else J07, "code": "11488-4", **language}
    if "smt-no-system" not in defects:
        validate["system"] = LOINC
    answer = ask("ValueSet/$validate-code", validate)
    results.append({"question": "11488-4 dans JDV_J07", "conclusion": conclude(answer, bool(param(answer, "result")))})
    answer = ask("ValueSet/$expand", {"url": J06, **language})
    codes = {c.get("code") for c in ((answer if isinstance(answer, dict) else {}).get("expansion") or {}).get("contains", [])}
    results.append({"question": "classe 10 proposée (JDV_J06)", "conclusion": conclude(answer, "10" in codes)})
    answer = ask("CodeSystem/$lookup", {"system": LOINC, "code": "11488-4", **language})
    results.append({"question": "libellé de 11488-4", "conclusion": conclude(answer, param(answer, "display") is not None), "display": param(answer, "display")})
    return {"results": results}

"""The DMP checks on crafted sessions: each can fail, none passes on nothing."""
import hashlib
import json

from harness.running.context import Artefact
from harness_dmp import checks
from tests.checking import run

NOW = "2026-11-30T10:00:00.000000Z"


def inputs(session: dict, status: dict | None = None):
    blobs = {"dmp.session": json.dumps(session).encode()}
    if status is not None:
        blobs["dmp.status"] = json.dumps(status).encode()
    store = {hashlib.sha256(b).hexdigest(): b for b in blobs.values()}
    arts = {k: Artefact(hashlib.sha256(b).hexdigest(), len(b), "application/json", k) for k, b in blobs.items()}
    return arts, store.__getitem__


def conn(n: int, accepted: bool = True, **kw) -> dict:
    return {"n": n, "at": NOW, "peer": "127.0.0.1:1", "accepted": accepted, "certificate": kw.pop("certificate", None), "error": "",
            "verify_code": None, **kw}


def exchange(n: int, transaction: str, outcome: str = "Success", **facts) -> dict:
    return {"n": n, "at": NOW, "transaction": transaction, "outcome": outcome, "http_status": 200, "errors": [], "facts": facts,
            "documents": []}


def session(connections=(), exchanges=(), refuses=False) -> dict:
    return {"simulator": "https://127.0.0.1:1/", "refuses_certificates": refuses, "connections": list(connections), "exchanges": list(exchanges)}


def verdict(fn, s, status=None):
    arts, load = inputs(s, status)
    v, steps, findings = run(fn, arts, load=load)
    return v.value, sorted({f.rule for f in findings if f.severity.fails})


def test_nothing_called_is_never_a_pass():
    for fn in (checks.check_feed, checks.check_consult, checks.check_tls, checks.check_blocked):
        assert verdict(fn, session())[0] == "INCONCLUSIVE", fn.__name__


def test_feed_needs_an_accepted_replacement():
    assert verdict(checks.check_feed, session([conn(1)], [exchange(1, "ITI-41", replaced=[])])) == ("FAIL", ["DMP-FEED-02"])
    assert verdict(checks.check_feed, session([conn(1)], [exchange(1, "ITI-41", replaced=["urn:uuid:x"])])) == ("PASS", [])
    assert verdict(checks.check_feed, session([conn(1)], [exchange(1, "ITI-18")])) == ("FAIL", ["DMP-FEED-01"])


def test_consult_compares_what_comes_back_with_what_was_submitted():
    submitted = exchange(1, "ITI-41", submitted=[{"unique": "1.2^D1", "sha256": "a" * 64}])
    base = [submitted, exchange(2, "ITI-18"), exchange(4, "ITI-57")]
    same = exchange(3, "ITI-43", returned={"1.2^D1": "a" * 64})
    other = exchange(3, "ITI-43", returned={"1.2^D1": "b" * 64})
    assert verdict(checks.check_consult, session([conn(1)], base + [same])) == ("PASS", [])
    assert verdict(checks.check_consult, session([conn(1)], base + [other])) == ("FAIL", ["DMP-CONS-03"])
    assert verdict(checks.check_consult, session([conn(1)], base[:1] + [same])) == ("FAIL", ["DMP-CONS-01"])


def test_tls_reasons_each_have_their_rule():
    cert = {"subject": "CN=x", "issuer": "CN=ca", "not_before": "2026-01-01T00:00:00Z", "not_after": "2027-06-01T00:00:00Z", "serial": "1", "sha256": "0"}
    assert verdict(checks.check_tls, session([conn(1, certificate=cert)])) == ("PASS", [])
    assert verdict(checks.check_tls, session([conn(1)])) == ("FAIL", ["DMP-TLS-01"])
    for code, rule in ((10, "DMP-TLS-02"), (9, "DMP-TLS-03"), (20, "DMP-TLS-04"), (None, "DMP-TLS-06")):
        assert verdict(checks.check_tls, session([conn(1, accepted=False, verify_code=code, error="x")])) == ("FAIL", [rule])


def test_blocked_counts_attempts_and_reads_what_the_user_is_told():
    refused = [conn(n, accepted=False, error="unknown ca") for n in (1, 2)]
    assert verdict(checks.check_blocked, session(refused, refuses=True), {"dmp": {"state": "blocked"}}) == ("PASS", [])
    assert verdict(checks.check_blocked, session(refused, refuses=True), {"dmp": {"state": "done"}}) == ("FAIL", ["DMP-BLOCK-02"])
    assert verdict(checks.check_blocked, session(refused, refuses=True)) == ("MANUAL_PENDING", [])
    loop = [conn(n, accepted=False, error="unknown ca") for n in range(1, 9)]
    assert verdict(checks.check_blocked, session(loop, refuses=True), {"dmp": {"state": "blocked"}}) == ("FAIL", ["DMP-BLOCK-01"])

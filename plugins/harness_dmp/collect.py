"""Collectors of the DMP plugin: what the software sent to the DMP simulator.

Target file::

    [endpoints]
    dmp = "service://dmp/"                 # the simulator the software calls
    dmp_feed = "..."                       # optional: POST {"url", "credentials"} asks the software to feed the DMP now
    dmp_blocked = "service://dmp-blocked/" # a simulator that refuses every certificate
    dmp_status = "..."                     # optional: GET, what the software tells its user about the DMP

    [dmp]
    wait = 60        # seconds to wait for the software when nobody can ask it (no dmp_feed)
    quiet = 3        # seconds without a call that end the wait
    watch = 5        # seconds the blocked simulator watches for retries

    [services.dmp]   # options: port, credentials_dir, trust (CA files), max_request, max_document
    [services.dmp-blocked]
    refuse_certificates = true

Every connection (accepted or not, with the client certificate or the handshake's reason),
and every exchange (raw request and response, metadata, documents, VIHF) is recorded; the
checks judge the record, offline.
"""
from __future__ import annotations

import json
import time

from harness import CollectContext, HarnessError, NotApplicable, catalogue, collector


M = catalogue(__name__)
WAIT = 60.0
QUIET = 3.0
WATCH = 5.0
CRL_TIMEOUT = 5.0  # seconds to fetch the PKI's CRL at the end of a session
SETTLE = 0.3  # seconds without a call after the software answered the feed request (its calls are done)


def _simulator(ctx: CollectContext, endpoint: str):
    from .simulator import running  # the TLS and XML-signature stack, loaded when a run needs it

    url = ctx.endpoint(endpoint)
    if url is None:
        raise NotApplicable(M("collect.no_dmp", endpoint=endpoint))
    sim = running(url)
    if sim is None:
        raise HarnessError(M("collect.not_simulator", url=url))
    return sim


def _ask(ctx: CollectContext, sim, outputs: dict, label: str) -> bool:
    """Ask the software to call the DMP now, when it can be asked; True when it was."""
    feed = ctx.endpoint("dmp_feed")
    if feed is None:
        return False
    body = json.dumps({"url": sim.base_url, "credentials": str(sim.credentials)}).encode()
    res = ctx.http.post(feed, label=label, body=body, headers={"Content-Type": "application/json"})
    outputs[f"{label}.exchange"] = res.exchange
    if not res.ok:
        said = res.error or res.data[:200].decode("utf-8", "replace")
        raise HarnessError(M("collect.feed_refused", url=feed, status=res.status, said=said))
    return True


def _record(ctx: CollectContext, sim, first_connection: int, first_exchange: int, first_revocation: int, outputs: dict) -> None:
    connections = sim.journal.connections[first_connection:]
    exchanges = sim.journal.exchanges[first_exchange:]
    summary = []
    for ex in exchanges:
        key = f"{ex.n:03d}"
        item = {"n": ex.n, "at": ex.at, "connection": ex.connection, "path": ex.path, "transaction": ex.transaction, "action": ex.action,
                "complete": ex.complete, "http_status": ex.http_status, "outcome": ex.outcome,
                "errors": [{"code": c, "context": t} for c, t in ex.errors], "facts": ex.facts, "documents": []}
        outputs[f"dmp-request/{key}"] = ctx.record(ex.request, media_type=ex.content_type.split(";")[0] or "application/octet-stream", label=f"dmp.request:{key}")
        if ex.response:
            outputs[f"dmp-response/{key}"] = ctx.record(ex.response, media_type=ex.response_type.split(";")[0], label=f"dmp.response:{key}")
        if ex.metadata is not None:
            outputs[f"dmp-meta/{key}"] = ctx.record(ex.metadata, media_type="application/xml", label=f"dmp.metadata:{key}")
        if ex.assertion is not None:
            outputs[f"dmp-vihf/{key}"] = ctx.record(ex.assertion, media_type="application/xml", label=f"dmp.vihf:{key}")
        if ex.transaction == "ITI-41":
            for entry_id, data in ex.documents:
                name = f"{key}-{entry_id}"
                outputs[f"dmp-doc/{name}"] = ctx.record(data, media_type="application/xml", label=f"dmp.document:{name}")
                item["documents"].append({"entry": entry_id, "input": f"dmp-doc/{name}"})
        summary.append(item)
    session = {
        "simulator": sim.base_url, "refuses_certificates": sim.refuse, "credentials": str(sim.credentials),
        "connections": [c.__dict__ for c in connections], "exchanges": summary,
        "revocation": _record_revocation(ctx, sim, first_revocation, outputs),
    }
    outputs["dmp.session"] = ctx.record_json(session, label="dmp.session")
    from harness import pki  # the TLS stack, loaded when a run needs it

    outputs["dmp.trust"] = ctx.record(b"".join(pki.pem(c) for c in sim.trusted), media_type="application/x-pem-file", label="dmp.trust")


def _record_revocation(ctx: CollectContext, sim, first: int, outputs: dict) -> list[dict]:
    """The exchanges of the simulator's PKI (the OCSP questions it asked about the client's
    certificates), then its CRL as it stands at the end of the session (fetched now: a
    verifier checks offline, with the trust anchors, which certificates were revoked)."""
    from harness import pki

    service = sim.pki.service
    if service is None:
        return []
    try:
        pki.fetch_crl(service.crl_url, timeout=CRL_TIMEOUT)
    except (OSError, ValueError):
        pass  # the failure is in the responder's journal, if the request reached it
    out = []
    for ex in service.journal.exchanges[first:]:
        key = f"{ex.n:03d}"
        item = {"n": ex.n, "at": ex.at, "connection": ex.connection, "method": ex.method, "path": ex.path, "http_status": ex.http_status,
                "facts": ex.facts}
        if ex.request:
            outputs[f"dmp-pki/{key}-request"] = ctx.record(ex.request, media_type=ex.content_type.split(";")[0] or "application/octet-stream",
                                                           label=f"dmp.pki.request:{key}")
            item["request"] = f"dmp-pki/{key}-request"
        if ex.response:
            outputs[f"dmp-pki/{key}-response"] = ctx.record(ex.response, media_type=ex.response_type.split(";")[0], label=f"dmp.pki.response:{key}")
            item["response"] = f"dmp-pki/{key}-response"
        out.append(item)
    return out


@collector(produces=["dmp.session", "dmp.trust", "dmp-feed.exchange", "dmp-request", "dmp-response", "dmp-meta", "dmp-vihf", "dmp-doc", "dmp-pki"],
           once_per_run=True)
def collect_exchanges(ctx: CollectContext) -> dict:
    """The software feeds and consults the DMP simulator: asked through ``dmp_feed``, or by
    its user while the harness waits (``[dmp] wait``)."""
    sim = _simulator(ctx, "dmp")
    conf = ctx.target.section("dmp")
    outputs: dict = {}
    first_connection, first_exchange = len(sim.journal.connections), len(sim.journal.exchanges)
    first_revocation = len(sim.pki.service.journal.exchanges) if sim.pki.service is not None else 0
    asked = _ask(ctx, sim, outputs, "dmp-feed")
    if asked:
        sim.wait_quiet(after=first_connection, quiet=SETTLE, deadline=time.monotonic() + float(conf.get("quiet", QUIET)) + SETTLE)
    else:
        sim.wait_quiet(after=first_connection, quiet=float(conf.get("quiet", QUIET)), deadline=time.monotonic() + float(conf.get("wait", WAIT)))
    _record(ctx, sim, first_connection, first_exchange, first_revocation, outputs)
    return outputs


@collector(produces=["dmp.session", "dmp.trust", "dmp-feed.exchange", "dmp-request", "dmp-response", "dmp-meta", "dmp-vihf", "dmp-doc", "dmp-pki",
                     "dmp.status", "dmp-status.exchange"])
def collect_blocked(ctx: CollectContext) -> dict:
    """The software calls a DMP that refuses its certificate: every attempt is recorded, for
    ``[dmp] watch`` seconds, then what the software tells its user (``dmp_status``)."""
    sim = _simulator(ctx, "dmp_blocked")
    if not sim.refuse:
        raise HarnessError(M("collect.not_refusing", url=sim.base_url))
    conf = ctx.target.section("dmp")
    outputs: dict = {}
    first_connection, first_exchange = len(sim.journal.connections), len(sim.journal.exchanges)
    first_revocation = len(sim.pki.service.journal.exchanges) if sim.pki.service is not None else 0
    started = time.monotonic()
    asked = _ask(ctx, sim, outputs, "dmp-feed")  # else its user makes it call, within [dmp] wait
    watch = float(conf.get("watch", WATCH))
    sim.wait_quiet(after=first_connection, quiet=watch, deadline=started + (watch * 3 if asked else float(conf.get("wait", WAIT)) + watch))
    _record(ctx, sim, first_connection, first_exchange, first_revocation, outputs)
    status = ctx.endpoint("dmp_status")
    if status is not None:
        res = ctx.http.get(status, label="dmp.status")
        outputs["dmp-status.exchange"] = res.exchange
        if res.ok and res.body is not None:
            outputs["dmp.status"] = res.body
    return outputs


@collector(produces=["dmp.session", "dmp.trust", "dmp-request", "dmp-response", "dmp-meta", "dmp-vihf", "dmp-doc", "dmp-pki"])
def collect_journal(ctx: CollectContext) -> dict:
    """Every call the DMP simulator of this process received so far, once the calls under way
    ended (``SETTLE`` seconds without one, at most ``[dmp] quiet`` more): the calls the
    scenario's earlier steps made the software send (a professional's action in its pages,
    driven by another plugin), judged by that plugin's checks on this record."""
    sim = _simulator(ctx, "dmp")
    outputs: dict = {}
    sim.wait_quiet(after=0, quiet=SETTLE, deadline=time.monotonic() + float(ctx.target.section("dmp").get("quiet", QUIET)) + SETTLE)
    _record(ctx, sim, 0, 0, 0, outputs)
    return outputs

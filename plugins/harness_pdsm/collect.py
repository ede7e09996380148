"""Collector of the PDSm plugin: what the software sent to the PDSm stand-in and what it got.

Target file::

    [endpoints]
    pdsm = "service://pdsm/"           # the stand-in the software calls
    pdsm_publish = "..."               # optional: POST {"url", "credentials"} asks the software to
                                       # publish its documents now (ITI-65), then consult them (ITI-67/68/66)
    pdsm_consult = "..."               # optional: POST {"url", "credentials"} asks it to consult only; asked
                                       # while every search fails (503), it answers what it tells its user:
                                       # {"state": "done" | "error", "documents": N}
    [pdsm]
    wait = 60    # seconds to wait for the software when nobody can ask it (no pdsm_publish)
    quiet = 3    # seconds without a call that end the wait

    [services.pdsm]  # port, credentials_dir, store ("dmp": the DMP simulator's registry), page_size, max_request, max_document

Every exchange (raw request and response, and what the stand-in found in it) is recorded;
the checks judge the record, offline.
"""
from __future__ import annotations

import json
import time

from harness import CollectContext, HarnessError, NotApplicable, UnsafeInput, catalogue, collector, parse_json

M = catalogue(__name__)
WAIT, QUIET, SETTLE = 60.0, 3.0, 0.3
MAX_ANSWER = 1024 * 1024  # bytes of what the software answers the harness


def _record_documents(ctx: CollectContext, key: str, ex, item: dict, outputs: dict) -> None:
    """Each XML document a publication carried (a CDA in a Binary, as the stand-in read it), as an
    input of its own (``pdsm-doc/NNN-K``): the built-in CDA checks and the terminology read it as
    they read what reached the DMP."""
    for k, (path, data) in enumerate(ex.documents, 1):
        name = f"{key}-{k}"
        outputs[f"pdsm-doc/{name}"] = ctx.record(data, media_type="application/xml", label=f"pdsm.document:{name}")
        item["documents"].append({"input": f"pdsm-doc/{name}", "path": path})


@collector(produces=["pdsm.session", "pdsm-publish.exchange", "pdsm-consult-failing.exchange", "pdsm-request", "pdsm-response", "pdsm-doc"],
           once_per_run=True)
def collect_exchanges(ctx: CollectContext) -> dict:
    """The software publishes to and consults the stand-in: asked through ``pdsm_publish``, or
    by its user while the harness waits (``[pdsm] wait``)."""
    from .standin import PdsmStandIn

    url = ctx.endpoint("pdsm")
    if url is None:
        raise NotApplicable(M("collect.no_pdsm"))
    standin = PdsmStandIn.running(url)
    if standin is None:
        raise HarnessError(M("collect.not_standin", url=url))
    if standin.store:  # the store it fronts is another service of the run: started now, if the target reaches it
        for name, value in ctx.target.endpoints.items():
            if str(value).startswith(f"service://{standin.store}/"):
                ctx.endpoint(name)
                break
    conf = ctx.target.section("pdsm")
    outputs: dict = {}
    first_connection, first = len(standin.journal.connections), len(standin.journal.exchanges)
    body = json.dumps({"url": standin.base_url, "credentials": str(standin.credentials)}).encode()  # what the software is asked with
    publish = ctx.endpoint("pdsm_publish")
    if publish is not None:
        res = ctx.http.post(publish, label="pdsm-publish", body=body, headers={"Content-Type": "application/json"})
        outputs["pdsm-publish.exchange"] = res.exchange
        if not res.ok:
            raise HarnessError(M("collect.publish_refused", url=publish, status=res.status, said=res.error or res.data[:200].decode("utf-8", "replace")))
        standin.wait_quiet(after=first_connection, quiet=SETTLE, deadline=time.monotonic() + float(conf.get("quiet", QUIET)) + SETTLE)
    else:
        standin.wait_quiet(after=first_connection, quiet=float(conf.get("quiet", QUIET)), deadline=time.monotonic() + float(conf.get("wait", WAIT)))
    failing_from, failing = None, None
    consult = ctx.endpoint("pdsm_consult")
    if consult is not None:  # the same consultation while every search fails: what does the software tell its user?
        failing_from = len(standin.journal.exchanges)
        standin.searches_fail = True
        try:
            res = ctx.http.post(consult, label="pdsm-consult-failing", headers={"Content-Type": "application/json"}, body=body)
        finally:
            standin.searches_fail = False
        outputs["pdsm-consult-failing.exchange"] = res.exchange
        try:
            answer = parse_json(res.data, source="pdsm-consult-failing", max_bytes=MAX_ANSWER) if res.ok else None
        except UnsafeInput:
            answer = None
        failing = {"http_status": res.status, "answer": answer if isinstance(answer, dict) else None}
    exchanges = []
    for ex in standin.journal.exchanges[first:]:
        key = f"{ex.n:03d}"
        if ex.request:  # a search or a read sends no body: its path and parameters are in the session
            outputs[f"pdsm-request/{key}"] = ctx.record(ex.request, media_type=ex.content_type.split(";")[0] or "application/octet-stream",
                                                        label=f"pdsm.request:{key}")
        if ex.response:
            outputs[f"pdsm-response/{key}"] = ctx.record(ex.response, media_type=ex.response_type.split(";")[0] or "application/octet-stream",
                                                         label=f"pdsm.response:{key}")
        item = {"n": ex.n, "at": ex.at, "method": ex.method, "path": ex.path, "content_type": ex.content_type, "complete": ex.complete,
                "http_status": ex.http_status, "facts": ex.facts, "documents": [],
                "phase": "failing" if failing_from is not None and ex.n > failing_from else "answering"}
        if ex.documents:
            _record_documents(ctx, key, ex, item, outputs)
        exchanges.append(item)
    session = {"standin": standin.base_url, "store": standin.store or "own", "page_size": standin.page_size,
               "dropped": standin.journal.dropped, "exchanges": exchanges, "failing": failing}
    outputs["pdsm.session"] = ctx.record_json(session, label="pdsm.session")
    return outputs

"""Collectors of the INS plugin: what the software says about patients, in each channel.

Every channel reads files (``[ins] hl7v2 / cda / fhir`` folders) and/or talks to the live
software (MLLP feed, FHIR endpoint, document index). Everything is recorded as received;
checks judge the record.

Target file::

    [ins]
    hl7v2 = "exports/hl7"     # files: *.hl7, *.er7, *.txt (one message or several)
    cda = "exports/cda"       # *.xml (default: [cda] documents)
    fhir = "exports/fhir"     # *.json: a Patient, a Bundle or a list
    mllp_port = 2575          # where the harness listens for the software's feed (0: any)
    mllp_messages = 3         # stop listening once this many messages arrived
    mllp_wait = 30            # seconds to wait for the feed

    [endpoints]
    ins_feed = "..."          # optional: POST {"host", "port"} asks the software to send its feed now
    fhir = "..."              # FHIR base: GET {fhir}/Patient
    cda_index = "..."         # optional: a JSON list of document URLs
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from harness import CollectContext, HarnessError, NotApplicable, UnsafeInput, catalogue, collector, parse_json

from .mllp import MllpListener

M = catalogue(__name__)
HL7_SUFFIXES = (".hl7", ".er7", ".txt")
MAX_FILE = 16 * 1024 * 1024
MAX_PAGES = 20
MAX_DOCUMENTS = 500


def _conf(ctx: CollectContext) -> dict:
    return ctx.target.section("ins")


def _folder(folder: Path, what: str) -> Path:
    if not folder.is_dir():
        raise HarnessError(M("collect.folder_not_found", what=what, folder=str(folder)))
    return folder


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


@collector(produces=["hl7", "mllp", "mllp-refused", "mllp.session", "feed.exchange"])
def collect_hl7v2(ctx: CollectContext) -> dict:
    """HL7 v2 messages: files of the ``hl7v2`` folder, then the live feed over MLLP."""
    conf = _conf(ctx)
    feed = ctx.endpoint("ins_feed")
    live = feed is not None or "mllp_port" in conf or "mllp_messages" in conf
    if not conf.get("hl7v2") and not live:
        raise NotApplicable(M("collect.no_hl7v2"))
    outputs = {}
    if conf.get("hl7v2"):
        for path in _files(_folder(conf["hl7v2"], "HL7 v2"), HL7_SUFFIXES):
            data = ctx.read_file(path, limit=MAX_FILE)  # a larger file is refused, the others are read
            if data is not None:
                outputs[f"hl7/{path.name}"] = ctx.record(data, media_type="x-application/hl7-v2+er7", label=f"ins.hl7v2:{path.name}")
    if live:
        outputs.update(_listen(ctx, conf, feed))
    return outputs


def _listen(ctx: CollectContext, conf: dict, feed: str | None) -> dict:
    outputs = {}
    expected = conf.get("mllp_messages")
    port = int(conf.get("mllp_port", 0))
    try:
        listener = MllpListener(port)
    except OSError as exc:
        raise HarnessError(M("collect.mllp_busy", port=port, error=exc.strerror)) from None
    with listener as rx:
        if feed is not None:
            res = ctx.http.post(feed, label="ins.feed", body=json.dumps({"host": rx.host, "port": rx.port}).encode())
            outputs["feed.exchange"] = res.exchange
            if not res.ok:
                said = res.error or res.data[:200].decode("utf-8", "replace")
                raise HarnessError(M("collect.feed_refused", url=feed, status=res.status, said=said))
            if expected is None:
                try:
                    expected = int(parse_json(res.data, source=feed)["sent"])
                except (UnsafeInput, ValueError, KeyError, TypeError):
                    expected = None
        received = rx.wait(expected, float(conf.get("mllp_wait", 30 if feed is None else 10)))
    summary = []
    for n, item in enumerate(received, 1):
        # a frame over the limit is refused whole: its first bytes are kept as evidence, apart
        group = "mllp-refused" if item.oversized else "mllp"
        outputs[f"{group}/{n:03d}"] = ctx.record(item.data, media_type="x-application/hl7-v2+er7", label=f"ins.{group}:{n:03d}")
        ack = ctx.record(item.ack, media_type="x-application/hl7-v2+er7", label=f"ins.mllp-ack:{n:03d}")
        summary.append({"n": n, "peer": item.peer, "framed": item.framed, "ack": item.code, "ack_sha256": ack.sha256,
                        **({"refused": "oversized", "size": item.size} if item.oversized else {})})
    outputs["mllp.session"] = ctx.record_json({"listened_on": f"{rx.host}:{rx.port}", "expected": expected, "received": summary}, label="ins.mllp-session")
    return outputs


@collector(produces=["cda", "cda-index.exchange", "cda-live", "cda-live.exchange"])
def collect_cda(ctx: CollectContext) -> dict:
    """CDA documents: the ``[ins] cda`` folder (else ``[cda] documents``) and the live index."""
    conf = _conf(ctx)
    folder = conf.get("cda") or ctx.target.section("cda").get("documents")
    index = ctx.endpoint("cda_index")
    if not folder and index is None:
        raise NotApplicable(M("collect.no_cda"))
    outputs = {}
    if folder:
        for path in _files(_folder(folder, "CDA"), (".xml",)):
            data = ctx.read_file(path, limit=MAX_FILE)  # a larger file is refused, the others are read
            if data is not None:
                outputs[f"cda/{path.name}"] = ctx.record(data, media_type="application/xml", label=f"ins.cda:{path.name}")
    if index is not None:
        outputs.update(ctx.fetch_index(index, prefix="cda", label="ins.cda", limit=MAX_DOCUMENTS))
    return outputs


@collector(produces=["fhir", "fhir-live", "fhir-live.exchange"])
def collect_fhir(ctx: CollectContext) -> dict:
    """FHIR Patient resources: the ``[ins] fhir`` folder and ``{fhir}/Patient`` (all pages)."""
    conf = _conf(ctx)
    base = ctx.endpoint("fhir")
    if not conf.get("fhir") and base is None:
        raise NotApplicable(M("collect.no_fhir"))
    outputs = {}
    if conf.get("fhir"):
        for path in _files(_folder(conf["fhir"], "FHIR"), (".json",)):
            data = ctx.read_file(path, limit=MAX_FILE)  # a larger file is refused, the others are read
            if data is not None:
                outputs[f"fhir/{path.name}"] = ctx.record(data, media_type="application/fhir+json", label=f"ins.fhir:{path.name}")
    if base is not None:
        url: str | None = base.rstrip("/") + "/Patient"
        for page in range(1, MAX_PAGES + 1):
            res = ctx.http.get(url, label=f"ins.fhir-search:{page}", headers={"Accept": "application/fhir+json"})
            outputs[f"fhir-live.exchange/{page:02d}"] = res.exchange
            if not res.ok:
                raise HarnessError(M("collect.fhir_unreachable", url=url, status=res.status, error=res.error))
            outputs[f"fhir-live/{page:02d}"] = res.body
            url = _next_page(res.data, base)
            if url is None:
                break
    return outputs


def _next_page(data: bytes, base: str) -> str | None:
    try:
        bundle = parse_json(data, source=base)
        links = bundle.get("link", []) if isinstance(bundle, dict) else []
        nxt = next((l.get("url") for l in links if isinstance(l, dict) and l.get("relation") == "next"), None)
    except (UnsafeInput, AttributeError):
        return None
    if isinstance(nxt, str) and urlsplit(nxt)[:2] == urlsplit(base)[:2]:
        return nxt
    return None

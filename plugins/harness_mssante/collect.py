"""Collector of the MSSanté plugin: the messages the software sends, and what they carry.

Target file::

    [endpoints]
    mssante = "service://mssante/"          # the mail simulator the software sends to
    mssante_send = "..."                    # optional: POST {"host", "port", "tls", "certificate"}
                                            # asks the software to send its messages now
    [mssante]
    domains = ["mssante.fr"]                # MSSanté domains (a domain covers its subdomains)
    human_copy = true                       # a human-readable copy (PDF) is expected beside the archive
    messages = "exported-mails/"            # or: judge the .eml files of this folder (no simulator)
    wait = 60                               # seconds to wait for the software when nobody can ask it
    quiet = 3                               # seconds without activity that end the wait

    [services.mssante]                      # options: port, tls (starttls, required, plain),
                                            # max_message (bytes), deadline and idle (seconds)

Recorded: the journal of the simulator (connections, STARTTLS, replies, how each message
ended: ``mss.session``), each message raw as received (``mss-raw/NNN``), each XDM archive it
carries (``mss-xdm/NNN-K``), and, taken out of each archive that the safe reader accepts,
its metadata (``mss-meta/NNN-K-SUBSET``) and its XML documents (``mss-doc/NNN-K-ENTRY``), so
that the CDA and terminology checks judge them like any document. The checks re-derive
everything else from these bytes.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from harness import CollectContext, HarnessError, NotApplicable, SafeArchive, UnsafeInput, catalogue, collector

from . import mail

M = catalogue(__name__)
WAIT = 60.0
QUIET = 3.0
SETTLE = 0.3
MAX_FILE_MESSAGE = 64 * 1024 * 1024  # an .eml file
MAX_DOCUMENT = 32 * 1024 * 1024  # an XML document taken out of an archive for the CDA checks
MAX_FILES = 500


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:80] or "_"


def _maybe_cda(data: bytes, source: str) -> bool:
    """Whether an XML document of an archive is for the CDA checks: a CDA document, or one
    they must say they cannot read (malformed, naming ClinicalDocument)."""
    from harness_cda.document import NotCda, read_cda

    try:
        read_cda(data, source)
    except NotCda:
        return False
    except UnsafeInput as exc:
        return exc.reason != "xml-malformed" or b"ClinicalDocument" in data
    return True


def _extract(ctx: CollectContext, key: str, raw: bytes, human_copy: bool, outputs: dict) -> list[dict]:
    """Record each XDM archive of a message and what the safe reader lets us take out."""
    from harness_xds import xdm

    archives = []
    reading = mail.read(raw, human_copy=human_copy)
    for k, part in enumerate(reading.xdm, 1):
        if part.payload is None:
            continue
        name = f"{key}-{k}"
        outputs[f"mss-xdm/{name}"] = ctx.record(part.payload, media_type="application/zip", label=f"mssante.xdm:{name}")
        item = {"input": f"mss-xdm/{name}", "part": part.path, "metadata": [], "documents": []}
        archives.append(item)
        try:
            with SafeArchive(part.payload, name=f"mss-xdm/{name}", limits=xdm.LIMITS) as archive:
                found = xdm.read(archive)
                for subset in found.subsets:
                    folder = subset.folder.rstrip("/").rsplit("/", 1)[-1]
                    meta = f"{name}-{_safe(folder)}"
                    outputs[f"mss-meta/{meta}"] = ctx.record(archive.read(subset.metadata_path), media_type="application/xml",
                                                             label=f"mssante.metadata:{meta}")
                    item["metadata"].append({"input": f"mss-meta/{meta}", "path": subset.metadata_path})
                    for d in subset.documents:
                        entry = subset.submission.document(d.entry_id) if subset.submission else None
                        if entry is None or "xml" not in (entry.attributes.get("mimeType") or "") or d.size > MAX_DOCUMENT:
                            continue
                        data = archive.read(d.path)
                        if not _maybe_cda(data, d.path):
                            continue  # XML that is no CDA document (an IHE DSG signature, say)
                        doc = f"{name}-{_safe(d.entry_id)}"
                        outputs[f"mss-doc/{doc}"] = ctx.record(data, media_type="application/xml", label=f"mssante.document:{doc}")
                        item["documents"].append({"input": f"mss-doc/{doc}", "path": d.path, "entry": d.entry_id})
        except UnsafeInput:
            continue  # the archive checks say why, from the recorded archive
    return archives


def _from_files(ctx: CollectContext, folder: Path, human_copy: bool) -> dict:
    if not folder.is_dir():
        raise HarnessError(M("collect.no_folder", folder=str(folder)))
    outputs: dict = {}
    messages = []
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".eml")
    if not files:
        raise HarnessError(M("collect.no_eml", folder=str(folder)))
    for n, path in enumerate(files[:MAX_FILES], 1):
        raw = ctx.read_file(path, limit=MAX_FILE_MESSAGE)
        if raw is None:
            continue
        key = f"{n:03d}"
        outputs[f"mss-raw/{key}"] = ctx.record(raw, media_type="message/rfc822", label=f"mssante.message:{key}")
        messages.append({"n": n, "input": f"mss-raw/{key}", "file": path.name, "outcome": "file", "complete": True, "read": len(raw),
                         "kept": len(raw), "archives": _extract(ctx, key, raw, human_copy, outputs)})
    if len(files) > MAX_FILES:
        ctx.refuse(str(folder), M("collect.too_many_files", count=len(files), limit=MAX_FILES))
    outputs["mss.session"] = ctx.record_json({"source": "files", "folder": str(folder), "connections": [], "messages": messages},
                                             label="mssante.session")
    return outputs


def _ask(ctx: CollectContext, sim, outputs: dict) -> bool:
    send = ctx.endpoint("mssante_send")
    if send is None:
        return False
    body = json.dumps({"host": "127.0.0.1", "port": sim.port, "tls": sim.tls,
                       "certificate": str(sim.certificate) if sim.certificate else None}).encode()
    res = ctx.http.post(send, label="mssante-send", body=body, headers={"Content-Type": "application/json"})
    outputs["mss-send.exchange"] = res.exchange
    if not res.ok:
        said = res.error or res.data[:200].decode("utf-8", "replace")
        raise HarnessError(M("collect.send_refused", url=send, status=res.status, said=said))
    return True


@collector(produces=["mss.session", "mss-send.exchange", "mss-raw", "mss-xdm", "mss-meta", "mss-doc"], once_per_run=True)
def collect_messages(ctx: CollectContext) -> dict:
    """The software sends its messages to the mail simulator (asked through ``mssante_send``,
    or by its user while the harness waits), or the target names a folder of ``.eml`` files."""
    conf = ctx.target.section("mssante")
    human_copy = bool(conf.get("human_copy", False))
    if conf.get("messages"):
        return _from_files(ctx, Path(conf["messages"]), human_copy)
    from .simulator import running

    sim = _running(ctx, "mssante", running, M("collect.no_mssante"), "collect.not_simulator")
    outputs: dict = {}
    first_connection, first_message = len(sim.journal.connections), len(sim.journal.messages)
    if _ask(ctx, sim, outputs):
        sim.wait_quiet(after=first_connection, quiet=SETTLE, deadline=time.monotonic() + float(conf.get("quiet", QUIET)) + SETTLE)
    else:
        sim.wait_quiet(after=first_connection, quiet=float(conf.get("quiet", QUIET)), deadline=time.monotonic() + float(conf.get("wait", WAIT)))
    with sim.journal.lock:
        connections = [dict(c.__dict__) for c in sim.journal.connections[first_connection:]]
        received = list(sim.journal.messages[first_message:])
    messages = []
    for m in received:
        key = f"{m.n:03d}"
        raw = m.raw
        item = {"n": m.n, "input": f"mss-raw/{key}", "connection": m.connection, "at": m.at, "mail_from": m.mail_from,
                "rcpt_tos": m.rcpt_tos, "tls": m.tls, "outcome": m.outcome, "reply": m.reply, "complete": m.complete, "read": m.read,
                "kept": len(raw), "archives": []}
        outputs[f"mss-raw/{key}"] = ctx.record(raw, media_type="message/rfc822", label=f"mssante.message:{key}")
        if m.outcome == "accepted":
            item["archives"] = _extract(ctx, key, raw, human_copy, outputs)
        messages.append(item)
        m.raw = b""  # recorded: the simulator need not hold it for the rest of the run
    session = {"source": "simulator", "simulator": sim.base_url, "tls": sim.tls, "max_message": sim.max_message,
               "connections": connections, "messages": messages}
    outputs["mss.session"] = ctx.record_json(session, label="mssante.session")
    return outputs


# -- the receiving side ---------------------------------------------------------------------

def _running(ctx: CollectContext, endpoint: str, lookup, unconfigured, foreign: str):
    """The simulator or mailbox this run started behind ``endpoint``."""
    url = ctx.endpoint(endpoint)
    if url is None:
        raise NotApplicable(unconfigured)
    found = lookup(url)
    if found is None:
        raise HarnessError(M(foreign, url=url))
    return found


@collector(produces=["mss.receive", "mss-receive.exchange", "mss-delivered", "mss-reply"], once_per_run=True)
def collect_received(ctx: CollectContext) -> dict:
    """The harness plays the operator towards the software: it delivers its catalogue of
    messages (a conformant one, and one per defect family of the archive) to the mailbox the
    software reads (Dovecot), asks the software to read it (``mssante_receive``) or waits for
    it, and records what the software sent back to the mail simulator (acknowledgements, KO
    mails, MDNs) and which messages it opened."""
    from . import receive
    from .mailbox import running_mailbox
    from .simulator import running

    box = _running(ctx, "mssante_mailbox", running_mailbox, M("collect.no_mailbox"), "collect.not_mailbox")
    sim = _running(ctx, "mssante", running, M("collect.receive_needs_simulator"), "collect.not_simulator")
    conf = ctx.target.section("mssante")
    outputs: dict = {}
    first_connection, first_message = len(sim.journal.connections), len(sim.journal.messages)
    delivered = receive.catalogue(box.address)
    for d in delivered:
        box.deliver(d.raw)
        outputs[f"mss-delivered/{d.id}"] = ctx.record(d.raw, media_type="message/rfc822", label=f"mssante.delivered:{d.id}")
    ask = ctx.endpoint("mssante_receive")
    wait = float(conf.get("quiet", QUIET)) + SETTLE if ask else float(conf.get("wait", WAIT))
    started = time.monotonic()
    if ask is not None:
        body = json.dumps({"imap": {"host": "127.0.0.1", "port": box.port, "tls": box.tls, "user": box.user,
                                    "password_file": str(box.password_file), "certificate": str(box.certificate) if box.certificate else None},
                           "smtp": {"host": "127.0.0.1", "port": sim.port, "tls": sim.tls,
                                    "certificate": str(sim.certificate) if sim.certificate else None}}).encode()
        res = ctx.http.post(ask, label="mssante-receive", body=body, headers={"Content-Type": "application/json"})
        outputs["mss-receive.exchange"] = res.exchange
        if not res.ok:
            said = res.error or res.data[:200].decode("utf-8", "replace")
            raise HarnessError(M("collect.receive_refused", url=ask, status=res.status, said=said))
    ids = {d.message_id for d in delivered}
    deadline = started + wait
    quiet = SETTLE if ask else float(conf.get("quiet", QUIET))
    state: list[dict] = []
    while time.monotonic() < deadline:  # until every message was opened and the replies stopped
        state = box.state()
        opened = {s["message_id"] for s in state if "\\Seen" in s["flags"]}
        with sim.journal.lock:
            busy = any(m.outcome == "receiving" for m in sim.journal.messages[first_message:])
        if ids <= opened and not busy and time.monotonic() - max(sim.journal.last_activity, started) >= quiet:
            break
        time.sleep(0.1)
    state = box.state()
    with sim.journal.lock:
        received = list(sim.journal.messages[first_message:])
        connections = len(sim.journal.connections) - first_connection
    replies = []
    for m in received:
        key = f"{m.n:03d}"
        outputs[f"mss-reply/{key}"] = ctx.record(m.raw, media_type="message/rfc822", label=f"mssante.reply:{key}")
        m.raw = b""  # recorded
        replies.append({"n": m.n, "input": f"mss-reply/{key}", "outcome": m.outcome, "mail_from": m.mail_from, "rcpt_tos": m.rcpt_tos})
    record = {"mailbox": box.base_url, "address": box.address, "connections": connections,
              "delivered": [{"id": d.id, "expected": d.expected, "faults": list(d.faults), "message_id": d.message_id,
                             "input": f"mss-delivered/{d.id}", "sender": receive.SENDER} for d in delivered],
              "mailbox_state": state, "replies": replies, "imap_logins": box.logins()}
    outputs["mss.receive"] = ctx.record_json(record, label="mssante.receive")
    return outputs

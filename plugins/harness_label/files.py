"""A file the vendor hands over: read from the target's folder, or downloaded from the software
itself (its own export button, as an endpoint), and recorded as it is."""
from __future__ import annotations

from pathlib import Path

from harness import CollectContext, Message, NotApplicable, catalogue

M = catalogue(__name__)


def file_name(conf: dict, endpoints: dict, endpoint: str, default: str) -> str:
    """The file's name as findings locate it: the last part of its path or of its URL."""
    name = str(conf.get("file") or endpoints.get(endpoint) or default)
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or default


def vendor_file(ctx: CollectContext, *, section: str, endpoint: str, none: Message, name: str, limit: int,
                media_type: str) -> tuple[dict, bytes | None]:
    """(the outputs to record under ``name`` — the file, and the exchange when downloaded —, its
    bytes): ``[section] file``, else the software's ``[endpoints] endpoint`` (neither: not
    applicable, ``none`` says why). The bytes are None when the file could not be had: too large
    or unreadable (:meth:`read_file` says it), or not downloaded (said here); the scenario
    cannot pass without it."""
    path = ctx.target.section(section).get("file")
    url = ctx.endpoint(endpoint)
    if not path and url is None:
        raise NotApplicable(none)
    if path:
        data = ctx.read_file(Path(path), limit=limit)
        if data is None:
            return {}, None
        return {name: ctx.record(data, media_type=media_type, label=name)}, data
    res = ctx.http.get(url, label=name)
    outputs = {f"{name}.exchange": res.exchange}
    if not res.ok or res.body is None:
        ctx.refuse(url, M("file.download", url=url, status=str(res.status or "-"), error=res.error.render() if res.error else "-"))
        return outputs, None
    outputs[name] = res.body
    return outputs, res.data

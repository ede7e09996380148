"""A file the vendor hands over: read from the target's folder, or downloaded from the software
itself (its own export button, as an endpoint), and recorded as it is."""
from __future__ import annotations

from pathlib import Path

from harness import CollectContext, catalogue

M = catalogue(__name__)


def vendor_file(ctx: CollectContext, *, path: str | None, url: str | None, name: str, limit: int, media_type: str) -> tuple[dict, bytes | None]:
    """(the outputs to record under ``name`` — the file, and the exchange when downloaded —, its
    bytes); None when it could not be had: too large or unreadable (:meth:`read_file` says it),
    or not downloaded (said here), and the scenario cannot pass without it."""
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

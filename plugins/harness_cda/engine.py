"""Running compiled schematrons with SaxonC-HE (no Java) and reading their SVRL."""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Mapping

from harness import HarnessError, UnsafeInput, catalogue, parse_xml

M = catalogue(__name__)

SVRL = "{http://purl.oclc.org/dsdl/svrl}"


class EngineError(HarnessError):
    pass


@dataclass(frozen=True)
class SvrlItem:
    kind: str  # "failed-assert" or "successful-report"
    pattern: str
    test: str
    location: str
    role: str | None
    id: str | None
    text: str


class Saxon:
    """One SaxonC processor per process, with compiled stylesheets kept in memory: at most
    ``max_stylesheets`` (the least recently used goes), each recompiled when its file
    changed (size or modification time), as a long-lived kit server needs."""

    def __init__(self, max_stylesheets: int = 1024) -> None:
        from saxonche import PySaxonProcessor

        self._proc = PySaxonProcessor(license=False)
        self._xslt = self._proc.new_xslt30_processor()
        self._executables: OrderedDict[str, tuple[tuple, object]] = OrderedDict()
        self._files: dict[str, tuple[tuple, object]] = {}
        self.max_stylesheets = max_stylesheets
        self.compiled = 0  # stylesheets compiled by this processor

    def executable(self, xslt_path: str, documents: Mapping[str, str] | None = None):
        """The compiled stylesheet, with the files its rules read supplied as parameters.

        ``documents`` maps parameters to kit files (value sets): each is parsed once per
        process (again when it changed). One that cannot be parsed is not supplied, so the
        rule reads it itself and fails as it would have.
        """
        key = (_stamp(xslt_path), tuple(sorted((name, path, _stamp(path)) for name, path in (documents or {}).items())))
        kept = self._executables.get(xslt_path)
        if kept is not None and kept[0] == key:
            self._executables.move_to_end(xslt_path)
            return kept[1]
        try:
            ex = self._xslt.compile_stylesheet(stylesheet_file=xslt_path)
        except Exception as exc:  # PySaxonApiError: a static error in generated code
            raise EngineError(M("engine.compile", error=str(exc))) from None
        self.compiled += 1
        for name, path in (documents or {}).items():
            node = self._file(path)
            if node is not None:
                ex.set_parameter(name, node)
        self._executables[xslt_path] = (key, ex)
        self._executables.move_to_end(xslt_path)
        while len(self._executables) > self.max_stylesheets:
            self._executables.popitem(last=False)
        return ex

    @property
    def stylesheets(self) -> int:
        return len(self._executables)

    def _file(self, path: str):
        stamp = _stamp(path)
        kept = self._files.get(path)
        if kept is None or kept[0] != stamp:
            try:
                node = self._proc.parse_xml(xml_file_name=path)
            except Exception:
                node = None
            kept = self._files[path] = (stamp, node)
        return kept[1]

    def parse(self, data: bytes):
        """A Saxon tree of a document already checked by the hardened parser."""
        try:
            return self._proc.parse_xml(xml_text=data.decode("utf-8"))
        except Exception as exc:
            raise EngineError(M("engine.parse", error=str(exc))) from None

    def run(self, xslt_path: str, node, documents: Mapping[str, str] | None = None) -> bytes:
        try:
            return self.executable(xslt_path, documents).transform_to_string(xdm_node=node).encode("utf-8")
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(M("engine.run", error=str(exc))) from None


_SHARED: Saxon | None = None


def shared_saxon() -> Saxon:
    """This process's one processor: what it compiled serves every collector, judge and the
    kit server alike (a document's tree belongs to the processor that parsed it)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Saxon()
    return _SHARED


def _stamp(path: str) -> tuple:
    """What says a file changed: its size and modification time (None when it is gone)."""
    try:
        st = os.stat(path)
    except OSError:
        return (None,)
    return (st.st_size, st.st_mtime_ns)


def read_svrl(svrl: bytes) -> list[SvrlItem]:
    try:
        root = parse_xml(svrl, source="svrl").getroot()
    except UnsafeInput as exc:
        raise EngineError(exc.detail) from None
    items = []
    pattern = ""
    for el in root:
        tag = el.tag.replace(SVRL, "") if isinstance(el.tag, str) else ""
        if tag == "active-pattern":
            pattern = el.get("id") or el.get("name") or ""
        elif tag in ("failed-assert", "successful-report"):
            text = " ".join("".join(el.find(f"{SVRL}text").itertext()).split()) if el.find(f"{SVRL}text") is not None else ""
            items.append(SvrlItem(tag, pattern, el.get("test", ""), el.get("location", ""), el.get("role"), el.get("id"), text))
    return items

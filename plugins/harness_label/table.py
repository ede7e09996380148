"""A vendor's transcoding table (CSV or XLSX), read row by row with bounded memory.

The label convention asks the vendor for a table from the codes entered with the DRC or the
CISP-2 to the CIM-10. What the table's file holds is untrusted: a CSV in another encoding than
declared, a NUL byte, a 100 MB field, a spreadsheet with merged cells, formulas or error
values, a million rows. Each is a :class:`Problem` at its place (a line, a cell), never a
crash; the rows that can be read are read.

- **CSV**: decoded line by line in the declared encoding (UTF-8 by default, its BOM accepted);
  a line that is not is a problem, read with its undecodable bytes replaced. The delimiter is
  declared, or the one of ``;``, ``,`` and tab the header line holds most. A cell starting
  with ``=``, ``+``, ``-`` or ``@`` followed by a letter, a parenthesis or a quote is a formula
  a spreadsheet would compute (CSV injection), not a value.
- **XLSX** (Office Open XML, ECMA-376 part 1, §18.3 *Worksheets*, §18.4 *Shared strings*):
  through the safe archive reader; the workbook, its relationships, the shared strings and the
  sheet through the hardened streaming XML parser (:func:`harness.iter_xml`): no DTD, no
  entity, one row in memory at a time. A cell's formula (``<f>``), an error value
  (``t="e"``) and a merged range (``<mergeCell>``) crossing a declared column are problems.

Nothing here asks a terminology: :mod:`.transcoding` does, on the codes read here.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from harness import ArchiveLimits, Message, SafeArchive, UnsafeInput, catalogue, iter_xml

M = catalogue(__name__)

MAX_TABLE_BYTES = 256 * 1024 * 1024  # a table's file, read whole once (recorded as evidence)
MAX_FIELD = 64 * 1024  # characters in one CSV field (the csv module's own limit, 128 Ki, is left as it is: a process-wide setting)
MAX_SHARED_STRINGS = 4_000_000  # strings of an XLSX's shared table (a spreadsheet's own limit is the sheet's cells)
MAX_SHARED_CHARS = 256 * 1024 * 1024  # and their characters in all
MAX_PROBLEMS = 1_000  # undecodable lines described one by one (the others counted)
XLSX_LIMITS = ArchiveLimits(max_entries=2_000, max_total_bytes=1024 * 1024 * 1024, max_entry_bytes=1024 * 1024 * 1024, max_ratio=200.0)
MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
DOC_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
FORMULA = re.compile(r"^[=+\-@]\s*[A-Za-z(\"']")
DELIMITERS = (";", ",", "\t")


@dataclass(frozen=True)
class Layout:
    """How the target says the table is laid out."""

    format: str  # "csv" or "xlsx"
    source_column: str
    target_column: str
    encoding: str = "utf-8"
    delimiter: str | None = None  # CSV; None: guessed from the header line
    sheet: str | None = None  # XLSX; None: the first sheet
    header_row: int = 1


@dataclass(frozen=True)
class Row:
    number: int  # the line (CSV) or row (XLSX) a person sees
    source: str
    target: str
    where: str  # "transcodage.csv:12" / "transcodage.xlsx#Feuil1!12": as findings locate it


@dataclass(frozen=True)
class Problem:
    kind: str  # encoding, nul, field-too-large, malformed, header, columns, formula, cell-error, merged, sheet, archive
    where: str
    detail: Message
    fatal: bool = False  # nothing after it could be read


def read_table(data: bytes | BinaryIO, layout: Layout, name: str = "table") -> Iterator[Row | Problem]:
    """The rows of the table, and its problems, in the order of the file. ``data``: its bytes,
    or a seekable binary file read a piece at a time (memory then bounded whatever its size)."""
    if layout.format == "xlsx":
        yield from _xlsx(data, layout, name)
    else:
        yield from _csv(data, layout, name)


def _norm(header: str) -> str:
    return " ".join(header.replace("\ufeff", "").split()).casefold()


def _columns(headers: list[str], layout: Layout, where: str) -> tuple[int, int] | Problem:
    names = [_norm(h) for h in headers]
    found = []
    for wanted in (layout.source_column, layout.target_column):
        hits = [i for i, h in enumerate(names) if h == _norm(wanted)]
        if len(hits) != 1:
            key = "table.column_missing" if not hits else "table.column_twice"
            return Problem("columns", where, M(key, column=wanted, columns=", ".join(h.strip() for h in headers if h.strip()) or "-"), fatal=True)
        found.append(hits[0])
    return found[0], found[1]


# -- CSV ----------------------------------------------------------------------------------------


def _raw_lines(data: bytes | BinaryIO) -> Iterator[bytes]:
    if isinstance(data, (bytes, bytearray)):
        start, size = 0, len(data)
        while start < size:
            end = data.find(b"\n", start)
            end = size if end < 0 else end + 1
            yield bytes(data[start:end])
            start = end
        return
    while True:
        line = data.readline()  # at most the file, itself bounded (MAX_TABLE_BYTES)
        if not line:
            return
        yield line


def _lines(data: bytes | BinaryIO, encoding: str, problems: list[Problem], more: list[int]) -> Iterator[str]:
    """The decoded lines (line ends kept, as the csv module wants them); a line that is not in
    the declared encoding is a problem, read with its undecodable bytes replaced."""
    wide = encoding.replace("_", "-").lower().startswith(("utf-16", "utf-32"))
    if wide and not isinstance(data, (bytes, bytearray)):
        data = data.read()
    if encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
        head = data[:3] if isinstance(data, (bytes, bytearray)) else data.read(3)
        if head == codecs.BOM_UTF8:
            data = data[3:] if isinstance(data, (bytes, bytearray)) else data
        elif not isinstance(data, (bytes, bytearray)):
            data.seek(data.tell() - len(head))
    if wide:  # not line-splittable as bytes
        text = data.decode(encoding, errors="replace")
        if "\ufffd" in text:
            problems.append(Problem("encoding", "1", M("table.encoding_whole", encoding=encoding)))
        yield from io.StringIO(text, newline="")
        return
    number = 0
    for chunk in _raw_lines(data):
        number += 1
        if b"\x00" in chunk and len(problems) < MAX_PROBLEMS:  # a binary file, or UTF-16 declared as something else
            problems.append(Problem("nul", str(number), M("table.nul", column=chunk.index(b"\x00") + 1)))
        try:
            line = chunk.decode(encoding)
        except UnicodeDecodeError as exc:
            line = chunk.decode(encoding, errors="replace")
            if len(problems) >= MAX_PROBLEMS:  # the others counted (said at the end)
                more[0] += 1
            else:
                try:
                    as_cp1252 = chunk.decode("cp1252").strip()[:80]
                except UnicodeDecodeError:
                    as_cp1252 = ""
                problems.append(Problem("encoding", str(number), M("table.encoding", encoding=encoding, column=exc.start + 1,
                                                                     cp1252=as_cp1252 or "-")))
        except LookupError:
            problems.append(Problem("encoding", "-", M("table.unknown_encoding", encoding=encoding), fatal=True))
            return
        yield line


def _csv(data: bytes | BinaryIO, layout: Layout, name: str) -> Iterator[Row | Problem]:
    decode_problems: list[Problem] = []
    more = [0]  # undecodable lines beyond MAX_PROBLEMS
    lines = _lines(data, layout.encoding, decode_problems, more)
    delimiter = layout.delimiter
    buffered: list[str] = []
    if delimiter is None:  # guessed from the header line (the first non-empty line at or after header_row)
        for line in lines:
            buffered.append(line)
            if len(buffered) >= layout.header_row and line.strip():
                break
        head = buffered[-1] if buffered else ""
        counts = {d: head.count(d) for d in DELIMITERS}
        delimiter = max(DELIMITERS, key=lambda d: counts[d]) if any(counts.values()) else ";"

    def all_lines() -> Iterator[str]:
        yield from buffered
        yield from lines

    reader = csv.reader(all_lines(), delimiter=delimiter, strict=False)
    columns: tuple[int, int] | None = None
    reported = 0
    try:
        for record in reader:
            line = reader.line_num
            while reported < len(decode_problems):
                p = decode_problems[reported]
                reported += 1
                yield Problem(p.kind, f"{name}:{p.where}", p.detail, p.fatal)
            if columns is None:
                if line < layout.header_row or not any(c.strip() for c in record):
                    continue
                found = _columns(record, layout, f"{name}:{line}")
                if isinstance(found, Problem):
                    yield found
                    return
                columns = found
                continue
            if not any(c.strip() for c in record):
                continue  # an empty line
            if max(map(len, record)) > MAX_FIELD:
                yield Problem("field-too-large", f"{name}:{line}", M("table.field_too_large", limit=MAX_FIELD))
                continue
            cells = [record[i] if i < len(record) else "" for i in columns]
            for cell, column in zip(cells, (layout.source_column, layout.target_column)):
                if FORMULA.match(cell.strip()):
                    yield Problem("formula", f"{name}:{line}", M("table.csv_formula", column=column, value=cell.strip()[:60]))
            yield Row(line, cells[0].strip(), cells[1].strip(), f"{name}:{line}")
    except csv.Error as exc:
        kind = "nul" if "NUL" in str(exc) else "field-too-large" if "field larger" in str(exc) else "malformed"
        yield Problem(kind, f"{name}:{reader.line_num + 1}", M("table.csv_error", error=str(exc)), fatal=True)
        return
    while reported < len(decode_problems):
        p = decode_problems[reported]
        reported += 1
        yield Problem(p.kind, f"{name}:{p.where}", p.detail, p.fatal)
    if more[0]:
        yield Problem("encoding", name, M("table.encoding_more", count=more[0], encoding=layout.encoding))
    if columns is None and not any(p.fatal for p in decode_problems):
        yield Problem("header", f"{name}:{layout.header_row}", M("table.no_header", row=layout.header_row), fatal=True)


# -- XLSX ---------------------------------------------------------------------------------------

_CELL = re.compile(r"^([A-Z]{1,3})([0-9]{1,7})$")


def _column_index(letters: str) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ord(ch) - 64
    return n - 1


def _letters(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def _xlsx(data: bytes | BinaryIO, layout: Layout, name: str) -> Iterator[Row | Problem]:
    try:
        archive = SafeArchive(data, limits=XLSX_LIMITS, name=name)
    except UnsafeInput as exc:
        yield Problem("archive", name, exc.detail, fatal=True)
        return
    with archive:
        try:
            sheet_name, sheet_path = _sheet(archive, layout)
        except UnsafeInput as exc:
            yield Problem("archive", name, exc.detail, fatal=True)
            return
        except LookupError as exc:
            yield Problem("sheet", name, exc.args[0], fatal=True)
            return
        try:
            strings = _shared_strings(archive)
            yield from _sheet_rows(archive, sheet_path, f"{name}#{sheet_name}", layout, strings)
        except UnsafeInput as exc:
            yield Problem("archive", f"{name}#{sheet_name}", exc.detail, fatal=True)


def _sheet(archive: SafeArchive, layout: Layout) -> tuple[str, str]:
    names = set(archive.names())
    if "xl/workbook.xml" not in names:
        raise LookupError(M("table.not_xlsx"))
    sheets = [(el.get("name") or "", el.get(f"{DOC_REL}id") or "")
              for el in iter_xml(archive.chunks("xl/workbook.xml"), tags=[f"{MAIN}sheet"], source="xl/workbook.xml")]
    rels = {}
    if "xl/_rels/workbook.xml.rels" in names:
        rels = {el.get("Id"): el.get("Target") or "" for el in iter_xml(archive.chunks("xl/_rels/workbook.xml.rels"), tags=[f"{RELS}Relationship"],
                                                                          source="xl/_rels/workbook.xml.rels")}
    if not sheets:
        raise LookupError(M("table.no_sheet"))
    if layout.sheet:
        chosen = [s for s in sheets if s[0] == layout.sheet]
        if not chosen:
            raise LookupError(M("table.sheet_missing", sheet=layout.sheet, sheets=", ".join(s[0] for s in sheets)))
    else:
        chosen = sheets[:1]
    sheet_name, rid = chosen[0]
    target = rels.get(rid, "")
    path = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
    parts: list[str] = []
    for part in path.split("/"):  # "xl/worksheets/../worksheets/sheet1.xml"
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    path = "/".join(parts)
    if path not in names:
        raise LookupError(M("table.sheet_file", sheet=sheet_name, path=path or "-"))
    return sheet_name, path


_T, _RPH, _SI, _V, _F, _IS, _C = (f"{MAIN}{n}" for n in ("t", "rPh", "si", "v", "f", "is", "c"))


def _text(el) -> str:
    """A shared or inline string: its runs' texts, without phonetic runs (§18.4.6)."""
    if el.find(_RPH) is None:
        return "".join(el.itertext(_T))
    out = []
    for t in el.iter(_T):
        parent = t.getparent()
        if parent is not None and parent.tag == _RPH:
            continue
        out.append(t.text or "")
    return "".join(out)


def _shared_strings(archive: SafeArchive) -> list[str]:
    """The workbook's shared strings (§18.4), at most :data:`MAX_SHARED_STRINGS` strings and
    :data:`MAX_SHARED_CHARS` characters (they are held while the sheet is read)."""
    if "xl/sharedStrings.xml" not in set(archive.names()):
        return []
    out, chars = [], 0
    for si in iter_xml(archive.chunks("xl/sharedStrings.xml"), tags=[_SI], source="xl/sharedStrings.xml"):
        text = _text(si)
        chars += len(text)
        out.append(text)
        if len(out) > MAX_SHARED_STRINGS or chars > MAX_SHARED_CHARS:
            raise UnsafeInput("xlsx-strings", M("table.too_many_strings", strings=MAX_SHARED_STRINGS, chars=MAX_SHARED_CHARS))
    return out


def _cell_value(c, strings: list[str]) -> tuple[str, str | None]:
    """(the value a person sees, the kind of problem the cell is: "formula", "cell-error" or None)."""
    v = f = inline = None
    for child in c:
        tag = child.tag
        if tag == _V:
            v = child
        elif tag == _F:
            f = child
        elif tag == _IS:
            inline = child
    kind = "formula" if f is not None else None
    t = c.get("t") or "n"
    raw = v.text if v is not None and v.text is not None else ""
    if t == "e":
        return raw, "cell-error"
    if t == "s":
        try:
            return strings[int(raw)], kind
        except (ValueError, IndexError):
            return "", "cell-error"
    if t == "inlineStr":
        return (_text(inline) if inline is not None else ""), kind
    if t == "n" and raw:
        try:
            number = float(raw)
            return (str(int(number)) if number.is_integer() and abs(number) < 1e15 else raw), kind
        except ValueError:
            return raw, kind
    return raw, kind


def _sheet_rows(archive: SafeArchive, path: str, sheet: str, layout: Layout, strings: list[str]) -> Iterator[Row | Problem]:
    columns: tuple[int, int] | None = None
    wanted = (layout.source_column, layout.target_column)
    next_row = 1
    indexes: dict[str, int] = {}  # "AB" -> 27, once per column
    row_tag, merge_tag = f"{MAIN}row", f"{MAIN}mergeCell"
    for el in iter_xml(archive.chunks(path), tags=[row_tag, merge_tag], source=path):
        if el.tag == merge_tag:
            ref = el.get("ref") or ""
            if columns is None or _crosses(ref, columns):
                yield Problem("merged", f"{sheet}!{ref}", M("table.merged", ref=ref))
            continue
        try:
            number = int(el.get("r") or next_row)
        except ValueError:
            number = next_row
        next_row = number + 1
        cells: dict[int, tuple[str, str | None]] = {}
        position = 0
        filled = False  # a cell of another column holds something
        for c in el.iterchildren(_C):
            ref = c.get("r") or ""
            letters = ref.rstrip("0123456789")
            index = indexes.get(letters)
            if index is None:
                m = _CELL.match(ref)
                index = _column_index(m.group(1)) if m else position
                if m:
                    indexes[letters] = index
            position = index + 1
            if columns is not None and index not in columns:
                filled = filled or len(c) > 0
                continue
            cells[index] = _cell_value(c, strings)
        if columns is None:
            if number < layout.header_row or not any(v.strip() for v, _ in cells.values()):
                continue
            width = max(cells) + 1 if cells else 0
            found = _columns([cells.get(i, ("", None))[0] for i in range(width)], layout, f"{sheet}!{number}")
            if isinstance(found, Problem):
                yield found
                return
            columns = found
            continue
        values = [cells.get(i, ("", None)) for i in columns]
        if not filled and not any(v.strip() for v, _ in values):
            continue
        for (value, kind), index, column in zip(values, columns, wanted):
            if kind is None:
                continue
            ref = f"{sheet}!{_letters(index)}{number}"
            if kind == "formula":
                yield Problem("formula", ref, M("table.xlsx_formula", column=column, value=value[:60]))
            else:
                yield Problem("cell-error", ref, M("table.cell_error", column=column, value=value[:60] or "-"))
        yield Row(number, values[0][0].strip(), values[1][0].strip(), f"{sheet}!{number}")
    if columns is None:
        yield Problem("header", f"{sheet}!{layout.header_row}", M("table.no_header", row=layout.header_row), fatal=True)


def _crosses(ref: str, columns: tuple[int, int]) -> bool:
    """Whether a merged range (``A2:A5``) spans rows within a declared column."""
    first, _, last = ref.partition(":")
    a, b = _CELL.match(first), _CELL.match(last or first)
    if not a or not b:
        return True
    lo, hi = sorted((_column_index(a.group(1)), _column_index(b.group(1))))
    return any(lo <= c <= hi for c in columns)

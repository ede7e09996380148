"""The transcoding table's reader: CSV and XLSX as vendors' tools write them, and what a
hostile or careless file holds (another encoding, a NUL byte, a huge field, formulas, merged
cells, error values, a DOCTYPE in a sheet, a zip slip), each a problem at its place, never a
crash; memory bounded whatever the number of rows."""
import io
import tracemalloc
import zipfile

import pytest

from harness import UnsafeInput, iter_xml
from harness_label.table import MAX_PROBLEMS, Layout, Problem, Row, read_table

CSV = Layout("csv", "Code CISP-2", "Code CIM-10")


def items(data: bytes, layout: Layout = CSV, name: str = "t.csv"):
    out = list(read_table(data, layout, name))
    # read from a file a piece at a time (as the checks read the recorded table): the same
    assert list(read_table(io.BytesIO(data), layout, name)) == out
    return [i for i in out if isinstance(i, Row)], [i for i in out if isinstance(i, Problem)]


def test_a_csv_as_a_french_spreadsheet_saves_it():
    """UTF-8 with its BOM, ';' (guessed from the header), CRLF, a quoted field holding the
    delimiter and a line break, an empty line, a title line above the header."""
    data = ("\ufeffTable de transcodage CISP-2 vers CIM-10\r\n"
            "Code CISP-2;Libellé;Code CIM-10\r\n"
            "K86;\"Hypertension; non compliquée\";I10\r\n"
            "\r\n"
            "T90;\"Diabète\r\nnon insulino-dépendant\";E11\r\n"
            "P17;Tabac;\r\n").encode("utf-8")
    rows, problems = items(data, Layout("csv", "code cisp-2", "CODE CIM-10", header_row=2))
    assert problems == []
    assert [(r.source, r.target, r.where) for r in rows] == [("K86", "I10", "t.csv:3"), ("T90", "E11", "t.csv:6"), ("P17", "", "t.csv:7")]


@pytest.mark.parametrize("delimiter,sep", [(",", ","), ("\t", "\t"), (";", ";")])
def test_the_delimiter_is_guessed_or_declared(delimiter, sep):
    data = f"Code CISP-2{sep}Code CIM-10\nK86{sep}I10\n".encode()
    assert [(r.source, r.target) for r in items(data)[0]] == [("K86", "I10")]
    assert [(r.source, r.target) for r in items(data, Layout("csv", "Code CISP-2", "Code CIM-10", delimiter=delimiter))[0]] == [("K86", "I10")]


def test_another_encoding_is_said_line_by_line_and_the_rows_still_read():
    data = "Code CISP-2;Libellé;Code CIM-10\nK86;Hypertension non compliquée;I10\nT90;Diabète;E11\n".encode("cp1252")
    rows, problems = items(data)
    assert [(r.source, r.target) for r in rows] == [("K86", "I10"), ("T90", "E11")]
    assert [(p.kind, p.where) for p in problems] == [("encoding", "t.csv:1"), ("encoding", "t.csv:2"), ("encoding", "t.csv:3")]
    assert "Libellé" in problems[0].detail.render("en")  # what it says read as Windows-1252
    # declared, it reads
    assert items(data, Layout("csv", "Code CISP-2", "Code CIM-10", encoding="cp1252"))[1] == []
    # the lines beyond the first MAX_PROBLEMS are counted, not described
    many = ("Code CISP-2;Code CIM-10\n" + "K86;é\n" * (MAX_PROBLEMS + 7)).encode("cp1252")
    rows, problems = items(many)
    assert len(rows) == MAX_PROBLEMS + 7 and len(problems) == MAX_PROBLEMS + 1
    assert problems[-1].where == "t.csv" and "7" in problems[-1].detail.render("en")
    _, problems = items(data, Layout("csv", "Code CISP-2", "Code CIM-10", encoding="klingon"))
    assert [(p.kind, p.fatal) for p in problems] == [("encoding", True)]


def test_a_nul_byte_is_said_and_a_huge_field_or_a_missing_column_stop_the_reading_where_they_are():
    # a NUL byte: said where it is (the csv module of Python 3.11 reads it as a character)
    rows, problems = items(b"Code CISP-2;Code CIM-10\nK86;I10\nT90;E1\x001\nP17;F17\n")
    assert [r.target for r in rows] == ["I10", "E1\x001", "F17"] and [(p.kind, p.where, p.fatal) for p in problems] == [("nul", "t.csv:3", False)]
    # a field over 64 Ki: that row is not read; over the csv module's own 128 Ki: nothing after it
    rows, problems = items(b"Code CISP-2;Code CIM-10\nK86;I10\nT90;" + b"x" * (70 * 1024) + b"\nP17;F17\n")
    assert [r.source for r in rows] == ["K86", "P17"] and [(p.kind, p.where, p.fatal) for p in problems] == [("field-too-large", "t.csv:3", False)]
    rows, problems = items(b"Code CISP-2;Code CIM-10\nK86;I10\nT90;" + b"x" * (200 * 1024) + b"\nP17;F17\n")
    assert [r.source for r in rows] == ["K86"] and [(p.kind, p.fatal) for p in problems] == [("field-too-large", True)]
    import csv

    assert csv.field_size_limit() == 131072  # the process-wide setting left as it was
    rows, problems = items(b"Code CISP;Code CIM10\nK86;I10\n")
    assert rows == [] and [(p.kind, p.fatal) for p in problems] == [("columns", True)]
    assert "Code CISP, Code CIM10" in problems[0].detail.render("en")
    _, problems = items(b"Code CISP-2;Code CIM-10;Code CIM-10\nK86;I10;I10\n")
    assert "more than once" in problems[0].detail.render("en")
    assert [(p.kind, p.fatal) for p in items(b"")[1]] == [("header", True)]


def test_a_formula_a_spreadsheet_would_compute_is_not_a_value():
    data = (b'Code CISP-2;Code CIM-10\nK86;"=HYPERLINK(""http://x"";""I10"")"\nT90;+SUM(A1)\nP17;@cmd\n'
            b'U71;-1\nT93;E78\n')
    rows, problems = items(data)
    assert [(p.kind, p.where) for p in problems] == [("formula", "t.csv:2"), ("formula", "t.csv:3"), ("formula", "t.csv:4")]
    assert len(rows) == 5  # "-1" is a value (a number), not a formula


def _xlsx(build) -> bytes:
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    build(wb)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def test_a_workbook_written_by_openpyxl_with_merged_cells_formulas_error_values_and_numbers():
    def build(wb):
        ws = wb.active
        ws.title = "Notes"
        ws["A1"] = "rien ici"
        t = wb.create_sheet("Transcodage")
        t.append(["Code CISP-2", "Libellé", "Code CIM-10"])
        t.append(["K86", "Hypertension", "I10"])
        t.append(["T90", "Diabète", "=VLOOKUP(A3,Ref!A:B,2,FALSE)"])
        t.append(["T89", "Diabète 1", "#N/A"])
        t["C4"].data_type = "e"
        t.append(["K77", "Insuffisance cardiaque", "I50.9"])
        t.append([None, "Insuffisance cardiaque (suite)", "I50.1"])
        t.merge_cells("A5:A6")
        t.append([10, "un code numérique", "E11"])
    data = _xlsx(build)
    layout = Layout("xlsx", "Code CISP-2", "Code CIM-10", sheet="Transcodage")
    rows, problems = items(data, layout, "t.xlsx")
    assert [(r.source, r.target, r.where) for r in rows] == [
        ("K86", "I10", "t.xlsx#Transcodage!2"), ("T90", "", "t.xlsx#Transcodage!3"), ("T89", "#N/A", "t.xlsx#Transcodage!4"),
        ("K77", "I50.9", "t.xlsx#Transcodage!5"), ("", "I50.1", "t.xlsx#Transcodage!6"), ("10", "E11", "t.xlsx#Transcodage!7")]
    assert [(p.kind, p.where) for p in problems] == [("formula", "t.xlsx#Transcodage!C3"), ("cell-error", "t.xlsx#Transcodage!C4"),
                                                     ("merged", "t.xlsx#Transcodage!A5:A6")]
    # the first sheet unless one is named; a sheet that is not there is named with those that are
    assert [(p.kind, p.fatal) for p in items(data, Layout("xlsx", "Code CISP-2", "Code CIM-10"), "t.xlsx")[1]] == [("columns", True)]
    _, problems = items(data, Layout("xlsx", "Code CISP-2", "Code CIM-10", sheet="Feuil1"), "t.xlsx")
    assert problems[0].kind == "sheet" and "Notes, Transcodage" in problems[0].detail.render("en")


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return out.getvalue()


WORKBOOK = (b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
            b'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>'
            b'<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
RELS = (b'<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        b'<Relationship Id="rId1" Type="t" Target="worksheets/sheet1.xml"/></Relationships>')
SHEET = (b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
         b'<row r="1"><c r="A1" t="inlineStr"><is><t>Code CISP-2</t></is></c><c r="B1" t="inlineStr"><is><t>Code CIM-10</t></is></c></row>'
         b'<row r="2"><c r="A2" t="inlineStr"><is><t>K86</t></is></c><c r="B2" t="inlineStr"><is><t>I10</t></is></c></row>'
         b'</sheetData></worksheet>')


def test_a_hand_made_workbook_reads_and_hostile_ones_are_refused_by_name():
    layout = Layout("xlsx", "Code CISP-2", "Code CIM-10")
    good = {"xl/workbook.xml": WORKBOOK, "xl/_rels/workbook.xml.rels": RELS, "xl/worksheets/sheet1.xml": SHEET}
    assert [(r.source, r.target) for r in items(_zip(good), layout)[0]] == [("K86", "I10")]
    bomb = dict(good, **{"xl/worksheets/sheet1.xml": b'<!DOCTYPE w [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>' + SHEET})
    slip = dict(good, **{"../../etc/cron.d/x": b"boom"})
    for members in (bomb, slip):
        rows, problems = items(_zip(members), layout)
        assert rows == [] and [(p.kind, p.fatal) for p in problems] == [("archive", True)], problems
    for data in (b"not a zip", _zip({"word/document.xml": b"<w/>"})):
        rows, problems = items(data, layout)
        assert rows == [] and problems[0].fatal and problems[0].kind in ("archive", "sheet")


def test_iter_xml_streams_one_element_at_a_time_and_refuses_what_parse_xml_refuses():
    rows = b"".join(b'<row r="%d"><c><v>%d</v></c></row>' % (i, i) for i in range(50_000))
    data = b'<?xml version="1.0"?>\n<!-- a comment -->\n<sheet>' + rows + b"</sheet>"
    tracemalloc.start()
    seen = sum(1 for el in iter_xml((data[i:i + 4096] for i in range(0, len(data), 4096)), tags=["row"], source="s"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == 50_000 and peak < 2 * 1024 * 1024, peak  # the document is 2.2 MB; one row at a time is held
    for hostile in (b'<!DOCTYPE s SYSTEM "http://example.org/x.dtd"><s/>', b'<?xml version="1.0"?><!-- c --><!DOCTYPE s [<!ENTITY x "y">]><s>&x;</s>',
                    b"<s><row></s>"):
        with pytest.raises(UnsafeInput):
            list(iter_xml([hostile[:7], hostile[7:]], tags=["row"], source="s"))


def test_a_table_of_100000_rows_is_read_in_bounded_memory():
    data = ("Code CISP-2;Code CIM-10\n" + "".join(f"K{i % 90 + 10};I{i % 90 + 10}.{i % 10}\n" for i in range(100_000))).encode()
    tracemalloc.start()
    count = sum(1 for item in read_table(data, CSV, "t.csv") if isinstance(item, Row))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 100_000 and peak < 1024 * 1024, peak  # the rows are not kept


def test_shared_strings_as_excel_writes_them_with_rich_and_phonetic_runs_and_their_bound(monkeypatch):
    """Excel and LibreOffice write text cells as indexes into xl/sharedStrings.xml (openpyxl writes
    them inline): rich-text runs are joined, phonetic runs (rPh) left out; an index out of range is
    an error value; more strings than the bound and the workbook is refused by name."""
    from harness_label import table

    main = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    strings = [b"<si><t>Code CISP-2</t></si>", b"<si><t>Code CIM-10</t></si>", b"<si><t>K86</t></si>",
               b"<si><r><t>I</t></r><r><rPr><b/></rPr><t>10</t></r><rPh sb=\"0\" eb=\"1\"><t>x</t></rPh></si>"]
    shared = b"<sst " + main + b">" + b"".join(strings) + b"</sst>"
    sheet = (b"<worksheet " + main + b"><sheetData>"
             b'<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
             b'<row r="2"><c r="A2" t="s"><v>2</v></c><c r="B2" t="s"><v>3</v></c></row>'
             b'<row r="3"><c r="A3" t="s"><v>2</v></c><c r="B3" t="s"><v>99</v></c></row>'
             b"</sheetData></worksheet>")
    data = _zip({"xl/workbook.xml": WORKBOOK, "xl/_rels/workbook.xml.rels": RELS, "xl/worksheets/sheet1.xml": sheet, "xl/sharedStrings.xml": shared})
    layout = Layout("xlsx", "Code CISP-2", "Code CIM-10")
    rows, problems = items(data, layout, "t.xlsx")
    assert [(r.source, r.target) for r in rows] == [("K86", "I10"), ("K86", "")]
    assert [(p.kind, p.where) for p in problems] == [("cell-error", "t.xlsx#S!B3")]
    monkeypatch.setattr(table, "MAX_SHARED_STRINGS", 3)
    rows, problems = items(data, layout, "t.xlsx")
    assert rows == [] and [(p.kind, p.fatal) for p in problems] == [("archive", True)]
    assert "3 strings" in problems[0].detail.render("en")


KIT_VALUE_SETS = __import__("pathlib").Path(__file__).parents[2] / "shared" / "corpus" / "ans-testcontenucda" / "jeuxDeValeurs"


@pytest.mark.skipif(not KIT_VALUE_SETS.is_dir(), reason="shared corpus absent (../shared/corpus)")
def test_every_cim10_code_of_the_official_kits_value_sets_has_the_shape_the_checks_hold_it_to():
    """A code without the CIM-10's shape is failed as provably not one: the 827 CIM-10 codes the
    ANS kit's value sets carry (ATIH extensions among them: R47.02, C16.9+0, O04.-0) all have it,
    and each written without its dot reads back as itself."""
    from harness.terminology import Snapshot
    from harness_label.transcoding import CIM10, CIM10_URL, normalised, shaped

    snap = Snapshot.load([KIT_VALUE_SETS])
    codes = {code for vs in snap.value_sets for (system, code) in vs.members if snap.system_key(system) == CIM10}
    assert len(codes) == 827
    assert [c for c in codes if not shaped(c, CIM10_URL)] == []
    assert [c for c in codes if normalised(c.replace(".", ""), CIM10_URL)[0] != c and "." in c] == []

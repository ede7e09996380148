"""Hostile inputs against the one XML parser and the one archive reader."""
import io
import stat
import time
import zipfile

import pytest

from harness import ArchiveLimits, SafeArchive, UnsafeInput, parse_xml


def test_parses_plain_xml_with_namespaces():
    tree = parse_xml(b'<?xml version="1.0"?><ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2"/></ClinicalDocument>')
    assert tree.getroot().tag == "{urn:hl7-org:v3}ClinicalDocument"


def test_xxe_file_read_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    doc = f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]><r>&x;</r>'.encode()
    with pytest.raises(UnsafeInput) as exc:
        parse_xml(doc, source="evil.xml")
    assert exc.value.reason == "xml-doctype"
    assert "evil.xml" in exc.value.message("en")
    assert "TOP-SECRET" not in exc.value.message("en")


def test_billion_laughs_is_refused_quickly():
    lol = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{"&lol%s;" % ("" if i == 1 else i - 1) * 10}">' for i in range(1, 10)
    )
    doc = f'<?xml version="1.0"?><!DOCTYPE lolz [{lol}]><lolz>&lol9;</lolz>'.encode()
    start = time.monotonic()
    with pytest.raises(UnsafeInput):
        parse_xml(doc)
    assert time.monotonic() - start < 1.0


def test_external_dtd_is_refused():
    doc = b'<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd"><r/>'
    with pytest.raises(UnsafeInput):
        parse_xml(doc)


def test_doctype_hidden_in_utf16_is_refused():
    doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>'.encode("utf-16")
    with pytest.raises(UnsafeInput) as exc:
        parse_xml(doc)
    assert exc.value.reason == "xml-doctype"


def test_size_limit_and_malformed_xml():
    with pytest.raises(UnsafeInput) as exc:
        parse_xml(b"<r>" + b"a" * 2000 + b"</r>", max_bytes=1000)
    assert exc.value.reason == "xml-too-large"
    with pytest.raises(UnsafeInput) as exc:
        parse_xml(b"<r><unclosed></r>", source="broken.xml")
    assert exc.value.reason == "xml-malformed"
    assert "broken.xml" in exc.value.message("fr")


def _zip(entries, *, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def test_reads_a_normal_archive():
    data = _zip([("IHE_XDM/SUBSET01/METADATA.XML", b"<x/>"), ("README.TXT", b"hello")])
    with SafeArchive(data) as arc:
        assert arc.names() == ["IHE_XDM/SUBSET01/METADATA.XML", "README.TXT"]
        assert arc.read("README.TXT") == b"hello"


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/etc/passwd", "C:/windows/evil", "a\\..\\evil"])
def test_zip_slip_and_absolute_paths_are_refused(name):
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive(_zip([(name, b"x")]))
    assert exc.value.reason == "archive-path"


def test_symlink_entry_is_refused():
    info = zipfile.ZipInfo("link")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive(_zip([(info, b"/etc/passwd")]))
    assert exc.value.reason == "archive-link"


def test_zip_bomb_ratio_is_refused():
    bomb = _zip([("zeros.bin", b"\0" * (50 * 1024 * 1024))])
    assert len(bomb) < 100_000
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive(bomb)
    assert exc.value.reason == "archive-ratio"


def test_entry_count_and_total_size_are_bounded():
    many = _zip([(f"f{i}", b"x") for i in range(20)])
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive(many, limits=ArchiveLimits(max_entries=10))
    assert exc.value.reason == "archive-entries"
    big = _zip([("a", b"y" * 600), ("b", b"y" * 600)], compression=zipfile.ZIP_STORED)
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive(big, limits=ArchiveLimits(max_total_bytes=1000))
    assert exc.value.reason == "archive-total"


def test_duplicate_names_are_refused():
    with pytest.warns(UserWarning):
        data = _zip([("a.txt", b"1"), ("a.txt", b"2")])
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive(data)
    assert exc.value.reason == "archive-duplicate"


def test_corrupt_member_is_named():
    data = bytearray(_zip([("doc.xml", b"<r>" + b"payload " * 200 + b"</r>")], compression=zipfile.ZIP_STORED))
    at = data.index(b"payload")
    data[at] ^= 0xFF
    with SafeArchive(bytes(data)) as arc:
        with pytest.raises(UnsafeInput) as exc:
            arc.read("doc.xml")
    assert exc.value.reason == "archive-corrupt"
    assert "doc.xml" in exc.value.message("en")


def test_garbage_is_not_an_archive():
    with pytest.raises(UnsafeInput) as exc:
        SafeArchive(b"\x00\x01binary junk")
    assert exc.value.reason == "archive-malformed"


def test_a_large_text_node_parses_and_depth_stays_capped():
    # a level-1 document's base64 PDF is one text node: 12 MB here (libxml2 refuses over
    # 10 MB unless told otherwise)
    tree = parse_xml(b"<text>" + b"QUJD" * (3 * 1024 * 1024) + b"</text>")
    assert len(tree.getroot().text) == 12 * 1024 * 1024
    deep = b"<a>" * 3000 + b"</a>" * 3000
    with pytest.raises(UnsafeInput) as exc:
        parse_xml(deep)
    assert exc.value.reason == "xml-malformed" and "depth" in exc.value.message("en")

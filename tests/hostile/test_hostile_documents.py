"""Hostile or broken documents: every document is judged or said not judged; a PASS never
skips one, an error never becomes NOT_RUN, a huge document is neither read whole nor stored."""
from pathlib import Path

import pytest

from harness import UnsafeInput, parse_xml
from harness_demo.patients import PATIENTS, cda_document
from tests.harness_run import run_harness

CORPUS = Path(__file__).parents[2].parent / "shared" / "corpus" / "ans-testcontenucda"
GOOD = cda_document(PATIENTS[0], set(), 1)


@pytest.mark.parametrize("data, reason", [
    (b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>', "xml-doctype"),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]><lolz>&lol2;</lolz>', "xml-doctype"),
    ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a SYSTEM "http://x/"><a/>'.encode("utf-16"), "xml-doctype"),
    (b"<a>" * 200_000, "xml-malformed"),  # nesting beyond libxml2's own bound (huge_tree off)
    (b"<a>unclosed", "xml-malformed"),
    (b"x" * (64 * 1024 * 1024 + 1), "xml-too-large"),
])
def test_hostile_xml_is_refused_with_its_reason(data, reason):
    with pytest.raises(UnsafeInput) as exc:
        parse_xml(data, source="doc.xml")
    assert exc.value.reason == reason and exc.value.message("en").startswith("doc.xml: ")


def test_the_word_doctype_in_a_comment_or_a_text_is_no_declaration():
    data = GOOD.replace(b"<ClinicalDocument", b"<!-- about <!DOCTYPE and <!ENTITY -->\n<ClinicalDocument").replace(
        b"<title>Note de consultation</title>", b"<title>Note &lt;!DOCTYPE html&gt;</title>")
    assert parse_xml(data).getroot().tag == "{urn:hl7-org:v3}ClinicalDocument"


def _folder(tmp_path: Path, documents: dict[str, bytes]) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, data in documents.items():
        (docs / name).write_bytes(data)
    return docs


def _target(tmp_path: Path, docs: Path, extra: str = "") -> Path:
    target = tmp_path / "t.toml"
    target.write_text(f'[product]\nid = "p"\nname = "P"\nversion = "1.0"\n\n[cda]\ndocuments = "{docs}"\n{extra}')
    return target


@pytest.mark.slow
def test_one_huge_document_is_refused_alone_and_never_stored(tmp_path):
    docs = _folder(tmp_path, {"a.xml": GOOD, "b.xml": GOOD})
    with (docs / "huge.xml").open("wb") as fh:  # sparse: 200 MiB on paper, nothing on disk
        fh.truncate(200 * 1024 * 1024)
    run = run_harness(tmp_path, "--scenario", "ins-cda", "--lang", "en", "--target", str(_target(tmp_path, docs)))
    assert run.returncode == 1 and run.requirement_verdicts() == {"INS-CDA": "ERROR"}
    assert "huge.xml: file not read: 209715200 bytes, over the limit of 16777216" in run.stdout
    result = run.manifest["results"][0]
    assert sorted(result["inputs"]) == ["cda/a.xml", "cda/b.xml"]  # the other documents were judged
    assert result["checks"][0]["verdict"] == "PASS" and result["checks"][0]["assertions"] == 2
    assert run.bundle.stat().st_size < 1024 * 1024


def test_an_unreadable_document_fails_the_terminology_checks(tmp_path):
    docs = _folder(tmp_path, {"a.xml": GOOD, "broken.xml": b"<ClinicalDocument xmlns='urn:hl7-org:v3'><code"})
    run = run_harness(tmp_path, "--scenario", "terminology", "--lang", "en", "--target", str(_target(tmp_path, docs)))
    assert run.requirement_verdicts() == {"SMT-VALUESET": "FAIL", "SMT-CODE": "FAIL"}
    unread = [f for f in run.findings() if f["rule"] == "TERM-DOC-01"]
    assert {f["location"] for f in unread} == {"doc/broken.xml"} and len(unread) == 2
    assert "unreadable document: its coded values could not be checked" in unread[0]["message"]["en"]


def test_a_failed_collector_is_an_error_not_hidden_behind_a_not_applicable_one(tmp_path):
    run = run_harness(tmp_path, "--scenario", "terminology", "--lang", "en", "--target", str(_target(tmp_path, tmp_path / "absent")))
    assert run.returncode == 1
    assert run.requirement_verdicts() == {"SMT-VALUESET": "ERROR", "SMT-CODE": "ERROR"}
    assert "documents folder not found" in run.stdout


def test_a_document_the_software_lists_but_does_not_serve_is_not_skipped(tmp_path):
    """An index of two documents whose second answers 404: the first is judged, the second is
    refused by name, so the scenario cannot pass."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from harness.running.context import CollectContext
    from harness.evidence.recorder import ObjectStore, Recorder, RecordingHttp
    from harness.running.target import Target

    class Vendor(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            body, status = {"/cda/": (b'["1.xml", "2.xml"]', 200), "/cda/1.xml": (GOOD, 200)}.get(self.path, (b"gone", 404))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Vendor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        http = RecordingHttp(Recorder(ObjectStore(tmp_path / "objects")))
        ctx = CollectContext(target=Target(None, {}), record=http.recorder.record, http=http, service_url=lambda n: "", lang="en")
        outputs = ctx.fetch_index(f"http://127.0.0.1:{server.server_address[1]}/cda/", prefix="cda", label="t")
    finally:
        server.shutdown()
        server.server_close()
    assert [k for k in outputs if k.startswith("cda-live/")] == ["cda-live/001"]
    [(item, reason)] = ctx.refused
    assert item == "cda-live/002" and "document listed by the software but not obtained" in reason.render("en")
    assert "(HTTP 404" in reason.render("en")


@pytest.mark.corpus
@pytest.mark.slow
@pytest.mark.skipif(not CORPUS.is_dir(), reason="official CDA kit not found in ../shared/corpus (a user's fresh clone)")
def test_unreadable_documents_fail_the_volet_scenario(tmp_path):
    vsm = (CORPUS / "ExemplesCDA" / "VSM_1.4_2022.01.xml").read_bytes()
    docs = _folder(tmp_path, {"vsm.xml": vsm, "b1.xml": b"<ClinicalDocument", "b2.xml": b"\xff\xfe\x00garbage", "b3.xml": b""})
    target = _target(tmp_path, docs, f'kit = "{CORPUS}"\n')
    run = run_harness(tmp_path, "--scenario", "cda-kit-volets", "--scenario", "cda-kit-header", "--lang", "en", "--target", str(target),
                      env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=300)
    assert run.requirement_verdicts() == {"CISIS-CDA-VOLET": "FAIL", "CISIS-CDA-STRUCMIN": "FAIL"}
    for req in ("CISIS-CDA-VOLET", "CISIS-CDA-STRUCMIN"):
        unread = {f["location"] for f in run.findings() if f["rule"] == "CDA-DOC-01" and f["requirement"] == req}
        assert unread == {"b1.xml", "b2.xml", "b3.xml"}, (req, unread)

"""INS in CDA and FHIR, the MLLP receiver, and the core features the INS plugin relies on."""
import json
import socket
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from harness import Evaluation, Severity, parse_xml
from harness.running.context import Artefact, CheckContext
from tests.checking import TARGET, run, step
from harness_demo.patients import PATIENTS, cda_document, fhir_patient, hl7_messages
from harness_ins import cda, fhir
from harness_ins.checks import check_cross_channel
from harness_ins.mllp import MllpListener, acknowledge

CDA_EXAMPLES = Path(__file__).parents[1].parent / "shared" / "corpus" / "ans-testcontenucda" / "ExemplesCDA"


def cda_rules(data: bytes) -> Counter:
    return Counter(p.rule for i in cda.read_identities(parse_xml(data)) for _, p, _ in cda.check_identity(i))


def fhir_rules(data) -> Counter:
    read = fhir.read_patients(json.dumps(data).encode() if not isinstance(data, bytes) else data)
    return Counter([p.rule for _, p in read.problems] + [p.rule for i in read.identities for _, p, _ in fhir.check_identity(i)])


# -- CDA ----------------------------------------------------------------------------------


def test_a_conformant_cda_patient_is_read_in_full_and_gives_no_finding():
    doc = parse_xml(cda_document(PATIENTS[0], set(), 1))
    [ident] = cda.read_identities(doc)
    assert [(i.root, i.extension) for i in ident.identifiers][0] == ("1.2.250.1.213.1.4.10", "279035121518989")
    t = ident.traits
    assert (t.birth_name, t.first_given_name, t.given_names, t.sex, t.birth_date, t.birth_place) == (
        "PAT-TROIS", "DOMINIQUE", ["DOMINIQUE", "MARIE"], "F", "19790328", "51215")
    assert cda.check_identity(ident) == []


@pytest.mark.parametrize("change, rule, severity", [
    (('qualifier="CL">PAT', '>PAT'), "INS-CDA-01", Severity.ERROR),
    (('qualifier="CL">PAT', 'qualifier="SP">PAT'), "INS-CDA-01", Severity.WARNING),
    (('extension="279035121518989"', 'extension="279035121518988"'), "INS-MAT-02", Severity.ERROR),
    (('root="1.2.250.1.213.1.4.10"', 'root="1.2.250.1.213.1.4.13"'), "INS-SYS-02", Severity.WARNING),
    (('<county>51215</county>', ''), "INS-TRA-06", Severity.ERROR),
    (('code="F"', 'code="X"'), "INS-TRA-04", Severity.ERROR),
])
def test_each_cda_defect_is_found_with_its_rule_and_an_element_location(change, rule, severity):
    data = cda_document(PATIENTS[0], set(), 1).decode().replace(*change).encode()
    [ident] = cda.read_identities(parse_xml(data))
    found = [(loc, p) for loc, p, _ in cda.check_identity(ident)]
    assert [(p.rule, p.severity) for _, p in found] == [(rule, severity)]
    assert found[0][0].startswith("/ClinicalDocument/recordTarget[1]/patientRole")


def test_a_document_without_patient_role_is_a_finding():
    data = b'<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget/></ClinicalDocument>'
    assert cda_rules(data) == {"INS-CDA-00": 1}
    assert len(cda.read_identities(parse_xml(data))) == 1


@pytest.mark.skipif(not CDA_EXAMPLES.is_dir(), reason="official CDA examples not found in ../shared/corpus (a user's fresh clone)")
def test_official_cda_examples_each_finding_explained():
    table = {f.name: cda_rules(f.read_bytes()) for f in sorted(CDA_EXAMPLES.glob("*.xml"))}
    assert len(table) >= 87
    found = {name: set(rules) for name, rules in table.items() if rules}
    # matricules whose key is not 97 - (body mod 97): 221042545611404 (key 83), 223042545611404 (82),
    # 222127505611201 (47), 224027511583555
    wrong_key = {n for n, r in found.items() if "INS-MAT-02" in r}
    assert len(wrong_key) == 10 and all(n.startswith(("CSE-", "OBP-SEM", "OBP-SNE", "SDM-MR")) for n in wrong_key)
    # 1.2.250.1.213.1.4.13 beside the test OID in the 2025 certificates: under the INS arc, no known system
    assert {n for n, r in found.items() if "INS-SYS-02" in r} == {"CSE-CS24_2025.01.xml", "CSE-CS9_2025.01.xml"}
    # eDISP: first given name RUTH but list ISABELLE; and a family name qualified SP (disputed)
    assert found["eDISP-MED_2024.01.xml"] == {"INS-TRA-03", "INS-CDA-01"}
    # the self-presenting CANCER-PPS (its CDA inside an XSLT stylesheet): PAT-TROIS's NIR (born 03/79)
    # with the birth date 1976-05-31
    assert found["CANCER-PPS_2022.01_Autopresentable.xml"] == {"INS-COH-02"}
    assert set().union(*found.values()) == {"INS-MAT-02", "INS-SYS-02", "INS-TRA-03", "INS-CDA-01", "INS-COH-02"}


# -- FHIR ---------------------------------------------------------------------------------


def test_a_conformant_fr_core_patient_gives_no_finding_and_its_traits_are_read():
    read = fhir.read_patients(json.dumps(fhir_patient(PATIENTS[0], set())).encode())
    assert read.problems == []
    [ident] = read.identities
    assert ident.status == "QUAL" and ident.traits.given_names == ["DOMINIQUE", "MARIE"] and ident.traits.birth_place == "51215"
    assert fhir.check_identity(ident) == []


@pytest.mark.parametrize("data, rule", [
    (b"{not json", "FHIR-JSON-01"),
    (b"\xff\xfe\x00", "FHIR-JSON-01"),
    (b"[" * 100000 + b"]" * 100000, "FHIR-JSON-01"),  # nesting beyond the parser's recursion limit
    ({"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]}, "FHIR-RES-01"),
    ([1, "two"], "FHIR-RES-01"),
    ({"resourceType": "Patient", "birthDate": "1979-13-45", "gender": "female"}, "FHIR-RES-02"),
    ({"resourceType": "Patient", "identifier": "not a list"}, "FHIR-RES-02"),
])
def test_malformed_fhir_gives_findings_never_a_crash(data, rule):
    assert rule in fhir_rules(data)


def test_fhir_rules_on_identifiers_and_reliability():
    good = fhir_patient(PATIENTS[0], set())
    bare = json.loads(json.dumps(good))
    bare["identifier"][1]["system"] = "1.2.250.1.213.1.4.10"
    assert fhir_rules(bare) == {"INS-FHIR-01": 1}
    vali = json.loads(json.dumps(good).replace('"code": "QUAL"', '"code": "VALI"'))
    assert fhir_rules(vali) == {"INS-STA-04": 1}  # in FHIR an error: FR Core reserves the INS to qualified identities
    assert fhir.check_identity(fhir.read_patients(json.dumps(vali).encode()).identities[0])[0][1].severity is Severity.ERROR


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(
                        st.sampled_from(["resourceType", "identifier", "name", "extension", "system", "value", "url", "given",
                                         "family", "use", "valueCoding", "code", "gender", "birthDate", "entry", "resource"]),
                        children, max_size=5), max_leaves=30))
def test_any_json_shape_is_read_without_an_exception(shape):
    for data in (shape, {"resourceType": "Patient", **shape} if isinstance(shape, dict) else shape):
        read = fhir.read_patients(json.dumps(data).encode())
        for ident in read.identities:
            fhir.check_identity(ident)


# -- MLLP receiver ------------------------------------------------------------------------


def _send(port: int, payload: bytes, *, expect_replies: int) -> list[bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(payload)
        replies, buf = [], b""
        while len(replies) < expect_replies:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            while b"\x1c\r" in buf:
                frame, buf = buf.split(b"\x1c\r", 1)
                replies.append(frame)
    return replies


def test_the_receiver_acknowledges_like_a_real_one_and_keeps_everything_as_received():
    good, bad_key = hl7_messages(set())[0], hl7_messages({"ins-key"})[0]
    junk = b"\x00\x01garbage"
    with MllpListener() as rx:
        replies = _send(rx.port, b"\x0b" + good + b"\x1c\r" + b"\x0b" + bad_key + b"\x1c\r" + junk + b"\x0b" + good[:40], expect_replies=3)
        # the unfinished frame at the end is kept when the peer hangs up
        got = rx.wait(4, 5)
    assert [r.code for r in got] == ["AA", "AE", "AR", "AR"]
    assert [r.data for r in got[:3]] == [good, bad_key, junk] and got[3].data == good[:40]
    assert [r.framed for r in got] == [True, True, False, False]
    assert b"MSA|AA|DEMO0001" in replies[0] and b"MSA|AE|DEMO0001" in replies[1] and b"ERR|" in replies[1] and b"INS-MAT-02" in replies[1]
    assert b"MSA|AR|" in replies[2]


def test_acknowledge_never_fails_on_any_bytes():
    for data in (b"", b"MSH", b"MSH|^~\\&|" + bytes(range(256)), "MSH|^~\\&|A|B|C|D|x||ADT^A01|1|P|2.5\rPID|||x".encode()):
        code, ack = acknowledge(data)
        assert code in ("AA", "AE", "AR") and ack.startswith(b"\x0b") and ack.endswith(b"\x1c\r")


# -- the core features INS relies on ------------------------------------------------------


def test_collect_mode_any_runs_on_what_applies_and_all_needs_every_collector():
    def check(ctx, ev):
        ev.judged()

    steps = [step("a", "not-applicable"), step("b", "ok")]
    assert run(check, collect=steps, mode="all")[0].value == "NOT_RUN"
    assert run(check, collect=steps, mode="any")[0].value == "PASS"
    assert run(check, collect=[step("a", "not-applicable")], mode="any")[0].value == "NOT_RUN"
    assert run(check, collect=[step("a", "not-applicable"), step("b", "error")], mode="any")[0].value == "ERROR"


def test_masking_depends_on_the_salt_only_and_sensitive_data_reaches_the_check_steps():
    a, b = CheckContext({}, lambda d: b"", TARGET, "s", "aa" * 16), CheckContext({}, lambda d: b"", TARGET, "s", "bb" * 16)
    assert a.mask("279035121518989") == a.mask("279035121518989") != b.mask("279035121518989")
    assert len(a.mask("x")) == 12 and "279035121518989" not in a.mask("279035121518989")

    def check(ctx, ev):
        ev.judged()
        ev.holds_sensitive("production-identity")

    _, steps, _ = run(check)
    assert steps[0].sensitive == ["production-identity"]


def test_cross_channel_reports_the_first_disagreement_with_both_locations():
    hl7 = hl7_messages(set())[0]
    page = json.dumps({"resourceType": "Bundle", "entry": [{"resource": fhir_patient(PATIENTS[0], set())}]}).encode()
    other = json.loads(page)
    other["entry"][0]["resource"]["birthDate"] = "1979-03-29"
    store = {"h": hl7, "f1": page, "f2": json.dumps(other).encode()}
    inputs = {"hl7/a.hl7": Artefact("h", 1, "x", "l"), "fhir/p1.json": Artefact("f1", 1, "x", "l"), "fhir/p2.json": Artefact("f2", 1, "x", "l")}
    ev = Evaluation("INS-COHERENCE")
    check_cross_channel(CheckContext(inputs, store.__getitem__, TARGET, "s", "00" * 16), ev)
    [finding] = ev.findings
    assert finding.rule == "INS-XCH-01" and "fhir/p2.json" in finding.location and "hl7/a.hl7" in finding.location
    assert "'1979-03-29' (fhir) ≠ '1979-03-28' (hl7v2)" in finding.text("en") and "279035121518989" not in finding.text("en")
    assert ev.assertions == 2


def test_a_self_presenting_document_is_read_through_the_cda_it_embeds():
    inner = cda_document(PATIENTS[0], set(), 1).split(b"?>", 1)[1]
    wrapped = (b'<xsl:stylesheet xmlns:xsl="http://www.w3.org/1999/XSL/Transform" version="1.0"><xsl:template match="/">'
               + inner + b"</xsl:template></xsl:stylesheet>")
    [ident] = cda.read_identities(parse_xml(wrapped))
    assert ident.location.endswith("/recordTarget[1]/patientRole") and ident.location.startswith("/xsl:stylesheet")
    assert ident.identifiers[0].extension == "279035121518989" and cda.check_identity(ident) == []


def test_messages_without_any_patient_are_never_a_pass():
    from harness_ins.checks import check_hl7v2

    no_pid = b"MSH|^~\\&|A|B|C|D|20240101||ACK^A01^ACK|1|P|2.5\nMSA|AA|1\n"  # readable, LF: a warning only
    ev = Evaluation("INS-HL7V2")
    check_hl7v2(CheckContext({"hl7/a#1.hl7": Artefact("a", 1, "x", "l")}, {"a": no_pid}.__getitem__, TARGET, "s"), ev)
    assert [f.rule for f in ev.findings] == ["HL7-SEG-01"] and ev.findings[0].artefact == "a"
    assert ev.verdict.value == "INCONCLUSIVE"

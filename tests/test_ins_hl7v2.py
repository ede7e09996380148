"""INS in HL7 v2: every official example read and judged, malformed messages never crash."""
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from harness import Severity
from harness_ins.hl7v2 import check_message, read_message, split_messages
from harness_ins.identity import classify_system, production_problem

EXAMPLES = Path(__file__).parents[1].parent / "shared" / "corpus" / "ans-hl7v2-examples"
needs_corpus = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="official HL7 v2 examples not found in ../shared/corpus (a user's fresh clone)")



def _pid(**fields: str) -> str:
    """A PID segment with the given fields (f3 = PID-3) and every other one empty."""
    values = [""] * 33
    for number, value in fields.items():
        values[int(number[1:])] = value
    return "|".join(["PID"] + values[1:])


GOOD = ("MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^A01^ADT_A01|3975|D|2.5^FRA^2.11\r" + _pid(
    f1="1", f3="000003^^^CHU-X&000897406&N^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS^^20101207",
    f5="PAT-TROIS^DOMINIQUE^DOMINIQUE MARIE^^^^L", f7="19790328", f8="F", f11="^^^^^^BDL^^63220", f32="QUAL") + "\r")


def rules(found):
    return Counter(p.rule for _, p in found)


def test_a_conformant_message_gives_no_finding():
    msg = read_message(GOOD.encode())
    assert msg.message_type == "ADT^A01^ADT_A01" and msg.control_id == "3975"
    [ident] = msg.identities
    assert [i.type_code for i in ident.identifiers] == ["PI", "INS"]
    assert ident.traits.given_names == ["DOMINIQUE", "MARIE"] and ident.status == "QUAL"
    assert check_message(msg) == []


@pytest.mark.parametrize("change, expected", [
    (("QUAL", "PROV~DOUT"), {"INS-STA-04": 1}),
    (("QUAL", "QUAL~FICT"), {"INS-STA-02": 1}),
    (("1.2.250.1.213.1.4.10", "1.2.3"), {"INS-SYS-02": 1}),
    (("279035121518989", "279035121518988"), {"INS-MAT-02": 1}),
    (("|F|", "|M|"), {"INS-COH-01": 1}),
    (("^^^^^^BDL^^63220", ""), {"INS-TRA-06": 1}),
    (("DOMINIQUE MARIE", ""), {"INS-TRA-03": 1}),
])
def test_each_defect_is_reported_with_its_rule(change, expected):
    found = check_message(read_message(GOOD.replace(*change).encode()))
    assert rules(found) == expected
    assert all(loc.startswith("PID") for loc, _ in found)


@pytest.mark.parametrize("status, severity, says", [
    ("PROV", "error", "PROV"),  # never verified: no source sends an INS with it
    ("VALI", "warning", "PAM-France"),  # the official examples do: both sources cited
    ("RECUP", "warning", "PAM-France"),
])
def test_an_ins_sent_with_an_unqualified_status_is_judged_by_what_that_status_proves(status, severity, says):
    found = check_message(read_message(GOOD.replace("|QUAL", f"|{status}").encode()))
    [(loc, problem)] = found
    assert problem.rule == "INS-STA-04" and problem.severity.value == severity and loc.endswith("-32")
    assert says in problem.message.texts()["en"] and says in problem.message.texts()["fr"]


def test_a_production_oid_is_left_to_the_data_protection_check_which_makes_it_critical():
    msg = read_message(GOOD.replace("1.2.250.1.213.1.4.10", "1.2.250.1.213.1.4.8").encode())
    assert check_message(msg) == []  # the message itself is well formed
    [ins] = [i for i in msg.identities[0].identifiers if i.type_code == "INS"]
    problem = production_problem(classify_system(ins.system))
    assert problem.rule == "INS-SYS-01" and problem.severity is Severity.CRITICAL
    assert production_problem(classify_system("1.2.250.1.213.1.4.10")) is None


@pytest.mark.parametrize("data, rule, severity", [
    (GOOD.replace("\r", "\n").encode(), "HL7-SEG-01", Severity.WARNING),
    (b"\x0b" + GOOD.encode() + b"\x1c\r", None, None),  # an MLLP frame is taken off
    (GOOD.replace("PAT-TROIS", "PAT-TROIS\xe9").encode("latin-1"), "HL7-ENC-02", Severity.WARNING),
    (GOOD.split("\r", 1)[1].encode(), "HL7-MSH-01", Severity.ERROR),
    (GOOD.replace("MSH|^~\\&|", "MSH|^^^^|").encode(), "HL7-MSH-02", Severity.ERROR),
    # legal but unusual separators: reported, and the library cannot read them
    (GOOD.replace("MSH|^~\\&|", "MSH;^~\\&;").encode(), "HL7-MSH-02", Severity.WARNING),
    (b"\x00\x01\x02MSH|\xff\xfe", "HL7-ENC-01", Severity.ERROR),
    (b"", "HL7-MSH-01", Severity.ERROR),
    (b"MSH", "HL7-MSH-02", Severity.ERROR),
])
def test_malformed_messages_give_findings_not_crashes(data, rule, severity):
    msg = read_message(data)
    found = check_message(msg)
    framing = [(p.rule, p.severity) for _, p in found if p.rule.startswith("HL7-")]
    expected = [] if rule is None else [(rule, severity)]
    if data.startswith(b"MSH;"):
        expected.append(("HL7-PARSE-01", Severity.ERROR))
    assert framing == expected


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: ("MSH|^~\\&|" + t).encode())))
def test_any_bytes_are_read_without_an_exception(data):
    check_message(read_message(data))


@needs_corpus
def test_every_official_example_is_read_and_each_finding_is_the_expected_one():
    files = sorted(EXAMPLES.iterdir())
    assert len(files) == 25
    table = {}
    for f in files:
        msg = read_message(f.read_bytes())
        assert msg.readable and len(msg.identities) == 1, f.name
        table[f.name] = rules(check_message(msg))
        if any(production_problem(classify_system(i.system)) for i in msg.identities[0].identifiers):
            table[f.name]["INS-SYS-01"] += 1
    everywhere = {"HL7-SEG-01", "INS-STA-04"}  # stored with LF; INS sent with status VALI
    assert all(everywhere <= set(found) for found in table.values())
    production = {n for n, found in table.items() if "INS-SYS-01" in found}
    wrong_key = {n for n, found in table.items() if "INS-MAT-02" in found}
    incoherent = {n for n, found in table.items() if "INS-COH-01" in found}
    odd_tilde = {n for n, found in table.items() if "HL7-MSH-02" in found}
    no_list = {n for n, found in table.items() if "INS-TRA-03" in found}
    assert len(production) == 13 and production == no_list  # the older versions: OID .8 and no list of given names
    assert wrong_key == {"Volets_TRANS_DOC_CDA_HL7V2_V1.2_MDM_message.hl7", "Volets_TRANS_DOC_CDA_HL7V2_V1.2_ORU_message.hl7",
                         "Volets_Trans_LPS_CDA_MSSante_V1.0_MDM_message.hl7"}
    assert len(incoherent) == 7 and all("V2.0_MDM" in n or "LPS_CDA_MSSante_V1.0_" in n for n in incoherent)
    assert odd_tilde == {n for n in table if "V2.0_ORU" in n}  # "^˜\&": U+02DC instead of "~"
    allowed = everywhere | {"INS-SYS-01", "INS-MAT-02", "INS-COH-01", "INS-COH-02", "HL7-MSH-02", "INS-TRA-03"}
    assert set().union(*table.values()) == allowed


def test_a_file_of_several_messages_is_split_at_each_msh():
    two = GOOD + GOOD.replace("|3975|", "|3976|")
    parts = split_messages(two.encode())
    assert [read_message(p).control_id for p in parts] == ["3975", "3976"]
    assert split_messages(GOOD.encode()) == [GOOD.encode()]
    # bytes before the first MSH stay with it (and are judged with it), nothing is dropped
    assert b"".join(split_messages(b"junk\r" + two.encode())) == b"junk\r" + two.encode()

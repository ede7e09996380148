"""The INS rules every channel shares: matricule, issuing system, status, strict traits."""
import pytest
from hypothesis import given, strategies as st

from harness import Severity
from harness_ins.identity import (
    DEMO_NIR, INS_NIA, INS_NIR, TEST_NIR, SystemClass, Traits, check_coherence, check_matricule, check_status,
    check_traits, classify_system, matricule_key,
)

# Official test identities (ANS) and the official HL7 v2 example whose key is wrong.
PAT_TROIS = "279035121518989"  # PAT-TROIS Dominique, F, 1979-03-28
PAT_SIX = "162018885045327"  # PAT-SIX Alain, M, 1996-01-24
WRONG_KEY = "276037510669380"


def rules(problems):
    return [p.rule for p in problems]


def test_official_test_identities_have_valid_keys_and_the_known_wrong_one_does_not():
    assert check_matricule(PAT_TROIS) == [] and check_matricule(PAT_SIX) == []
    [problem] = check_matricule(WRONG_KEY)
    assert problem.rule == "INS-MAT-02" and problem.severity is Severity.ERROR
    assert "instead of 26" in problem.text("en") and "au lieu de 26" in problem.text("fr")


@pytest.mark.parametrize("value", ["", None, "27903512151898", "2790351215189890", "27903512151898X", "2790 3512151898", "279032C21518989"])
def test_malformed_matricules_are_refused_before_any_key_is_computed(value):
    assert rules(check_matricule(value)) == ["INS-MAT-01"]


def test_corsica_departments_are_replaced_before_the_key_is_computed():
    body_a, body_b = "185022A123456", "185022B123456"
    assert matricule_key(body_a) == 97 - int("1850219123456") % 97
    assert matricule_key(body_b) == 97 - int("1850218123456") % 97
    assert check_matricule(f"{body_a}{matricule_key(body_a):02d}") == []
    assert check_matricule(f"{body_b.lower()}{matricule_key(body_b):02d}") == []
    # the key of 2A is not the key of the digits read as they stand
    assert rules(check_matricule(f"{body_b}{matricule_key(body_a):02d}")) == ["INS-MAT-02"]


bodies = st.one_of(
    st.text("0123456789", min_size=13, max_size=13),
    st.tuples(st.text("0123456789", min_size=5, max_size=5), st.sampled_from(["2A", "2B"]), st.text("0123456789", min_size=6, max_size=6)).map("".join),
)


@given(bodies)
def test_every_matricule_with_its_computed_key_is_accepted(body):
    key = matricule_key(body)
    assert 1 <= key <= 97
    assert check_matricule(f"{body}{key:02d}") == []


@given(bodies, st.integers(0, 14), st.integers(1, 9))
def test_every_single_digit_change_is_detected(body, position, shift):
    matricule = f"{body}{matricule_key(body):02d}"
    if not matricule[position].isdigit():
        position = 0  # the letter of 2A/2B is not a digit to change
    changed = matricule[:position] + str((int(matricule[position]) + shift) % 10) + matricule[position + 1:]
    assert changed != matricule
    assert rules(check_matricule(changed)) in (["INS-MAT-02"], ["INS-MAT-01"])
    assert check_matricule(changed) != []


@pytest.mark.parametrize("system, kind, cls", [
    (INS_NIR, "NIR", SystemClass.PRODUCTION), (f"urn:oid:{INS_NIA}", "NIA", SystemClass.PRODUCTION),
    (f" {TEST_NIR} ", "NIR", SystemClass.TEST), (f"URN:OID:{DEMO_NIR}", "NIR", SystemClass.DEMO),
    ("1.2.250.1.213.1.4.99", None, SystemClass.UNKNOWN), ("", None, SystemClass.UNKNOWN), (None, None, SystemClass.UNKNOWN),
])
def test_identifier_systems_are_classified(system, kind, cls):
    found = classify_system(system)
    assert (found.kind, found.cls, found.is_ins) == (kind, cls, kind is not None)


@pytest.mark.parametrize("status, attributes, shared, expected", [
    ("QUAL", [], True, []),
    ("PROV", ["DOUT"], False, []),
    ("PROV", ["FICT", "HOMD"], False, []),
    ("VALI", [], False, []),
    ("VALI", [], True, ["INS-STA-04"]),  # what the official HL7 v2 examples send
    ("RECUP", [], True, ["INS-STA-04"]),
    ("QUAL", ["DOUT"], True, ["INS-STA-02"]),
    ("VALI", ["FICT"], False, ["INS-STA-02"]),
    ("PROV", ["DOUT", "FICT"], False, ["INS-STA-03"]),
    ("QUAL", ["DOUT", "FICT"], False, ["INS-STA-03", "INS-STA-02"]),
    ("VALID", [], True, ["INS-STA-01"]),
    (None, [], False, ["INS-STA-01"]),
    ("qual", ["homa"], True, []),
    ("PROV", ["XYZ"], False, ["INS-STA-05"]),
])
def test_identity_status_and_attributes_follow_their_rules(status, attributes, shared, expected):
    assert rules(check_status(status, attributes, ins_shared=shared)) == expected


TROIS = Traits("PAT-TROIS", "DOMINIQUE", ["DOMINIQUE", "MARIE"], "F", "1979-03-28", "63220")


def test_complete_traits_pass():
    assert check_traits(TROIS) == []
    assert check_traits(Traits("X", "A", ["A"], "M", "19960124", "2A004")) == []


@pytest.mark.parametrize("change, rule", [
    (dict(birth_name=" "), "INS-TRA-01"), (dict(first_given_name=None), "INS-TRA-02"),
    (dict(given_names=[]), "INS-TRA-03"), (dict(given_names=["MARIE", "DOMINIQUE"]), "INS-TRA-03"),
    (dict(sex=""), "INS-TRA-04"), (dict(sex="X"), "INS-TRA-04"),
    (dict(birth_date=None), "INS-TRA-05"), (dict(birth_date="1979-02-30"), "INS-TRA-05"), (dict(birth_date="28/03/1979"), "INS-TRA-05"),
    (dict(birth_place=None), "INS-TRA-06"), (dict(birth_place="6322"), "INS-TRA-06"), (dict(birth_place="2C004"), "INS-TRA-06"),
])
def test_each_missing_or_malformed_trait_is_named(change, rule):
    traits = Traits(**{**TROIS.__dict__, **change})
    problems = check_traits(traits)
    assert rules(problems) == [rule] and problems[0].severity is Severity.ERROR


def test_sex_and_birth_month_written_in_the_nir_are_compared_with_the_traits():
    assert check_coherence(PAT_TROIS, TROIS) == []
    wrong = check_coherence(PAT_TROIS, Traits(**{**TROIS.__dict__, "sex": "M", "birth_date": "1980-03-28"}))
    assert rules(wrong) == ["INS-COH-01", "INS-COH-02"] and all(p.severity is Severity.WARNING for p in wrong)
    # the official PAT-SIX test identity is incoherent (year 62, born 1996): a warning, never an error
    six = check_coherence(PAT_SIX, Traits("PAT-SIX", "ALAIN", ["ALAIN"], "M", "1996-01-24", "75056"))
    assert rules(six) == ["INS-COH-02"] and six[0].severity is Severity.WARNING
    # nothing certain to compare: a malformed matricule, or a number that is not a man's or woman's NIR
    assert check_coherence(WRONG_KEY, TROIS) == []
    body = "7790351215189"
    assert check_coherence(f"{body}{matricule_key(body):02d}", Traits(sex="M", birth_date="1990-01-01")) == []

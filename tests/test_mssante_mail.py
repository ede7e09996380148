"""The MSSanté message rules (harness_mssante.mail): structure, attachment, subject and
addresses, on the demo's conformant message and on each departure."""
import pytest

from harness_demo.mssante_client import message
from harness_mssante import mail


def rules(raw: bytes, human_copy: bool = True) -> set[str]:
    return {p.rule for p in mail.read(raw, human_copy=human_copy).problems}


def test_the_demo_message_follows_every_rule():
    reading = mail.read(message(set()), human_copy=True)
    assert reading.problems == []
    assert [p.filename for p in reading.xdm] == ["IHE_XDM.ZIP"] and reading.xdm[0].payload.startswith(b"PK")
    content, problems = mail.check_subject(reading.subject)
    assert problems == [] and content == "Note de consultation PAT-TROIS Dominique 28/03/1979"


HEADERS = b"From: a@x.mssante.fr\r\nTo: b@y.mssante.fr\r\nDate: Mon, 30 Nov 2026 10:00:00 +0100\r\nSubject: s\r\nMessage-ID: <1@x>\r\nMIME-Version: 1.0\r\n"


def multipart(*parts: bytes, close: bool = True, boundary: bytes = b"BOUNDARY") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts) + (b"--" + boundary + b"--\r\n" if close else b"")
    return HEADERS + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n' + body


TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nBonjour"
PDF = b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="copie.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK'


def xdm(name: bytes = b"IHE_XDM.ZIP", ctype: bytes = b"application/zip", cte: bytes = b"base64", data: bytes = b"UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==") -> bytes:
    return (b"Content-Type: " + ctype + b'\r\nContent-Disposition: attachment; filename="' + name + b'"\r\nContent-Transfer-Encoding: ' + cte
            + b"\r\n\r\n" + data)


CASES = {
    "conformant": (multipart(TEXT, xdm(), PDF), set()),
    "missing closing boundary": (multipart(TEXT, xdm(), PDF, close=False), {"MSS-MIME-01"}),
    "boundary never found": (HEADERS + b'Content-Type: multipart/mixed; boundary="NOPE"\r\n\r\n--OTHER\r\n' + TEXT, {"MSS-MIME-01", "MSS-XDM-01", "MSS-HUMAN-01"}),
    "multipart without a boundary": (HEADERS + b"Content-Type: multipart/mixed\r\n\r\nhello", {"MSS-MIME-01", "MSS-XDM-01", "MSS-HUMAN-01"}),
    "single part": (HEADERS + b"Content-Type: text/plain\r\n\r\nhello", {"MSS-MIME-03", "MSS-XDM-01", "MSS-HUMAN-01"}),
    "no XDM": (multipart(TEXT, PDF), {"MSS-XDM-01"}),
    "two XDM": (multipart(TEXT, xdm(), xdm(), PDF), {"MSS-XDM-01"}),
    "wrong media type": (multipart(TEXT, xdm(ctype=b"application/octet-stream"), PDF), {"MSS-XDM-02"}),
    "lower-case name": (multipart(TEXT, xdm(name=b"ihe_xdm.zip"), PDF), {"MSS-XDM-02"}),
    "not base64": (multipart(TEXT, xdm(cte=b"8bit", data=b"PK\x05\x06"), PDF), {"MSS-XDM-03"}),
    "broken base64": (multipart(TEXT, xdm(data=b"UEsF*BgAA"), PDF), {"MSS-XDM-03"}),
    "no text": (multipart(xdm(), PDF), {"MSS-MIME-04"}),
    "no human copy": (multipart(TEXT, xdm()), {"MSS-HUMAN-01"}),
    "a copy that is no PDF": (multipart(TEXT, xdm(), PDF.replace(b"JVBERi0xLjQK", b"aGVsbG8=")), {"MSS-HUMAN-01"}),
    "no headers": (b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n' + TEXT + b"\r\n--B--\r\n", {"MSS-MIME-02", "MSS-XDM-01", "MSS-HUMAN-01"}),
    "binary noise": (bytes(range(256)) * 64, {"MSS-MIME-02", "MSS-MIME-03", "MSS-XDM-01", "MSS-HUMAN-01", "MSS-MIME-01"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_message_rules(case):
    raw, expected = CASES[case]
    got = rules(raw)
    assert expected <= got and (expected or got == set()), got
    if case == "lower-case name":  # a warning only
        assert all(p.severity.value == "warning" for p in mail.read(raw).problems if p.rule == "MSS-XDM-02")


@pytest.mark.parametrize("subject,ok", [
    ("XDM/1.0/DDM+Note de consultation PAT-TROIS Dominique 28/03/1979", True),
    ("XDM/1.0/DDM+CR PAT-TROIS Dominique 19790328", True),
    ("XDM/1.0/DDM+CR PAT-TROIS Dominique 1979-03-28", True),
    ("Note de consultation PAT-TROIS Dominique 28/03/1979", False),
    ("XDM/1.0/DDM", False),
    ("XDM/1.0/DDM+", False),
    ("XDM/1.0/DDM+Note PAT-TROIS Dominique", False),
    ("XDM/1.0/DDM+Note PAT-TROIS Dominique 31-02-1979", False),
])
def test_subject_convention(subject, ok):
    assert (mail.check_subject(subject)[1] == []) is ok


@pytest.mark.parametrize("content,rule_locations", [
    ("Note de consultation PAT-TROIS Dominique 28/03/1979", []),
    ("note de consultation pat-trois DOMINIQUE 19790328", []),  # case and date form do not matter
    ("Note de consultation PAT-TROIS Dominique Marie 28/03/1979", []),  # the list of given names
    ("Note de consultation MARTIN Paul 28/03/1979", ["name"]),
    ("Note de consultation PAT-TROIS Dominique 12/06/1985", ["birthTime"]),
    ("Lettre de liaison PAT-TROIS Dominique 28/03/1979", ["title"]),
])
def test_subject_agreement_with_the_document(content, rule_locations):
    problems = mail.subject_agreement(content, title="Note de consultation", family="PAT-TROIS", givens=["DOMINIQUE", "DOMINIQUE MARIE"],
                                      birth="19790328", doc="mss-doc/001")
    assert [p.location.rsplit("/", 1)[-1] for p in problems] == rule_locations
    assert all(p.rule == "MSS-SUBJ-02" and "mss-doc/001" in p.location and "Subject" in p.location for p in problems)


def test_accents_do_not_matter_in_the_subject():
    assert mail.subject_agreement("Compte rendu Hélène ÉLISE 01/01/1990", title="Compte rendu", family="HELENE", givens=["Elise"],
                                  birth="19900101", doc="d") == []


@pytest.mark.parametrize("address,rule", [
    ("dr.martin@hopital.mssante.fr", None),
    ("dr.martin@mssante.fr", None),
    ('"dr martin"@medecin.mssante.fr', None),
    ("dr.martin@gmail.com", "MSS-ADDR-02"),
    ("dr.martin@mssante.fr.evil.com", "MSS-ADDR-02"),
    ("dr.martin@evilmssante.fr", "MSS-ADDR-02"),
    ("dr..martin@hopital.mssante.fr", "MSS-ADDR-01"),
    ("dr.martin@", "MSS-ADDR-01"),
    ("@hopital.mssante.fr", "MSS-ADDR-01"),
    ("dr.martin@-hopital.mssante.fr", "MSS-ADDR-01"),
    ("dr martin@hopital.mssante.fr", "MSS-ADDR-01"),
])
def test_addresses(address, rule):
    problems = mail.check_addresses([("To", address)], None, ["mssante.fr"])
    assert [p.rule for p in problems] == ([rule] if rule else [])


def test_the_envelope_is_judged_too_and_compared_with_the_header():
    problems = mail.check_addresses([("From", "a@x.mssante.fr"), ("To", "b@y.mssante.fr")], ("other@x.mssante.fr", ["c@gmail.com"]), ["mssante.fr"])
    assert sorted((p.rule, p.location) for p in problems) == [("MSS-ADDR-02", "RCPT TO"), ("MSS-ADDR-03", "MAIL FROM ↔ header From")]


def test_a_software_that_connects_and_sends_nothing_does_not_pass_the_transport():
    import hashlib
    import json

    from harness import Artefact
    from harness_mssante import checks
    from tests.checking import run

    def session(replies, messages):
        data = json.dumps({"source": "simulator", "simulator": "smtp://127.0.0.1:1", "tls": "starttls", "max_message": 10,
                           "connections": [{"n": 1, "peer": "127.0.0.1:2", "replies": replies, "closed": "quit"}],
                           "messages": messages}).encode()
        return {"mss.session": Artefact(hashlib.sha256(data).hexdigest(), len(data), "application/json", "s")}, data

    inputs, data = session(["220 ready", "250 ok", "221 Bye"], [])
    verdict, _, findings = run(checks.check_transport, inputs, load=lambda d: data)
    assert (verdict.value, findings) == ("INCONCLUSIVE", [])
    inputs, data = session(["220 ready", "552 too big"], [])
    verdict, _, findings = run(checks.check_transport, inputs, load=lambda d: data)
    assert verdict.value == "FAIL" and [f.rule for f in findings] == ["MSS-SMTP-01"]

"""MSSanté receiving side: the software's mailbox is a real Dovecot IMAP server started by
the harness; the harness delivers its catalogue and judges the software's replies."""
import json
import zipfile

import pytest

from harness_mssante import compose, receive
from harness_mssante.mailbox import Mailbox, dovecot_binary
from tests.harness_run import RunPool, assert_caught, defect_args

needs_dovecot = pytest.mark.skipif(dovecot_binary() is None, reason="Dovecot is not installed (apt-get install dovecot-imapd; CI installs it)")


def mail(headers: str, body: str = "corps") -> bytes:
    return (headers.strip().replace("\n", "\r\n") + "\r\n\r\n" + body + "\r\n").encode()


MDN = """From: logiciel@cabinet.mssante.fr
To: expediteur@operateur-harness.mssante.fr
Subject: Accusé
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="B"
"""


def mdn(disposition: str, original: str = "<m1@x>") -> bytes:
    body = ("--B\r\nContent-Type: text/plain\r\n\r\nAccusé\r\n--B\r\nContent-Type: message/disposition-notification\r\n\r\n"
            f"Reporting-UA: logiciel\r\nOriginal-Message-ID: {original}\r\nDisposition: {disposition}\r\n\r\n--B--")
    return mail(MDN, body)


@pytest.mark.parametrize("raw,ko,kind,refs", [
    (mail(f"To: a@b.mssante.fr\nSubject: {compose.KO_PREFIX} XDM/1.0/DDM+CR\nIn-Reply-To: <m1@x>"), True, "ko-mail", ("<m1@x>",)),
    (mail(f"To: a@b.mssante.fr\nSubject: {compose.KO_PREFIX} CR\nReferences: <m0@x> <m1@x>"), True, "ko-mail", ("<m0@x>", "<m1@x>")),
    (mail(f"To: a@b.mssante.fr\nSubject: Re: {compose.KO_PREFIX} CR"), False, "mail", ()),  # the prefix begins the subject
    (mail("To: a@b.mssante.fr\nSubject: Bien reçu\nIn-Reply-To: <m1@x>"), False, "mail", ("<m1@x>",)),
    (mdn("automatic-action/MDN-sent-automatically; processed/error"), True, "mdn", ("<m1@x>",)),
    (mdn("automatic-action/MDN-sent-automatically; deleted"), True, "mdn", ("<m1@x>",)),
    (mdn("manual-action/MDN-sent-manually; displayed"), False, "mdn", ("<m1@x>",)),
    (mdn("automatic-action/MDN-sent-automatically; processed"), False, "mdn", ("<m1@x>",)),
])
def test_what_a_reply_says(raw, ko, kind, refs):
    r = receive.read_reply(raw)
    assert (r.ko, r.kind, r.refers_to) == (ko, kind, refs)


def test_the_catalogue_has_a_conformant_message_and_one_per_archive_defect():
    from harness_mssante import mail as rules

    delivered = receive.catalogue("dr@hopital.mssante.fr")
    assert [(d.id, d.expected) for d in delivered][0] == ("conforme", "integrated")
    assert {d.expected for d in delivered[1:]} == {"rejected"} and len({d.message_id for d in delivered}) == len(delivered)
    assert rules.read(delivered[0].raw).problems == []


@needs_dovecot
def test_the_mailbox_is_a_real_dovecot_that_keeps_what_is_delivered_and_says_what_was_opened():
    import imaplib
    import ssl

    box = Mailbox().start()
    try:
        box.deliver(mail("Message-ID: <a@x>\nSubject: un"))
        box.deliver(mail("Message-ID: <b@x>\nSubject: deux"))
        assert [s["message_id"] for s in box.state()] == ["<a@x>", "<b@x>"]
        assert not any("\\Seen" in s["flags"] for s in box.state())
        assert oct(box.password_file.stat().st_mode & 0o777) == "0o600"
        imap = imaplib.IMAP4("127.0.0.1", box.port, timeout=10)
        # STARTTLS offered (Dovecot counts a connection from the same address as secured,
        # so it does not refuse a clear-text login on loopback)
        assert "STARTTLS" in imap.capabilities
        imap.starttls(ssl.create_default_context(cafile=str(box.certificate)))
        imap.login(box.user, box.password_file.read_text())
        imap.select("INBOX")
        imap.fetch(b"2", "(RFC822)")
        imap.logout()
        assert [("\\Seen" in s["flags"]) for s in box.state()] == [False, True]
        assert "imap-login" in box.log()  # Dovecot's own log, in its folder
    finally:
        root = box.root
        box.stop()
    assert not root.exists()


def test_without_dovecot_the_service_says_what_to_install(monkeypatch):
    from harness import HarnessError
    from harness_mssante import mailbox, plugin

    monkeypatch.setattr(mailbox, "dovecot_binary", lambda: None)
    with pytest.raises(HarnessError) as caught:
        plugin.harness_start_service(name="mssante-mailbox", options={}, ctx=None)
    assert "apt-get install dovecot-imapd" in caught.value.detail.texts()["en"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every run of the module, started at once (tests/harness_run.py)."""
    if dovecot_binary() is None:
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd; CI installs it)")
    with RunPool(tmp_path_factory) as pool:
        pool.harness("conformant", "--scenario", "mssante-receive", "--lang", "en")
        for case, (defects, _) in sorted(CASES.items()):
            pool.harness(case, *defect_args("mssante-receive", defects))
        yield pool


@pytest.fixture(scope="module")
def conformant(runs):
    return runs["conformant"]


@pytest.mark.slow
def test_the_conformant_demo_reads_its_mailbox_and_answers_each_bad_archive(conformant):
    from harness.cli import main as cli

    run = conformant
    assert run.returncode == 0, run.stdout
    assert run.requirement_verdicts() == {"MSS-RECEIVE": "PASS"}
    with zipfile.ZipFile(run.bundle) as zf:
        [record] = [json.loads(zf.read(f"artefacts/{d}")) for d, m in run.manifest["artefacts"].items() if m["label"] == "mssante.receive"]
        asked = [zf.read(f"artefacts/{d}") for d in run.manifest["artefacts"] if b'"password_file"' in zf.read(f"artefacts/{d}")]
    assert all("\\Seen" in s["flags"] for s in record["mailbox_state"]) and len(record["mailbox_state"]) == 5
    assert len(record["replies"]) == 4 and {tuple(r["rcpt_tos"]) for r in record["replies"]} == {(receive.SENDER,)}
    # the software is given the password's file, never the password
    assert asked and not any(b'"password"' in a or b'\\"password\\"' in a for a in asked)
    assert cli(["verify", "--replay", str(run.bundle)]) == 0


CASES = {
    "unread": (["mss-recv-unread"], {("MSS-RECEIVE", "MSS-RECV-01")}),
    "silent": (["mss-recv-silent"], {("MSS-RECEIVE", "MSS-RECV-02")}),
    "ko-all": (["mss-recv-ko-all"], {("MSS-RECEIVE", "MSS-RECV-03")}),
    "ko-elsewhere": (["mss-recv-ko-elsewhere"], {("MSS-RECEIVE", "MSS-RECV-04")}),
    "imap-in-clear": (["mss-recv-plain"], {("MSS-RECEIVE", "MSS-RECV-06")}),
}


@needs_dovecot
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_receiving_defect_is_caught_with_its_rule(runs, case):
    assert_caught(runs[case], CASES[case][1])

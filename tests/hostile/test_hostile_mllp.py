"""Hostile MLLP peers: a frame that never ends, a flood, a peer that keeps the connection
open. The receiver refuses an oversized frame once and whole, answers every frame, keeps
memory bounded and never holds the run past its wait."""
import itertools
import resource
import socket
import threading
import time

from harness_demo.patients import hl7_messages
from harness_ins.hl7v2 import MLLP_END, MLLP_START
from harness_ins.mllp import KEEP, MAX_FRAME, MllpListener


def _send(port: int, payload_chunks, read_acks: bool = True) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    for chunk in payload_chunks:
        sock.sendall(chunk)
    sock.shutdown(socket.SHUT_WR)
    acks = b""
    if read_acks:
        while data := sock.recv(65536):
            acks += data
    sock.close()
    return acks


def test_a_100_mib_frame_without_end_is_refused_once_whole_with_memory_bounded():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    good = MLLP_START + hl7_messages(set())[0] + MLLP_END
    mib = b"A" * (1024 * 1024)
    flood = itertools.chain([good, b"\x0bMSH|" + mib[5:]], itertools.repeat(mib, 99))  # one chunk at a time
    with MllpListener() as rx:
        acks = _send(rx.port, flood)
        received = rx.wait(2, 10)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert [(r.code, r.oversized) for r in received] == [("AA", False), ("AR", True)]
    refused = received[1]
    assert refused.size == 100 * 1024 * 1024 - 1 and len(refused.data) == KEEP - 1  # the start byte is not the message
    # the frame never ended: it is refused at hang-up, when nobody is left to read an answer
    assert acks.count(b"MSA|AA|") == 1 and b"MSA|AR|" not in acks
    assert grown_mib < 3 * MAX_FRAME / 1024 / 1024 + 20, f"grew {grown_mib:.0f} MiB"


def test_an_oversized_frame_that_ends_is_refused_and_the_next_frame_is_read():
    good = MLLP_START + hl7_messages(set())[0] + MLLP_END
    big = MLLP_START + b"MSH|" + b"B" * (MAX_FRAME + 10) + MLLP_END
    with MllpListener() as rx:
        acks = _send(rx.port, [good, big, good])
        received = rx.wait(3, 10)
    assert [(r.code, r.oversized) for r in received] == [("AA", False), ("AR", True), ("AA", False)]
    assert acks.count(b"MSA|AA|") == 2 and acks.count(b"MSA|AR|") == 1 and b"HL7-FRAME-01" in acks


def test_a_peer_that_keeps_sending_slowly_does_not_hold_the_run():
    with MllpListener() as rx:
        sock = socket.create_connection(("127.0.0.1", rx.port), timeout=5)
        stop = threading.Event()

        def drip():
            while not stop.is_set():
                try:
                    sock.sendall(b"x")
                except OSError:
                    return
                time.sleep(0.2)

        threading.Thread(target=drip, daemon=True).start()
        start = time.monotonic()
        rx.wait(1, 1.0)
        waited = time.monotonic() - start
    # leaving the listener shuts the connection: the dripping peer is cut off
    time.sleep(0.5)
    stop.set()
    assert waited < 2.0
    try:
        sock.settimeout(2)
        assert sock.recv(10) == b""  # closed by the receiver
    except OSError:
        pass
    sock.close()


def test_the_check_reports_a_refused_frame():
    from harness import Artefact, CheckContext, Evaluation
    from harness_ins.checks import check_hl7v2
    from tests.checking import TARGET

    kept = b"MSH|" + b"A" * 100
    store = {"k": kept}
    ctx = CheckContext({"mllp-refused/001": Artefact("k", len(kept), "x", "l")}, store.__getitem__, TARGET, "s",
                       reads=check_hl7v2.reads)
    ev = Evaluation("INS-HL7V2")
    check_hl7v2(ctx, ev)
    assert [f.rule for f in ev.findings] == ["HL7-FRAME-01"] and ev.verdict.value == "FAIL"
    assert "MLLP frame over 4194304 bytes refused whole (AR)" in ev.findings[0].text("en")

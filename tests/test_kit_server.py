"""The kit server (``harness kit serve``): the kit's stylesheets compiled once and kept between runs,
the same SVRL as in process, loopback and token only, only the kit cache's stylesheets, a changed
stylesheet compiled again, and a run that falls back in process when the server is gone."""
import base64
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
import requests

from harness import core_version
from harness_cda import collect
from harness_cda.collect import PROFILES, _Loaded, svrl_of
from harness_cda.kit import Kit
from harness_cda.remote import RemoteKit
from harness_cda.server import KitServer

CORPUS = Path(__file__).parents[2] / "shared" / "corpus" / "ans-testcontenucda"
pytestmark = pytest.mark.skipif(not (CORPUS / "schematrons").is_dir(), reason="the shared corpus (ans-testcontenucda) is absent")
EXAMPLES = sorted((CORPUS / "ExemplesCDA").glob("*.xml"))[:6]


@pytest.fixture(scope="module")
def kit():
    return Kit(CORPUS, core_version())


@pytest.fixture(scope="module")
def header(kit):
    return kit.compiled(kit.root / "schematrons" / PROFILES["header"])


@pytest.fixture
def server(tmp_path, monkeypatch):
    state = tmp_path / "kit-server.json"
    monkeypatch.setenv("HARNESS_KIT_SERVER_STATE", str(state))
    monkeypatch.setattr(collect, "_remote", False)  # looked for again by this test
    with KitServer(max_stylesheets=8, recorded=32) as srv:
        srv.advertise()
        yield srv
    assert not state.exists()  # the state goes with the server


def _post(srv, body: dict | bytes, token: str | None = None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(srv.base_url + "svrl-batch", data=data, timeout=30,
                         headers={"Authorization": f"Bearer {token if token is not None else srv.token}", "Content-Type": "application/json"})


def test_the_server_answers_the_same_svrl_as_in_process_and_compiles_each_stylesheet_once(server, header):
    local = collect.saxon()  # the run's own processor (a document's tree belongs to the processor that parsed it)
    assert server.advertise().stat().st_mode & 0o777 == 0o600  # its token: its user's only
    remote = RemoteKit.find()
    assert remote is not None and remote.pid == os.getpid()
    for path in EXAMPLES:
        loaded = _Loaded(path.read_bytes(), path.name)
        expected = local.run(header.xslt_path, loaded.node(), header.documents)
        assert svrl_of(header, loaded) == expected  # through the server (found from its state file)
    assert server.served == len(EXAMPLES) and server.saxon.compiled == 1
    health = requests.get(server.base_url + "health", timeout=5).json()
    assert health["served"] == len(EXAMPLES) and health["compiled"] == 1 and health["version"] == core_version()


def test_the_server_refuses_what_is_not_the_harness_asking_for_its_own_stylesheets(server, header, tmp_path):
    def item(data: bytes) -> dict:
        return {"sha256": hashlib.sha256(data).hexdigest(), "document": base64.b64encode(data).decode()}

    asked = {"xslt": header.xslt_path, "documents": header.documents, "items": [item(EXAMPLES[0].read_bytes())]}
    assert _post(server, asked, token="").status_code == 401
    assert _post(server, asked, token=server.token[:-1] + "x").status_code == 401
    elsewhere = tmp_path / "evil.xsl"
    elsewhere.write_text(Path(header.xslt_path).read_text())
    assert _post(server, {**asked, "xslt": str(elsewhere)}).status_code == 403  # a stylesheet outside the kit cache
    assert _post(server, {**asked, "xslt": header.xslt_path + "/../../../../../etc/passwd"}).status_code == 403
    assert _post(server, {**asked, "documents": {"x": "/etc/passwd"}}).status_code == 403
    assert _post(server, b"{not json").status_code == 400
    assert _post(server, {**asked, "items": [{"sha256": "00" * 32, "document": "not base64!"}]}).status_code == 400
    xxe = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>'
    refused = _post(server, {**asked, "items": [item(xxe)]})  # the hardened parser's refusal, as that document's error
    assert refused.status_code == 200 and "error" in refused.json()["results"][0]
    assert "root:" not in refused.text
    assert server.served == 0


def test_a_stylesheet_changed_under_the_server_is_compiled_again(server, header):
    loaded = _Loaded(EXAMPLES[0].read_bytes(), EXAMPLES[0].name)
    remote = RemoteKit.find()
    first = remote.run_many(header.xslt_path, [loaded.text()], header.documents)
    remote.run_many(header.xslt_path, [loaded.text()], header.documents)
    assert server.saxon.compiled == 1
    stamp = os.stat(header.xslt_path)
    os.utime(header.xslt_path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000))  # rewritten, same bytes
    try:
        assert remote.run_many(header.xslt_path, [loaded.text()], header.documents) == first
        assert server.saxon.compiled == 2
    finally:
        os.utime(header.xslt_path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))


def test_without_a_server_or_when_it_goes_a_run_continues_in_process(tmp_path, monkeypatch, header):
    monkeypatch.setenv("HARNESS_KIT_SERVER_STATE", str(tmp_path / "none.json"))
    assert RemoteKit.find() is None
    (tmp_path / "stale.json").write_text(json.dumps({"url": "http://127.0.0.1:9/", "token": "t", "pid": 1, "version": core_version()}))
    monkeypatch.setenv("HARNESS_KIT_SERVER_STATE", str(tmp_path / "stale.json"))
    assert RemoteKit.find() is None  # nobody answers there (and its compiler is not said)
    loaded = _Loaded(EXAMPLES[1].read_bytes(), EXAMPLES[1].name)
    expected = collect.saxon().run(header.xslt_path, loaded.node(), header.documents)
    monkeypatch.setattr(collect, "_remote", RemoteKit("http://127.0.0.1:9/", "t", 1))  # found, then gone
    started = time.monotonic()
    assert svrl_of(header, loaded) == expected and collect._remote is None
    assert time.monotonic() - started < 5


def test_a_run_through_the_server_concludes_what_a_run_in_process_concludes(tmp_path):
    """Two harness runs of the kit's header profile and volets on the official examples: one with
    a kit server advertised, one without; the same verdicts and findings, and the server used."""
    from tests.harness_run import run_harness

    docs = tmp_path / "docs"
    docs.mkdir()
    for path in EXAMPLES:  # a few of the official examples (linked, not copied into the project)
        (docs / path.name).symlink_to(path)
    target = tmp_path / "kit.toml"
    target.write_text(f'[product]\nid = "x"\nname = "X"\nversion = "1.0.0"\n[cda]\nkit = "{CORPUS}"\ndocuments = "{docs}"\n')
    args = ("--scenario", "cda-kit-header", "--scenario", "cda-kit-volets", "--target", str(target), "--lang", "en")
    alone = run_harness(tmp_path, *args)
    with KitServer() as srv:
        state = srv.advertise(tmp_path / "kit-server.json")
        served = run_harness(tmp_path, *args, env={"HARNESS_KIT_SERVER_STATE": str(state)})
        assert srv.served >= 2 * len(EXAMPLES)  # the header profile and at least one volet per document
    assert alone.bundle != served.bundle
    assert alone.requirement_verdicts() == served.requirement_verdicts()
    key = lambda run: sorted(json.dumps(f, sort_keys=True) for f in run.findings())  # noqa: E731
    assert key(alone) == key(served) and len(key(alone)) > 0


def test_the_command_serves_until_told_to_stop_and_takes_its_state_with_it(tmp_path):
    import signal
    import subprocess
    import sys

    state = tmp_path / "kit-server.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_")} | {"HARNESS_KIT_SERVER_STATE": str(state)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "kit", "serve", "--max-stylesheets", "4"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        said = json.loads(state.read_text())
        assert said["pid"] == proc.pid and said["url"].startswith("http://127.0.0.1:") and state.stat().st_mode & 0o777 == 0o600
        assert requests.get(said["url"] + "health", timeout=5).json()["compiled"] == 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "serveur du kit prêt" in out and "serveur du kit arrêté : 0 SVRL servis" in out
    assert not state.exists()
    refused = subprocess.run([sys.executable, "-m", "harness.cli", "kit", "serve", "--max-stylesheets", "0"], env=env,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "de 1 à 4096" in refused.stderr


def test_a_batch_sends_each_document_once_and_answers_each_as_in_process(server, header):
    """One request per stylesheet: documents named by their SHA-256, their bytes sent only when the
    server lacks them (a 409 names them); a document the hardened parser refuses is that item's
    error, not the batch's; a digest that lies is refused."""
    from harness_cda.engine import EngineError

    remote = RemoteKit.find()
    loaded = [_Loaded(p.read_bytes(), p.name) for p in EXAMPLES]
    expected = [collect.saxon().run(header.xslt_path, one.node(), header.documents) for one in loaded]
    xxe = b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>'
    got = remote.run_many(header.xslt_path, [one.text() for one in loaded] + [xxe], header.documents)
    assert got[:-1] == expected and isinstance(got[-1], EngineError)
    posts = [ex for ex in server.journal.exchanges if ex.path == "/svrl-batch"]
    assert [ex.http_status for ex in posts] == [409, 200]  # digests first, then the bytes it lacked
    again = remote.run_many(header.xslt_path, [one.text() for one in loaded], header.documents)
    assert again == expected and [ex.http_status for ex in server.journal.exchanges if ex.path == "/svrl-batch"][2:] == [200]
    lie = {"xslt": header.xslt_path, "documents": header.documents,
           "items": [{"sha256": "00" * 32, "document": base64.b64encode(loaded[0].text()).decode()}]}
    assert requests.post(server.base_url + "svrl-batch", data=json.dumps(lie), timeout=30,
                         headers={"Authorization": f"Bearer {server.token}"}).status_code == 400
    # through the collectors' prefetch: the same SVRL handed out, asked once
    ready = collect.svrl_prefetch([(header, one) for one in loaded])
    assert [svrl_of(header, one, ready) for one in loaded] == expected


def test_a_server_of_two_processes_shares_each_batch_among_them_with_the_same_svrl(tmp_path, monkeypatch, header, kit):
    """``--workers 2``: each document of a batch goes to one process by its SHA-256 (which keeps
    its tree), both run at once; the SVRL is the one computed in process, in order."""
    monkeypatch.setenv("HARNESS_KIT_SERVER_STATE", str(tmp_path / "kit-server.json"))
    loaded = [_Loaded(path.read_bytes(), path.name) for path in EXAMPLES]
    expected = [collect.saxon().run(header.xslt_path, one.node(), header.documents) for one in loaded]
    with KitServer(max_stylesheets=8, workers=2) as srv:
        srv.advertise()
        remote = RemoteKit.find()
        assert remote.health["workers"] == 2
        texts = [one.text() for one in loaded]
        assert {hashlib.sha256(t).digest()[0] % 2 for t in texts} == {0, 1}  # both processes have a share
        assert remote.run_many(header.xslt_path, texts, header.documents) == expected
        assert remote.run_many(header.xslt_path, texts, header.documents) == expected  # their trees kept: digests only
        assert srv.served == 2 * len(texts)
        # what the processes compiled, as they said it (this process runs nothing, holds no processor):
        # the one stylesheet, once in each, kept there
        assert srv.saxon is None
        assert RemoteKit.find().health["compiled"] == srv.compiled == 2 and srv.stylesheets == 2
    # the bound on compiled stylesheets holds in each process: one kept, the other compiled again
    ihe = kit.compiled(kit.root / "schematrons" / PROFILES["ihe"])
    with KitServer(max_stylesheets=1, workers=2) as srv:
        srv.advertise()
        remote = RemoteKit.find()
        for compiled in (header, ihe, header):
            remote.run_many(compiled.xslt_path, texts, compiled.documents)
        assert srv.stylesheets == 2 and srv.compiled == 6


def test_a_document_the_server_refuses_is_that_documents_error_and_the_server_stays(tmp_path, monkeypatch):
    """Over the server's request bound (413, the services kit's own text answer) or unreadable:
    the document is not judged and says why; the client does not take the server for gone."""
    monkeypatch.setenv("HARNESS_KIT_SERVER_STATE", str(tmp_path / "kit-server.json"))
    with KitServer(max_stylesheets=8) as srv:
        srv.advertise()
        remote = RemoteKit.find()
        monkeypatch.setattr(srv, "max_request", 4096)
        said = remote.judge(str(CORPUS), "big.xml", b"<a>" + b"x" * 8192 + b"</a>")
        assert "HTTP 413" in said["error"]["fr"]
        said = remote.judge(str(CORPUS), "../a.xml", b"<a/>")
        assert "sans dossier" in said["error"]["fr"]
        assert RemoteKit.find() is not None

"""``harness kit batch``: the kit over an archive, document by document, streamed and resumable,
on local processes or a Dask cluster; the sealed bundle holds what the ``cda-kit`` scenarios run
over the same folder hold (inputs, verdicts, findings), verifies and replays."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

from harness import HarnessError
from harness_cda import batch
from tests.harness_run import harness_env, run_harness

ROOT = Path(__file__).parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "ans-testcontenucda"
pytestmark = pytest.mark.skipif(not (CORPUS / "schematrons").is_dir(), reason="the shared corpus (ans-testcontenucda) is absent")
SCENARIOS = ["cda-kit-xsd", "cda-kit-header", "cda-kit-ihe", "cda-kit-content-models", "cda-kit-ans-models", "cda-kit-volets"]
# a failing header (eDISP-MED), a failing volet (01_Modèles), a level-1 document, a document no volet claims, and others
CHOSEN = ["01_Modèles_contenus_CDA.xml", "eDISP-MED_2024.01.xml", "BIO-CR-BIO_2021.01_CDA-R2-Niveau-1.xml", "CSE-MDE_2023.01.xml",
          "CARD-F-PRC-DCI_2022.01.xml", "AVC-EUNV_2022.01.xml"]


def _harness(cwd: Path, *args: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _bundle(folder: Path) -> Path:
    [bundle] = sorted(folder.glob("*.zip"))
    return bundle


def _record(bundle: Path) -> dict:
    """What must be the same whatever ran it: verdicts, each scenario's collect steps, inputs and
    checks, the findings, the artefact index."""
    with zipfile.ZipFile(bundle) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        findings = {s: json.loads(zf.read(f"findings/{s}.json")) for s in SCENARIOS}
    return {"requirements": manifest["requirements"], "results": sorted(manifest["results"], key=lambda r: r["scenario"]),
            "artefacts": manifest["artefacts"], "findings": findings}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    docs = root / "docs"
    docs.mkdir()
    for name in CHOSEN:
        shutil.copyfile(CORPUS / "ExemplesCDA" / name, docs / name)
    (root / "tmp").mkdir()
    env = harness_env({"XDG_CACHE_HOME": str(root / "cache"), "HARNESS_CDA_KIT": str(CORPUS), "TMPDIR": str(root / "tmp")})
    return root, docs, env


@pytest.fixture(scope="module")
def scenarios_run(archive):
    """The cda-kit scenarios over the same folder, as pytest runs them."""
    root, docs, env = archive
    target = root / "target.toml"
    target.write_text(f'[product]\nid = "batch:docs"\nname = "docs"\nversion = "-"\n[cda]\nkit = "{CORPUS}"\ndocuments = "{docs}"\n')
    run = run_harness(root, "--scenario", "cda-kit", "--target", str(target), env={"XDG_CACHE_HOME": str(root / "cache")}, timeout=300)
    assert run.bundle is not None, run.stdout + run.stderr
    return run


@pytest.fixture(scope="module")
def local_batch(archive):
    root, docs, env = archive
    out = root / "local"
    done = _harness(root, "kit", "batch", str(docs), "--workers", "2", "--evidence-dir", str(out), env=env)
    return done, out


def test_a_batch_seals_what_the_scenarios_over_the_folder_seal_and_replays(local_batch, scenarios_run, archive):
    done, out = local_batch
    assert done.returncode == 1, done.stdout + done.stderr  # 01_Modèles and eDISP-MED fail
    bundle = _bundle(out)
    assert _record(bundle) == _record(scenarios_run.bundle)
    assert "CISIS-CDA-VOLET          FAIL" in done.stdout and "6 documents" in done.stdout
    verify = _harness(out, "verify", "--replay", str(bundle), env=archive[2])
    assert verify.returncode == 0 and "verdicts identiques" in verify.stdout, verify.stdout + verify.stderr
    # one line per document, written as it was judged; the working folder gone once sealed
    lines = [json.loads(line) for line in (out / f"{bundle.stem}.documents.jsonl").read_text().splitlines()]
    assert sorted(line["document"] for line in lines) == sorted(CHOSEN)
    by_doc = {line["document"]: line for line in lines}
    assert by_doc["eDISP-MED_2024.01.xml"]["results"]["cda-kit-header"]["verdict"] == "FAIL"
    assert by_doc["CARD-F-PRC-DCI_2022.01.xml"]["verdict"] == "PASS"
    # each document's own findings are the bundle's findings on it (the kit's quirks kept apart, once)
    bundle_findings = sorted(json.dumps(f, sort_keys=True) for s in SCENARIOS for f in _record(bundle)["findings"][s]
                             if not f["location"].startswith("kit:"))
    line_findings = sorted(json.dumps(f, sort_keys=True) for line in lines for r in line["results"].values() for f in r["findings"])
    assert line_findings == bundle_findings
    assert not [p for p in out.iterdir() if p.name.startswith(".batch-")]
    assert not list((archive[0] / "tmp").glob("harness-judge-*"))  # each worker's scratch folder gone with it
    with zipfile.ZipFile(bundle) as zf:
        options = json.loads(zf.read("manifest.json"))["options"]
    assert options["executor"] == "local" and options["workers"] == 2 and options["documents"] == 6


def test_a_batch_killed_half_way_resumes_where_it_stopped(archive, local_batch):
    root, docs, env = archive
    out = root / "killed"
    args = [sys.executable, "-m", "harness.cli", "kit", "batch", str(docs), "--workers", "1", "--evidence-dir", str(out)]
    proc = subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 180
    results = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(out.glob(".batch-*/results.jsonl"))
        if found and found[0].read_bytes().count(b"\n") >= 3:
            results = found[0]
            break
        time.sleep(0.05)
    assert results is not None, proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its worker, as a power cut would
    proc.wait()
    judged_before = results.read_bytes().count(b"\n")
    assert 3 <= judged_before < len(CHOSEN)
    assert not list(out.glob("*.zip"))
    first = json.loads(results.read_text().splitlines()[0])
    svrl = next(digest for name, (digest, *_rest) in first["inputs"].items() if name.startswith("svrl/"))
    (results.parent / "objects" / svrl).unlink()  # its line reached the disk, one of its artefacts did not (a power cut)
    with results.open("ab") as fh:
        fh.write(b'{"document": "half a line')  # a line cut by the kill
    again = _harness(root, "kit", "batch", str(docs), "--workers", "1", "--evidence-dir", str(out), env=env)
    assert again.returncode == 1, again.stdout + again.stderr
    assert f"{judged_before - 1} documents sur {len(CHOSEN)} déjà jugés" in again.stderr
    assert f"({len(CHOSEN) - judged_before + 1} jugés par cette exécution" in again.stdout
    assert _record(_bundle(out)) == _record(_bundle(local_batch[1]))  # the same as a batch never interrupted


def test_the_same_batch_on_a_dask_cluster_gives_the_same_bundle(archive, local_batch, tmp_path):
    root, docs, env = archive
    scheduler_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2", "--nthreads", "1"],
                                      env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        out = tmp_path / "dask"
        done = _harness(root, "kit", "batch", str(docs), "--dask", address, "--evidence-dir", str(out), env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert _record(_bundle(out)) == _record(_bundle(local_batch[1]))
        with zipfile.ZipFile(_bundle(out)) as zf:
            options = json.loads(zf.read("manifest.json"))["options"]
        assert options["executor"] == "dask" and options["workers"] == 2
    finally:
        for proc in reversed(procs):
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_an_unreachable_scheduler_or_a_missing_folder_or_kit_is_said_plainly(archive, tmp_path):
    root, docs, env = archive
    gone = _harness(root, "kit", "batch", str(docs), "--dask", "tcp://127.0.0.1:9", "--dask-timeout", "2", "--evidence-dir", str(tmp_path), env=env, timeout=120)
    assert gone.returncode == 2 and "ordonnanceur Dask injoignable à tcp://127.0.0.1:9" in gone.stderr
    missing = _harness(root, "kit", "batch", str(tmp_path / "nowhere"), "--evidence-dir", str(tmp_path), env=env)
    assert missing.returncode == 2 and "dossier introuvable" in missing.stderr
    nokit = _harness(root, "kit", "batch", str(docs), "--kit", str(tmp_path), "--evidence-dir", str(tmp_path), env=env)
    assert nokit.returncode == 2 and "n'est pas un dossier du kit" in nokit.stderr
    workers = _harness(root, "kit", "batch", str(docs), "--workers", "0", "--evidence-dir", str(tmp_path), env=env)
    assert workers.returncode == 2 and "--workers 0" in workers.stderr
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.xml").write_text("<a/>")
    empty = _harness(root, "kit", "batch", str(tmp_path / "empty"), "--evidence-dir", str(tmp_path / "ev"), env=env)
    assert empty.returncode == 2 and "aucun document .xml" in empty.stderr and not list((tmp_path / "ev").glob("*.zip"))


def test_a_worker_that_sees_another_kit_stops_the_batch_before_it_starts():
    class Pool:
        def identities(self, kit):
            return [{"sha256": "0" * 64, "worker": "tcp://10.0.0.2:40000"}]

    with pytest.raises(HarnessError) as caught:
        batch._same_kit(Pool(), str(CORPUS), "fr")
    assert "tcp://10.0.0.2:40000" in caught.value.message("fr") and "rien n'est lancé" in caught.value.message("fr")


def test_a_line_cut_by_an_interruption_is_dropped_and_whole_lines_kept(tmp_path):
    results = tmp_path / "results.jsonl"
    results.write_bytes(b'{"document": "a.xml", "sha256": "1"}\n{"document": "b.xml", "sha256": "2"}\n{"document": "c.x')
    assert sorted(batch.read_done(results)) == ["a.xml", "b.xml"]
    assert results.read_bytes().endswith(b'"2"}\n')  # what follows is appended after whole lines


def test_a_document_over_the_limit_or_not_judged_makes_the_batch_an_error_never_a_pass(tmp_path, monkeypatch):
    doc = tmp_path / "big.xml"
    doc.write_bytes(b"<a/>" * 100)
    monkeypatch.setattr(batch, "MAX_FILE", 10)
    line = batch._refused(doc)
    assert line["verdict"] == "ERROR" and "au-delà de la limite de 10 octets" in line["refused"][0]["reason"]["fr"]
    failed = batch._failed(doc, {"fr": "moteur arrêté", "en": "engine stopped"})
    assert failed["verdict"] == "ERROR" and failed["refused"][0]["reason"]["en"] == "not judged: engine stopped"
    # a worker that cannot judge says why, as data
    said = batch.judge_document(str(tmp_path), "a.xml", b"<a/>")
    assert "error" in said


def test_documents_not_judged_are_sealed_as_an_error_never_as_a_pass(archive, tmp_path, monkeypatch):
    """Every document refused (its worker could not judge it, or it is over the limit): the
    bundle is sealed, and each scenario is an ERROR naming them."""
    from concurrent.futures import Future

    from harness import CommandContext
    from harness.running.plugins import get_plugin_manager

    from harness_cda.kit import Kit

    root, docs, env = archive
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "cache"))

    class Broken:
        name, workers = "broken", 1

        def identities(self, kit):
            from harness import core_version

            return [{"sha256": Kit(Path(kit), core_version()).sha256}]

        def submit(self, kit, name, data):
            future = Future()
            future.set_result({"error": {"fr": "moteur arrêté", "en": "engine stopped"}})
            return future

        def close(self):
            pass

    target_file = tmp_path / "target.toml"
    target_file.write_text(f'[product]\nid = "x"\nname = "x"\nversion = "-"\n[cda]\nkit = "{CORPUS}"\ndocuments = "{docs}"\n')
    target = CommandContext("fr", get_plugin_manager()).load_target(target_file)
    monkeypatch.setattr(batch, "MAX_FILE", os.path.getsize(docs / CHOSEN[0]) - 1)  # the first one over the limit
    import io

    done = batch.run_batch(folder=docs, work=tmp_path / "work", kit=str(CORPUS), target=target, evidence_dir=tmp_path / "ev",
                           pool_factory=Broken, out=io.StringIO())
    assert done["documents"] == len(CHOSEN)
    requirements = done["manifest"].requirements
    assert {r["verdict"] for r in requirements.values()} == {"ERROR"}
    with zipfile.ZipFile(done["bundle"]) as zf:
        results = json.loads(zf.read("manifest.json"))["results"]
    refused = [r for res in results for step in res["collect"] for r in step.get("refused", [])]
    assert refused, results


def test_a_batch_through_a_warm_kit_server_of_two_processes_seals_the_same_bundle(archive, local_batch, tmp_path):
    """``harness kit serve --workers 2``: whole documents judged by its two processes, each
    keeping what it compiled; the batch sends them there when it runs, with the same bundle."""
    root, docs, env = archive
    state = tmp_path / "kit-server.json"
    env = dict(env, HARNESS_KIT_SERVER_STATE=str(state))
    server = subprocess.Popen([sys.executable, "-m", "harness.cli", "kit", "serve", "--workers", "2"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "prêt" in server.stdout.readline()
        out = tmp_path / "served"
        target = tmp_path / "vendor.toml"  # a vendor's own target names the product; the batch sets its documents and kit
        target.write_text('[product]\nid = "fr.example.archive"\nname = "Archive"\nversion = "7.1"\n')
        done = _harness(root, "kit", "batch", str(docs), "--target", str(target), "--evidence-dir", str(out), env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "par le serveur du kit" in done.stderr and "(2 processus, déjà chauds)" in done.stderr
        assert _record(_bundle(out)) == _record(_bundle(local_batch[1]))
        with zipfile.ZipFile(_bundle(out)) as zf:
            manifest = json.loads(zf.read("manifest.json"))
        assert manifest["options"]["executor"] == "server" and manifest["target"]["product"]["id"] == "fr.example.archive"
        assert manifest["target"]["cda"]["documents"] == str(docs)
        health = requests.get(json.loads(state.read_text())["url"] + "health", timeout=10).json()
        assert health["workers"] == 2 and health["served"] == len(CHOSEN)
        local = _harness(root, "kit", "batch", str(docs), "--no-server", "--workers", "1", "--evidence-dir", str(tmp_path / "local"), env=env)
        assert "par le serveur du kit" not in local.stderr and local.returncode == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

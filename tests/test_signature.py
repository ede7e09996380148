"""Signed bundles (issue 16, item 1): a detached CMS signature of the manifest, made with the
vendor's key, checked by `harness verify` against the verifier's trust anchors."""
import datetime as dt
import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12

from harness.cli import main as cli
from tests.harness_run import RunPool, run_harness

NOW = dt.datetime.now(dt.timezone.utc)
PASSPHRASE = "phrase-secrete-4f1c9b"
DEMO_TARGET = Path(__file__).parents[1] / "plugins" / "harness_demo" / "target.toml"


class _Folder(type(Path())):
    """A folder of PEM and PKCS#12 files, with the TSA keys and certificates as attributes."""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The services kit's test PKI (a root and an intermediate): a vendor signing key under it
    (PKCS#12 with a passphrase; PEM), an expired vendor certificate, timestamp authorities
    (one with the timeStamping usage, one under another root, one without it), another root."""
    from harness.services import TestPKI, pki as kit

    d = _Folder(tmp_path_factory.mktemp("pki"))
    authority = TestPKI("Test", org="Test")
    vendor = authority.issue("Editeur Exemple SAS", usage="signing", org="Test")
    expired = authority.issue("Editeur Exemple SAS (expired)", usage="signing", org="Test", validity="expired", key=vendor.key)
    other = kit.self_signed_ca("Other Root CA", "Test")
    inter = authority.intermediate.cert
    enc = serialization.BestAvailableEncryption(PASSPHRASE.encode())
    (d / "vendor.p12").write_bytes(pkcs12.serialize_key_and_certificates(b"vendor", vendor.key, vendor.cert, [inter], enc))
    (d / "expired.p12").write_bytes(pkcs12.serialize_key_and_certificates(b"vendor", vendor.key, expired.cert, [inter], enc))
    (d / "vendor.pem").write_bytes(kit.key_pem(vendor.key) + vendor.chain_pem())
    (d / "root.pem").write_bytes(kit.pem(authority.root.cert))
    tsa_key = ec.generate_private_key(ec.SECP256R1())  # tests/tsa.py signs with ECDSA
    # the authorities sign their tokens with their certificate alone (tests/tsa.py): issued by the root
    d.tsa = (tsa_key, kit.issue(authority.root, "Test TSA", usage="timestamping", org="Test", key=tsa_key).cert)
    d.tsa_other = (tsa_key, kit.issue(other, "Rogue TSA", usage="timestamping", org="Test", key=tsa_key).cert)
    d.tsa_no_eku = (tsa_key, kit.issue(authority.root, "Plain server", usage="signing", org="Test", key=tsa_key).cert)
    (d / "other.pem").write_bytes(kit.pem(other.cert))
    return d


def _target(tmp_path: Path, key: Path | None, *, passphrase=True, tsa: str | None = None) -> Path:
    text = DEMO_TARGET.read_text()
    if key is not None:
        text += f'\n[signature]\nkey = "{key}"\n' + ('passphrase = "env:SIGN_PASSPHRASE"\n' if passphrase else "")
        text += f'timestamp_url = "{tsa}"\n' if tsa else ""
    path = tmp_path / f"target-{key.stem if key else 'unsigned'}-{bool(tsa)}.toml"
    path.write_text(text)
    return path


def _run(tmp_path, target, *extra):
    # a quick scenario, without a browser: the signature covers whatever the run concluded
    return run_harness(tmp_path, "--scenario", "version-orderable-scheme", "--lang", "en", "--target", str(target), *extra,
                       env={"SIGN_PASSPHRASE": PASSPHRASE, "HARNESS_BROWSER": "none"})


def _verify(capsys, bundle, *anchors) -> tuple[int, str]:
    code = cli(["--lang", "en", "verify", *[a for p in anchors for a in ("--trust", str(p))], str(bundle)])
    return code, capsys.readouterr().out


def _forge(bundle: Path, out: Path) -> None:
    """Change a verdict, then seal again (the seal is a plain hash: anyone can recompute it)."""
    with zipfile.ZipFile(bundle) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members["manifest.json"])
    manifest["results"][0]["verdict"] = "FAIL" if manifest["results"][0]["verdict"] == "PASS" else "PASS"
    body = json.dumps(manifest, sort_keys=True, ensure_ascii=False, indent=2).encode() + b"\n"
    members["manifest.json"] = body
    members["manifest.sha256"] = f"{hashlib.sha256(body).hexdigest()}  manifest.json\n".encode()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


TSA_CASES = {"refuse": ("tsa", "refuse"), "other": ("tsa", "other"), "tsa_other": ("tsa_other", "ok"), "tsa_no_eku": ("tsa_no_eku", "ok")}


@pytest.fixture(scope="module")
def runs(pki, tmp_path_factory):
    """Every run of the module, started at once (tests/harness_run.py), each with its target
    in its own folder; the timestamp authorities they call live as long as the module."""
    from tests.tsa import TimestampAuthority

    f = tmp_path_factory
    authorities = {"ok": TimestampAuthority(*pki.tsa)}
    authorities.update({case: TimestampAuthority(*getattr(pki, which), mode=mode) for case, (which, mode) in TSA_CASES.items()})

    def signed(key: str, signer: Path | None, **kw) -> None:
        folder = f.mktemp(key.replace("/", "-"))
        pool.submit(key, _run, folder, _target(folder, signer, **kw))

    try:
        with RunPool(f) as pool:
            signed("p12", pki / "vendor.p12")
            signed("pem", pki / "vendor.pem", passphrase=False)
            signed("expired", pki / "expired.p12")
            signed("unsigned", None)
            folder = f.mktemp("wrong")
            pool.harness("wrong-passphrase", "--scenario", "version-orderable-scheme", "--lang", "en",
                         "--target", str(_target(folder, pki / "vendor.p12")), env={"SIGN_PASSPHRASE": "not-the-passphrase"}, cwd=folder)
            pool.harness("sign-option", "--scenario", "version-orderable-scheme", "--lang", "en", "--sign", str(pki / "vendor.pem"),
                         env={"HARNESS_BROWSER": "none"})
            signed("tsa/ok", pki / "vendor.p12", tsa=authorities["ok"].url)
            signed("tsa/down", pki / "vendor.p12", tsa="http://127.0.0.1:9/tsa")
            for case in TSA_CASES:
                signed(f"tsa/{case}", pki / "vendor.p12", tsa=authorities[case].url)
            pool.authorities = authorities
            yield pool
    finally:
        for tsa in authorities.values():
            tsa.stop()


@pytest.mark.slow
def test_a_signed_bundle_verifies_without_the_key_and_a_resealed_forgery_does_not(pki, runs, tmp_path, capsys):
    run = runs["p12"]
    assert run.returncode == 0, run.stdout + run.stderr
    with zipfile.ZipFile(run.bundle) as zf:
        assert "manifest.p7s" in zf.namelist()
        assert not any(PASSPHRASE.encode() in zf.read(n) for n in zf.namelist())
    assert PASSPHRASE not in run.stdout + run.stderr
    code, out = _verify(capsys, run.bundle, pki / "root.pem")
    assert code == 0, out
    assert "Signed by CN=Editeur Exemple SAS,O=Test,C=FR (issuer CN=Test AC organisations (test),O=Test,C=FR" in out
    assert "Certificate chain valid up to the anchor CN=Test AC racine (test),O=Test,C=FR" in out
    # the HTML report beside the bundle says who signed it (the chain is the verifier's to check)
    html = run.bundle.with_suffix(".html").read_text(encoding="utf-8")
    assert "signed by CN=Editeur Exemple SAS,O=Test,C=FR (issuer CN=Test AC organisations (test),O=Test,C=FR" in html
    forged = tmp_path / "forged.zip"
    _forge(run.bundle, forged)
    code, out = _verify(capsys, forged, pki / "root.pem")
    assert code == 1 and "Integrity verified" in out  # the seal alone is fooled...
    assert "the manifest changed since it was signed" in out  # ...the signature is not
    code, out = _verify(capsys, forged)  # without anchors too: the digest no longer matches
    assert code == 1 and "Signature NOT valid" in out


@pytest.mark.slow
def test_each_signature_problem_gives_its_own_message(pki, runs, tmp_path, capsys):
    pem = runs["pem"]
    assert pem.returncode == 0, pem.stdout + pem.stderr
    # another CA: the chain does not reach the anchor
    code, out = _verify(capsys, pem.bundle, pki / "other.pem")
    assert code == 1 and "certificate chain not recognised by the trust anchors supplied" in out
    # no anchor given: the signature holds, the chain is not judged, and it is said
    code, out = _verify(capsys, pem.bundle)
    assert code == 0 and "chain not checked, no trust anchor given" in out
    # an expired signing certificate
    expired = runs["expired"]
    code, out = _verify(capsys, expired.bundle, pki / "root.pem")
    assert code == 1 and "signing certificate outside its validity period" in out
    # an unsigned bundle: said plainly; refused when the verifier asks for a signature
    unsigned = runs["unsigned"]
    code, out = _verify(capsys, unsigned.bundle)
    assert code == 0 and "Unsigned: integrity is verified, but nothing says who produced this bundle" in out
    code, out = _verify(capsys, unsigned.bundle, pki / "root.pem")
    assert code == 1 and "Unsigned, though trust anchors were supplied (--trust): refused" in out
    # garbage where the signature goes: said, never a traceback
    garbage = tmp_path / "garbage.zip"
    with zipfile.ZipFile(unsigned.bundle) as src, zipfile.ZipFile(garbage, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
        dst.writestr("manifest.p7s", b"\x30\x03\x02\x01\x00 not cms")
    code, out = _verify(capsys, garbage, pki / "root.pem")
    assert code == 1 and "manifest.p7s is not a readable detached CMS signature" in out


def test_a_wrong_passphrase_stops_the_run_before_anything_runs(runs):
    run = runs["wrong-passphrase"]
    assert run.returncode == 4 and run.bundle is None
    assert "unusable (wrong passphrase or damaged file)" in run.stderr and "Traceback" not in run.stderr
    assert "not-the-passphrase" not in run.stdout + run.stderr


def test_the_sign_option_names_the_key_on_the_command_line(runs):
    run = runs["sign-option"]
    assert run.returncode == 0, run.stdout + run.stderr
    with zipfile.ZipFile(run.bundle) as zf:
        assert "manifest.p7s" in zf.namelist()


@pytest.mark.slow
def test_a_timestamp_from_the_authority_dates_the_signature(pki, runs, capsys):
    tsa = runs.authorities["ok"]
    run = runs["tsa/ok"]
    assert run.returncode == 0 and tsa.requests == 1, run.stdout + run.stderr
    code, out = _verify(capsys, run.bundle, pki / "root.pem")
    assert code == 0, out
    assert "by CN=Test TSA,O=Test,C=FR (anchor CN=Test AC racine (test),O=Test,C=FR): the signer's chain is checked at that time" in out
    assert cli(["--lang", "en", "verify", "--require-timestamp", "--trust", str(pki / "root.pem"), str(run.bundle)]) == 0
    # a verifier's fresh process (asn1crypto learns timestamp tokens from a module it must load)
    import subprocess
    import sys

    fresh = subprocess.run([sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())", "--lang", "en", "verify",
                            "--require-timestamp", "--trust", str(pki / "root.pem"), str(run.bundle)], capture_output=True, text=True)
    assert fresh.returncode == 0 and "Timestamped on" in fresh.stdout, fresh.stdout + fresh.stderr
    # the timestamp is what keeps a signature verifiable once the certificate has expired
    from harness.evidence.signature import verify_signature

    with zipfile.ZipFile(run.bundle) as zf:
        body, p7s = zf.read("manifest.json"), zf.read("manifest.p7s")
    anchors = x509.load_pem_x509_certificates((pki / "root.pem").read_bytes())
    later = NOW + dt.timedelta(days=400)  # the vendor certificate ends after 365 days
    assert verify_signature(body, p7s, anchors, at=later).status == "valid"
    plain = runs["pem"]
    with zipfile.ZipFile(plain.bundle) as zf:
        report = verify_signature(zf.read("manifest.json"), zf.read("manifest.p7s"), anchors, at=later)
    assert report.status == "invalid" and "outside its validity period" in report.problems[0].render("en")
    # no timestamp, and the verifier requires one
    code, out = _verify(capsys, plain.bundle, pki / "root.pem")
    assert code == 0 and "No timestamp: the signing time is the signer's own claim" in out
    assert cli(["--lang", "en", "verify", "--require-timestamp", str(plain.bundle)]) == 1
    assert "No timestamp, though one is required (--require-timestamp): refused" in capsys.readouterr().out


@pytest.mark.slow
def test_each_timestamp_problem_gives_its_own_message(pki, runs, capsys):
    cases = {
        # the authority refuses, or cannot be reached: the bundle is still signed, and the run says so
        "refuse": "the timestamp authority http://127.0.0.1:",
        "down": "no timestamp from http://127.0.0.1:9/tsa",
        "other": "is not about this signature",
    }
    for mode, said in cases.items():
        tsa = runs.authorities.get(mode)
        run = runs[f"tsa/{mode}"]
        assert tsa is None or tsa.errors == []
        assert run.returncode == 0 and said in run.stdout, (mode, [line for line in run.stdout.splitlines() if "timestamp" in line])
        code, out = _verify(capsys, run.bundle, pki / "root.pem")
        assert code == 0 and "No timestamp" in out, (mode, out)
    # a token from an authority the verifier does not trust, or from a certificate that is no TSA's
    for which, said in (("tsa_other", "timestamp authority CN=Rogue TSA,O=Test,C=FR not recognised"),
                        ("tsa_no_eku", "is no timestamp authority certificate: extended key usage timeStamping missing")):
        run = runs[f"tsa/{which}"]
        code, out = _verify(capsys, run.bundle, pki / "root.pem")
        assert code == 1 and said in out, (which, out)

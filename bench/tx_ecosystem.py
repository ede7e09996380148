"""The terminology stand-in against the HL7 terminology ecosystem test suite.

    python bench/tx_ecosystem.py [--suite DIR | --git GITDIR] [--all] [--json FILE] [--list]

The suite is HL7/fhir-tx-ecosystem-ig, folder ``tests/``, at the pinned commit below. It is
read from ``--suite`` (a folder holding ``test-cases.json``), from ``--git`` (a clone or bare
mirror: ``git archive`` of the pinned commit), or downloaded once from GitHub into the
cache (``~/.cache/ehealth-harness/tx-ecosystem/<commit>``) when the machine can reach it.
Whatever the source, its content must have the pinned SHA-256 (each file's path and hash,
sorted) or nothing runs.

Each test is sent as the suite's own runner (the FHIR validator's ``-txtests``) sends it:
a POST of the request ``Parameters`` with every setup resource of its suite as a
``tx-resource`` parameter, the test's ``profile`` merged in, its ``Accept-Language`` and
``header``. By default the self-contained suites run (mode ``general``: they ship their own
code systems and value sets); ``--all`` adds those written for tx.fhir.org, SNOMED CT,
OMOP, UCUM... which no snapshot holds.

*Agreement* is judged on what a vendor relies on, not on wording (each server words its
messages its own way; the suite marks those texts ``$external$``):

* an error expected (an OperationOutcome, or ``http-code`` 4xx): the stand-in answers an
  error (4xx/5xx), and a 2xx when 2xx is expected;
* ``$validate-code``: the same ``result``; the same ``code``, ``system``, ``version``,
  ``display`` and ``inactive`` where the expected answer gives them (``$optional$`` aside);
  the same issues, as (severity, tx-issue-type) pairs, each optional one allowed;
* ``$expand``: the same codes (system, code; the hierarchy flattened), the same ``total``
  where given, and for each code the same ``display``, ``abstract`` and ``inactive``;
* ``$lookup``: the same ``display``, ``name``, ``version`` and ``abstract`` where given;
* ``$translate``: the same ``result`` and the same matches (system, code, relationship).

An answer that is an explicit "not supported" error (``not-supported``) where the suite
expects an answer is counted apart: a disagreement, but an honest one. Each other
disagreement is listed with what differed.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REPO = "HL7/fhir-tx-ecosystem-ig"
COMMIT = "888e84ddfe9db0b34e9d811346d0dc16ec0b9e06"
PINNED = "5f29f6b31b937a211df3d36213f0a2ef35954ba982cbfbab3b04dd162e1ff3d5"  # content_digest of tests/ at COMMIT
OPERATIONS = {"expand": "ValueSet/$expand", "validate-code": "ValueSet/$validate-code",
              "cs-validate-code": "CodeSystem/$validate-code", "lookup": "CodeSystem/$lookup",
              "translate": "ConceptMap/$translate"}
SELF_CONTAINED = ("general",)
CACHE = Path.home() / ".cache" / "ehealth-harness" / "tx-ecosystem"


# -- the suite -----------------------------------------------------------------------------

def content_digest(folder: Path) -> str:
    """SHA-256 over every file's path (relative to the suite's folder) and SHA-256, sorted."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def _extract_tests(tar_bytes: bytes, dest: Path, strip: int) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts[strip:]
            if not parts or parts[0] != "tests" or not member.isfile() or ".." in parts:
                continue
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())


def locate(suite: str | None, git: str | None) -> Path:
    """The suite's ``tests`` folder, checked against the pinned content hash."""
    if suite:
        folder = Path(suite)
        folder = folder / "tests" if (folder / "tests" / "test-cases.json").is_file() else folder
    else:
        folder = CACHE / COMMIT / "tests"
        if not (folder / "test-cases.json").is_file():
            if git:
                data = subprocess.run(["git", f"--git-dir={git}", "archive", COMMIT, "tests"], check=True,
                                      capture_output=True, timeout=300).stdout
                _extract_tests(data, folder.parent, 0)
            else:
                url = f"https://codeload.github.com/{REPO}/tar.gz/{COMMIT}"
                with urllib.request.urlopen(url, timeout=120) as res:  # noqa: S310 (pinned, checked below)
                    _extract_tests(res.read(), folder.parent, 1)
    if not (folder / "test-cases.json").is_file():
        raise SystemExit(f"no test-cases.json in {folder}")
    got = content_digest(folder)
    if got != PINNED:
        raise SystemExit(f"{folder}: content SHA-256 {got} is not the pinned {PINNED} ({REPO}@{COMMIT})")
    return folder


def load_tests(folder: Path, everything: bool) -> list[dict]:
    cases = json.loads((folder / "test-cases.json").read_text(encoding="utf-8-sig"))
    out = []
    for suite in cases["suites"]:
        if not everything and suite.get("mode") not in SELF_CONTAINED:
            continue
        setup = [_read(folder / s) for s in suite.get("setup") or [] if (folder / s).is_file()]
        for test in suite["tests"]:
            if test.get("mode") and test["mode"] not in SELF_CONTAINED and not everything:
                continue
            out.append({"suite": suite["name"], "setup": setup, **test})
    return out


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


# -- running -------------------------------------------------------------------------------

def request_of(folder: Path, test: dict) -> tuple[dict, dict[str, str]]:
    req = _read(folder / test["request"]) if test.get("request") else {"resourceType": "Parameters", "parameter": []}
    params = list(req.get("parameter") or [])
    if test.get("profile"):
        params += [p for p in _read(folder / test["profile"]).get("parameter") or [] if p.get("name") != "uuid"]
    params += [{"name": "tx-resource", "resource": r} for r in test["setup"]]
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if test.get("Accept-Language"):
        headers["Accept-Language"] = test["Accept-Language"]
    if isinstance(test.get("header"), dict):
        headers[test["header"]["name"]] = test["header"]["value"]
    return {"resourceType": "Parameters", "parameter": params}, headers


def send(base: str, op: str, body: dict, headers: dict[str, str]) -> tuple[int, Any]:
    data = json.dumps(body).encode("utf-8")
    req = urllib.request.Request(base + OPERATIONS[op], data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as res:  # noqa: S310 (loopback)
            return res.status, json.loads(res.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, None


# -- comparing -----------------------------------------------------------------------------

def _optional(node: Any) -> bool:
    return isinstance(node, dict) and "$optional$" in node and node["$optional$"] not in (False,)


def _wild(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$") and value.endswith("$")


def _params(res: Any) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in (res or {}).get("parameter") or []:
        if isinstance(p, dict):
            out.setdefault(p.get("name"), []).append(p)
    return out


def _value(p: dict) -> Any:
    return next((v for k, v in p.items() if k.startswith("value")), None)


def _issues(res: Any, optional_too: bool) -> tuple[Counter, set]:
    required, optional = Counter(), set()
    for i in (res or {}).get("issue") or []:
        codes = [c.get("code") for c in (i.get("details") or {}).get("coding") or [] if isinstance(c, dict)]
        key = (i.get("severity"), codes[0] if codes else i.get("code"))
        if _optional(i) and optional_too:
            optional.add(key)
        elif not _optional(i) or not optional_too:
            required[key] += 1
    return required, optional


def _flatten(contains: list) -> list[dict]:
    out, stack = [], list(contains or [])
    while stack:
        c = stack.pop(0)
        if isinstance(c, dict):
            out.append(c)
            stack[:0] = c.get("contains") or []
    return out


def compare(op: str, expected: Any, status: int, actual: Any, http_code: str | None) -> list[str]:
    """What differs, in words; empty when the stand-in agrees."""
    expect_error = (http_code or "").startswith("4") or (isinstance(expected, dict) and expected.get("resourceType") == "OperationOutcome")
    if expect_error:
        return [] if status >= 400 else [f"an error was expected, the stand-in answered {status}"]
    if status >= 400:
        diag = ""
        if isinstance(actual, dict):
            diag = "; ".join(str((i.get("details") or {}).get("text") or i.get("diagnostics")) for i in actual.get("issue") or [])
        return [f"an answer was expected, the stand-in answered {status}: {diag[:300]}"]
    if op in ("validate-code", "cs-validate-code"):
        return _compare_validate(expected, actual)
    if op == "expand":
        return _compare_expand(expected, actual)
    if op == "lookup":
        return _compare_named(expected, actual, ("display", "name", "version", "abstract"))
    return _compare_translate(expected, actual)


def _compare_named(expected: Any, actual: Any, names: tuple[str, ...]) -> list[str]:
    e, a = _params(expected), _params(actual)
    diffs = []
    for name in names:
        for p in e.get(name) or []:
            if _optional(p) or _wild(_value(p)):
                continue
            got = [_value(x) for x in a.get(name) or []]
            if _value(p) not in got:
                diffs.append(f"{name}: expected {_value(p)!r}, got {got[0] if got else None!r}")
    return diffs


def _compare_validate(expected: Any, actual: Any) -> list[str]:
    diffs = _compare_named(expected, actual, ("result", "code", "system", "version", "display", "inactive"))
    e_issues = next((p.get("resource") for p in _params(expected).get("issues") or []), None)
    a_issues = next((p.get("resource") for p in _params(actual).get("issues") or []), None)
    required, optional = _issues(e_issues, True)
    got, _ = _issues(a_issues, False)
    missing = required - got
    extra = [k for k in (got - required) if k not in optional]
    if missing:
        diffs.append(f"issues missing: {sorted(missing.elements())}")
    if extra:
        diffs.append(f"issues not expected: {sorted(extra)}")
    return diffs


def _compare_expand(expected: Any, actual: Any) -> list[str]:
    if not isinstance(actual, dict) or actual.get("resourceType") != "ValueSet":
        return ["not a ValueSet"]
    e_exp, a_exp = expected.get("expansion") or {}, actual.get("expansion") or {}
    diffs = []
    if "total" in e_exp and not _wild(e_exp["total"]) and e_exp["total"] != a_exp.get("total"):
        diffs.append(f"total: expected {e_exp['total']}, got {a_exp.get('total')}")
    # a code is (system, code), and its version where the expected expansion names one (a value set
    # may hold the same code from two versions of its code system)
    e_list = [c for c in _flatten(e_exp.get("contains")) if c.get("code")]
    versioned = {c.get("system") for c in e_list if c.get("version")}

    def key(c: dict) -> tuple:
        return (c.get("system"), c.get("code")) + ((c.get("version"),) if c.get("system") in versioned else ())
    e_codes = {key(c): c for c in e_list}
    must = {k for k, c in e_codes.items() if not _optional(c)}
    a_codes = {key(c): c for c in _flatten(a_exp.get("contains")) if c.get("code")}
    if must - set(a_codes):
        diffs.append(f"codes missing: {sorted(must - set(a_codes))[:8]}")
    if set(a_codes) - set(e_codes):
        diffs.append(f"codes not expected: {sorted(set(a_codes) - set(e_codes))[:8]}")
    for key in set(e_codes) & set(a_codes):
        e, a = e_codes[key], a_codes[key]
        if "display" in e and not _wild(e["display"]) and e["display"] != a.get("display"):
            diffs.append(f"{key[1]}: display expected {e['display']!r}, got {a.get('display')!r}")
        for flag in ("abstract", "inactive"):
            if bool(e.get(flag)) != bool(a.get(flag)):
                diffs.append(f"{key[1]}: {flag} expected {bool(e.get(flag))}")
    return diffs


def _compare_translate(expected: Any, actual: Any) -> list[str]:
    diffs = _compare_named(expected, actual, ("result",))

    def matches(res: Any) -> set:
        out = set()
        for p in _params(res).get("match") or []:
            parts = {x.get("name"): _value(x) for x in p.get("part") or []}
            concept = parts.get("concept") or {}
            out.add((concept.get("system"), concept.get("code"), parts.get("relationship") or parts.get("equivalence")))
        return out
    if matches(expected) != matches(actual):
        diffs.append(f"matches: expected {sorted(matches(expected))}, got {sorted(matches(actual))}")
    return diffs


def not_supported(actual: Any) -> bool:
    return isinstance(actual, dict) and any(i.get("code") == "not-supported" for i in actual.get("issue") or [] if isinstance(i, dict))


# -- the run -------------------------------------------------------------------------------

def run(folder: Path, tests: list[dict], base: str) -> list[dict]:
    rows = []
    for test in tests:
        op = test["operation"]
        if op not in OPERATIONS:
            rows.append({"suite": test["suite"], "test": test["name"], "operation": op, "outcome": "not-run",
                         "why": f"operation {op} is not a terminology operation the stand-in offers"})
            continue
        body, headers = request_of(folder, test)
        status, actual = send(base, op, body, headers)
        diffs = compare(op, _read(folder / test["response"]), status, actual, test.get("http-code"))
        if diffs and test.get("response2"):  # the suite accepts either answer
            diffs = compare(op, _read(folder / test["response2"]), status, actual, test.get("http-code")) and diffs
        outcome = "agree" if not diffs else ("not-supported" if not_supported(actual) else "disagree")
        rows.append({"suite": test["suite"], "test": test["name"], "operation": op, "outcome": outcome, "why": "; ".join(diffs)})
    return rows


def summary(rows: list[dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        d = out.setdefault(r["operation"], {"tests": 0, "agree": 0, "not-supported": 0, "disagree": 0, "not-run": 0})
        d["tests"] += 1
        d[r["outcome"]] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", help="a folder holding the suite (its tests/ folder or the folder above)")
    ap.add_argument("--git", help="a clone or mirror of HL7/fhir-tx-ecosystem-ig (git archive of the pinned commit)")
    ap.add_argument("--all", action="store_true", help="every suite, not only the self-contained ones")
    ap.add_argument("--json", type=Path, help="write every test's outcome here")
    ap.add_argument("--list", action="store_true", help="print every disagreement")
    ap.add_argument("--filter", help="only tests whose name contains this")
    args = ap.parse_args()
    folder = locate(args.suite, args.git)
    tests = [t for t in load_tests(folder, args.all) if not args.filter or args.filter in t["name"]]

    from harness.terminology import Snapshot, SnapshotTerminology, TerminologyServer
    empty = Snapshot("empty")
    empty._build()
    server = TerminologyServer(SnapshotTerminology(empty, as_of="2026-12-01")).start()
    started = time.perf_counter()
    try:
        rows = run(folder, tests, server.base_url)
    finally:
        server.stop()
    for failure in getattr(server, "failures", []):
        print(f"stand-in failure: {failure}")
    elapsed = time.perf_counter() - started
    table = summary(rows)
    print(f"{REPO}@{COMMIT[:12]}: {len(rows)} tests ({'all suites' if args.all else 'self-contained suites'}) in {elapsed:.1f} s")
    print(f"{'operation':18} {'tests':>6} {'agree':>6} {'%':>6} {'not-supp.':>10} {'disagree':>9} {'not run':>8}")
    for op, d in sorted(table.items()):
        pct = 100.0 * d["agree"] / d["tests"] if d["tests"] else 0.0
        print(f"{op:18} {d['tests']:>6} {d['agree']:>6} {pct:>5.1f}% {d['not-supported']:>10} {d['disagree']:>9} {d['not-run']:>8}")
    if args.list:
        for r in rows:
            if r["outcome"] != "agree":
                print(f"  [{r['outcome']}] {r['suite']}/{r['test']} ({r['operation']}): {r['why']}")
    if args.json:
        args.json.write_text(json.dumps({"commit": COMMIT, "summary": table, "tests": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

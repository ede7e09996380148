"""The DMP simulator's registry against the NIST XDS Toolkit test plans.

    python bench/nist_xds.py [--testkit DIR | --git GITDIR] [--json FILE] [--list]

The test plans are those of usnistgov/iheos-toolkit2 (``xdstools2/src/main/webapp/toolkitx/
testkit/tests``) at the pinned commit below, read from ``--testkit`` (the folder holding
``tests/``) or from ``--git`` (a clone or mirror: ``git archive`` of the pinned commit), and
cached in ``~/.cache/ehealth-harness/nist-xds/<commit>``. Whatever the source, its content
must have the pinned SHA-256 or nothing runs.

Every test's sections run in order (``index.idx``), tests in the order of their names, against
one registry playing an IHE XDS.b registry and repository (``Registry(profile="ihe")``: the
same code the DMP simulator runs, without the DMP's restrictions, whose patients are those
fed to it). Each Register (ITI-42) and Provide and Register (ITI-41) step is prepared as the
toolkit's test engine prepares it: the metadata file, the patient (the test session's, fed
by a patient identity feed, unless ``NoPatientId``), ``AssignUuids`` and the unique ids it
assigns (unless ``NoAssignUids``), ``UseId`` (ids assigned by an earlier step) and
``UseReport`` (a patient fed by a ``pif`` section; a value reported from the submitted
metadata), the documents named. Patient identity feeds feed the registry. Steps of other
transactions (stored queries, retrieves, metadata updates...) are not judged.

*Agreement*: the registry's status is the expected one (``ExpectedStatus``: Success,
Failure, PartialSuccess), and each expected error code (``ExpectedErrorCode``,
``ExpectedErrorMessage``) is among the errors it returned. A step that cannot be prepared
(a value reported by a query this runner does not replay, a SOAP fault of the XUA tests...)
is *not run*, with the reason.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import uuid
from collections import Counter
from pathlib import Path

from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "plugins"))

REPO = "usnistgov/iheos-toolkit2"
COMMIT = "3e9cebc3082bd9113432a28b4e15c0b40efe4e68"
TESTKIT = "xdstools2/src/main/webapp/toolkitx/testkit"
PINNED = "a478467d16e3066d48de879fbd9dbebe1802d21c06d748060a56dc0da5d8798e"
CACHE = Path.home() / ".cache" / "ehealth-harness" / "nist-xds"
JUDGED = ("RegisterTransaction", "ProvideAndRegisterTransaction")
PATIENT_SCHEMES = {"urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446", "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427",
                   "urn:uuid:f64ffdf0-4b97-4e06-b79f-a52b38ec2f8a"}
UNIQUE_SCHEMES = {"urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8", "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab",
                  "urn:uuid:75df8f67-9973-4fbe-a900-df66cefecc5a"}
REFERENCES = ("sourceObject", "targetObject", "classifiedObject", "registryObject")
PATIENT_OID = "1.3.6.1.4.1.21367.2005.13.20.1000"  # the toolkit's test patient assigning authority
SOURCE_ID_SCHEME = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SOURCE_ID = "1.3.6.1.4.1.21367.2009.1.2.1"  # the runner's source OID (the toolkit assigns its configured one)


def content_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def locate(testkit: str | None, git: str | None) -> Path:
    """The ``tests`` folder of the testkit, checked against the pinned content hash."""
    if testkit:
        folder = Path(testkit)
        folder = folder / "tests" if (folder / "tests").is_dir() else folder
    else:
        folder = CACHE / COMMIT / "tests"
        if not folder.is_dir():
            if not git:
                raise SystemExit(f"the NIST test plans are not cached: give --testkit DIR or --git GITDIR ({REPO}@{COMMIT})")
            data = subprocess.run(["git", f"--git-dir={git}", "archive", COMMIT, f"{TESTKIT}/tests"], check=True,
                                  capture_output=True, timeout=600).stdout
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    parts = Path(member.name).parts[len(Path(TESTKIT).parts):]
                    if member.isfile() and parts and ".." not in parts:
                        target = folder.parent.joinpath(*parts)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(tar.extractfile(member).read())
    got = content_digest(folder)
    if got != PINNED:
        raise SystemExit(f"{folder}: content SHA-256 {got} is not the pinned {PINNED} ({REPO}@{COMMIT})")
    return folder


def _sections(test_dir: Path) -> list[str]:
    index = test_dir / "index.idx"
    if index.is_file():  # some list their sections more than once: each runs once, in order
        return list(dict.fromkeys(line.strip() for line in index.read_text(errors="replace").splitlines() if line.strip()))
    return [""] if (test_dir / "testplan.xml").is_file() else []


class Runner:
    def __init__(self, tests: Path) -> None:
        from harness_xds.registry import Registry
        self.tests = tests
        self.registry = Registry(256 * 1024 * 1024, profile="ihe")
        self.default_patient = self._new_patient()
        self.fed: dict[tuple[str, str], str] = {}  # (test, section) of a patient identity feed -> patient
        self.results: dict[tuple[str, str, str], dict] = {}  # (test, section, step) -> assigned ids and reports
        self.rows: list[dict] = []

    def _new_patient(self) -> str:
        patient = f"{uuid.uuid4().hex[:12]}^^^&{PATIENT_OID}&ISO"
        self.registry.feed(patient)
        return patient

    @staticmethod
    def _new_uid() -> str:
        return f"2.25.{uuid.uuid4().int}"

    # -- running -------------------------------------------------------------------------

    def run(self, only: str | None = None) -> list[dict]:
        for test_dir in sorted(p for p in self.tests.iterdir() if p.is_dir()):
            if only and only not in test_dir.name:
                continue
            for section in _sections(test_dir):
                plan = test_dir / section / "testplan.xml"
                if plan.is_file():
                    self._plan(test_dir.name, section, plan)
        return self.rows

    def _plan(self, test: str, section: str, plan: Path) -> None:
        try:
            root = etree.parse(str(plan), etree.XMLParser(resolve_entities=False, no_network=True)).getroot()
        except etree.XMLSyntaxError as exc:
            self.rows.append({"test": test, "section": section, "step": "-", "transaction": "-", "outcome": "not-run",
                              "why": f"test plan unreadable: {exc}", "expected": "-"})
            return
        for step in root.iter("TestStep"):
            sid = step.get("id") or "-"
            tx = next((c for c in step if isinstance(c.tag, str) and c.tag.endswith("Transaction")), None)
            if tx is None:
                continue
            if tx.tag == "PatientIdentityFeedTransaction":
                patient = self._new_patient()
                self.fed[(test, section)] = patient
                self.results[(test, section, sid)] = {"reports": {"$patientid$": patient, "basePatientId": patient}}
                continue
            if tx.tag not in JUDGED:
                continue
            expected = (step.findtext("ExpectedStatus") or "Success").strip()
            codes = [e.text.strip() for e in step.iter("ExpectedErrorCode", "ExpectedErrorMessage") if e.text and e.text.strip()]
            row = {"test": test, "section": section, "step": sid, "transaction": "ITI-41" if tx.tag.startswith("Provide") else "ITI-42",
                   "expected": expected + (f" {','.join(codes)}" if codes else "")}
            if expected == "Fault":
                row.update(outcome="not-run", why="a SOAP fault expected from the XUA/SAML layer (NIST-specific: the DMP's VIHF is "
                                                   "judged by the DMP-VIHF rules, not by the registry)")
                self.rows.append(row)
                continue
            try:
                request, docs, assigned = self._prepare(test, section, plan.parent, tx)
            except Unresolved as exc:
                row.update(outcome="not-run", why=str(exc))
                self.rows.append(row)
                continue
            outcome = self.registry.register(request) if docs is None else self.registry.provide_set(request, docs)
            self.results[(test, section, sid)] = assigned
            for rep in tx.iter("Report"):
                if rep.get("section") == "InputMetadata" and rep.text:
                    values = request.xpath(rep.text.strip())
                    if values:
                        assigned["reports"][rep.get("name")] = str(values[0])
            got = {e[0] for e in outcome.errors}
            status_ok = outcome.status == expected
            codes_ok = all(any(c == g or c in ctx for g, ctx in outcome.errors) for c in codes)
            row.update(actual=outcome.status + (f" {','.join(sorted(got))}" if got else ""),
                       outcome="agree" if status_ok and codes_ok else "disagree",
                       why="" if status_ok and codes_ok else "; ".join(f"{c}: {ctx[:160]}" for c, ctx in outcome.errors[:3]))
            self.rows.append(row)

    # -- preparing a step ----------------------------------------------------------------

    def _resolve(self, test: str, section: str, ref: etree._Element, kind: str) -> str:
        other_test = ref.get("test") or test
        other_section = ref.get("section") if kind == "report" else None
        if kind == "id":
            testdir = ref.get("testdir")
            other_section = Path(section, testdir).resolve().name if testdir else section
            if testdir and not testdir.startswith(".."):
                other_section = testdir
        if other_section in (None, "THIS"):
            other_section = section
        step = ref.get("step") or ""
        if kind == "report":
            name = ref.get("reportName") or ""
            if name in ("$patientid$", "basePatientId", "$pid$", "patientId"):
                if (other_test, other_section) not in self.fed and other_section == "pif":
                    self.fed[(other_test, other_section)] = self._new_patient()
                if (other_test, other_section) in self.fed:
                    return self.fed[(other_test, other_section)]
            value = (self.results.get((other_test, other_section, step)) or {}).get("reports", {}).get(name)
            if value is None:
                raise Unresolved(f"the value '{name}' reported by {other_test}/{other_section}/{step} (a query or retrieve "
                                 "result this runner does not replay)")
            return value
        found = self.results.get((other_test, other_section, step))
        if found is None and not ref.get("testdir"):  # the step, in another section of the test (its own folder)
            found = next((v for (t, _, st), v in reversed(self.results.items()) if t == other_test and st == step), None)
        table = (found or {}).get(ref.get("section") or "AssignedUuids", {})
        value = table.get(ref.get("id") or "")
        if value is None:
            raise Unresolved(f"the id '{ref.get('id')}' assigned by {other_test}/{other_section}/{step} (not run here)")
        return value

    def _prepare(self, test: str, section: str, folder: Path, tx: etree._Element):
        step = tx.getparent()
        name = tx.findtext("MetadataFile")
        if not name or not (folder / name.strip()).is_file():
            raise Unresolved(f"no metadata file {name!r}")
        text = (folder / name.strip()).read_text(encoding="utf-8", errors="replace")
        for ref in tx.iter("UseReport"):
            text = text.replace(ref.get("useAs") or "\0", xml_escape(self._resolve(test, section, ref, "report")))
        for ref in tx.iter("UseId"):
            text = text.replace(ref.get("symbol") or "\0", xml_escape(self._resolve(test, section, ref, "id")))
        if re.search(r"\$[A-Za-z_][A-Za-z0-9_]*\$", text):
            symbol = re.search(r"\$[A-Za-z_][A-Za-z0-9_]*\$", text).group(0)
            if symbol not in ("$patientid$",) or tx.find("NoPatientId") is not None:
                raise Unresolved(f"the metadata keeps the symbol {symbol}, which no UseId/UseReport of the step resolves")
        try:
            root = etree.fromstring(text.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:
            raise Unresolved(f"metadata not XML: {exc}") from None
        request = root if etree.QName(root).localname == "SubmitObjectsRequest" else next(
            (e for e in root.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "SubmitObjectsRequest"), None)
        if request is None:
            raise Unresolved("no SubmitObjectsRequest in the metadata file")
        if "xsd:2.1" in (etree.QName(request).namespace or ""):
            to_ebrim3(request)
        if tx.find("NoPatientId") is None:
            # the test session's patient, or (AltPatientId) one the registry was never fed
            patient = self.default_patient if step.find("AltPatientId") is None else f"{uuid.uuid4().hex[:12]}^^^&{PATIENT_OID}&ISO"
            for ei in request.iter("{*}ExternalIdentifier"):
                if ei.get("identificationScheme") in PATIENT_SCHEMES:
                    ei.set("value", patient)
        assigned = {"AssignedUuids": {}, "AssignedUids": {}, "reports": {}}
        keep_uid = {e.get("id") for e in tx.iter("NoAssignUids")}
        if None in keep_uid or "" in keep_uid:
            keep_uid = {"*"}
        objects = [e for e in request.iter() if isinstance(e.tag, str) and e.get("id") and
                   etree.QName(e).localname in ("ExtrinsicObject", "RegistryPackage", "Association", "Classification", "ExternalIdentifier")]
        mapping = {}
        for e in objects:
            if not e.get("id").startswith("urn:uuid:"):
                mapping[e.get("id")] = f"urn:uuid:{uuid.uuid4()}"
        for e in request.iter():
            if not isinstance(e.tag, str):
                continue
            for attr in ("id",) + REFERENCES:
                if e.get(attr) in mapping:
                    e.set(attr, mapping[e.get(attr)])
        for sym, new in mapping.items():
            assigned["AssignedUuids"][sym] = new
            assigned["reports"][f"{sym}_uuid"] = new  # the toolkit reports them so (ReportManager, "_uuid")
        reverse = {v: k for k, v in mapping.items()}
        for ei in request.iter("{*}ExternalIdentifier"):
            if ei.get("identificationScheme") in UNIQUE_SCHEMES:
                owner = reverse.get(ei.get("registryObject") or "", ei.get("registryObject") or "")
                if "*" not in keep_uid and owner not in keep_uid:
                    ei.set("value", self._new_uid())
                assigned["AssignedUids"][owner] = ei.get("value")
                assigned["reports"][f"{owner}_uid"] = ei.get("value")
            elif ei.get("identificationScheme") == SOURCE_ID_SCHEME:
                ei.set("value", SOURCE_ID)  # assigned by the toolkit to every submission
        docs = None
        if tx.tag == "ProvideAndRegisterTransaction":
            docs = {}
            for d in tx.iter("Document"):
                path = folder / (d.text or "").strip()
                if not path.is_file():
                    raise Unresolved(f"document file {d.text!r} absent")
                docs[mapping.get(d.get("id"), d.get("id"))] = path.read_bytes()
        return request, docs, assigned


class Unresolved(Exception):
    pass


def xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


V2_ASSOCIATIONS = {"HasMember": "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember",
                   "RPLC": "urn:ihe:iti:2007:AssociationType:RPLC", "APND": "urn:ihe:iti:2007:AssociationType:APND",
                   "XFRM": "urn:ihe:iti:2007:AssociationType:XFRM", "XFRM_RPLC": "urn:ihe:iti:2007:AssociationType:XFRM_RPLC",
                   "signs": "urn:ihe:iti:2007:AssociationType:signs"}


def to_ebrim3(request: etree._Element) -> None:
    """ebRIM 2.1 metadata (XDS.a, as most NIST test plans are written) made ebRIM 3.0, as the
    toolkit does before an XDS.b transaction: the object list's name, the association types'
    URNs, and the owner of each external identifier and nested classification."""
    for el in request.iter():
        if not isinstance(el.tag, str):
            continue
        name = etree.QName(el).localname
        if name == "LeafRegistryObjectList":
            el.tag = "{urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0}RegistryObjectList"
        elif name == "Association" and el.get("associationType") in V2_ASSOCIATIONS:
            el.set("associationType", V2_ASSOCIATIONS[el.get("associationType")])
        elif name == "ExternalIdentifier" and not el.get("registryObject") and el.getparent() is not None:
            el.set("registryObject", el.getparent().get("id") or "")
        elif name == "Classification" and not el.get("classifiedObject") and el.getparent() is not None:
            el.set("classifiedObject", el.getparent().get("id") or "")


def summary(rows: list[dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        key = f"{r['transaction']} expected {r['expected'].split()[0]}"
        d = out.setdefault(key, {"steps": 0, "agree": 0, "disagree": 0, "not-run": 0})
        d["steps"] += 1
        d[r["outcome"]] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testkit", help="a folder holding the toolkit's testkit (its tests/ folder or the folder above)")
    ap.add_argument("--git", help="a clone or mirror of usnistgov/iheos-toolkit2 (git archive of the pinned commit)")
    ap.add_argument("--json", type=Path, help="write every step's outcome here")
    ap.add_argument("--list", action="store_true", help="print every step that disagrees or did not run")
    ap.add_argument("--filter", help="only tests whose name contains this")
    args = ap.parse_args()
    rows = Runner(locate(args.testkit, args.git)).run(args.filter)
    table = summary(rows)
    total = Counter()
    for d in table.values():
        total.update(d)
    print(f"{REPO}@{COMMIT[:12]}: {len(rows)} Register and Provide-and-Register steps")
    print(f"{'steps':34} {'n':>5} {'agree':>6} {'disagree':>9} {'not run':>8}")
    for key, d in sorted(table.items()):
        print(f"{key:34} {d['steps']:>5} {d['agree']:>6} {d['disagree']:>9} {d['not-run']:>8}")
    run = total["agree"] + total["disagree"]
    print(f"{'all':34} {total['steps']:>5} {total['agree']:>6} {total['disagree']:>9} {total['not-run']:>8}"
          f"   agreement on the steps run: {100.0 * total['agree'] / run if run else 0:.1f}%")
    if args.list:
        for r in rows:
            if r["outcome"] != "agree":
                print(f"  [{r['outcome']}] {r['test']}/{r['section']}/{r['step']} {r['transaction']} expected {r['expected']}, "
                      f"got {r.get('actual', '-')}: {r['why'][:300]}")
    if args.json:
        args.json.write_text(json.dumps({"commit": COMMIT, "summary": table, "steps": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The INSi message layer and stand-in against exchanges nobody here wrote: those the public INSi
client ``@padoa/tlsi-ins`` (MIT) recorded against INSi's test environment and ships as fixtures.

    python bench/insi_peer.py --git GITDIR [--json FILE]

``GITDIR`` is a clone or mirror of padoa/tlsi-ins; the pinned commit below is read with
``git show`` (nothing is copied into this project). Every SOAP envelope of ``src/ins/fixtures``
(whole ``.xml`` files, and the string literals of the ``.ts`` fixtures that hold a whole
envelope, templates with ``${...}`` left out) is read with the harness's hardened parser and:

- a request (``RECSANSVITALE``/``RECVITALE``): read by :func:`harness_ins.insi.read_query`
  (*agreement*: read without error, as INSi read it);
- an answer (``RESULTAT``): read by :func:`harness_ins.insi.read_result` (*agreement*: a report
  INSi gives, with the active INS when it is ``00``); observed beside it, not counted: whether
  it follows the published sequence (``harness_ins/wsdl/insi.xsd`` keeps the official order) and
  whether each INS's key is right by the INS plugin's rules (mod 97);
- a fault: its ``siram:Erreur`` code read;
- an answer ``00`` about a person the stand-in knows: the stand-in's answer to a search with those
  traits, compared whole with INSi's (*agreement*: equal once read).

Measured at the pinned commit: answers read 12/12, requests 2/2, faults 1/1; the stand-in's
ECETINSI answer equal to INSi's in 2 of 3 recordings (the third lists one replaced INS, not two:
INSi's test data changed between recordings). Observed: 9/12 answers in the published order
(the CNDA's test answer 2.04 and one recording put DateDeb/DateFin first), and 11/12 with every
key right by mod 97 (the CNDA's test answer 2.08 case 2: 0/3) — our reader takes both.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COMMIT = "12ef794a663bc6c30fd430b6cdeaa8b47daeb765"  # padoa/tlsi-ins, 19 June 2026
SOAP = "http://www.w3.org/2003/05/soap-envelope"
ENVELOPE = re.compile(r"(?:<\?xml[^>]*\?>\s*)?<soap:Envelope\b.*?</soap:Envelope>", re.S)
JOINED = re.compile(r"['\"],?\s*\n\s*['\"]")  # a message written as lines joined in code


def _files(git: Path) -> dict[str, str]:
    names = subprocess.run(["git", "-C", str(git), "ls-tree", "-r", "--name-only", COMMIT, "src/ins/fixtures"], check=True,
                           capture_output=True, text=True).stdout.split()
    return {n: subprocess.run(["git", "-C", str(git), "show", f"{COMMIT}:{n}"], check=True, capture_output=True, text=True).stdout
            for n in names if n.endswith((".xml", ".ts"))}


def _envelopes(name: str, text: str) -> list[str]:
    if name.endswith(".xml"):
        return [text.strip()]
    found = []
    for m in ENVELOPE.finditer(text):
        chunk = JOINED.sub("", m.group(0))  # lines joined in code: the message they make
        if "${" in chunk:  # a template, not a recorded message
            continue
        found.append(chunk.replace('\\"', '"').replace("\\n", "\n"))
    return found


def main(argv: list[str] | None = None) -> int:
    from lxml import etree

    from harness import UnsafeInput, parse_xml
    from harness_ins import insi
    from harness_ins.identity import check_matricule

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git", type=Path, required=True, help="a clone or mirror of padoa/tlsi-ins")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args(argv)
    schema = etree.XMLSchema(etree.parse(str(ROOT / "plugins" / "harness_ins" / "wsdl" / "insi.xsd")))
    rows = []
    for name, text in sorted(_files(args.git).items()):
        asked, answered = [], []
        for n, xml in enumerate(_envelopes(name, text), 1):
            row = {"file": name, "n": n}
            try:
                body = parse_xml(xml.encode("utf-8")).getroot().find(f"{{{SOAP}}}Body")
            except UnsafeInput as exc:
                rows.append({**row, "kind": "unreadable", "ok": False, "said": str(exc)[:120]})
                continue
            first = next(iter(body), None) if body is not None else None
            if first is None:
                rows.append({**row, "kind": "empty", "ok": False})
                continue
            local = etree.QName(first).localname
            if local in ("RECSANSVITALE", "RECVITALE"):
                try:
                    q = insi.read_query(first)
                    asked.append(q)
                    rows.append({**row, "kind": "request", "ok": True, "operation": q.operation, "who": q.birth_name})
                except insi.InsiError as exc:
                    rows.append({**row, "kind": "request", "ok": False, "said": exc.text})
            elif local == "RESULTAT":
                said = insi.read_result(first)
                answered.append(said)
                keys = [i["ins"] for i in [said.get("active"), *said.get("history", [])] if i]
                keys_ok = all(check_matricule(k) == [] for k in keys)
                valid = schema.validate(etree.fromstring(etree.tostring(first)))
                # agreement: read as INSi wrote it (a report the service gives, the active INS with 00);
                # observed beside it, not counted: the published sequence, each key by mod 97
                rows.append({**row, "kind": "answer", "ok": said["code"] in insi.LABELS and (said["code"] != insi.FOUND or bool(said.get("active"))),
                             "code": said["code"], "schema": valid, "keys_right": f"{sum(check_matricule(k) == [] for k in keys)}/{len(keys)}",
                             "keys_ok": keys_ok, "schema_error": None if valid else str(schema.error_log.last_error)[:160]})
            elif local == "Fault":
                err = first.find(".//{urn:siram}Erreur")
                rows.append({**row, "kind": "fault", "ok": err is not None, "code": err.get("code") if err is not None else None})
            else:
                rows.append({**row, "kind": local, "ok": False})
        # a person the stand-in knows, answered by INSi: does the stand-in answer the same?
        for said in answered:
            t = said.get("traits") or {}
            if said["code"] != insi.FOUND or not t.get("first_names"):
                continue
            q = insi.Query("traits", birth_name=t["birth_name"], first_names=t["first_names"].split()[:1], sex=t["sex"], birth_date=t["birth_date"])
            code, found = insi.search(list(insi.IDENTITIES), q)
            if code != insi.FOUND:
                continue
            ours = insi.read_result(insi.result(code, found[0]))
            rows.append({"file": name, "kind": "stand-in vs INSi", "who": t["birth_name"], "ok": ours == said,
                         "differs": None if ours == said else {k: [ours.get(k), said.get(k)] for k in ours if ours.get(k) != said.get(k)}})
    for r in rows:
        print(("agree   " if r["ok"] else "DIFFER  ") + json.dumps({k: v for k, v in r.items() if k != "ok" and v is not None}, ensure_ascii=False))
    by_kind: dict[str, list[int]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], [0, 0])[0 if r["ok"] else 1] += 1
    answers = [r for r in rows if r["kind"] == "answer"]
    print(json.dumps({"commit": COMMIT, "agreement": {k: f"{a}/{a + d}" for k, (a, d) in by_kind.items()},
                      "answers in the published sequence": f"{sum(r['schema'] for r in answers)}/{len(answers)}",
                      "answers whose every INS key is right (mod 97)": f"{sum(r['keys_ok'] for r in answers)}/{len(answers)}"},
                     ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

"""``harness-kit-check FILE...``: the official kit's verdict on a few documents, at once.

For an editor, a pre-commit hook, a CI step: each document is sent to the running kit server
(``harness kit serve``), which judges it as the ``cda-kit-*`` scenarios do (XSD, the four generic
profiles, the volets it takes; :mod:`.judge`) with the stylesheets it keeps compiled. This
module loads the kit server's client (:class:`.remote.RemoteKit`: a total deadline and a size
bound on every exchange) and nothing else before it knows it must (measured end to end: see the
README), so the command costs little more than the judging itself. Without a server of this very harness (same
version, same code), the documents are judged in this process, which compiles what it needs
first; the verdicts are the same. ``harness kit check`` is the same command under ``harness``.

Exit status: 0 when every document passes, 1 when one fails, 2 when one could not be judged
(ERROR, INCONCLUSIVE) or the command was misused.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


MAX_DOCUMENT = 64 * 1024 * 1024  # as the scenarios (collect.MAX_FILE)
_FAILS = {"FAIL": 1, "ERROR": 2, "INCONCLUSIVE": 2, "NOT_RUN": 2}


def _m(key: str, lang: str, **kw) -> str:
    from harness import catalogue

    return catalogue("harness_cda.quick")(key, **kw).render(lang)


class _Refused(Exception):
    def __init__(self, texts: dict) -> None:
        super().__init__(texts)
        self.texts = texts


def _status(judged: dict) -> int:
    return max((_FAILS.get(r["verdict"], 0) for r in judged["results"].values()), default=2)


def _render(judged: dict, lang: str, how: str, out) -> None:
    print(_m("quick.document", lang, name=judged["document"], verdict=judged["verdict"], seconds=f"{judged['seconds']:.2f}", how=how), file=out)
    for scenario, result in judged["results"].items():
        print(f"  {scenario:<24} {result['verdict']}" + (f"  ({len(result['findings'])})" if result["findings"] else ""), file=out)
        for reason in result.get("reasons") or []:
            print(f"      ! {reason.get(lang) or reason.get('en', '')}", file=out)
        for f in result["findings"]:
            print(f"      {f['severity']:<7} {f['rule']}  {f['location']}", file=out)
            print(f"              {f['message'].get(lang) or f['message'].get('en', '')}", file=out)
    for r in judged.get("refused") or []:
        print(f"  ! {r['item']}: {r['reason'].get(lang) or r['reason'].get('en', '')}", file=out)


def _lang() -> str:
    """HARNESS_LANG, French by default (help is shown before --lang is read)."""
    lang = (os.environ.get("HARNESS_LANG") or "fr")[:2]
    return lang if lang in ("fr", "en") else "fr"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness-kit-check", description=_m("help.quick", _lang()))
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    lang = _lang()
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help=_m("help.quick_files", lang))
    p.add_argument("--kit", type=Path, default=None, help=_m("help.batch_kit", lang))
    p.add_argument("--json", action="store_true", help=_m("help.quick_json", lang))
    p.add_argument("--lang", choices=("fr", "en"), default=None)
    p.add_argument("--no-server", action="store_true", help=_m("help.quick_no_server", lang))


def run(args: argparse.Namespace) -> int:
    lang = args.lang or _lang()
    kit = args.kit
    if kit is None:
        from .release import default_kit

        kit = default_kit()
    if kit is None or not (Path(kit) / "schematrons").is_dir():
        print(_m("quick.no_kit", lang, kit=str(kit or "-")), file=sys.stderr)
        return 2
    kit = str(Path(kit).resolve())
    remote, judge, status = None, None, 0
    if not args.no_server:
        from .remote import RemoteKit

        remote, why = RemoteKit.look()
        if remote is None:
            print(_m("quick.no_server_other" if why == "other" else "quick.no_server_none", lang), file=sys.stderr)
    try:
        for path in args.files:
            try:
                size = path.stat().st_size
                if size > MAX_DOCUMENT:
                    raise _Refused({lg: _m("quick.too_large", lg, size=size, limit=MAX_DOCUMENT) for lg in ("fr", "en")})
                data = path.read_bytes()
            except OSError as exc:
                print(_m("quick.unreadable", lang, name=str(path), error=exc.strerror or type(exc).__name__), file=sys.stderr)
                status = max(status, 2)
                continue
            except _Refused as exc:
                print(f"{path.name}: {exc.texts.get(lang)}", file=sys.stderr)
                status = max(status, 2)
                continue
            judged, how = None, "server"
            try:
                if remote is not None:
                    from .remote import ServerGone

                    try:
                        said = remote.judge(kit, path.name, data, blobs=False)
                    except ServerGone as exc:
                        print(_m("quick.server_failed", lang, reason=str(exc)), file=sys.stderr)
                        remote = None
                    else:
                        if "error" in said:
                            raise _Refused(said["error"])
                        judged = said["summary"]
                if judged is None:
                    how = "process"
                    if judge is None:
                        from .judge import Judge

                        judge = Judge(kit)
                    try:
                        judged = judge.judge(data, path.name).summary()
                    except Exception as exc:  # HarnessError, UnsafeInput: said as the server says it
                        raise _Refused(getattr(exc, "messages", None)
                                       or {lg: _m("judge.crashed", lg, error=f"{type(exc).__name__}: {exc}") for lg in ("fr", "en")}) from None
            except _Refused as exc:
                print(f"{path.name}: {exc.texts.get(lang) or exc.texts.get('en', '')}", file=sys.stderr)
                status = max(status, 2)
                continue
            if args.json:
                print(json.dumps(judged, ensure_ascii=False, sort_keys=True))
            else:
                _render(judged, lang, _m("quick.how_server" if how == "server" else "quick.how_process", lang), sys.stdout)
            status = max(status, _status(judged))
    finally:
        if judge is not None:
            judge.close()
    return status


def main(argv: list[str] | None = None) -> int:
    return run(parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

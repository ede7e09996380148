"""The ``harness`` command: verify, replay and compare bundles, list scenarios, serve the
terminology stand-in; plugins add their own subcommands (``harness_commands``)."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .evidence.bundle import Bundle, verify_bundle
from .running.commands import CommandContext
from .errors import HarnessError
from .evidence.manifest import FORMAT
from .messages import LANGS, catalogue, resolve_lang

M = catalogue("harness.cli")  # not __name__: "python -m harness.cli" runs as __main__


def _help(key: str) -> str:
    """Option help in the language of HARNESS_LANG (French by default): it is shown before --lang is read."""
    return M(key).render()


def _print(message, lang: str, prefix: str = "") -> None:
    print(prefix + message.render(lang))


def _replayed(path: Path, lang: str, assembly=None):
    """Replay ``path`` with the installed plugins and say what differs; the ReplayReport."""
    from .running.assembly import assemble
    from .proof.replay import replay_bundle

    with Bundle(path) as bundle:
        result = replay_bundle(bundle, assembly or assemble())
    for note in result.version_notes:
        _print(note, lang, "  ! ")
    if result.identical:
        _print(M("replay.ok", count=result.scenarios), lang, "  ")
        return result
    _print(M("replay.diff", count=len(result.differences)), lang, "  ")
    for d in result.differences:
        print(f"  - {d.subject}: {d.recorded} -> {d.replayed} ({d.detail.render(lang)})")
    return result


def _replay(path: Path, lang: str) -> bool:
    return _replayed(path, lang).identical


def _anchors(paths: list[Path]) -> list:
    """The verifier's trust anchors: PEM certificates (roots, or the intermediates they trust)."""
    from cryptography import x509

    anchors = []
    for path in paths:
        try:
            anchors += x509.load_pem_x509_certificates(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise HarnessError(M("verify.trust_unreadable", path=str(path), error=str(exc)[:200])) from None
    return anchors


def _signature(report, anchors: list, lang: str, require_timestamp: bool = False) -> bool:
    """Say who signed the bundle and whether the signature holds; False when it does not, or
    when trust anchors were given and the bundle is unsigned."""
    from .evidence.signature import verify_signature

    sig = verify_signature(report.manifest_bytes, report.signature, anchors)
    if sig.status == "unsigned":
        _print(M("verify.unsigned_required") if anchors else M("verify.unsigned"), lang, "  ")
        return not anchors
    if sig.status == "valid":
        _print(M("verify.signed", signer=sig.signer, issuer=sig.issuer, serial=sig.serial, at=sig.signed_at or "-"), lang, "  ")
        if sig.timestamped_at:
            _print(M("verify.timestamped", at=sig.timestamped_at, tsa=sig.tsa, anchor=sig.tsa_anchor or "-"), lang, "  ")
        else:
            _print(M("verify.no_timestamp_required") if require_timestamp else M("verify.no_timestamp"), lang, "  ")
        _print(M("verify.trusted", anchor=sig.anchor) if sig.anchor else M("verify.no_anchor"), lang, "  ")
        return bool(sig.timestamped_at) or not require_timestamp
    _print(M("verify.signature_invalid", signer=sig.signer or "-"), lang, "  ")
    for problem in sig.problems:
        print("  - " + problem.render(lang))
    return False


def _verify(args: argparse.Namespace, lang: str) -> int:
    status = 0
    anchors = _anchors(args.trust)
    for path in args.bundles:
        report = verify_bundle(path)
        print(f"{path}:")
        if not report.ok:
            _print(M("verify.failed", count=len(report.problems)), lang, "  ")
            for p in report.problems:
                print("  - " + p.text(lang))
            status = 1
            continue
        _print(M("verify.ok", count=report.member_count), lang, "  ")
        fmt = report.manifest.get("format", "")
        _print(M("verify.format", format=fmt, note="" if fmt == FORMAT else M("verify.format_earlier")), lang, "  ")
        if not _signature(report, anchors, lang, args.require_timestamp):
            status = 1
        for kind in report.manifest.get("sensitive_data", []):
            _print(M("summary.sensitive", kind=kind), lang)
        if args.replay and not _replay(path, lang):
            status = 1
    return status


def _compare(args: argparse.Namespace, lang: str) -> int:
    from .reporting.compare import compare_paths

    equate = []
    for item in args.equate:
        old, sep, new = item.partition("=")
        if not sep:
            raise HarnessError(M("compare.bad_equate"))
        equate.append((old, new))
    status = 0
    for c in compare_paths(args.a, args.b, equate):
        if c.identical:
            _print(M("compare.identical", name=c.name, scenarios=c.scenarios_compared, findings=c.findings_compared), lang)
            continue
        status = 1
        _print(M("compare.differ", name=c.name, count=len(c.differences)), lang)
        for d in c.differences:
            _print(d, lang, "  - ")
    return status


def _equivalence(args: argparse.Namespace, lang: str) -> int:
    import json

    from .proof.equivalence import compare_proofs
    from .files import atomic_write

    eq = compare_proofs(args.old, args.new)  # both replayed offline: a proof is reused only where its verdicts hold
    sys.stdout.write(eq.render(lang))
    if args.json:
        atomic_write(args.json, json.dumps(eq.to_json(), ensure_ascii=False, indent=2).encode("utf-8"), shared=True)
    if args.html:
        from .reporting.report import Source, bundle_facts, render_html

        with Bundle(args.new) as bundle:
            source = Source.of_bundle(bundle, bundle_facts(bundle))
            source.equivalence = eq
            atomic_write(args.html, render_html(source, lang), shared=True)
    return 0 if eq.all_equivalent else 1


def _report(args: argparse.Namespace, lang: str) -> int:
    """The reports rendered from what the checks conclude again on the bundle's artefacts
    (replayed offline), never copied from the bundle; a difference with the sealed record is
    said and makes the status 1."""
    from .running.assembly import assemble
    from .reporting.report import write_beside

    assembly = assemble()
    status = 0
    for path in args.bundles:
        print(f"{path}:")
        replayed = _replayed(path, lang, assembly)
        status |= 0 if replayed.identical else 1
        for written in write_beside(path, lang, args.out, replayed=replayed):
            _print(M("summary.report_written", path=str(written)), lang, "  ")
    return status


def _scenarios(args: argparse.Namespace, lang: str) -> int:
    from .running.assembly import assemble

    catalogue_ = assemble(args.scenario_dir).catalogue
    for s in catalogue_.scenarios.values():
        print(f"{s.id:<32} {s.criticality:<9} {','.join(s.requirements):<20} [{', '.join(s.tags)}] {s.title[lang]}")
    for reason in catalogue_.unavailable.values():
        print(f"- {reason.render(lang)}")
    return 0


def _terminology_server(args: argparse.Namespace, lang: str) -> int:
    """Serve snapshot folders as a FHIR terminology server on loopback (projectathon rehearsals)."""
    from .terminology import BUILTIN_SNAPSHOT, Snapshot, SnapshotTerminology, TerminologyServer

    folders = [Path(p) for p in args.snapshot] + ([BUILTIN_SNAPSHOT] if args.builtin or not args.snapshot else [])
    snapshot = Snapshot.load(folders)
    users = {}
    if args.user:
        password = os.environ.get(args.password_env or "")
        if not password:
            raise HarnessError(M("standin.password", variable=args.password_env))
        users[args.user] = password
    server = TerminologyServer(SnapshotTerminology(snapshot), host=args.host, port=args.port, users=users).start()
    d = snapshot.describe()
    _print(M("standin.started", fhir=server.base_url, token=server.token_url if users else "-", sha=d["sha256"][:12],
             value_sets=d["value_sets"], code_systems=d["code_systems"], problems=len(d["problems"])), lang)
    sys.stdout.flush()
    for problem in d["problems"]:
        print(f"  {problem['file']}: {problem[lang]}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def _parser(pm) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="E-health conformity harness")
    parser.add_argument("--lang", choices=LANGS, default=None, help=_help("help.lang"))
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help=_help("help.verify"))
    v.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE")
    v.add_argument("--replay", action="store_true", help=_help("help.replay"))
    v.add_argument("--trust", action="append", default=[], type=Path, metavar="CA.pem", help=_help("help.trust"))
    v.add_argument("--require-timestamp", action="store_true", help=_help("help.require_timestamp"))
    v.set_defaults(func=_verify)
    c = sub.add_parser("compare", help=_help("help.compare"))
    c.add_argument("a", type=Path, metavar="A")
    c.add_argument("b", type=Path, metavar="B")
    c.add_argument("--equate", action="append", default=[], metavar="OLD=NEW", help=_help("help.equate"))
    c.set_defaults(func=_compare)
    e = sub.add_parser("equivalence", help=_help("help.equivalence"))
    e.add_argument("old", type=Path, metavar="OLD.zip")
    e.add_argument("new", type=Path, metavar="NEW.zip")
    e.add_argument("--json", type=Path, default=None, metavar="FILE", help=_help("help.equivalence_json"))
    e.add_argument("--html", type=Path, default=None, metavar="FILE", help=_help("help.equivalence_html"))
    e.set_defaults(func=_equivalence)
    r = sub.add_parser("report", help=_help("help.report"))
    r.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE")
    r.add_argument("--out", type=Path, default=None, metavar="DIR", help=_help("help.report_out"))
    r.set_defaults(func=_report)
    s = sub.add_parser("scenarios", help=_help("help.scenarios"))
    s.add_argument("--scenario-dir", action="append", default=[], metavar="DIR")
    s.set_defaults(func=_scenarios)
    ts = sub.add_parser("terminology-server", help=_help("help.terminology_server"))
    ts.add_argument("--snapshot", action="append", default=[], metavar="DIR", help=_help("help.snapshot"))
    ts.add_argument("--builtin", action="store_true", help=_help("help.builtin"))
    ts.add_argument("--host", default="127.0.0.1")
    ts.add_argument("--port", type=int, default=8180)
    ts.add_argument("--user", default=None, help=_help("help.user"))
    ts.add_argument("--password-env", default="HARNESS_SMT_PASSWORD", help=_help("help.password_env"))
    ts.set_defaults(func=_terminology_server)
    if pm is not None:
        pm.hook.harness_commands(subparsers=sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .running.plugins import get_plugin_manager

    lang = resolve_lang(None)
    try:
        pm = get_plugin_manager()
    except HarnessError as exc:  # the built-in commands still work: verify a bundle with a broken plugin installed
        print(exc.message(lang), file=sys.stderr)
        pm = None
    args = _parser(pm).parse_args(argv)
    lang = resolve_lang(args.lang)
    try:
        if getattr(args, "plugin_command", False):
            return args.func(args, CommandContext(lang, pm))
        return args.func(args, lang)
    except HarnessError as exc:
        print(exc.message(lang), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``harness`` command: verify and replay bundles, list scenarios, run the demo vendor."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .bundle import Bundle, verify_bundle
from .errors import HarnessError
from .i18n import LANGS, resolve_lang, t


def _verify(args: argparse.Namespace, lang: str) -> int:
    status = 0
    for path in args.bundles:
        report = verify_bundle(path)
        print(f"{path}:")
        if report.ok:
            print("  " + t("verify_ok", lang, count=report.member_count))
            for kind in report.manifest.get("sensitive_data", []):
                print(t("summary_sensitive", lang, kind=kind))
        else:
            print("  " + t("verify_failed", lang, count=len(report.problems)))
            for p in report.problems:
                print("  - " + p.text(lang))
            status = 1
            continue
        if args.replay:
            from .replay import replay_bundle
            from .setup import assemble

            assembly = assemble()
            with Bundle(path) as bundle:
                result = replay_bundle(bundle, assembly.registry, assembly.pm)
            for note in result.version_notes:
                print(f"  ! {note}")
            if result.identical:
                print("  " + t("replay_ok", lang, count=result.scenarios))
            else:
                print("  " + t("replay_diff", lang, count=len(result.differences)))
                for d in result.differences:
                    print(f"  - {d.scenario}: {d.recorded} -> {d.replayed} ({d.detail})")
                status = 1
    return status


def _scenarios(args: argparse.Namespace, lang: str) -> int:
    from .setup import assemble

    catalogue = assemble(args.scenario_dir).catalogue
    for s in catalogue.scenarios.values():
        print(f"{s.id:<32} {s.criticality:<9} {','.join(s.requirements):<20} [{', '.join(s.tags)}] {s.title[lang]}")
    return 0


def _demo(args: argparse.Namespace, lang: str) -> int:
    """Start the default target's services (the embedded demo vendor) in the foreground."""
    from .context import ServiceContext
    from .plugins import get_plugin_manager
    from .setup import resolve_target

    pm = get_plugin_manager()
    target = resolve_target(pm, None)
    services = []
    try:
        for n, (name, options) in enumerate(target.services.items()):
            # one port each: the demo vendor on --port, its other services on the next ones
            options = dict(options, port=args.port + n, **({"defects": args.defect} if args.defect else {}))
            if args.release:
                options["release"] = args.release
            svc = pm.hook.harness_start_service(name=name, options=options, ctx=ServiceContext(target, lambda *a, **k: None))
            if svc is None:
                raise HarnessError(f"Aucun greffon ne fournit le service {name}", f"No plugin provides service {name}")
            services.append(svc)
            print(f"{name}: {svc.base_url} {svc.info}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        for svc in services:
            svc.stop()


def _terminology_server(args: argparse.Namespace, lang: str) -> int:
    """Serve snapshot folders as a FHIR terminology server on loopback (projectathon rehearsals)."""
    from .terminology import BUILTIN_SNAPSHOT, Snapshot, SnapshotTerminology, TerminologyServer

    folders = [Path(p) for p in args.snapshot] + ([BUILTIN_SNAPSHOT] if args.builtin or not args.snapshot else [])
    snapshot = Snapshot.load(folders)
    users = {}
    if args.user:
        password = os.environ.get(args.password_env or "")
        if not password:
            raise HarnessError(f"--user demande un mot de passe dans la variable --password-env ({args.password_env})",
                               f"--user needs a password in the --password-env variable ({args.password_env})")
        users[args.user] = password
    server = TerminologyServer(SnapshotTerminology(snapshot), host=args.host, port=args.port, users=users).start()
    d = snapshot.describe()
    print(f"FHIR: {server.base_url}  token: {server.token_url if users else '-'}  snapshot {d['sha256'][:12]}: "
          f"{d['value_sets']} value sets, {d['code_systems']} code systems, {len(d['problems'])} unreadable file(s)", flush=True)
    for problem in d["problems"]:
        print(f"  {problem['file']}: {problem[lang]}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness", description="E-health conformity harness")
    parser.add_argument("--lang", choices=LANGS, default=None, help="fr (default) or en")
    sub = parser.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check a bundle's integrity (and replay its checks offline)")
    v.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE")
    v.add_argument("--replay", action="store_true", help="re-run every check from the bundle alone and compare verdicts")
    s = sub.add_parser("scenarios", help="list the known scenarios")
    s.add_argument("--scenario-dir", action="append", default=[], metavar="DIR")
    d = sub.add_parser("demo", help="run the embedded demo vendor in the foreground")
    d.add_argument("--defect", action="append", default=[], metavar="NAME", help="inject a named defect (repeatable)")
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--release", default=None, help="run the demo as another release (e.g. 3.1.0)")
    ts = sub.add_parser("terminology-server", help="serve terminology snapshots as a FHIR terminology server (SMT stand-in)")
    ts.add_argument("--snapshot", action="append", default=[], metavar="DIR", help="folder of SVS XML / FHIR JSON (repeatable)")
    ts.add_argument("--builtin", action="store_true", help="add the project's own small snapshot (default when no --snapshot)")
    ts.add_argument("--host", default="127.0.0.1")
    ts.add_argument("--port", type=int, default=8180)
    ts.add_argument("--user", default=None, help="require a password-grant token for this user (POST /token)")
    ts.add_argument("--password-env", default="HARNESS_SMT_PASSWORD", help="environment variable holding --user's password")
    args = parser.parse_args(argv)
    lang = resolve_lang(args.lang)
    try:
        return {"verify": _verify, "scenarios": _scenarios, "demo": _demo,
                "terminology-server": _terminology_server}[args.command](args, lang)
    except HarnessError as exc:
        print(exc.message(lang), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

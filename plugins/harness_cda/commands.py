"""``harness kit fetch``: the pinned official kit into the user's cache (:mod:`.release`)."""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from harness import catalogue

M = catalogue(__name__)


def _help(key: str) -> str:
    """Option help in the language of HARNESS_LANG (French by default): it is shown before --lang is read."""
    return M(key).render()


def add_kit_commands(subparsers) -> None:
    kit = subparsers.add_parser("kit", help=_help("help.kit"))
    sub = kit.add_subparsers(dest="kit_command", required=True)
    f = sub.add_parser("fetch", help=_help("help.kit_fetch"))
    f.add_argument("--url", default=None, help=_help("help.kit_url"))
    f.add_argument("--sha256", default=None, help=_help("help.kit_sha256"))
    f.add_argument("--content", default=None, help=_help("help.kit_content"))
    f.add_argument("--force", action="store_true", help=_help("help.kit_force"))
    f.add_argument("--deadline", type=float, default=None, help=_help("help.kit_deadline"))
    f.set_defaults(func=run_fetch, plugin_command=True)
    w = sub.add_parser("where", help=_help("help.kit_where"))
    w.set_defaults(func=run_where, plugin_command=True)
    s = sub.add_parser("serve", help=_help("help.kit_serve"))
    s.add_argument("--port", type=int, default=0, help=_help("help.kit_serve_port"))
    s.add_argument("--max-stylesheets", type=int, default=256, help=_help("help.kit_serve_max"))
    s.add_argument("--workers", type=int, default=1, help=_help("help.kit_serve_workers"))
    s.set_defaults(func=run_serve, plugin_command=True)
    c = sub.add_parser("check", help=_help("help.kit_check"))
    from .quick import add_arguments

    add_arguments(c)
    c.set_defaults(func=run_check, plugin_command=True)
    b = sub.add_parser("batch", help=_help("help.kit_batch"))
    b.add_argument("folder", type=Path, metavar="FOLDER", help=_help("help.batch_folder"))
    b.add_argument("--kit", type=Path, default=None, help=_help("help.batch_kit"))
    b.add_argument("--target", type=Path, default=None, help=_help("help.batch_target"))
    b.add_argument("--workers", type=int, default=os.cpu_count() or 1, help=_help("help.batch_workers"))
    b.add_argument("--dask", default=None, metavar="ADDRESS", help=_help("help.batch_dask"))
    b.add_argument("--dask-timeout", type=float, default=30.0, metavar="SECONDS", help=_help("help.batch_dask_timeout"))
    b.add_argument("--evidence-dir", type=Path, default=Path("reports"), help=_help("help.batch_evidence"))
    b.add_argument("--work", type=Path, default=None, help=_help("help.batch_work"))
    b.add_argument("--keep", action="store_true", help=_help("help.batch_keep"))
    b.add_argument("--no-server", action="store_true", help=_help("help.batch_no_server"))
    b.set_defaults(func=run_batch, plugin_command=True)


def run_fetch(args, ctx) -> int:
    from .release import DEADLINE, Release, fetch, pinned

    base = pinned()
    release = Release(base.name, base.commit, args.url or base.url, (args.sha256 if args.sha256 is not None else base.archive_sha256).lower(),
                      (args.content or base.content).lower())
    print(M("fetch.start", url=release.url, content=release.content[:16],
            sha256=release.archive_sha256 or M("fetch.sha256_unpinned")).render(ctx.lang))
    folder, said = fetch(release, force=args.force, deadline=args.deadline or DEADLINE)
    key = "fetch.done" if said["fetched"] else "fetch.present"
    print(M(key, folder=str(folder), files=said.get("kit_files", "?"), sha256=said.get("archive_sha256", "?"), bytes=said.get("archive_bytes", "?")).render(ctx.lang))
    return 0


def run_where(args, ctx) -> int:
    from .release import home, installed, pinned

    folder = installed()
    if folder is None:
        print(M("where.none", home=str(home()), content=pinned().content[:16]).render(ctx.lang), file=sys.stderr)
        return 1
    print(folder)
    return 0


def run_serve(args, ctx) -> int:
    """Serve until interrupted (Ctrl-C, SIGTERM); the state file goes with the server."""
    import signal
    import threading

    from .server import serve

    if not 1 <= args.max_stylesheets <= 4096 or not 1 <= args.workers <= 64:
        print(M("serve.max", value=args.max_stylesheets, workers=args.workers).render(ctx.lang), file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = serve(args.port, args.max_stylesheets, args.workers)
    try:
        print(M("serve.ready", url=server.base_url, state=str(server._state), pid=os.getpid()).render(ctx.lang), flush=True)
        stop.wait()
    finally:
        server.stop()
    print(M("serve.stopped", served=server.served, compiled=server.compiled).render(ctx.lang), flush=True)
    return 0


def run_check(args, ctx) -> int:
    from .quick import run

    if args.lang is None:
        args.lang = ctx.lang
    return run(args)


def _batch_target(args, ctx, kit: Path, work: Path):
    """The batch's target: the one named (its documents and kit set to the batch's), else a
    small one written in the working folder, naming the archive as the product judged."""
    documents = str(args.folder.resolve())
    if args.target is not None:
        return ctx.load_target(args.target, [f"cda.documents={documents}", f"cda.kit={kit}"])
    path = work / "target.toml"
    if not path.exists():
        from harness import atomic_write

        work.mkdir(parents=True, exist_ok=True)
        name = args.folder.resolve().name
        atomic_write(path, (f"# written by harness kit batch for {documents}\n[product]\nid = {_toml('batch:' + name)}\n"
                            f"name = {_toml(name)}\nversion = \"-\"\n\n[cda]\nkit = {_toml(str(kit))}\ndocuments = {_toml(documents)}\n").encode())
    return ctx.load_target(path)


def _toml(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)  # a JSON string is a TOML basic string


def run_batch(args, ctx) -> int:
    from harness import HarnessError

    from .batch import run_batch as batch
    from .release import default_kit

    lang = ctx.lang
    if not args.folder.is_dir():
        print(M("batch.no_folder", folder=str(args.folder)).render(lang), file=sys.stderr)
        return 2
    if (args.dask is None and not 1 <= args.workers <= 256) or not 0 < args.dask_timeout <= 600:
        print(M("batch.workers", value=args.workers).render(lang), file=sys.stderr)
        return 2
    kit = args.kit or default_kit()
    if kit is None or not (Path(kit) / "schematrons").is_dir():
        print(M("batch.no_kit", kit=str(kit or "-")).render(lang), file=sys.stderr)
        return 2
    kit = Path(kit).resolve()
    evidence = args.evidence_dir.resolve()
    folder = args.folder.resolve()
    work = args.work or evidence / f".batch-{folder.name}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"
    try:
        target = _batch_target(args, ctx, kit, work.resolve())
        done = batch(folder=folder, work=work.resolve(), kit=str(kit), target=target, evidence_dir=evidence, workers=args.workers,
                     dask=args.dask, lang=lang, keep=args.keep, dask_connect=args.dask_timeout,
                     server=not args.no_server and args.dask is None)
    except HarnessError as exc:
        print(exc.message(lang), file=sys.stderr)
        return 2
    requirements = done["manifest"].requirements
    print(M("batch.sealed", bundle=str(done["bundle"]), documents=done["documents"], new=done["new"], seconds=f"{done['seconds']:.1f}",
            lines=str(done["lines"])).render(lang))
    for req, said in sorted(requirements.items()):
        print(f"  {req:<24} {said['verdict']}")
    return 0 if all(said["verdict"] == "PASS" for said in requirements.values()) else 1

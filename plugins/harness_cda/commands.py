"""``harness kit fetch``: the pinned official kit into the user's cache (:mod:`.release`)."""
from __future__ import annotations

import os
import sys

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
    s.set_defaults(func=run_serve, plugin_command=True)


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

    if not 1 <= args.max_stylesheets <= 4096:
        print(M("serve.max", value=args.max_stylesheets).render(ctx.lang), file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = serve(args.port, args.max_stylesheets)
    try:
        print(M("serve.ready", url=server.base_url, state=str(server._state), pid=os.getpid()).render(ctx.lang), flush=True)
        stop.wait()
    finally:
        server.stop()
    print(M("serve.stopped", served=server.served, compiled=server.saxon.compiled).render(ctx.lang), flush=True)
    return 0

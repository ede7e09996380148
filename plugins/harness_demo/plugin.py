"""Hooks of the embedded demo vendor: default target, the ``demo-vendor`` service, the
``--defect`` option of scenario runs, the ``harness demo`` command, and the summary's
section naming the defects a run injected."""
from __future__ import annotations

import time
from pathlib import Path

from harness import HarnessError, ReportSection, Service, catalogue, hookimpl

from .app import API_LAYOUTS, DEFECTS, DemoConfig, DemoServer, UnknownDefect

SERVICE = "demo-vendor"
M = catalogue(__name__)


def _help(key: str) -> str:
    """Option help in the language of HARNESS_LANG (French by default): it is shown before --lang is read."""
    return M(key).render()


@hookimpl
def harness_addoption(group):
    group.addoption("--defect", dest="harness_defects", action="append", default=[], metavar="NAME",
                    help=_help("help.defect_run"))


@hookimpl
def harness_commands(subparsers):
    d = subparsers.add_parser("demo", help=_help("help.demo"))
    d.add_argument("--defect", action="append", default=[], metavar="NAME", help=_help("help.defect"))
    d.add_argument("--port", type=int, default=8080)
    d.add_argument("--release", default=None, help=_help("help.release"))
    d.set_defaults(func=run_demo, plugin_command=True)


@hookimpl
def harness_target_schema():
    return {f"services.{SERVICE}": {"defects": "list[str]", "port": "int", "release": "str", "token": "secret", "build": "str",
                                    "api_layout": "str", "idle_timeout": "int", "local_user": "str", "local_password": "secret",
                                    "local_totp": "secret"}}


@hookimpl
def harness_default_target():
    return Path(__file__).with_name("target.toml")


@hookimpl
def harness_configure(options, target):
    defects = options.get("harness_defects") or []
    if not defects:
        return
    if SERVICE not in target.services:
        raise HarnessError(M("defect.not_demo", target=str(target.path), service=SERVICE))
    target.set_service_option(SERVICE, "defects", sorted(set(defects)))


def _config(options, ctx) -> DemoConfig:
    token_ref = options.get("token")
    token = ctx.target.resolve_secret(token_ref) if token_ref else None
    try:
        refs = [options.get(k) for k in ("local_password", "local_totp")]

        def local_secrets() -> tuple[str, str]:  # read when its own login is first used (a copied target may lack the files)
            password, totp = ((ctx.target.resolve_secret(ref) or "") if ref else "" for ref in refs)
            return password, totp

        return DemoConfig(release=options.get("release", DemoConfig.release), defects=list(options.get("defects", [])), token=token,
                          build=options.get("build", ""), api_layout=options.get("api_layout", "flat"),
                          psc_idle=float(options.get("idle_timeout", DemoConfig.psc_idle)), local_user=options.get("local_user", "dr-demo"),
                          local_secrets=local_secrets)
    except UnknownDefect as exc:
        raise HarnessError(M("defect.unknown", unknown=", ".join(exc.unknown), known=", ".join(exc.known))) from None
    except ValueError:
        raise HarnessError(M("api_layout.unknown", layout=options.get("api_layout"), known=", ".join(API_LAYOUTS))) from None


@hookimpl
def harness_start_service(name, options, ctx):
    if name != SERVICE:
        return None
    cfg = _config(options, ctx)
    server = DemoServer(cfg, port=options.get("port", 0)).start()
    return Service(SERVICE, server.base_url, server.stop, {"defects": cfg.defects, "release": cfg.release})


@hookimpl
def harness_report_sections(summary):
    """The defects the run injected into the demo vendor, so nobody takes its FAILs for a product's."""
    defects = summary.manifest.target.get("services", {}).get(SERVICE, {}).get("defects") or []
    if not defects:
        return []
    return [ReportSection(M("section.title"), [M("section.defect", name=d, description=DEFECTS[d]) for d in defects if d in DEFECTS])]


def run_demo(args, ctx) -> int:
    """``harness demo``: start the default target's services in the foreground, one port each
    (the demo vendor on ``--port``, its other services on the next ones)."""
    target = ctx.load_target()
    services = []
    try:
        for n, (name, options) in enumerate(target.services.items()):
            options = dict(options, port=args.port + n, **({"defects": args.defect} if args.defect else {}))
            if args.release:
                options["release"] = args.release
            svc = ctx.start_service(name, options, target)
            services.append(svc)
            print(f"{name}: {svc.base_url} {svc.info}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        for svc in services:
            svc.stop()

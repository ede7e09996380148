"""Hooks of the embedded demo vendor: default target and the ``demo-vendor`` service."""
from __future__ import annotations

from pathlib import Path

from harness import HarnessError, Service, hookimpl

from .app import DemoConfig, DemoServer, UnknownDefect

SERVICE = "demo-vendor"


@hookimpl
def harness_target_schema():
    return {f"services.{SERVICE}": {"defects": "list[str]", "port": "int", "release": "str", "token": "secret"}}


@hookimpl
def harness_default_target():
    return Path(__file__).with_name("target.toml")


@hookimpl
def harness_start_service(name, options, ctx):
    if name != SERVICE:
        return None
    token_ref = options.get("token")
    token = None
    if token_ref:
        from harness import resolve_secret

        token = resolve_secret(token_ref, ctx.target.folder)
    try:
        cfg = DemoConfig(release=options.get("release", DemoConfig.release), defects=list(options.get("defects", [])), token=token)
    except UnknownDefect as exc:
        raise HarnessError(
            f"Vendeur de démonstration : défaut(s) inconnu(s) : {', '.join(exc.unknown)} ; connus : {', '.join(exc.known)}",
            f"Demo vendor: unknown defect(s): {', '.join(exc.unknown)}; known: {', '.join(exc.known)}",
        ) from None
    server = DemoServer(cfg, port=options.get("port", 0)).start()
    return Service(SERVICE, server.base_url, server.stop, {"defects": cfg.defects, "release": cfg.release})

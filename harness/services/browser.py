"""A real browser for the plugins that must see or drive what a person does (the version on a
page, a professional's login): headless Chromium driven by Playwright, sandboxed, in a process
of its own that is killed whole at its deadline.

Exported by :mod:`harness` as the ``browser`` module. A plugin writes a **driver**, a
function of a module of its own that receives a Playwright browser context and its arguments
(JSON data) and returns JSON data (bytes allowed); :func:`run_driver` runs it:

- in a child process (``python -m harness.services.browser``) started in a session of its
  own, killed with its whole group once ``total`` + a grace have passed: a page whose script
  never yields control (which no Playwright timeout interrupts) cannot hang the run;
- in a Chromium with its sandbox on: run as ``HARNESS_BROWSER_USER`` (default ``nobody``)
  when the harness runs as root, the renderers confined by a seccomp filter (said in
  ``sandbox``), the profile, configuration and cache in a private folder;
- with Chromium's own services silent (:data:`BROWSER_FLAGS`) and, with ``loopback_only``,
  nothing reachable beyond loopback (:data:`OFFLINE_FLAGS`).

The browser is ``HARNESS_BROWSER`` (a name or a path; ``none``: no browser), else the
distribution's (Chromium's headless build first), else Playwright's own download.
"""
from __future__ import annotations

import base64
import importlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

LAUNCH_MS = 15_000  # milliseconds Chromium may take to start, whatever the page's deadline
GRACE = 15.0  # at most, seconds beyond the total budget before the browser's process group is killed
MAX_RESULT = 256 * 1024 * 1024  # a driver's result (screenshots, base64)
VIEWPORT = {"width": 1280, "height": 800}
CONTEXT = {"viewport": VIEWPORT, "service_workers": "block"}  # the options of every browser context

# Chromium's headless build first: the one Playwright itself runs headless (same Blink, no
# window system); measured 1.1 s of CPU for a page against 1.7 s with the full chromium
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Chromium's own services stay silent (Playwright already passes most of these): no update,
# sync, translation, safe browsing, metrics, media-router discovery (SSDP/mDNS multicast), no
# mDNS names for WebRTC's local addresses (joining a multicast group sends an IGMP report)
DISABLED_FEATURES = ("MediaRouter", "DialMediaRouteProvider", "OptimizationHints", "Translate", "AutofillServerCommunication",
                     "DnsOverHttps", "NetworkTimeServiceQuerying", "InterestFeedContentSuggestions",
                     "CertificateTransparencyComponentUpdater", "WebRtcHideLocalIpsWithMdns")
BROWSER_FLAGS = ("--disable-gpu", "--disable-crash-reporter", "--disable-breakpad", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-pings", "--disable-domain-reliability",
                 "--disable-client-side-phishing-detection", "--no-first-run", "--metrics-recording-only",
                 "--disable-features=" + ",".join(DISABLED_FEATURES))  # one flag: Chromium reads the last one only
# loopback only (--offline): whatever a page or the browser tries beyond loopback goes nowhere.
# Every request but loopback's (HTTP, HTTPS, WebSocket, the browser's own) is sent to a proxy
# that is not there (Chromium never proxies loopback), so no name is resolved and no packet
# leaves; WebRTC may use no UDP that does not go through that proxy. A driver also refuses a
# page's requests one by one (route), which names each in its record.
# tests/hostile/test_offline_netns.py proves it in a network namespace whose only way out is watched.
OFFLINE_FLAGS = ("--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<local>",
                 "--force-webrtc-ip-handling-policy=disable_non_proxied_udp", "--webrtc-ip-handling-policy=disable_non_proxied_udp",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]")


def distribution_browser() -> str | None:
    """A headless-capable browser: HARNESS_BROWSER, else the usual Chromium names."""
    configured = os.environ.get("HARNESS_BROWSER")
    if configured:  # a name or a path; the path it resolves to (the browser may run as another account)
        return shutil.which(configured) if configured != "none" else None
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def find_browser() -> str | None:
    """The Chromium to drive: ``HARNESS_BROWSER``, else the distribution's, else Playwright's
    own download (``playwright install chromium``)."""
    found = distribution_browser()
    if found or os.environ.get("HARNESS_BROWSER") == "none":
        return found
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            own = p.chromium.executable_path
        return own if own and Path(own).exists() else None
    except Exception:
        return None


def browser_flags(loopback_only: bool, extra: tuple[str, ...] = ()) -> list[str]:
    return [*BROWSER_FLAGS, *(OFFLINE_FLAGS if loopback_only else ()), *extra]


def unprivileged_account() -> pwd.struct_passwd | None:
    """The account Chromium runs as when the harness runs as root (None otherwise): the
    ``HARNESS_BROWSER_USER`` account, else ``nobody``. Chromium's sandbox will not run as root,
    and the vendor's page deserves it."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(os.environ.get("HARNESS_BROWSER_USER") or "nobody")


_AS_ACCOUNT = """import os, sys
os.setgroups([])
os.setresgid({gid}, {gid}, {gid})
os.setresuid({uid}, {uid}, {uid})
os.environ.update(HOME={home!r}, USER={name!r}, LOGNAME={name!r})
os.execv({browser!r}, [{browser!r}] + sys.argv[1:])
"""


def _browser_as(account: pwd.struct_passwd, browser: str, folder: Path) -> str:
    """An executable that starts ``browser`` as ``account`` (its descriptors kept: Playwright
    speaks to Chromium over a pipe): a script run by this interpreter, as root, that drops
    every privilege, then becomes the browser."""
    script = folder / "browser-as-account"
    script.write_text(f"#!{sys.executable}\n" + _AS_ACCOUNT.format(gid=account.pw_gid, uid=account.pw_uid, home=str(folder / "home"),
                                                                   name=account.pw_name, browser=browser))
    script.chmod(0o700)
    return str(script)


def private_env(folder: str) -> dict[str, str]:
    """The environment for a browser: its configuration and cache (crash reports included,
    which Debian's Chromium writes under ~/.config whatever its profile) in ``folder``, so
    nothing is written outside the run's own folders."""
    return {**os.environ, "XDG_CONFIG_HOME": f"{folder}/config", "XDG_CACHE_HOME": f"{folder}/cache"}


def renderer_confinement() -> str:
    """What the kernel says of this process's renderer processes (its descendants): confined
    by a seccomp filter (mode 2), as Chromium's sandbox does, or not; read from /proc."""
    parents: dict[int, int] = {}
    renderers = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
            if b"--type=renderer" in (entry / "cmdline").read_bytes():
                renderers.append(entry)
        except (OSError, ValueError, IndexError):
            continue

    def ours(pid: int) -> bool:
        for _ in range(64):
            if pid == os.getpid():
                return True
            pid = parents.get(pid, 0)
            if pid <= 1:
                return False
        return False

    modes = []
    for entry in renderers:
        if not ours(int(entry.name)):
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        modes += [line.split(":")[1].strip() for line in status.splitlines() if line.startswith("Seccomp:")]
    if not modes:
        return "; renderer not seen"
    return "; renderer seccomp filter" if all(m == "2" for m in modes) else f"; renderer seccomp modes {','.join(sorted(set(modes)))}"


class Launched:
    """What :func:`launch` started: the persistent ``context``, the ``sandbox`` as said, the
    ``browser`` named with its version."""

    def __init__(self, context: Any, sandbox: str, browser: str) -> None:
        self.context, self.sandbox, self.browser = context, sandbox, browser


def _prepare(folder: Path, *, browser: str, timeout_ms: int, loopback_only: bool, extra_args: tuple[str, ...],
             context_options: dict | None) -> tuple[dict, str]:
    """The launch options of a sandboxed Chromium in ``folder``, and the sandbox as it will be said."""
    account = unprivileged_account()
    executable = browser
    for sub in ("profile", "home", "config", "cache"):
        (folder / sub).mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            os.chown(folder / sub, account.pw_uid, account.pw_gid)
    if account is not None:
        folder.chmod(0o711)  # the account reaches its folders, lists nothing
        executable = _browser_as(account, browser, folder)
    # starting our own browser is not the vendor's page: it gets its own budget (a loaded
    # machine starts Chromium slowly), the process-group kill still bounds the whole
    options = {"executable_path": executable, "timeout": max(timeout_ms, LAUNCH_MS), "env": private_env(str(folder)),
               "args": browser_flags(loopback_only, extra_args), **CONTEXT, **(context_options or {})}
    return options, ("on" if account is None else f"on (as {account.pw_name})")


def launch(playwright: Any, folder: Path, *, browser: str, timeout_ms: int, loopback_only: bool = False, extra_args: tuple[str, ...] = (),
           context_options: dict | None = None) -> Launched:
    """Chromium in ``folder`` (its profile, home, configuration, cache), its sandbox on (as an
    unprivileged account when root), with :func:`browser_flags`; a browser that cannot start its
    sandbox here (no namespaces) starts without it, and says so. ``playwright``: the sync API's."""
    from playwright.sync_api import Error as PlaywrightError

    options, sandbox = _prepare(folder, browser=browser, timeout_ms=timeout_ms, loopback_only=loopback_only, extra_args=extra_args,
                                context_options=context_options)
    try:
        context = playwright.chromium.launch_persistent_context(folder / "profile", chromium_sandbox=True, **options)
    except PlaywrightError as exc:  # no namespaces for the sandbox here: said, never silent
        sandbox = "off: " + str(exc).splitlines()[0][:200]
        context = playwright.chromium.launch_persistent_context(folder / "profile", chromium_sandbox=False, **options)
    name = f"{Path(browser).name} {context.browser.version if context.browser else ''}".strip()
    return Launched(context, sandbox, name)


async def launch_async(playwright: Any, folder: Path, *, browser: str, timeout_ms: int, loopback_only: bool = False,
                       extra_args: tuple[str, ...] = (), context_options: dict | None = None) -> Launched:
    """:func:`launch` for Playwright's async API (a driver that runs pages side by side)."""
    from playwright.async_api import Error as PlaywrightError

    options, sandbox = _prepare(folder, browser=browser, timeout_ms=timeout_ms, loopback_only=loopback_only, extra_args=extra_args,
                                context_options=context_options)
    try:
        context = await playwright.chromium.launch_persistent_context(folder / "profile", chromium_sandbox=True, **options)
    except PlaywrightError as exc:
        sandbox = "off: " + str(exc).splitlines()[0][:200]
        context = await playwright.chromium.launch_persistent_context(folder / "profile", chromium_sandbox=False, **options)
    name = f"{Path(browser).name} {context.browser.version if context.browser else ''}".strip()
    return Launched(context, sandbox, name)


def compile_cache() -> None:
    """Playwright's driver (Node) compiles its JavaScript once per machine, not once per page:
    Node's compile cache, under the user's cache folder, checked against the files' contents
    (measured: 0.60 s of CPU per driver start without it, 0.47 s with it); a cache it cannot
    write is ignored."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness" / "node-compile-cache"
    os.environ.setdefault("NODE_COMPILE_CACHE", str(cache))


# -- a driver in a process of its own -------------------------------------------------------

def encode(value: Any) -> Any:
    """JSON-able data, bytes as ``{"__bytes__": base64}``."""
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__bytes__"}:
            return base64.b64decode(value["__bytes__"], validate=True)
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_driver(target: str, args: dict, *, total: float, grace: float | None = None) -> tuple[Any, str | None]:
    """``target`` ("package.module:function", a function of ``args`` returning JSON data) run
    in a child process of its own session, killed with its group after ``total`` seconds and a
    grace (at most :data:`GRACE`): (its result, None), or (None, what went wrong)."""
    from ..errors import UnsafeInput
    from ..safety.inputs import parse_json

    limit = total + (grace if grace is not None else min(GRACE, 5 + total / 4))
    with tempfile.TemporaryDirectory(prefix="harness-driver-") as tmp:  # private (0700): the arguments may hold credentials
        given, result = Path(tmp) / "args.json", Path(tmp) / "result.json"
        given.write_text(json.dumps(encode(args)), encoding="utf-8")  # not on the command line, which every local user can read
        proc = subprocess.Popen([sys.executable, "-m", __name__, target, str(given), str(result)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            return None, f"killed after {limit:.0f} s (the page never yielded control to the browser)"
        finally:
            kill_group(proc)  # whatever the driver left behind (a browser that did not close)
            proc.stderr.close()
        if proc.returncode != 0 or not result.exists():
            return None, f"driver exited with {proc.returncode}: {err.decode('utf-8', 'replace').strip()[-300:]}"
        try:
            if result.stat().st_size > MAX_RESULT:
                raise ValueError("too large")
            return decode(parse_json(result.read_bytes(), source="driver result", max_bytes=MAX_RESULT)), None
        except (ValueError, TypeError, UnsafeInput) as exc:
            return None, f"driver result unreadable: {type(exc).__name__}"


def _main(argv: list[str]) -> int:
    module, _, function = argv[0].partition(":")
    compile_cache()
    work = getattr(importlib.import_module(module), function)
    out = work(decode(json.loads(Path(argv[1]).read_text(encoding="utf-8"))))
    with open(argv[2], "w", encoding="utf-8") as fh:
        json.dump(encode(out), fh)
    return 0


if __name__ == "__main__":  # the child process of run_driver()
    sys.exit(_main(sys.argv[1:]))

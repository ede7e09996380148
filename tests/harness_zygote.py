"""A process that imports pytest, the harness and its plugins once, then forks one harness run
per request: each run is still a process of its own (its folder, its environment, its exit
code, its output), as ``python -m pytest ...`` would be, without paying the interpreter's start
and the imports again (about half a second of CPU each, for the suite's 200 runs).

Started by tests/harness_run.py, one per xdist worker, on a Unix socket in a private folder;
it stops when its standard input closes (the worker gone). ``TEST_RUN_FORK=0`` runs every
harness run in a fresh interpreter instead. It imports, never runs, the harness's code: a run's
settings (environment, folder) are the child's, read when the run reads them.

Protocol, one connection per run: the caller sends one JSON line ``{"args", "cwd", "env",
"stdout", "stderr"}`` (output files the caller made); the run answers its pid, then, when it
has ended (its exit handlers run), its exit code, each on a line.
"""
from __future__ import annotations

import atexit
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys

# imported by a harness run whatever its scenarios, or by many: loaded here once; what loads a
# native runtime (saxonche's GraalVM isolate, Playwright's driver) stays for each run to load
PRELOAD = ("lxml.etree", "requests", "cryptography.x509", "cryptography.hazmat.primitives.serialization", "openpyxl", "jinja2",
           "babel.messages.pofile", "hl7", "aiosmtpd.controller", "aiosmtpd.smtp", "email.parser", "email.policy", "zipfile",
           "http.server", "ssl", "PIL.Image", "pytesseract", "fhir.resources.R4B.patient",
           "authlib.integrations.requests_client", "pyotp")
MAX_REQUEST = 1 << 20
KEYS_AHEAD = 40  # RSA keys a run may draw before making its own: an 'all' run of the demo makes 15 for the DMP, 7 for PSC


def preload() -> None:
    from importlib.metadata import entry_points

    for name in ("pytest", "_pytest.pytester"):  # the project's addopts load pytester
        importlib.import_module(name)
    for group in ("pytest11", "harness.plugins"):
        for ep in entry_points(group=group):
            ep.load()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # the loopback PKI's keys, made once: every run forked shares them (harness.services.certs)
    from harness.services.certs import make_keys_ahead

    make_keys_ahead(KEYS_AHEAD)
    # the report's template, compiled once (0.1 s of CPU a run otherwise): a run renders it
    # with its own data, the compiled form holds none
    from harness.reporting.report import _template

    _template()
    # what was loaded lives as long as the runs: kept out of every run's garbage collections
    # (pytest collects once at its end, over the whole heap otherwise)
    gc.collect()
    gc.freeze()


def _reap(children: dict[int, list[str]]) -> None:
    for pid in list(children):
        done, _, usage = os.wait4(pid, os.WNOHANG)
        if done:
            args = children.pop(pid)
            log = os.environ.get("TEST_CPU_LOG")  # bench/suite.py: what each run cost, its own and its subprocesses'
            if log:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"run": args, "cpu": round(usage.ru_utime + usage.ru_stime, 3)}) + "\n")


def _request(conn: socket.socket) -> dict:
    conn.settimeout(30)
    data = b""
    while not data.endswith(b"\n") and len(data) < MAX_REQUEST:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    conn.settimeout(None)
    return json.loads(data)


def _child(conn: socket.socket, request: dict) -> None:
    """In the forked process: become the run ``request`` describes; never returns."""
    os.setsid()  # a group of its own: a timeout kills the run and whatever it started
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    import tempfile

    tempfile.tempdir = None  # read from the run's environment again
    sys.path[0] = os.getcwd()  # as ``python -m`` puts the folder it runs in
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(out, fd)
        os.close(out)
    conn.sendall(f"{os.getpid()}\n".encode())
    code = {"value": 1}

    def answer() -> None:  # registered first: runs after every exit handler of the run
        try:
            conn.sendall(f"{code['value']}\n".encode())
        except OSError:
            pass

    atexit.register(answer)
    import pytest

    sys.argv = [os.path.join(os.path.dirname(pytest.__file__), "__main__.py"), *request["args"]]
    try:
        code["value"] = int(pytest.console_main())
    except SystemExit as exc:
        code["value"] = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    raise SystemExit(code["value"])


def serve(path: str) -> None:
    preload()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(64)
    children: dict[int, list[str]] = {}  # pid: the run's arguments
    print("ready", flush=True)
    try:
        while True:
            ready, _, _ = select.select([server, sys.stdin], [], [], 0.5)
            _reap(children)
            if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
                break  # the worker that started us is gone
            if server in ready:
                conn, _ = server.accept()
                try:
                    request = _request(conn)
                except (OSError, ValueError):  # a caller gone or garbled: no run
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    server.close()
                    children.clear()  # this copy's: the run kills none of its siblings on its way out
                    _child(conn, request)
                children[pid] = request["args"]
                conn.close()
    finally:
        import time

        grace = time.monotonic() + 10  # a run that answered may still be closing down
        while children and time.monotonic() < grace:
            _reap(children)
            time.sleep(0.05)
        for pid in children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


if __name__ == "__main__":
    serve(sys.argv[1])

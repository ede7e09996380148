"""Helpers for end-to-end tests: run the harness as a user would, in a subprocess."""
from __future__ import annotations

import _socket
import atexit
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]

# harness runs a pool keeps going at once (per xdist worker): a run waits about as long as it
# works (a browser settling, a simulator's quiet period, a mailbox starting), so four at once
# on two cores keep them busy
POOL_SIZE = int(os.environ.get("TEST_RUN_POOL", "4"))
READY_WITHIN = 60.0  # seconds the fork server may take to import what it preloads


@dataclass
class RunOutcome:
    returncode: int
    stdout: str
    stderr: str
    bundle: Path | None
    cwd: Path | None = None  # the folder it ran in

    @property
    def manifest(self) -> dict:
        with zipfile.ZipFile(self.bundle) as zf:
            return json.loads(zf.read("manifest.json"))

    def requirement_verdicts(self) -> dict[str, str]:
        return {req: info["verdict"] for req, info in self.manifest["requirements"].items()}

    def failing(self) -> set[str]:
        return {req for req, v in self.requirement_verdicts().items() if v == "FAIL"}

    def findings(self) -> list[dict]:
        out = []
        with zipfile.ZipFile(self.bundle) as zf:
            for name in sorted(zf.namelist()):
                if name.startswith("findings/"):
                    out.extend(json.loads(zf.read(name)))
        return out


def harness_env(env: dict | None = None) -> dict[str, str]:
    """The environment of a harness run: this one's, without pytest's and the harness's own settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "HARNESS_"))}
    # a kit this machine's user fetched (harness kit fetch) is not the suite's: runs see none unless a test names one
    full_env["HARNESS_KIT_HOME"] = os.path.join(tempfile.gettempdir(), "harness-suite-no-fetched-kit")
    # nor a kit server this machine's user started (harness kit serve): the suite's runs compile in process unless a test starts one
    full_env["HARNESS_KIT_SERVER_STATE"] = os.path.join(tempfile.gettempdir(), "harness-suite-no-kit-server.json")
    full_env.update(env or {})
    return full_env


def _command(args: tuple[str, ...], allure: bool) -> list[str]:
    # hypothesis (a dev dependency) registers a pytest plugin whose import costs 0.8 s in each
    # of the suite's ~200 harness runs; a scenario run has no use for it. Allure results are
    # written only for the tests about them.
    return ["-p", "no:cacheprovider", "-p", "no:hypothesispytest", *(() if allure else ("-p", "no:allure_pytest")), *args]


class _Zygote:
    """This process's fork server (tests/harness_zygote.py), started when first needed."""

    _lock = threading.Lock()
    _proc: subprocess.Popen | None = None
    _path: str | None = None
    _folder = ""
    failed = False

    @classmethod
    def path(cls) -> str | None:
        with cls._lock:
            if cls._proc is None and not cls.failed:
                folder = tempfile.mkdtemp(prefix="harness-zygote-")
                path = os.path.join(folder, "sock")
                proc = subprocess.Popen([sys.executable, "-m", "tests.harness_zygote", path], cwd=ROOT, env=harness_env(),
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                # its imports take a second or two; a server that is not ready within the
                # bound is not waited for
                ready = proc.stdout.readline() if select.select([proc.stdout], [], [], READY_WITHIN)[0] else b""
                if ready.strip() != b"ready":
                    proc.kill()
                    proc.wait()
                    shutil.rmtree(folder, ignore_errors=True)
                    cls.failed = True
                    print("tests/harness_zygote.py did not start: harness runs in fresh interpreters (slower)", file=sys.stderr)
                else:
                    cls._proc, cls._path, cls._folder = proc, path, folder
                    atexit.register(cls.stop)
            return cls._path

    @classmethod
    def stop(cls) -> None:
        with cls._lock:
            if cls._proc is not None:
                cls._proc.stdin.close()  # it ends its runs under way and exits
                try:
                    cls._proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    cls._proc.kill()
                    cls._proc.wait()
                cls._proc = None
                shutil.rmtree(cls._folder, ignore_errors=True)


def _forked(path: str, cwd: Path, command: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a harness run forked by the zygote at ``path``."""
    with tempfile.TemporaryDirectory(prefix="harness-run-") as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        for name in (out, err):
            open(name, "wb").close()
        deadline = time.monotonic() + timeout
        pid = None
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            # the C method: an in-process replay elsewhere in this worker turns socket.socket's
            # connect off for its duration (harness.proof.replay.no_network); a run is no network
            _socket.socket.connect(conn, path)
            conn.sendall(json.dumps({"args": command, "cwd": str(cwd), "env": env, "stdout": out, "stderr": err}).encode() + b"\n")
            lines = b""
            try:
                while lines.count(b"\n") < 2:
                    conn.settimeout(max(0.01, deadline - time.monotonic()))
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    lines += chunk
                    if pid is None and b"\n" in lines:
                        pid = int(lines.split(b"\n")[0])
            except socket.timeout:
                if pid is not None:
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except OSError:
                        pass
                raise subprocess.TimeoutExpired(command, timeout) from None
        answers = lines.split(b"\n")
        code = int(answers[1]) if len(answers) > 2 else -signal.SIGKILL  # ended without answering: killed
        with open(out, encoding="utf-8", errors="replace") as o, open(err, encoding="utf-8", errors="replace") as e:
            return code, o.read(), e.read()


def run_harness(cwd: Path, *args: str, env: dict | None = None, timeout: int = 180, allure: bool = False, fresh: bool = False) -> RunOutcome:
    """A harness run in ``cwd``, as ``python -m pytest ARGS`` there: forked from this worker's
    zygote (tests/harness_zygote.py), or with ``fresh`` (or ``TEST_RUN_FORK=0``, or no zygote)
    in an interpreter of its own."""
    if os.environ.get("TEST_RUN_LOG"):  # counting the suite's harness runs (bench/suite.py)
        with open(os.environ["TEST_RUN_LOG"], "a", encoding="utf-8") as log:
            log.write(json.dumps(list(args)) + "\n")
    evidence = cwd / "reports"
    before = set(evidence.glob("*.zip")) if evidence.exists() else set()
    full_env = harness_env(env)
    command = _command(args, allure)
    path = None if fresh or os.environ.get("TEST_RUN_FORK") == "0" else _Zygote.path()
    if path is not None:
        code, stdout, stderr = _forked(path, cwd, command, full_env, timeout)
    else:
        proc = subprocess.run([sys.executable, "-m", "pytest", *command], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    after = set(evidence.glob("*.zip")) if evidence.exists() else set()
    new = sorted(after - before)
    return RunOutcome(code, stdout, stderr, new[-1] if new else None, cwd)


def shared_run(factory: Any, *args: str, **kw: Any) -> RunOutcome:
    """A harness run that several test modules judge alike (the same arguments, the same
    environment, a folder of its own), made once for the whole test session: the first worker to
    ask runs it, under a lock in the folder the pytest-xdist workers share; a worker that asks
    meanwhile waits for it, one that asks later reads its outcome. Only for a run no test alters
    (its bundle is read, copied, never written)."""
    import fcntl
    import hashlib

    base = factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-runs"
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(json.dumps([args, sorted((kw.get("env") or {}).items()), kw.get("allure", False)]).encode()).hexdigest()[:24]
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = folder / f"{key}.json"
        if done.exists():
            got = json.loads(done.read_text(encoding="utf-8"))
            return RunOutcome(got["returncode"], got["stdout"], got["stderr"], Path(got["bundle"]) if got["bundle"] else None,
                              Path(got["cwd"]))
        cwd = folder / key
        cwd.mkdir()
        run = run_harness(cwd, *args, **kw)
        done.write_text(json.dumps({"returncode": run.returncode, "stdout": run.stdout, "stderr": run.stderr,
                                    "bundle": str(run.bundle) if run.bundle else None, "cwd": str(cwd)}), encoding="utf-8")
        return run


def defect_args(scenario: str, defects: list[str]) -> tuple[str, ...]:
    return ("--scenario", scenario, "--lang", "en", *[a for d in defects for a in ("--defect", d)])


def assert_caught(run: RunOutcome, expected: set[tuple[str, str]]) -> RunOutcome:
    """Every (requirement, rule) of ``expected`` is among the run's failing findings, and the run fails."""
    assert run.bundle is not None, run.stdout + run.stderr
    failing = {(f["requirement"], f["rule"]) for f in run.findings() if f["severity"] in ("error", "critical")}
    assert expected <= failing, (failing, run.stdout)
    assert run.returncode == 1
    return run


def assert_defects_caught(cwd: Path, scenario: str, defects: list[str], expected: set[tuple[str, str]]) -> RunOutcome:
    """Run ``scenario`` on the demo with ``defects``: every (requirement, rule) of ``expected``
    is among the failing findings, and the run fails."""
    return assert_caught(run_harness(cwd, *defect_args(scenario, defects)), expected)


class RunPool:
    """Work started together, each piece in a thread (a harness run, a page rendered: each a
    subprocess that waits about as long as it works), read back as each test needs it.

    A module's tests that each judge one run submit every run up front (a module fixture),
    then each test reads its own: same runs, same assertions, less waiting. A test file runs
    whole on one xdist worker (tests/conftest.py hands xdist its file scheduler), so its
    runs start once."""

    def __init__(self, factory: Any, size: int = POOL_SIZE) -> None:
        self.factory = factory  # pytest's tmp_path_factory
        self._executor = ThreadPoolExecutor(max(1, size), thread_name_prefix="run-pool")
        self._futures: dict[str, Future] = {}

    def submit(self, key: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        assert key not in self._futures, key
        self._futures[key] = self._executor.submit(fn, *args, **kw)

    def harness(self, key: str, *args: str, shared: bool = False, **kw: Any) -> None:
        """A harness run in a folder of its own (``cwd`` given: that one); ``shared``: made once
        for the session (:func:`shared_run`)."""
        if shared:
            self.submit(key, shared_run, self.factory, *args, **kw)
            return
        cwd = kw.pop("cwd", None) or self.factory.mktemp(key.replace("/", "-")[:40])
        self.submit(key, run_harness, cwd, *args, **kw)

    def __getitem__(self, key: str) -> Any:
        return self._futures[key].result()

    def __enter__(self) -> "RunPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

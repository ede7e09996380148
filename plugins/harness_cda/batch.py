"""``harness kit batch FOLDER``: the official kit over a whole archive, streamed, resumable,
on local processes or a Dask cluster.

Why a command and not ``pytest --scenario cda-kit`` over the folder: a scenario is one pytest
item whose collectors gather every document before its checks run, so memory grows with the
archive, nothing is said before the end and an interruption loses everything. Here each
document is judged alone (:mod:`.judge`: the scenarios' own collectors and checks), its line
written to ``results.jsonl`` as soon as it is judged, its artefacts kept in the working folder;
a run started again with the same folder takes up where the last one stopped. At the end the
run is sealed (:class:`harness.RecordedRun`): each ``cda-kit-*`` scenario's inputs are its
collectors' outputs over the whole archive and its checks run on them, so the bundle holds
the same inputs, verdicts and findings as the scenarios run over the folder, and verifies and
replays like any bundle.

Work is split by document: each worker process (local, or a Dask worker) compiles each
stylesheet it needs once, then judges document after document; at most ``2 x workers``
documents are in flight, so memory stays flat whatever the archive's size.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator

from harness import Artefact, HarnessError, RecordedRun, Text, catalogue

from .collect import MAX_FILE

M = catalogue(__name__)
RESULTS = "results.jsonl"
COLLECTORS = ("cda.documents", "cda.svrl.header", "cda.svrl.ihe", "cda.svrl.content-models", "cda.svrl.ans-models", "cda.svrl.volets")
DASK_CONNECT = 30.0  # seconds to reach a Dask scheduler
TASK_DEADLINE = 900.0  # seconds one document may take on a worker (the first one compiles the kit)

# -- the workers' side ----------------------------------------------------------------------------

_JUDGES: dict[str, tuple[str, Any]] = {}  # kit folder -> (its stamp, its judge)
_LOCK = threading.Lock()  # SaxonC runs one transformation at a time per process: a worker's threads take turns


def judge_document(kit: str, name: str, data: bytes, stamp: str = "") -> dict:
    """One document judged in this process (its judge, and what it compiled, kept for the next;
    a new ``stamp`` of the kit's files makes a new judge)."""
    from .judge import Judge

    with _LOCK:
        try:
            kept = _JUDGES.get(kit)
            if kept is None or kept[0] != stamp:
                if kept is not None:
                    kept[1].close()
                _JUDGES[kit] = kept = (stamp, Judge(kit))
                while len(_JUDGES) > 4:
                    _JUDGES.pop(next(iter(_JUDGES)))[1].close()
            judged = kept[1].judge(data, name)
        except HarnessError as exc:  # said as data: an exception need not cross a process boundary
            return {"error": exc.messages}
        except Exception as exc:  # a bug, or the engine failing: the document is not judged, and that is said
            return {"error": M("judge.crashed", error=f"{type(exc).__name__}: {exc}"[:500]).texts()}
        return {"summary": judged.summary(), "blobs": judged.blobs}


def kit_identity(kit: str) -> dict:
    """What a worker sees at ``kit`` (its content digest), or why it sees none."""
    from harness import core_version

    from .kit import Kit

    try:
        return {"sha256": Kit(Path(kit), core_version()).sha256, "pid": os.getpid()}
    except HarnessError as exc:
        return {"error": exc.messages}


# -- executors ------------------------------------------------------------------------------------


class Pool:
    """Where documents are judged: ``submit`` gives a ``concurrent.futures`` future (the local
    pool's, the server's threads', or a Dask client executor's), all waited for alike."""

    name = "?"
    workers = 1

    def identities(self, kit: str) -> list[dict]:
        raise NotImplementedError

    def submit(self, kit: str, name: str, data: bytes):
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalPool(Pool):
    """``workers`` local processes (spawned: no state of this process carried into them)."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"))

    def identities(self, kit: str) -> list[dict]:
        return [self._pool.submit(kit_identity, kit).result(timeout=TASK_DEADLINE)]

    def submit(self, kit: str, name: str, data: bytes):
        return self._pool.submit(judge_document, kit, name, data)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskPool(Pool):
    """The workers of a Dask distributed cluster (``--dask tcp://host:8786``): each compiles
    each stylesheet once and keeps it; documents are sent to them as they are read."""

    name = "dask"

    def __init__(self, address: str, connect: float = DASK_CONNECT) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise HarnessError(M("batch.no_dask")) from None
        try:
            self.client = Client(address, timeout=connect, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise HarnessError(M("batch.dask_unreachable", address=address, error=f"{type(exc).__name__}: {exc}")) from None
        self.workers = max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})))
        # its futures are concurrent.futures' own: waited for as the local pool's are
        self._executor = self.client.get_executor(pure=False)

    def identities(self, kit: str) -> list[dict]:
        said = self.client.run(kit_identity, kit)
        return [dict(v, worker=k) for k, v in sorted(said.items())]

    def submit(self, kit: str, name: str, data: bytes):
        return self._executor.submit(judge_document, kit, name, data)

    def close(self) -> None:
        self._executor.shutdown(wait=False)
        self.client.close()


class ServerPool(Pool):
    """The running kit server's own worker processes (``harness kit serve --workers N``), warm:
    each document sent to it (``POST /judge``), its artefacts sent back; ``2 x N`` in flight."""

    name = "server"

    def __init__(self, remote) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.remote = remote
        self.workers = max(1, int(remote.health.get("workers") or 1))
        self._threads = ThreadPoolExecutor(max_workers=2 * self.workers)

    def identities(self, kit: str) -> list[dict]:
        return [kit_identity(kit)]  # the server reads the kit at the path named, on this machine

    def submit(self, kit: str, name: str, data: bytes):
        return self._threads.submit(self.remote.judge, kit, name, data)

    def close(self) -> None:
        self._threads.shutdown(wait=True, cancel_futures=True)


# -- the batch ------------------------------------------------------------------------------------


def documents(folder: Path) -> Iterator[Path]:
    """The ``.xml`` files of ``folder`` in name order, hidden ones aside (as a scenario over the
    folder reads them: ``*.xml``)."""
    names = sorted(e.name for e in os.scandir(folder) if e.name.endswith(".xml") and not e.name.startswith(".") and e.is_file())
    for name in names:
        yield folder / name


def read_done(results: Path) -> dict[str, dict]:
    """Each document's last complete line of ``results.jsonl`` (a line cut by an interruption is
    dropped from the file, so that what follows is appended after whole lines)."""
    done: dict[str, dict] = {}
    if not results.exists():
        return done
    good = 0
    with results.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                line = json.loads(raw)
                done[str(line["document"])] = line
            except (ValueError, KeyError, TypeError):
                break
            good += len(raw)
    if good != results.stat().st_size:
        with results.open("rb+") as fh:
            fh.truncate(good)
    return done


class Progress:
    """One line on the terminal (rewritten in place), or a line every ``every`` seconds otherwise."""

    def __init__(self, total: int, done: int, lang: str, out=None, every: float = 10.0) -> None:
        self.total, self.done, self.lang = total, done, lang
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.started = time.monotonic()
        self.new = 0
        self.verdicts: dict[str, int] = {}
        self.every = 1.0 if self.tty else every
        self._last = 0.0

    def update(self, verdict: str) -> None:
        self.done += 1
        self.new += 1
        self.verdicts[verdict] = self.verdicts.get(verdict, 0) + 1
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.show()

    def show(self, end: bool = False) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.new / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0
        counts = " · ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()))
        text = M("batch.progress", done=self.done, total=self.total, rate=f"{rate:.1f}", left=f"{left / 60:.1f}", counts=counts or "-").render(self.lang)
        if self.tty:
            self.out.write("\r" + text + ("\n" if end else ""))
        else:
            self.out.write(text + "\n")
        self.out.flush()


def run_batch(*, folder: Path, work: Path, kit: str, target, evidence_dir: Path, workers: int = 2, dask: str | None = None,
              lang: str = "fr", keep: bool = False, out=None, dask_connect: float = DASK_CONNECT,
              server: bool = False, pool_factory: Callable[[], Any] | None = None) -> dict:
    """Judge every document of ``folder`` not judged yet in ``work``, then seal; what was done."""
    out = out or sys.stderr
    run = RecordedRun(work, ["cda-kit"], target, evidence_dir=evidence_dir, lang=lang)
    results = work / RESULTS
    # what was judged whole stays judged; a document refused or not judged (a worker's failure) is tried again
    done = {name: line for name, line in read_done(results).items() if line.get("results") and _kept_whole(run, line)}
    paths = list(documents(folder))
    if not paths:  # nothing to judge proves nothing: said, before anything is sealed
        raise HarnessError(M("batch.empty", folder=str(folder)))
    todo = [p for p in paths if p.name not in done or done[p.name].get("sha256") != _sha256_of(p)]
    if run.resumed or done:
        print(M("batch.resumed", done=len(paths) - len(todo), total=len(paths), work=str(work)).render(lang), file=out)
    pool = pool_factory() if pool_factory else (DaskPool(dask, dask_connect) if dask else _server_pool(lang, out) if server else None) \
        or LocalPool(workers)
    started = time.monotonic()
    progress = Progress(len(paths), len(paths) - len(todo), lang, out)
    new = 0
    try:
        if todo:
            _same_kit(pool, kit, lang)
        window = 2 * max(1, pool.workers)
        pending: dict[Any, Path] = {}
        queue = iter(todo)
        with results.open("ab") as fh:
            while True:
                while len(pending) < window:
                    path = next(queue, None)
                    if path is None:
                        break
                    line = _refused(path)
                    if line is not None:
                        _write(fh, line)
                        new += 1
                        progress.update(line["verdict"])
                        continue
                    pending[pool.submit(kit, path.name, path.read_bytes())] = path
                if not pending:
                    break
                finished, _ = wait(set(pending), timeout=TASK_DEADLINE, return_when=FIRST_COMPLETED)
                if not finished:
                    raise HarnessError(M("batch.stalled", seconds=int(TASK_DEADLINE)))
                for fut in finished:
                    path = pending.pop(fut)
                    try:
                        answer = fut.result()
                    except Exception as exc:  # the worker itself died (a crash of the engine, killed): what was judged is kept
                        raise HarnessError(M("batch.worker_died", name=path.name, error=f"{type(exc).__name__}: {exc}"[:300])) from None
                    line = _kept(run, answer) if "error" not in answer else _failed(path, answer["error"])
                    _write(fh, line)
                    new += 1
                    progress.update(line["verdict"])
        progress.show(end=True)
    finally:
        pool.close()
    judged_seconds = time.monotonic() - started
    sealed = _seal(run, work, paths, lang, keep, {"workers": pool.workers, "executor": pool.name, "documents": len(paths)})
    lines = evidence_dir / f"{run.run_id}.documents.jsonl"  # each document's line, beside its bundle
    if keep:
        import shutil

        shutil.copyfile(results, lines)
    else:
        os.replace(results, lines)
        (work / "target.toml").unlink(missing_ok=True)
        try:
            work.rmdir()
        except OSError:
            pass
    return {"lines": lines, "new": new, "run_id": run.run_id, "bundle": sealed.path, "manifest": sealed.manifest,
            "seconds": judged_seconds, "documents": len(paths)}


def _kept_whole(run: RecordedRun, line: dict) -> bool:
    """Whether every artefact a results line names is in the store at its size: a line that
    reached the disk before its artefacts did (a power cut; nothing here waits for the disk)
    is judged again."""
    for digest, size, _media, _label in (line.get("inputs") or {}).values():
        try:
            if run.store.path(digest).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _server_pool(lang: str, out) -> "ServerPool | None":
    """The running kit server of this very harness, when there is one; else None (local processes)."""
    from .remote import RemoteKit

    remote = RemoteKit.find()
    if remote is None:
        return None
    pool = ServerPool(remote)
    print(M("batch.through_server", url=remote.url, workers=pool.workers).render(lang), file=out)
    return pool


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _same_kit(pool, kit: str, lang: str) -> None:
    """Every worker sees the kit this command names, with the same content: else nothing starts."""
    from harness import core_version

    from .kit import Kit

    mine = Kit(Path(kit), core_version()).sha256
    for said in pool.identities(kit):
        if said.get("sha256") != mine:
            reason = Text.of(said["error"]).render(lang) if "error" in said else said.get("sha256", "-")[:16]
            raise HarnessError(M("batch.worker_kit", worker=str(said.get("worker", said.get("pid", "?"))), reason=reason, kit=kit))


def _refused(path: Path) -> dict | None:
    """A line for a document the batch does not send (over the size limit), else None."""
    size = path.stat().st_size
    if size <= MAX_FILE:
        return None
    reason = M("batch.too_large", size=size, limit=MAX_FILE).texts()
    return {"document": path.name, "sha256": _sha256_of(path), "verdict": "ERROR", "seconds": 0, "inputs": {}, "collectors": {},
            "results": {}, "refused": [{"item": path.name, "reason": reason}]}


def _failed(path: Path, error: dict) -> dict:
    """A document its worker could not judge: refused, so that the scenarios end in ERROR (what
    was not judged cannot have passed), with the reason."""
    reason = M("batch.not_judged", reason=Text.of(error)).texts()
    return {"document": path.name, "sha256": _sha256_of(path), "verdict": "ERROR", "seconds": 0, "inputs": {}, "collectors": {},
            "results": {}, "refused": [{"item": path.name, "reason": reason}]}


def _kept(run: RecordedRun, answer: dict) -> dict:
    """The worker's answer recorded in the run's store; its results line (artefacts as recorded)."""
    summary, blobs = answer["summary"], answer["blobs"]
    inputs = {}
    for name, (digest, _size, media_type, label) in summary["inputs"].items():
        art = run.record(blobs[digest], media_type=media_type, label=label)
        inputs[name] = [art.sha256, art.size, art.media_type, art.label]
    return dict(summary, inputs=inputs)


def _write(fh, line: dict) -> None:
    fh.write(json.dumps(line, ensure_ascii=False, sort_keys=True).encode("utf-8") + b"\n")
    fh.flush()


def _seal(run: RecordedRun, work: Path, paths: list[Path], lang: str, keep: bool, options: dict):
    """Each collector's outputs over the archive (the documents still in the folder, each by its
    last line), the volets' descriptions merged as one scenario over the folder records them."""
    present = {p.name for p in paths}
    outputs: dict[str, dict[str, Artefact]] = {c: {} for c in COLLECTORS}
    refused: dict[str, list] = {}
    volets: dict[str, Any] = {}
    for name, line in sorted(read_done(work / RESULTS).items()):
        if name not in present:
            continue
        for r in line.get("refused") or []:
            refused.setdefault("cda.documents", []).append((r["item"], Text.of(r["reason"])))
        for collector, names in (line.get("collectors") or {}).items():
            for input_name in names:
                digest, size, media_type, label = line["inputs"][input_name]
                if input_name == "sch/volets":
                    volets.update(json.loads(run.store.get(digest)))
                    continue
                outputs.setdefault(collector, {})[input_name] = Artefact(digest, size, media_type, label)
    if any(outputs.values()):
        outputs["cda.svrl.volets"]["sch/volets"] = run.record(json.dumps(volets, ensure_ascii=False, sort_keys=True).encode("utf-8"),
                                                               media_type="application/json", label="cda.schematron:volets")
    return run.seal({c: o for c, o in outputs.items() if o}, refused=refused, options=options, keep=keep)

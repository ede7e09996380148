"""What happens during a run, as it happens: scenario started, step started, artefact
recorded, finding made, scenario ended.

Every process of a run (the controller and each pytest-xdist worker) appends JSON lines to a
file of its own in the run's staging folder (``events/<pid>.jsonl``); the controller's
:class:`EventHub` reads them all, for the terminal's progress line on long runs and for the
live view (``--live``). An event carries what the bundle will carry (labels, hashes,
findings already masked, never a secret), and nothing depends on it: the bundle is built
from the results, not from the events.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

EVENTS = "events"
MAX_EVENTS = 200_000  # kept in memory by the controller; later ones are counted, not kept


class EventLog:
    """One process's append-only event file."""

    def __init__(self, staging: Path) -> None:
        folder = Path(staging) / EVENTS
        folder.mkdir(parents=True, exist_ok=True)
        self._fh = open(folder / f"{os.getpid()}.jsonl", "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def emit(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": round(time.time(), 3), "kind": kind, "pid": os.getpid(), **fields}, ensure_ascii=False)
        with self._lock:
            try:
                self._fh.write(line + "\n")
            except (OSError, ValueError):  # the staging folder is gone (sealed): nothing more to say
                pass

    def close(self) -> None:
        with self._lock:
            self._fh.close()


class EventHub:
    """The controller's view of the run: every process's events, in order of arrival, and
    what runs now. ``poll`` reads what the files gained since the last call."""

    def __init__(self, staging: Path, total: int) -> None:
        self.folder = Path(staging) / EVENTS
        self.total = total
        self.events: list[dict] = []
        self.dropped = 0
        self.done: dict[str, str] = {}  # scenario -> verdict
        self.running: dict[int, dict] = {}  # pid -> {"scenario", "step", "since"}
        self.finished: dict | None = None  # set at the end: bundle, verdicts
        self.images: dict[str, str] = {}  # digest -> media type of every image recorded (the live view serves these only)
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, str] = {}
        self._lock = threading.Lock()
        self.listeners: list[Callable[[], None]] = []

    def poll(self) -> int:
        new = []
        with self._lock:
            files = sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []
            for path in files:
                try:
                    with open(path, encoding="utf-8") as fh:
                        fh.seek(self._offsets.get(path, 0))
                        chunk = fh.read(4 * 1024 * 1024)
                        self._offsets[path] = fh.tell()
                except OSError:
                    continue
                text = self._partial.pop(path, "") + chunk
                lines = text.split("\n")
                if lines and lines[-1]:
                    self._partial[path] = lines[-1]  # a line still being written
                for line in lines[:-1]:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(event, dict):
                        new.append(event)
            new.sort(key=lambda e: e.get("t", 0))
            for event in new:
                self._track(event)
                if len(self.events) < MAX_EVENTS:
                    self.events.append(event)
                else:
                    self.dropped += 1
        return len(new)

    def _track(self, event: dict) -> None:
        kind, pid = event.get("kind"), event.get("pid", 0)
        if kind == "scenario.start":
            self.running[pid] = {"scenario": event.get("scenario"), "step": "", "step_kind": "", "since": event.get("t", time.time())}
        elif kind == "step.start" and pid in self.running:
            self.running[pid].update(step=str(event.get("name")), step_kind=str(event.get("step_kind")), since=event.get("t", time.time()))
        elif kind == "artefact" and str(event.get("media_type", "")).startswith("image/"):
            self.images[str(event.get("sha256"))] = str(event["media_type"])
        elif kind == "scenario.end":
            self.done[str(event.get("scenario"))] = str(event.get("verdict"))
            self.running.pop(pid, None)

    def since(self, index: int) -> list[dict]:
        with self._lock:
            return self.events[index:]

    def finish(self, summary: dict) -> None:
        self.poll()
        with self._lock:
            self.finished = summary
            self.running.clear()


class Poller:
    """Polls a hub in a daemon thread, and calls ``tick`` after each poll."""

    def __init__(self, hub: EventHub, tick: Callable[[], None] | None = None, interval: float = 0.5) -> None:
        self.hub = hub
        self.tick = tick
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harness-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.hub.poll()
                if self.tick is not None:
                    self.tick()
            except Exception:  # progress is a courtesy: it never breaks a run
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Progress:
    """A line on the terminal when a step has run for a while: scenarios done of the total,
    and what each process is doing. Written to a copy of the terminal's file descriptor
    taken before pytest captures output, so it shows while a scenario runs."""

    def __init__(self, hub: EventHub, render: Callable[[int, int, list[tuple[str, str, str, float]]], str], fd: int,
                 after: float = 10.0, every: float = 10.0) -> None:
        self.hub = hub
        self.render = render
        self.fd = fd
        self.after = after
        self.every = every
        self.last = 0.0
        self.lines = 0

    def tick(self) -> None:
        now = time.time()
        running = [(r["scenario"], r["step_kind"], r["step"], now - r["since"]) for r in list(self.hub.running.values())]
        if not running or max(r[-1] for r in running) < self.after or now - self.last < self.every:
            return
        self.last = now
        text = self.render(len(self.hub.done), self.hub.total, running)
        try:
            os.write(self.fd, ("\n" + text + "\n").encode("utf-8", "replace"))
            self.lines += 1
        except OSError:
            pass

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass

"""The persistent job store: jobs, their events and server options in one SQLite file (WAL mode).

A job is committed before the API answers, every state change commits together with the event that
announces it, and `recover()` puts jobs that were running when the process died back in the queue.
States: queued → running → done | failed | cancelled | interrupted (a cancelled queued job never runs).
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
TERMINAL = frozenset({"done", "failed", "cancelled", "interrupted"})
KINDS = ("native", "a1111", "openai_image", "openai_video")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    model TEXT,
    model_path TEXT,
    request TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    progress TEXT,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    bypassed INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, priority, seq);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (job_id, n)
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class Job:
    id: str
    seq: int
    kind: str
    state: str
    priority: int
    model: str | None
    model_path: str | None
    request: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    bypassed: int = 0
    cancel_requested: bool = False
    created: float = 0.0
    started: float | None = None
    finished: float | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


def _row_to_job(row: sqlite3.Row) -> Job:
    return Job(id=row["id"], seq=row["seq"], kind=row["kind"], state=row["state"], priority=row["priority"],
               model=row["model"], model_path=row["model_path"], request=json.loads(row["request"]),
               meta=json.loads(row["meta"] or "{}"), progress=_loads(row["progress"]), result=_loads(row["result"]),
               error=_loads(row["error"]), attempts=row["attempts"], bypassed=row["bypassed"],
               cancel_requested=bool(row["cancel_requested"]), created=row["created"], started=row["started"],
               finished=row["finished"])


class JobStore:
    """Thread-safe access to the job database (one connection guarded by a lock; each call commits)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        # WAL + NORMAL: a commit survives a crash of the process (what a restart is); see docs/api.md
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions --------------------------------------------------------------------------
    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self_inner) -> sqlite3.Connection:
                store._lock.acquire()
                store._db.execute("BEGIN IMMEDIATE")
                return store._db

            def __exit__(self_inner, exc_type, exc, tb) -> None:
                try:
                    store._db.execute("ROLLBACK" if exc_type else "COMMIT")
                finally:
                    store._lock.release()

        return _Tx()

    def _event(self, db: sqlite3.Connection, job_id: str, kind: str, data: dict[str, Any]) -> int:
        row = db.execute("SELECT COALESCE(MAX(n), 0) FROM events WHERE job_id=?", (job_id,)).fetchone()
        n = int(row[0]) + 1
        db.execute("INSERT INTO events(job_id, n, kind, data, ts) VALUES (?,?,?,?,?)",
                   (job_id, n, kind, _dumps(data), time.time()))
        return n

    # -- jobs ----------------------------------------------------------------------------------
    def create(self, request: dict[str, Any], *, kind: str = "native", priority: int = 0, model: str | None = None,
               model_path: str | None = None, meta: dict[str, Any] | None = None) -> Job:
        """Persist a new queued job (and its "queued" event) and return it."""
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT INTO jobs(id, kind, state, priority, model, model_path, request, meta, created) "
                       "VALUES (?,?,?,?,?,?,?,?,?)",
                       (job_id, kind, "queued", int(priority), model, model_path, _dumps(request),
                        _dumps(meta or {}), now))
            self._event(db, job_id, "queued", {"id": job_id, "state": "queued", "model": model})
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (str(job_id),)).fetchone()
        return _row_to_job(row) if row else None

    def list(self, *, states: Iterable[str] | None = None, kind: str | None = None, limit: int = 100,
             offset: int = 0, newest_first: bool = True) -> list[Job]:
        sql, args = "SELECT * FROM jobs WHERE 1=1", []
        states = list(states or [])
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += states
        if kind:
            sql += " AND kind=?"
            args.append(kind)
        sql += f" ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ? OFFSET ?"
        args += [int(limit), int(offset)]
        with self._lock:
            return [_row_to_job(r) for r in self._db.execute(sql, args).fetchall()]

    def queued(self) -> list[Job]:
        """Queued jobs in queue order: higher priority first, then submission order."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE state='queued' ORDER BY priority DESC, seq ASC")
            return [_row_to_job(r) for r in rows.fetchall()]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        with self._lock:
            for row in self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                out[row[0]] = row[1]
        return out

    def position(self, job: Job) -> int | None:
        """0-based place of a queued job in the queue (before the loaded-model rule), else None."""
        if job.state != "queued":
            return None
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state='queued' AND "
                                   "(priority > ? OR (priority = ? AND seq < ?))",
                                   (job.priority, job.priority, job.seq)).fetchone()
        return int(row[0])

    def claim(self, job_id: str, bypassed: Iterable[str] = ()) -> Job | None:
        """Mark a queued job running (None if it is no longer queued); count the jobs it went ahead of."""
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET state='running', started=?, attempts=attempts+1, progress=NULL "
                             "WHERE id=? AND state='queued'", (time.time(), job_id))
            if cur.rowcount != 1:
                return None
            for other in bypassed:
                db.execute("UPDATE jobs SET bypassed=bypassed+1 WHERE id=? AND state='queued'", (other,))
            self._event(db, job_id, "started", {"id": job_id, "state": "running"})
        return self.get(job_id)

    def progress(self, job_id: str, kind: str, data: dict[str, Any]) -> int:
        """Record an event of a running job; a "progress" event also becomes the job's current progress."""
        with self._tx() as db:
            if kind == "progress":
                db.execute("UPDATE jobs SET progress=? WHERE id=?", (_dumps(data), job_id))
            return self._event(db, job_id, kind, data)

    def add_event(self, job_id: str, kind: str, data: dict[str, Any]) -> int:
        with self._tx() as db:
            return self._event(db, job_id, kind, data)

    def finish(self, job_id: str, state: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, attempt: int | None = None) -> Job | None:
        """End a running job in a terminal state with its result or error, and its closing event. With `attempt`,
        only that run of the job may end it (an earlier run that comes back late changes nothing)."""
        if state not in TERMINAL:
            raise ValueError(f"not a terminal state: {state!r}")
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET state=?, result=?, error=?, finished=? WHERE id=? AND state='running' "
                             "AND (? IS NULL OR attempts=?)",
                             (state, None if result is None else _dumps(result),
                              None if error is None else _dumps(error), time.time(), job_id, attempt, attempt))
            if cur.rowcount != 1:
                return None
            kind = {"done": "result", "failed": "error"}.get(state, state)
            data: dict[str, Any] = {"id": job_id, "state": state}
            if error is not None:
                data["error"] = error
            if result is not None:
                data["result"] = result
            self._event(db, job_id, kind, data)
        return self.get(job_id)

    def requeue(self, job_id: str, reason: str, *, attempt: int | None = None) -> bool:
        """Put a running job back in the queue (shutdown, restart, or its worker died), keeping its place;
        with `attempt`, only if that run is still the job's latest."""
        with self._tx() as db:
            cur = db.execute("UPDATE jobs SET state='queued', started=NULL, progress=NULL WHERE id=? "
                             "AND state='running' AND (? IS NULL OR attempts=?)", (job_id, attempt, attempt))
            if cur.rowcount != 1:
                return False
            self._event(db, job_id, "requeued", {"id": job_id, "state": "queued", "reason": reason})
        return True

    def cancel(self, job_id: str) -> str | None:
        """Cancel: a queued job becomes cancelled now; a running one is flagged (the worker stops it).
        Returns the state before the call, or None for an unknown job."""
        with self._tx() as db:
            row = db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return None
            state = row[0]
            if state == "queued":
                db.execute("UPDATE jobs SET state='cancelled', finished=? WHERE id=?", (time.time(), job_id))
                self._event(db, job_id, "cancelled", {"id": job_id, "state": "cancelled"})
            elif state == "running":
                db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
                self._event(db, job_id, "cancelling", {"id": job_id, "state": "running"})
            return state

    def recover(self, *, max_attempts: int = 3) -> tuple[list[str], list[str]]:
        """At start-up: jobs left running by a dead process are re-queued (cancel-flagged ones become
        cancelled; ones that already started `max_attempts` times fail, so a job that kills the
        process cannot loop forever). Returns (requeued ids, ended ids)."""
        requeued, ended = [], []
        with self._tx() as db:
            rows = db.execute("SELECT id, attempts, cancel_requested FROM jobs WHERE state='running'").fetchall()
            now = time.time()
            for row in rows:
                job_id = row["id"]
                if row["cancel_requested"]:
                    db.execute("UPDATE jobs SET state='cancelled', finished=? WHERE id=?", (now, job_id))
                    self._event(db, job_id, "cancelled", {"id": job_id, "state": "cancelled"})
                    ended.append(job_id)
                elif row["attempts"] >= max_attempts:
                    error = {"error": "restart_limit", "message": f"the server stopped while running this job "
                             f"{row['attempts']} times; not retrying"}
                    db.execute("UPDATE jobs SET state='failed', error=?, finished=? WHERE id=?",
                               (_dumps(error), now, job_id))
                    self._event(db, job_id, "error", {"id": job_id, "state": "failed", "error": error})
                    ended.append(job_id)
                else:
                    db.execute("UPDATE jobs SET state='queued', started=NULL, progress=NULL WHERE id=?", (job_id,))
                    self._event(db, job_id, "requeued", {"id": job_id, "state": "queued",
                                                         "reason": "server restarted while it ran"})
                    requeued.append(job_id)
        return requeued, ended

    # -- events --------------------------------------------------------------------------------
    def events(self, job_id: str, *, after: int = 0, limit: int = 1000) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("SELECT n, kind, data FROM events WHERE job_id=? AND n>? ORDER BY n LIMIT ?",
                                    (job_id, int(after), int(limit))).fetchall()
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    # -- options (key/value) -------------------------------------------------------------------
    def get_value(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM kv WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_value(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO kv(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                       (key, _dumps(value)))

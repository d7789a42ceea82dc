"""The persistent job queue: SQLite store, queue order rule, the workers that run jobs and the dispatcher that
hands jobs to them (one worker per device, or Ray Serve replicas behind the same interface)."""
from .executor import Executor, LocalExecutor, WorkerLost
from .pool import WorkerPool, choose_worker
from .queue import JobQueue, Notifier, choose_next
from .store import STATES, TERMINAL, Job, JobStore
from .worker import Worker

__all__ = ["Executor", "Job", "JobQueue", "JobStore", "LocalExecutor", "Notifier", "STATES", "TERMINAL", "Worker",
           "WorkerLost", "WorkerPool", "choose_next", "choose_worker"]

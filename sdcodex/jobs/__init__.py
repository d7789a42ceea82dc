"""The persistent job queue: SQLite store, queue order rule, and the worker that runs jobs in order."""
from .queue import JobQueue, Notifier, choose_next
from .store import STATES, TERMINAL, Job, JobStore
from .worker import Worker

__all__ = ["Job", "JobQueue", "JobStore", "Notifier", "STATES", "TERMINAL", "Worker", "choose_next"]

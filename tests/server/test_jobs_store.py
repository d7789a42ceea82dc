"""The job store and queue rule without a server: persistence, order, the loaded-model rule, recovery."""
from __future__ import annotations

from sdcodex.jobs import JobQueue, JobStore, choose_next


def _store(tmp_path):
    return JobStore(tmp_path / "jobs.sqlite")


def test_job_survives_reopen_and_events_are_ordered(tmp_path):
    store = _store(tmp_path)
    job = store.create({"task": "txt2img", "prompt": "p"}, model="a", model_path="/m/a")
    store.claim(job.id)
    store.progress(job.id, "progress", {"step": 1})
    store.finish(job.id, "done", result={"images": ["x.png"]})
    store.close()

    again = JobStore(tmp_path / "jobs.sqlite")
    got = again.get(job.id)
    assert got.state == "done" and got.request == {"task": "txt2img", "prompt": "p"}
    assert got.result == {"images": ["x.png"]} and got.progress == {"step": 1}
    assert [(n, k) for n, k, _ in again.events(job.id)] == [(1, "queued"), (2, "started"), (3, "progress"),
                                                            (4, "result")]
    assert [n for n, _, _ in again.events(job.id, after=2)] == [3, 4]


def test_queue_order_priority_then_submission(tmp_path):
    q = JobQueue(_store(tmp_path))
    a = q.submit({"task": "txt2img"}, model="a", model_path="/m/a")
    b = q.submit({"task": "txt2img"}, model="a", model_path="/m/a")
    c = q.submit({"task": "txt2img"}, model="a", model_path="/m/a", priority=5)
    order = [q.next_job({"/m/a"}).id for _ in range(3)]
    assert order == [c.id, a.id, b.id]
    assert q.next_job() is None


def test_loaded_model_goes_first_among_equals(tmp_path):
    q = JobQueue(_store(tmp_path))
    a1 = q.submit({}, model="a", model_path="/m/a")
    b1 = q.submit({}, model="b", model_path="/m/b")
    a2 = q.submit({}, model="a", model_path="/m/a")
    # b is loaded: b1 goes ahead of a1; then a1 (nothing loaded matches, oldest first)
    assert q.next_job({"/m/b"}).id == b1.id
    assert q.next_job({"/m/b"}).id == a1.id
    assert q.next_job({"/m/a"}).id == a2.id


def test_loaded_model_rule_never_jumps_a_higher_priority(tmp_path):
    q = JobQueue(_store(tmp_path))
    hi = q.submit({}, model="a", model_path="/m/a", priority=1)
    q.submit({}, model="b", model_path="/m/b")
    assert q.next_job({"/m/b"}).id == hi.id


def test_bypassed_job_runs_after_max_bypass(tmp_path):
    q = JobQueue(_store(tmp_path), max_bypass=2)
    old = q.submit({}, model="a", model_path="/m/a")
    for _ in range(4):
        q.submit({}, model="b", model_path="/m/b")
    order = [q.next_job({"/m/b"}).model for _ in range(5)]
    assert order == ["b", "b", "a", "b", "b"]  # passed over twice, then it runs
    assert q.store.get(old.id).bypassed == 2


def test_choose_next_no_model_needed_counts_as_ready(tmp_path):
    store = _store(tmp_path)
    a = store.create({}, model="a", model_path="/m/a")
    up = store.create({"task": "upscale"})
    job, passed = choose_next(store.queued(), {"/m/other"})
    assert job.id == up.id and passed == [a.id]


def test_recover_requeues_running_and_limits_attempts(tmp_path):
    store = _store(tmp_path)
    ran = store.create({})
    store.claim(ran.id)
    flagged = store.create({})
    store.claim(flagged.id)
    store.cancel(flagged.id)
    requeued, ended = store.recover(max_attempts=3)
    assert requeued == [ran.id] and ended == [flagged.id]
    assert store.get(ran.id).state == "queued" and store.get(flagged.id).state == "cancelled"
    assert [k for _, k, _ in store.events(ran.id)][-1] == "requeued"
    for _ in range(2):
        store.claim(ran.id)
        store.recover(max_attempts=3)
    got = store.get(ran.id)
    assert got.state == "failed" and got.error["error"] == "restart_limit"


def test_cancel_queued_and_running(tmp_path):
    q = JobQueue(_store(tmp_path))
    called = []
    q.on_cancel(called.append)
    queued = q.submit({})
    running = q.submit({})
    assert q.cancel(queued.id) == "queued"
    assert q.store.get(queued.id).state == "cancelled"
    assert q.next_job().id == running.id
    assert q.cancel(running.id) == "running" and called == [running.id]
    assert q.store.get(running.id).cancel_requested
    assert q.cancel("nope") is None


def test_options_round_trip(tmp_path):
    store = _store(tmp_path)
    assert store.get_value("k", {"d": 1}) == {"d": 1}
    store.set_value("k", {"a": [1, 2]})
    store.set_value("k", {"a": [3]})
    assert store.get_value("k") == {"a": [3]}

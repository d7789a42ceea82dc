"""Several workers in one server (`--devices cpu,cpu`): two jobs run at the same time, a job goes to the worker
that holds its model, and interrupt, cancel and previews reach whichever worker runs a job."""
from __future__ import annotations


import pytest

from sdcodex.jobs import choose_worker

from .live import TINY, live_server, wait_job, wait_until


class _Fake:
    def __init__(self, name: str, loaded: set[str], recency: float) -> None:
        self.name, self._loaded, self._recency = name, loaded, recency

    def loaded(self) -> set[str]:
        return self._loaded

    def recency(self) -> float:
        return self._recency


def test_choose_worker_prefers_the_holder_then_the_least_recently_used():
    a, b, c = _Fake("a", {"/m/x"}, 30.0), _Fake("b", {"/m/y"}, 10.0), _Fake("c", {"/m/z"}, 20.0)
    assert choose_worker([a, b, c], "/m/z") is c           # holds the model
    assert choose_worker([a, b, c], "/m/new") is b         # its models were used least recently
    assert choose_worker([a, b, c], None) is b             # a job without a model: the same rule
    empty = _Fake("d", set(), 0.0)
    assert choose_worker([a, empty], "/m/new") is empty    # a worker holding nothing goes first


def _server(models_dir, tmp_path, **kw):
    from sdcodex.runtime import LocalModels

    # a fresh model provider: the workers start empty, so which worker gets which job is known
    return live_server(models=LocalModels(models_dir), outdir=str(tmp_path / "outputs"),
                       db_path=str(tmp_path / "jobs.sqlite"), devices=["cpu", "cpu"], max_steps=500, **kw)


def _job(client, model: str, **kw) -> dict:
    r = client.post("/api/v1/jobs", json={"task": "txt2img", "prompt": "a lighthouse", "model": model, **TINY, **kw})
    assert r.status_code == 202, r.text
    return r.json()


def _events(server, job_id: str) -> list[tuple[str, dict, float]]:
    store = server.service.store
    with store._lock:  # the event times are not in the API; read them beside it
        rows = store._db.execute("SELECT kind, data, ts FROM events WHERE job_id=? ORDER BY n", (job_id,)).fetchall()
    import json

    return [(k, json.loads(d), ts) for k, d, ts in rows]


def test_two_cpu_workers_run_two_jobs_at_once_and_interrupt_reaches_the_second(scale_models_dir, tmp_path):
    with _server(scale_models_dir, tmp_path) as server, server.client() as client:
        client.post("/sdapi/v1/options", json={"show_progress_every_n_steps": 1})
        first = _job(client, "m1", steps=400)
        wait_until(lambda: client.get(f"/api/v1/jobs/{first['id']}").json()["progress"], what="first job's progress")
        second = _job(client, "m2", steps=400)
        wait_until(lambda: client.get(f"/api/v1/jobs/{second['id']}").json()["progress"], what="second job's progress")

        def done(job):
            return (client.get(f"/api/v1/jobs/{job['id']}").json()["progress"] or {}).get("done", 0)

        # both make steps side by side: the first one steps after the second began, then the second steps again
        # (on a loaded 2-core machine a worker process can be starved for a while, so wait for it, do not assume)
        first_then = done(first)
        wait_until(lambda: done(first) > first_then, what="the first job to step while the second runs")
        second_then = done(second)
        wait_until(lambda: done(second) > second_then, what="the second job to step again")
        listing = client.get("/api/v1/workers").json()
        assert listing["backend"] == "local"
        by_job = {w["job"]: w for w in listing["workers"]}
        assert set(by_job) == {first["id"], second["id"]}           # both running now, one per worker
        assert by_job[first["id"]]["id"] != by_job[second["id"]]["id"]
        assert all(w["device"] == "cpu" and w["pid"] and w["node"] for w in listing["workers"])
        # the live preview of the job on the second worker
        r = client.get(f"/api/v1/jobs/{second['id']}/preview")
        assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
        # interrupt the job on the second worker: the first one goes on
        r = client.post(f"/api/v1/jobs/{second['id']}/cancel")
        assert r.status_code == 200
        ended = wait_job(client, second["id"])
        assert ended["state"] == "cancelled"
        assert client.get(f"/api/v1/jobs/{first['id']}").json()["state"] == "running"
        after = client.get(f"/api/v1/jobs/{first['id']}").json()["progress"]["done"]
        wait_until(lambda: client.get(f"/api/v1/jobs/{first['id']}").json()["progress"]["done"] > after,
              what="the first job to go on")
        assert client.post("/sdapi/v1/interrupt").json()["interrupted"] == first["id"]
        assert wait_job(client, first["id"])["state"] == "interrupted"
        # overlap, from the recorded events: the second job made steps while the first one was making steps
        ev1, ev2 = _events(server, first["id"]), _events(server, second["id"])
        steps1 = [ts for k, _, ts in ev1 if k == "progress"]
        steps2 = [ts for k, _, ts in ev2 if k == "progress"]
        assert steps1[0] < steps2[0] < steps2[-1] < steps1[-1]
        assert any(steps2[0] < t < steps2[-1] for t in steps1)


def test_a_job_goes_to_the_worker_that_holds_its_model(scale_models_dir, tmp_path):
    with _server(scale_models_dir, tmp_path) as server, server.client() as client:
        workers = {}
        for model in ("m1", "m2", "m1", "m2", "m1"):
            job = wait_job(client, _job(client, model)["id"])
            assert job["state"] == "done", job
            workers.setdefault(model, set()).add(job["result"]["info"]["worker"])
        # m1 went to the first idle worker; m2 to the other one (its models were used least recently); after
        # that each model's jobs stay with the worker that holds it
        assert workers == {"m1": {"worker-0"}, "m2": {"worker-1"}}
        listing = {w["id"]: w for w in client.get("/api/v1/workers").json()["workers"]}
        assert [p.split("/")[-1] for p in listing["worker-0"]["models"]] == ["m1"]
        assert [p.split("/")[-1] for p in listing["worker-1"]["models"]] == ["m2"]
        assert listing["worker-0"]["job"] is None and listing["worker-1"]["job"] is None


def test_devices_flag_names_the_field_when_wrong():
    from sdcodex.core.errors import ValidationError
    from sdcodex.runtime import parse_devices

    assert parse_devices("cpu, cpu") == ["cpu", "cpu"] and parse_devices(["cuda:0", "cuda:1"]) == ["cuda:0", "cuda:1"]
    assert parse_devices("auto")  # every CUDA device, else one CPU worker
    for bad in ("", "gpu0"):
        with pytest.raises(ValidationError) as err:
            parse_devices(bad)
        assert err.value.field == "devices"

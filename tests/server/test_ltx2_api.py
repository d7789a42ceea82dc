"""LTX-2 through the native and OpenAI-style video APIs of a live server: the MP4 served back carries the sound
track (AAC) beside the frames, `audio: false` leaves it out, and OpenAI `seconds` counts frames at the engine's own
frame rate (24 fps for LTX-2) before rounding up to its 8k+1 rule."""
from __future__ import annotations

import io
import time

import av
import pytest

from sdcodex.runtime import LocalModels

from .live import live_server, wait_job

DEMO = "ltx2-demo"


@pytest.fixture(scope="module")
def ltx2_server(tmp_path_factory):
    from sdcodex.models.demo import build_demo_models

    root = tmp_path_factory.mktemp("ltx2-server")
    build_demo_models(root / "models" / "demo", families=("ltx2",))
    with live_server(models=LocalModels(root / "models"), outdir=str(root / "outputs"),
                     db_path=str(root / "jobs.sqlite"), device="cpu") as srv:
        yield srv


def _streams(data: bytes) -> dict[str, tuple]:
    with av.open(io.BytesIO(data)) as container:
        out = {s.type: (s.codec_context.name, getattr(s.codec_context, "sample_rate", None)) for s in container.streams}
        out["frames"] = sum(1 for _ in container.decode(container.streams.video[0]))
    return out


def test_native_jobs_serve_the_sound_track(ltx2_server):
    base = {"task": "txt2vid", "model": DEMO, "prompt": "a drum solo", "width": 32, "height": 32, "num_frames": 9,
            "steps": 2, "seed": 4}
    with ltx2_server.client() as client:
        jobs = [client.post("/api/v1/jobs", json={**base, **extra}) for extra in ({}, {"audio": False})]
        assert all(r.status_code == 202 for r in jobs), [r.text for r in jobs]
        done = [wait_job(client, r.json()["id"], timeout=180) for r in jobs]
        assert all(d["state"] == "done" for d in done), [d["error"] for d in done]
        files = [client.get(d["result"]["videos"][0]).content for d in done]
    loud, silent = (_streams(f) for f in files)
    assert loud["audio"] == ("aac", 16000) and loud["frames"] == 9
    assert "audio" not in silent and silent["frames"] == 9
    assert done[0]["result"]["info"]["audio"]["sample_rate"] == 16000 and done[1]["result"]["info"]["audio"] is None


def test_openai_video_seconds_at_the_engine_frame_rate(ltx2_server):
    with ltx2_server.client() as client:
        r = client.post("/v1/videos", json={"prompt": "rain on a roof", "model": DEMO, "size": "32x32",
                                            "seconds": "0.5", "steps": 2})
        assert r.status_code in (200, 202), r.text
        video_id = r.json()["id"]
        deadline = time.time() + 180
        while time.time() < deadline:
            obj = client.get(f"/v1/videos/{video_id}").json()
            if obj["status"] in ("completed", "failed"):
                break
            time.sleep(0.3)
        assert obj["status"] == "completed", obj
        found = _streams(client.get(f"/v1/videos/{video_id}/content").content)
    # 0.5 s x 24 fps = 12 -> 8k+1 = 17 (at 16 fps it would have been 8 -> 9)
    assert found["frames"] == 17 and found["audio"][0] == "aac"

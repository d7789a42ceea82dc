"""The outputs browser's API: outputs listed by task and date, newest first, in pages; a file's infotext and a
video's frames and FPS; delete to the trash and restore (to a free name when the old one was taken); every way
out of the outputs folder refused (`..`, absolute paths, encoded separators, links, the job database)."""
from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from sdcodex.media.images import save_image
from sdcodex.media.video import save_video

from .live import live_server


def _image(outdir: Path, task: str, date: str, name: str, prompt: str) -> None:
    path = outdir / task / date / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(Image.new("RGB", (16, 16), (200, 10, 10)), path, infotext=f"{prompt}\nSteps: 3, Seed: 1, Size: 16x16",
               request={"task": task, "prompt": prompt})


def test_outputs_listing_paging_trash_and_traversal(tmp_path, local_models):
    out = tmp_path / "outputs"
    for i in range(5):
        _image(out, "txt2img", "2026-11-30", f"{i:05d}-{i}.png", f"old {i}")
        time.sleep(0.01)
    _image(out, "img2img", "2026-12-01", "00000-9.png", "newest")
    _image(out, "txt2img-grids", "2026-12-01", "00000-1.png", "grid")
    frames = [Image.new("RGB", (16, 16), (i * 40, 0, 0)) for i in range(5)]
    save_video(frames, out / "txt2vid" / "2026-12-01" / "00000-3.gif", fps=5, fmt="gif",
               infotext="a wave\nSteps: 2, Seed: 3", request={"task": "txt2vid", "prompt": "a wave"})
    (out / "txt2img" / "2026-11-30" / "notes.txt").write_text("not media")
    (out / "txt2img" / "2026-11-30" / "00009-9.png").write_bytes(b"")  # a save in progress
    secret = tmp_path / "secret.png"
    _image(tmp_path, "x", "2026-01-01", "s.png", "secret")
    os.symlink(tmp_path / "x" / "2026-01-01" / "s.png", out / "txt2img" / "2026-11-30" / "00010-link.png")

    with live_server(models=local_models, outdir=str(out), db_path=str(tmp_path / "data" / "jobs.sqlite"),
                     device="cpu", start_worker=False) as srv, srv.client() as c:
        page1 = c.get("/api/v1/outputs", params={"per_page": 4}).json()
        assert page1["total"] == 8 and page1["pages"] == 2 and len(page1["items"]) == 4
        assert page1["items"][0]["date"] == "2026-12-01"
        assert set(page1["tasks"]) == {"txt2img", "img2img", "txt2vid", "txt2img-grids"}
        assert page1["dates"] == ["2026-12-01", "2026-11-30"]
        page2 = c.get("/api/v1/outputs", params={"per_page": 4, "page": 2}).json()
        names = [i["path"] for i in page1["items"] + page2["items"]]
        assert len(set(names)) == 8 and not any("notes" in n or "00009-9" in n for n in names)
        only = c.get("/api/v1/outputs", params={"task": "txt2img", "date": "2026-11-30"}).json()
        assert [i["name"] for i in only["items"]] == [f"{i:05d}-{i}.png" for i in reversed(range(5))]

        info = c.get("/api/v1/output-info/txt2img/2026-11-30/00002-2.png").json()
        assert info["parameters"].startswith("old 2\nSteps: 3") and info["request"]["prompt"] == "old 2"
        video = c.get("/api/v1/output-info/txt2vid/2026-12-01/00000-3.gif").json()
        assert video["kind"] == "image" and video["frames"] == 5 and video["fps"] == 5

        # delete -> trash -> restore
        r = c.delete("/api/v1/outputs/txt2img/2026-11-30/00002-2.png")
        assert r.status_code == 200 and r.json()["trashed"] == "txt2img/2026-11-30/00002-2.png"
        assert not (out / "txt2img/2026-11-30/00002-2.png").exists()
        assert (tmp_path / "data" / "trash" / "txt2img/2026-11-30/00002-2.png").is_file()
        trash = c.get("/api/v1/trash").json()
        assert [i["path"] for i in trash["items"]] == ["txt2img/2026-11-30/00002-2.png"]
        _image(out, "txt2img", "2026-11-30", "00002-2.png", "a new file took the name")
        r = c.post("/api/v1/trash/restore", json={"path": "txt2img/2026-11-30/00002-2.png"})
        assert r.status_code == 200 and r.json()["restored"] == "txt2img/2026-11-30/00002-2-restored-1.png"
        assert c.get("/api/v1/output-info/txt2img/2026-11-30/00002-2-restored-1.png").json()["request"]["prompt"] \
            == "old 2"
        assert c.get("/api/v1/trash").json()["total"] == 0

        # nothing outside the outputs folder, by any route
        bad = ["../secret.png", "txt2img/../../secret.png", "txt2img/2026-11-30/..%2F..%2Fsecret.png",
               "%2Fetc%2Fpasswd", "txt2img/2026-11-30/notes.txt", "data/2026-11-30/jobs.sqlite",
               "txt2img/2026-11-30/../../../x/2026-01-01/s.png", "x/2026-01-01/s.png"]
        for path in bad:
            for method, url in (("GET", f"/api/v1/output-info/{path}"), ("DELETE", f"/api/v1/outputs/{path}")):
                r = c.request(method, url)
                assert r.status_code in (404, 422), (method, path, r.status_code)
                assert str(tmp_path) not in r.text, "no server path in the answer"
            r = c.post("/api/v1/trash/restore", json={"path": path})
            assert r.status_code in (404, 422), (path, r.status_code)
        r = c.get("/api/v1/output-info/txt2img/2026-11-30/00010-link.png")
        assert r.status_code == 422 and r.json()["field"] == "path"
        r = c.get("/api/v1/outputs", params={"task": "../.."})
        assert r.status_code == 422 and r.json()["field"] == "task"
        r = c.get("/api/v1/outputs", params={"page": 0})
        assert r.status_code == 422 and r.json()["field"] == "page"
        assert (tmp_path / "x" / "2026-01-01" / "s.png").is_file() and not secret.exists()

"""Still images: metadata round trips, A1111-readable EXIF, atomic writes, output naming."""
from __future__ import annotations

import os
import struct
import threading

import numpy as np
import pytest
from PIL import Image

from sdcodex.media import images
from sdcodex.media.images import save_image
from sdcodex.media.naming import next_output_path
from sdcodex.media.reader import decode_user_comment, read_info

INFOTEXT = ("a cat, ü 日本\nsecond line\nNegative prompt: blurry\n"
            "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 5, Size: 48x32, "
            'Lora hashes: "detail: 7c6bad76eb54", Version: v1.10.1')
REQUEST = {"task": "txt2img", "seed": 5, "prompt": "a cat, ü 日本\nsecond line", "steps": 20,
           "init_images": ["QUJD" * 3000]}


def _image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8))


@pytest.mark.parametrize("fmt", ["png", "webp", "jpeg"])
def test_round_trip_infotext_and_request(tmp_path, fmt):
    out = save_image(_image(), tmp_path / f"x.{fmt}", fmt=fmt, infotext=INFOTEXT, request=REQUEST,
                     info={"seeds": [5]})
    r = read_info(out)
    assert r["parameters"] == INFOTEXT
    assert r["format"] == fmt and (r["width"], r["height"], r["frames"], r["fps"]) == (48, 32, 1, None)
    assert r["request"]["prompt"] == REQUEST["prompt"] and r["request"]["seed"] == 5
    assert r["request"]["init_images"][0].startswith("<omitted 12000 chars sha256:")
    assert r["info"] == {"seeds": [5]}
    assert r["parsed"]["Lora hashes"] == "detail: 7c6bad76eb54" and r["parsed"]["width"] == 48
    assert read_info(out.read_bytes())["parameters"] == INFOTEXT           # bytes work as well as paths


def test_png_pixels_and_pillow_parameters_key(tmp_path):
    img = _image()
    out = save_image(img, tmp_path / "a.png", infotext=INFOTEXT, request=REQUEST)
    with Image.open(out) as im:
        assert im.info["parameters"] == INFOTEXT      # what A1111 and every PNG-info tool reads
        assert np.array_equal(np.asarray(im), np.asarray(img))
    latin = save_image(img, tmp_path / "b.png", infotext="plain\nSteps: 1, Seed: 2, Size: 1x1", request={})
    assert b"tEXtparameters\x00plain" in latin.read_bytes()                # tEXt when Latin-1, like A1111


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_exif_user_comment_is_what_a1111_reads(tmp_path, fmt):
    out = save_image(_image(), tmp_path / f"a.{fmt}", fmt=fmt, infotext=INFOTEXT, request=REQUEST)
    with Image.open(out) as im:
        raw = im.info["exif"]
    tiff = raw[6:] if raw.startswith(b"Exif") else raw
    assert tiff[:4] == b"MM\x00\x2a"
    # IFD0 -> ExifIFD pointer -> one UserComment entry of type UNDEFINED (7), as piexif writes it
    ifd0 = struct.unpack(">I", tiff[4:8])[0]
    tag, typ, _, exif_at = struct.unpack(">HHII", tiff[ifd0 + 2: ifd0 + 14])
    assert (tag, typ) == (0x8769, 4)
    tag, typ, count, data_at = struct.unpack(">HHII", tiff[exif_at + 2: exif_at + 14])
    assert (tag, typ) == (0x9286, 7)
    comment = tiff[data_at: data_at + count]
    assert comment == b"UNICODE\x00" + INFOTEXT.encode("utf-16-be")
    piexif = pytest.importorskip("piexif")
    import piexif.helper

    loaded = piexif.load(raw)["Exif"][piexif.ExifIFD.UserComment]
    assert piexif.helper.UserComment.load(loaded) == INFOTEXT


def test_decode_user_comment_variants():
    assert decode_user_comment(b"UNICODE\x00" + "hé".encode("utf-16-le")) == "hé"
    assert decode_user_comment(b"ASCII\x00\x00\x00hello") == "hello"
    assert decode_user_comment(b"\x00" * 8 + "ü".encode()) == "ü"


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    existing = tmp_path / "keep.png"
    existing.write_bytes(b"old")
    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_image(_image(), existing, infotext=INFOTEXT, request=REQUEST)
    assert existing.read_bytes() == b"old"                                 # old file untouched
    with pytest.raises(OSError, match="disk full"):
        save_image(_image(), tmp_path, infotext=INFOTEXT, request=REQUEST)   # folder: reserved name removed
    reserved = next_output_path(tmp_path, "txt2img", 1, "png")                 # how runtime.MediaSaver calls it
    with pytest.raises(OSError, match="disk full"):
        save_image(_image(), reserved, infotext=INFOTEXT, request=REQUEST)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and p != existing]
    assert leftovers == []


def test_folder_layout_numbers_and_file_mode(tmp_path):
    paths = [save_image(_image(), tmp_path, infotext=INFOTEXT, request={**REQUEST, "seed": s}, date="2024-05-01")
             for s in (7, 8)]
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "txt2img/2024-05-01/00000-7.png", "txt2img/2024-05-01/00001-8.png"]
    jpg = save_image(_image(), tmp_path, fmt="jpeg", infotext=INFOTEXT, request={"task": "img2img", "seed": 0},
                     date="2024-05-01")
    assert jpg.relative_to(tmp_path).as_posix() == "img2img/2024-05-01/00000-0.jpg"
    assert os.stat(jpg).st_mode & 0o044                                   # not left at mkstemp's 0600


def test_naming_continues_after_highest_and_ignores_other_files(tmp_path):
    folder = tmp_path / "txt2img" / "2024-01-02"
    folder.mkdir(parents=True)
    for name in ("00003-1.png", "00041-9.webp", "notes.txt", ".00099-1.png.tmp", "grid-0001.png"):
        (folder / name).write_bytes(b"")
    p = next_output_path(tmp_path, "txt2img", 123, "png", date="2024-01-02")
    assert p.name == "00042-123.png" and p.exists() and p.stat().st_size == 0
    assert next_output_path(tmp_path, "txt2img", None, ".PNG", date="2024-01-02").name == "00043.png"


def test_naming_is_unique_across_threads(tmp_path):
    got: list[str] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        for _ in range(5):
            p = next_output_path(tmp_path, "txt2img", seed, "png", date="2024-01-02")
            with lock:
                got.append(p.name)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    numbers = sorted(int(n.split("-")[0]) for n in got)
    assert numbers == list(range(40))                                     # no number used twice, no gaps
    assert not (tmp_path / "txt2img" / "2024-01-02" / ".sdcodex-naming.lock").exists()


def test_unknown_format_rejected(tmp_path):
    from sdcodex.core.errors import ValidationError

    with pytest.raises(ValidationError, match="format"):
        save_image(_image(), tmp_path / "a.bmp", fmt="bmp", infotext="", request={})
    assert images.compact_request({"a": ["x" * 5000], "b": "short"})["b"] == "short"


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_reads_a1111_written_exif(tmp_path, fmt):
    """A1111 saves, then piexif.insert()s its EXIF: our reader must read those files."""
    piexif = pytest.importorskip("piexif")
    import piexif.helper

    path = tmp_path / f"a1111.{fmt}"
    _image().save(path, format=fmt.upper(), quality=90)
    exif = piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(INFOTEXT, "unicode")}})
    piexif.insert(exif, str(path))
    r = read_info(path)
    assert r["parameters"] == INFOTEXT and r["request"] is None and r["parsed"]["Steps"] == "20"

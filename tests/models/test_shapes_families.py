"""What the shapes of published Z-Image and Chroma files say (architecture_of: the line `models list` and job info
show), read from fake headers with the real key names and shapes."""
from __future__ import annotations

from sdcodex.models.detect import detect_keys
from sdcodex.models.shapes import architecture_of
from tests.models import fake_headers as fh

CM = "model.diffusion_model."


def _arch(keys):
    shapes = {k: list(v) for k, v in keys.items()}
    det = detect_keys(shapes)
    return architecture_of(shapes, det.kind, det.family, det.prefix, det.variant)


def test_chroma_file_reads_as_the_published_model():
    assert _arch(fh.chroma_keys(CM)) == {"transformer": "chroma: 19 double + 38 single blocks, width 3072, "
                                                        "approximator 5 x 5120"}


def test_z_image_file_reads_as_the_published_model():
    assert _arch(fh.z_image_keys()) == {"transformer": "z_image: 30 layers, width 3840, 30 heads"}

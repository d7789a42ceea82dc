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


def test_hunyuan_video_files_read_as_the_published_models():
    """Tencent's layout as ComfyUI keeps it: 1.0 text-to-video, 1.0 I2V (33 inputs: latent_concat), 1.5."""
    assert _arch(fh.hunyuan_video_keys(CM)) == {"transformer": "hunyuan_video: 20 double + 40 single blocks, width "
                                                               "3072, 24 heads, 16 in channels, guidance embedding"}
    assert _arch(fh.hunyuan_video_keys(in_channels=33)) == {
        "transformer": "hunyuan_video variant: 20 double + 40 single blocks, width 3072, 24 heads, 33 in channels, "
                       "guidance embedding, image condition latent_concat"}
    assert _arch(fh.hunyuan_video15_keys(CM)) == {"transformer": "hunyuan_video15: 54 double blocks, width 2048, "
                                                                 "16 heads, 65 in channels, image embedding 1152"}

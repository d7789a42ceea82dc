"""Enumerations shared by every room: engine families, tasks, modes, precisions."""
from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """A str-valued enum whose str() is its value (JSON and YAML friendly)."""

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value

    @classmethod
    def values(cls) -> list[str]:
        return [m.value for m in cls]


class EngineKey(StrEnum):
    SD15 = "sd15"
    SD2 = "sd2"
    SDXL = "sdxl"
    FLUX = "flux"
    SVD = "svd"
    HUNYUAN_VIDEO = "hunyuan_video"
    HUNYUAN_VIDEO15 = "hunyuan_video15"
    WAN22_TI2V_5B = "wan22_ti2v_5b"
    WAN22_T2V_A14B = "wan22_t2v_a14b"
    WAN22_I2V_A14B = "wan22_i2v_a14b"
    Z_IMAGE = "z_image"
    CHROMA = "chroma"
    SD3 = "sd3"
    QWEN_IMAGE = "qwen_image"
    QWEN_IMAGE_EDIT = "qwen_image_edit"
    FLUX2 = "flux2"
    FLUX2_KLEIN = "flux2_klein"
    LTX2 = "ltx2"


class Task(StrEnum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    UPSCALE = "upscale"
    TXT2VID = "txt2vid"
    IMG2VID = "img2vid"

    @property
    def is_video(self) -> bool:
        return self in (Task.TXT2VID, Task.IMG2VID)


class Mode(StrEnum):
    NORMAL = "normal"
    LCM = "lcm"
    TURBO = "turbo"
    LIGHTNING = "lightning"


class Emphasis(StrEnum):
    """A1111's emphasis modes: how ``(text:1.2)`` weights reach the CLIP hidden states (docs/prompts.md)."""

    ORIGINAL = "Original"  # multiply by the weights, then restore the unweighted mean
    NO_NORM = "No norm"  # multiply only
    NONE = "None"  # no attention syntax: the brackets are plain text


class Precision(StrEnum):
    AUTO = "auto"
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class WeightsDtype(StrEnum):
    """How a model's weights are stored once loaded: as the file has them, or in fp8 (compute stays bf16/fp32)."""

    AUTO = "auto"
    FP8 = "fp8"


class OutputFormat(StrEnum):
    PNG = "png"
    WEBP = "webp"
    JPEG = "jpeg"
    MP4 = "mp4"
    WEBM = "webm"
    GIF = "gif"


class ResizeMode(StrEnum):
    """A1111's img2img resize modes."""

    JUST_RESIZE = "just_resize"
    CROP_AND_RESIZE = "crop_and_resize"
    RESIZE_AND_FILL = "resize_and_fill"


class Prediction(StrEnum):
    """What a denoiser predicts; decides which samplers are valid."""

    EPSILON = "epsilon"
    V_PREDICTION = "v_prediction"
    FLOW = "flow"

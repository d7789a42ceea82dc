"""Multimodal processors built without torchvision.

Qwen-Image-Edit's pipelines (QwenImageEditPipeline, QwenImageEditPlusPipeline) call `self.processor(text=...,
images=..., padding=True, return_tensors="pt")` — a transformers `Qwen2VLProcessor`: the Qwen2 tokenizer plus the
Qwen2-VL image processor (resize to a multiple of 28, normalise, cut into 14 px patches). transformers builds that
processor from a folder only together with its video processor, which needs torchvision (no CPU build exists here).
`QwenVLProcessor` is a `Qwen2VLProcessor` that accepts `video_processor=None`; its image processor is transformers'
PIL/numpy `Qwen2VLImageProcessorPil`, the one transformers itself falls back to without torchvision. Image-only
calls (all the pipelines make) need nothing else; a video input raises a clear error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import Qwen2VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from sdcodex.core.errors import ModelLoadError

#: the Qwen2-VL vision special tokens the processor and the Qwen2.5-VL text encoder share
QWEN_VL_TOKENS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")


class QwenVLProcessor(Qwen2VLProcessor):
    """Qwen2VLProcessor for images only: the video processor may be None (no torchvision needed)."""

    def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
        if argument_name == "video_processor" and argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)

    def __call__(self, images: Any = None, text: Any = None, videos: Any = None, **kwargs: Any) -> Any:
        if videos is not None and self.video_processor is None:
            raise ValueError("QwenVLProcessor: video inputs need the video processor (torchvision), images only here")
        return super().__call__(images=images, text=text, videos=videos, **kwargs)

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> list[str]:
        """The image processor's preprocessor_config.json and the tokenizer files (what load_qwen_vl_processor
        reads); transformers' own save walks the absent video processor."""
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        files = list(self.image_processor.save_pretrained(str(save_directory)) or [])
        files += list(self.tokenizer.save_pretrained(str(save_directory)) or [])
        return [str(f) for f in files]


def qwen_vl_processor(tokenizer: Any, **image_settings: Any) -> QwenVLProcessor:
    """A processor over `tokenizer` with a PIL Qwen2-VL image processor (`image_settings` as its config keys)."""
    return QwenVLProcessor(image_processor=Qwen2VLImageProcessorPil(**image_settings), tokenizer=tokenizer,
                           video_processor=None)


def load_qwen_vl_processor(folder: Path, tokenizer: Any | None = None) -> QwenVLProcessor:
    """The processor of a Diffusers folder's `processor/` subfolder (preprocessor_config.json and the tokenizer
    files, as Qwen/Qwen-Image-Edit-2509 ships them), offline; `tokenizer` replaces the folder's own tokenizer."""
    from transformers import AutoTokenizer

    try:
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(folder), local_files_only=True)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ModelLoadError(f"{folder}: cannot read the Qwen2-VL processor ({str(exc)[:300]})",
                             field="model") from exc
    return QwenVLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=None)


__all__ = ["QWEN_VL_TOKENS", "QwenVLProcessor", "load_qwen_vl_processor", "qwen_vl_processor"]

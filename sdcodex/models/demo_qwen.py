"""Tiny random-weight demo model for Qwen-Image, in the shape of the real one: a QwenImage MMDiT (2x2 packed
latents, 3-axis rope), the Qwen-Image VAE (a causal 3-D VAE used on single frames), a Qwen2.5-VL text encoder with
its vision tower, a byte-level Qwen tokenizer built in code (see demo_video) and the published scheduler config
(FlowMatch Euler, resolution-dependent shift) — one or two layers, small enough to run on a CPU in seconds.
"""
from __future__ import annotations

from sdcodex.models.demo import register_demo
from sdcodex.models.demo_video import qwen_tokenizer

# Qwen/Qwen-Image scheduler/scheduler_config.json
QWEN_IMAGE_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "invert_sigmas": False,
                        "max_image_seq_len": 8192, "max_shift": 0.9, "num_train_timesteps": 1000, "shift": 1.0,
                        "shift_terminal": 0.02, "stochastic_sampling": False, "time_shift_type": "exponential",
                        "use_beta_sigmas": False, "use_dynamic_shifting": True, "use_exponential_sigmas": False,
                        "use_karras_sigmas": False}


def tiny_qwen_image_transformer():
    """2 blocks, 2 heads of 16, 4 latent channels packed 2x2 (16 in), text width 16 (the tiny Qwen2.5-VL)."""
    from diffusers import QwenImageTransformer2DModel

    return QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                       attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                       guidance_embeds=False, axes_dims_rope=(4, 6, 6))


def tiny_qwen_image_vae():
    """The Qwen-Image VAE in small: 4 latent channels, 8x down (three levels), latents normalised by mean/std."""
    from diffusers import AutoencoderKLQwenImage

    return AutoencoderKLQwenImage(base_dim=8, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                  temperal_downsample=[False, True], latents_mean=[0.0] * 4, latents_std=[1.0] * 4)


def tiny_qwen25_vl(vocab_size: int, **token_ids: int):
    """A 2-layer Qwen2.5-VL (text model + 1-block vision tower) as the Qwen-Image text encoder; `token_ids` set the
    vision special tokens (image_token_id, video_token_id, vision_start_token_id) to the tokenizer's ids."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    text = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": vocab_size, "rope_theta": 1000000.0,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "bos_token_id": None, "eos_token_id": 258, "pad_token_id": 256}  # <|im_end|>, <|endoftext|>
    vision = {"depth": 1, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, vocab_size=vocab_size, bos_token_id=None,
                              eos_token_id=258, pad_token_id=256, **token_ids)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


@register_demo("qwen_image", "qwen-image-demo")
def build_qwen_image():
    from diffusers import FlowMatchEulerDiscreteScheduler, QwenImagePipeline

    tokenizer = qwen_tokenizer(1024)
    return QwenImagePipeline(transformer=tiny_qwen_image_transformer(), vae=tiny_qwen_image_vae(),
                             text_encoder=tiny_qwen25_vl(len(tokenizer)), tokenizer=tokenizer,
                             scheduler=FlowMatchEulerDiscreteScheduler.from_config(QWEN_IMAGE_SCHEDULER))


def qwen_vl_tokenizer():
    """The demo Qwen tokenizer with the Qwen2-VL vision tokens (<|vision_start|>, <|image_pad|>, ...) added."""
    from sdcodex.models.processors import QWEN_VL_TOKENS

    tok = qwen_tokenizer(1024)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", *QWEN_VL_TOKENS]})
    return tok


def _qwen_image_edit(pipeline_cls: type):
    """An Edit pipeline in small: the Qwen-Image parts, a Qwen2.5-VL that knows the vision tokens, and the image-only
    Qwen2-VL processor (patch 14, merge 2, as the real one). The folder's model_index names the processor
    transformers' Qwen2VLProcessor, as Qwen/Qwen-Image-Edit(-2509)'s does."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from sdcodex.models.processors import qwen_vl_processor

    tokenizer = qwen_vl_tokenizer()
    ids = dict(zip(("vision_start_token_id", "image_token_id", "video_token_id"),
                   tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|image_pad|>", "<|video_pad|>"])))
    pipe = pipeline_cls(
        transformer=tiny_qwen_image_transformer(), vae=tiny_qwen_image_vae(),
        text_encoder=tiny_qwen25_vl(len(tokenizer), **ids), tokenizer=tokenizer,
        processor=qwen_vl_processor(tokenizer, patch_size=14, merge_size=2, temporal_patch_size=2),
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(QWEN_IMAGE_SCHEDULER))
    pipe.register_to_config(processor=("transformers", "Qwen2VLProcessor"))
    return pipe


@register_demo("qwen_image_edit", "qwen-image-edit-demo")
def build_qwen_image_edit():
    """Qwen-Image-Edit-2509/2511 (QwenImageEditPlusPipeline: several input images)."""
    from diffusers import QwenImageEditPlusPipeline

    return _qwen_image_edit(QwenImageEditPlusPipeline)


@register_demo("qwen_image_edit_v1", "qwen-image-edit-v1-demo")
def build_qwen_image_edit_v1():
    """The first Qwen-Image-Edit (QwenImageEditPipeline: one input image)."""
    from diffusers import QwenImageEditPipeline

    return _qwen_image_edit(QwenImageEditPipeline)

"""Tiny random-weight demo model for Stable Diffusion 3.5, in the shape of the real one: an MMDiT with qk RMS norms
(SD3.5 Large) or with an image self-attention in its first block (MMDiT-X, SD3.5 Medium), a 16-channel VAE with
SD3's scaling and shift factors, CLIP-L and CLIP-G with projections, a T5 encoder and the published scheduler
(FlowMatch Euler, shift 3.0) — one or two layers, small enough to run on a CPU in seconds.
"""
from __future__ import annotations

from sdcodex.models.demo import register_demo, tiny_clip
from sdcodex.models.demo_video import t5_tokenizer, tiny_t5
from sdcodex.models.tokenizers import clip_tokenizer

# stabilityai/stable-diffusion-3.5-large scheduler/scheduler_config.json
SD3_SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0}


def tiny_sd3_transformer(medium: bool = False):
    """2 joint blocks, 2 heads of 16; text width 32 (the tiny T5), pooled width 64 (two 32-wide CLIP projections)."""
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel(sample_size=32, patch_size=2, in_channels=16, out_channels=16, num_layers=2,
                                 attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                 caption_projection_dim=32, pooled_projection_dim=64, pos_embed_max_size=32,
                                 qk_norm="rms_norm", dual_attention_layers=(0,) if medium else ())


def tiny_sd3_vae():
    """SD3's VAE in small: 16 latent channels, 8x down, no quant convs, scaling 1.5305 and shift 0.0609."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                         scaling_factor=1.5305, shift_factor=0.0609)


def _sd3(medium: bool):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    return StableDiffusion3Pipeline(
        transformer=tiny_sd3_transformer(medium), vae=tiny_sd3_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(SD3_SCHEDULER),
        text_encoder=tiny_clip(with_projection=True), tokenizer=clip_tokenizer(),
        text_encoder_2=tiny_clip(with_projection=True, hidden_act="gelu"), tokenizer_2=clip_tokenizer(pad_token="!"),
        text_encoder_3=tiny_t5(), tokenizer_3=t5_tokenizer(256))


@register_demo("sd3", "sd35-large-demo")
def build_sd35_large():
    return _sd3(medium=False)


@register_demo("sd3_medium", "sd35-medium-demo")
def build_sd35_medium():
    return _sd3(medium=True)

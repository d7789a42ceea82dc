"""Tiny random-weight demo models for the newer image families (Z-Image, Chroma), in the shape of the real ones
(same classes, the published scheduler configs, the same pipeline wiring) but 1-2 layers, so they run on a CPU in
seconds. Tokenizers no package ships (Qwen, T5) are built in code (see demo_video)."""
from __future__ import annotations

from sdcodex.models.demo import register_demo
from sdcodex.models.demo_video import qwen_tokenizer

#: Tongyi-MAI/Z-Image-Turbo scheduler/scheduler_config.json
Z_IMAGE_SCHEDULER = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}


def _flux_vae():
    """The 16-channel FLUX.1 autoencoder (Z-Image and Chroma use it unchanged), 4 levels of 8 channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                         scaling_factor=0.3611, shift_factor=0.1159)


def tiny_qwen3(vocab_size: int = 300):
    """A 2-layer Qwen3 text model (Z-Image's encoder is Qwen3-4B: q/k norms, no qkv bias)."""
    from transformers import Qwen3Config, Qwen3Model

    return Qwen3Model(Qwen3Config(hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  num_key_value_heads=2, head_dim=8, vocab_size=vocab_size, pad_token_id=256,
                                  bos_token_id=None, eos_token_id=257)).eval()


def tiny_z_image_transformer():
    from diffusers import ZImageTransformer2DModel

    # head size 16 = sum(axes_dims); real: dim 3840, 30 heads of 128, axes (32, 48, 48)
    return ZImageTransformer2DModel(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=32, n_layers=2,
                                    n_refiner_layers=1, n_heads=2, n_kv_heads=2, cap_feat_dim=16,
                                    axes_dims=[8, 4, 4], axes_lens=[256, 64, 64])


@register_demo("z_image", "z-image-demo")
def build_z_image():
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImagePipeline

    return ZImagePipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(Z_IMAGE_SCHEDULER), vae=_flux_vae(),
                          text_encoder=tiny_qwen3(), tokenizer=qwen_tokenizer(), transformer=tiny_z_image_transformer())


@register_demo("z_image_turbo", "z-image-turbo-demo")
def build_z_image_turbo():
    """The same tiny model under a Turbo name: what the `turbo` mode's evidence (the model name) looks for."""
    return build_z_image()


#: the FlowMatch Euler config the Chroma1-HD Diffusers folder ships (FLUX.1's: resolution-dependent shift)
CHROMA_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}


def tiny_chroma_transformer():
    from diffusers import ChromaTransformer2DModel

    # real: 19 double + 38 single blocks of 24 heads x 128, approximator 64 -> 5120 x 5 layers
    return ChromaTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                    attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                    axes_dims_rope=(4, 4, 8), approximator_num_channels=8, approximator_hidden_dim=32,
                                    approximator_layers=1)


@register_demo("chroma", "chroma-demo")
def build_chroma():
    from diffusers import ChromaPipeline, FlowMatchEulerDiscreteScheduler

    from sdcodex.models.demo_video import t5_tokenizer, tiny_t5

    return ChromaPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(CHROMA_SCHEDULER), vae=_flux_vae(),
                          text_encoder=tiny_t5(), tokenizer=t5_tokenizer(), transformer=tiny_chroma_transformer())

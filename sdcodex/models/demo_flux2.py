"""Tiny random-weight FLUX.2 demo models (dev and Klein) in the shape of the real ones: the same classes, the
published scheduler config and text-encoder layer taps, but one block of each kind and 16-wide encoders, so they
run on a CPU in seconds. The text encoders keep enough layers for the pipelines' hidden-state taps (dev reads
Mistral-3 layers 10/20/30, Klein reads Qwen3 layers 9/18/27). The tokenizer is the byte-level Qwen one built in
code (see demo_video): a stand-in for FLUX.2 dev's Pixtral processor that renders the same chat messages."""
from __future__ import annotations

from sdcodex.models.demo import register_demo
from sdcodex.models.demo_video import qwen_tokenizer

#: the FlowMatch Euler config of the FLUX.2 Diffusers folders: the pipeline passes mu (compute_empirical_mu)
FLUX2_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                   "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}
TEXT_HIDDEN = 16


def tiny_flux2_vae():
    """AutoencoderKLFlux2 (real: 32 latent channels, batch-norm statistics over 2x2 patches), 4 levels of 8."""
    from diffusers import AutoencoderKLFlux2

    return AutoencoderKLFlux2(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                              up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 8, 8, 8),
                              layers_per_block=1, latent_channels=4, norm_num_groups=4)


def tiny_flux2_transformer(guidance: bool):
    """Flux2Transformer2DModel: in_channels = 4 x latent channels (2x2 patches); the text width is three stacked
    encoder layers. Real dev: 8 double + 48 single blocks of 48 heads x 128, text 3 x 5120; Klein 4B: 5 + 20 blocks
    of 24 heads, text 3 x 2560, no guidance embedding."""
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                   attention_head_dim=16, num_attention_heads=2, joint_attention_dim=3 * TEXT_HIDDEN,
                                   timestep_guidance_channels=256, axes_dims_rope=(4, 4, 4, 4),
                                   guidance_embeds=guidance)


def tiny_mistral3(layers: int = 31):
    """Mistral3ForConditionalGeneration with a 1-layer Pixtral vision tower (FLUX.2 dev reads layers 10/20/30)."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    text = {"model_type": "mistral", "vocab_size": 300, "hidden_size": TEXT_HIDDEN, "intermediate_size": 16,
            "max_position_embeddings": 2048, "num_attention_heads": 2, "num_hidden_layers": layers,
            "num_key_value_heads": 2, "head_dim": 8, "rms_norm_eps": 1e-5, "sliding_window": None,
            "pad_token_id": 256, "bos_token_id": None, "eos_token_id": 257}
    vision = {"model_type": "pixtral", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 16, "image_size": 32, "patch_size": 8, "num_channels": 3, "head_dim": 8}
    return Mistral3ForConditionalGeneration(Mistral3Config(text_config=text, vision_config=vision,
                                                           image_token_index=258, spatial_merge_size=2)).eval()


def tiny_qwen3_lm(layers: int = 28):
    """Qwen3ForCausalLM (Klein 4B: Qwen3-4B, 36 layers; the pipeline reads layers 9/18/27)."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    return Qwen3ForCausalLM(Qwen3Config(hidden_size=TEXT_HIDDEN, intermediate_size=16, num_hidden_layers=layers,
                                        num_attention_heads=2, num_key_value_heads=2, head_dim=8, vocab_size=300,
                                        pad_token_id=256, bos_token_id=None, eos_token_id=257)).eval()


@register_demo("flux2", "flux2-dev-demo")
def build_flux2_dev():
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline

    return Flux2Pipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(FLUX2_SCHEDULER),
                         vae=tiny_flux2_vae(), text_encoder=tiny_mistral3(), tokenizer=qwen_tokenizer(),
                         transformer=tiny_flux2_transformer(guidance=True))


def _klein(distilled: bool):
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline

    return Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(FLUX2_SCHEDULER),
                              vae=tiny_flux2_vae(), text_encoder=tiny_qwen3_lm(), tokenizer=qwen_tokenizer(),
                              transformer=tiny_flux2_transformer(guidance=False), is_distilled=distilled)


@register_demo("flux2_klein", "flux2-klein-base-demo")
def build_flux2_klein_base():
    """Klein base (real CFG, ~50 steps)."""
    return _klein(distilled=False)


@register_demo("flux2_klein_distilled", "flux2-klein-demo")
def build_flux2_klein():
    """Klein step-distilled (4 steps, no CFG): `is_distilled` in its model_index.json."""
    return _klein(distilled=True)

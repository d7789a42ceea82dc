"""Tiny random-weight demo model for LTX-2, in the shape of the real one: the audio-video transformer (a video
stream and an audio stream with cross-attention between them), the text connectors, the LTX-2 video VAE, the audio
VAE and vocoder, a Gemma 3 text encoder (with its small vision tower, as the published Gemma3ForConditionalGeneration)
and a Gemma tokenizer built here in code, with the published scheduler config — one layer each, small enough to run
on a CPU in seconds. The tiny VAE compresses 2x in space and time, so any 8k+1 frames and multiple of 32 pass.
"""
from __future__ import annotations

import string

from sdcodex.models.demo import register_demo

# Lightricks/LTX-2 scheduler/scheduler_config.json: FlowMatch Euler, shift from the video token count
LTX2_SCHEDULER = {"base_image_seq_len": 1024, "base_shift": 0.95, "invert_sigmas": False, "max_image_seq_len": 4096,
                  "max_shift": 2.05, "num_train_timesteps": 1000, "shift": 1.0, "shift_terminal": 0.1,
                  "stochastic_sampling": False, "time_shift_type": "exponential", "use_beta_sigmas": False,
                  "use_dynamic_shifting": True, "use_exponential_sigmas": False, "use_karras_sigmas": False}
_CHARS = string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,!?'-:;()"
TEXT_WIDTH, TEXT_LAYERS = 16, 2  # the tiny Gemma 3: hidden 16, 2 layers (+ embeddings = 3 hidden states)


def gemma_tokenizer(max_length: int = 1024):
    """A Gemma-style BPE tokenizer ('▁' for spaces, Gemma's special tokens) over single characters, no merges."""
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for piece in ["▁", *_CHARS, *("▁" + c for c in _CHARS)]:
        vocab.setdefault(piece, len(vocab))
    tok = GemmaTokenizer(vocab=vocab, merges=[], model_max_length=max_length)
    tok.add_special_tokens({"additional_special_tokens": specials[5:]})
    return tok


def tiny_gemma3(tokenizer):
    """Gemma3ForConditionalGeneration with a 2-layer text model (hidden 16) and a 1-layer SigLIP tower."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    text = {"hidden_size": TEXT_WIDTH, "intermediate_size": 32, "num_hidden_layers": TEXT_LAYERS,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8, "vocab_size": len(tokenizer),
            "sliding_window": 64, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}
    vision = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 28, "patch_size": 14}
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
                          image_token_index=ids("<image_soft_token>"))
    return Gemma3ForConditionalGeneration(config).eval()


def tiny_ltx2_components() -> dict:
    """Every LTX-2 component in small (4 video and 2x2 audio latent channels, 1 transformer layer); the vocoder
    upsamples 160x (the mel hop), so the sound lasts as long as the video, as the real one's does."""
    import torch
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                           LTX2VideoTransformer3DModel)
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    torch.manual_seed(0)
    tokenizer = gemma_tokenizer()
    text_encoder = tiny_gemma3(tokenizer)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=1, caption_channels=TEXT_WIDTH,
        rope_double_precision=False, rope_type="split")
    connectors = LTX2TextConnectors(
        caption_channels=TEXT_WIDTH, text_proj_in_factor=TEXT_LAYERS + 1, video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_double_precision=False,
        rope_type="split")
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8,), decoder_block_out_channels=(8,),
        layers_per_block=(1,), decoder_layers_per_block=(1, 1), spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,), decoder_inject_noise=(False, False), downsample_type=("spatial",),
        upsample_residual=(False,), upsample_factor=(1,), timestep_conditioning=False, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8)
    vocoder = LTX2Vocoder(
        in_channels=2 * 8, hidden_channels=32, out_channels=2, upsample_kernel_sizes=[8, 8, 20], upsample_factors=[4, 4, 10],
        resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]], leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000)
    return {"transformer": transformer, "connectors": connectors, "vae": vae, "audio_vae": audio_vae,
            "vocoder": vocoder, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": FlowMatchEulerDiscreteScheduler.from_config(LTX2_SCHEDULER)}


@register_demo("ltx2", "ltx2-demo")
def build_ltx2():
    from diffusers import LTX2Pipeline

    return LTX2Pipeline(**tiny_ltx2_components())

"""Tiny random-weight demo models for FLUX, SVD, HunyuanVideo (1.0, 1.5) and WAN 2.2, in the shape of the real
ones (same classes, same scheduler configs, same pipeline wiring) but 1-2 layers wide enough to run on a CPU in
seconds. Tokenizers that no package ships (T5/UMT5, Llama, Qwen2) are built here in code from a small
character vocabulary and saved in the demo folder like a downloaded model's tokenizer subfolder.
"""
from __future__ import annotations

import string

from sdcodex.models.demo import tiny_clip, register_demo
from sdcodex.models.tokenizers import byte_characters, clip_tokenizer

_CHARS = string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,!?'-:;()"
# Scheduler configs of the published models (scheduler/scheduler_config.json of each repo).
FLUX_DEV_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                      "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}
FLUX_SCHNELL_SCHEDULER = {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096,
                          "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}
SVD_SCHEDULER = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                 "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "v_prediction",
                 "sigma_max": 700.0, "sigma_min": 0.002, "steps_offset": 1, "timestep_spacing": "leading",
                 "timestep_type": "continuous", "trained_betas": None, "use_karras_sigmas": True}
WAN_SCHEDULER = {"num_train_timesteps": 1000, "prediction_type": "flow_prediction", "use_flow_sigmas": True,
                 "solver_order": 2, "predict_x0": True, "solver_type": "bh2", "lower_order_final": True,
                 "final_sigmas_type": "zero"}


# ------------------------------------------------------------------------------------------------ tokenizers
def t5_tokenizer(max_length: int = 512):
    """A Unigram (SentencePiece-style) T5/UMT5 tokenizer over single characters and '▁'-prefixed characters."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + c, -3.0) for c in _CHARS] + [(c, -4.0) for c in _CHARS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def llama_tokenizer(max_length: int = 256):
    """A Llama-3-style BPE tokenizer with the chat header tokens HunyuanVideo's prompt template uses."""
    from transformers import LlamaTokenizer

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for c in ["▁", "\n", *_CHARS]:
        vocab.setdefault(c, len(vocab))
    tok = LlamaTokenizer(vocab=vocab, merges=[], pad_token="<pad>", model_max_length=max_length)
    tok.add_special_tokens({"additional_special_tokens": specials[4:]})
    return tok


_QWEN_CHAT = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
              "{% if message['content'] is string %}{{ message['content'] }}"
              "{% else %}{% for part in message['content'] %}{{ part['text'] }}{% endfor %}{% endif %}"
              "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def qwen_tokenizer(max_length: int = 2048):
    """A byte-level BPE Qwen2 tokenizer (256 byte symbols, no merges) with a chat template."""
    from transformers import Qwen2Tokenizer

    vocab = {c: i for i, c in enumerate(byte_characters())}
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=max_length)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = _QWEN_CHAT
    return tok


# ------------------------------------------------------------------------------------------------ encoders
def tiny_t5(umt5: bool = False, vocab_size: int = 160):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    kw = dict(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
              feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return (UMT5EncoderModel(UMT5Config(**kw)) if umt5 else T5EncoderModel(T5Config(**kw))).eval()


_tiny_t5 = tiny_t5  # the name other demo modules used before it was public


def _flux(guidance: bool):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, guidance_embeds=guidance, axes_dims_rope=(4, 4, 8))
    # FLUX's VAE: 16 latent channels, 8x down, no quant convs, its scaling/shift factors.
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
                        scaling_factor=0.3611, shift_factor=0.1159)
    sched = FlowMatchEulerDiscreteScheduler.from_config(FLUX_DEV_SCHEDULER if guidance else FLUX_SCHNELL_SCHEDULER)
    return FluxPipeline(scheduler=sched, vae=vae, text_encoder=tiny_clip(), tokenizer=clip_tokenizer(),
                        text_encoder_2=tiny_t5(), tokenizer_2=t5_tokenizer(), transformer=transformer)


@register_demo("flux", "flux-dev-demo")
def build_flux_dev():
    return _flux(guidance=True)


@register_demo("flux_schnell", "flux-schnell-demo")
def build_flux_schnell():
    return _flux(guidance=False)


@register_demo("svd", "svd-demo")
def build_svd():
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
        num_attention_heads=8, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=(32, 64), in_channels=3, out_channels=3,
                                       down_block_types=("DownEncoderBlock2D",) * 2, latent_channels=4)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, projection_dim=32, num_hidden_layers=2,
                                                             num_attention_heads=4, image_size=224,
                                                             intermediate_size=37, patch_size=32)).eval()
    extractor = CLIPImageProcessorPil(crop_size=224, size={"shortest_edge": 224})
    return StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=unet,
                                        scheduler=EulerDiscreteScheduler.from_config(SVD_SCHEDULER),
                                        feature_extractor=extractor)


def _hunyuan_vae():
    from diffusers import AutoencoderKLHunyuanVideo

    return AutoencoderKLHunyuanVideo(latent_channels=4, block_out_channels=(8, 8, 8, 8), layers_per_block=1,
                                     norm_num_groups=4, spatial_compression_ratio=8, temporal_compression_ratio=4)


@register_demo("hunyuan_video", "hunyuan-video-demo")
def build_hunyuan_video():
    from diffusers import FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline, HunyuanVideoTransformer3DModel
    from transformers import LlamaConfig, LlamaModel

    transformer = HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2,
                                                 attention_head_dim=10, num_layers=1, num_single_layers=1,
                                                 num_refiner_layers=1, patch_size=2, patch_size_t=1,
                                                 guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=32,
                                                 rope_axes_dim=(2, 4, 4))
    llama = LlamaModel(LlamaConfig(hidden_size=16, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
                                   num_key_value_heads=4, vocab_size=128, pad_token_id=3, bos_token_id=1,
                                   eos_token_id=2, max_position_embeddings=512)).eval()
    # hunyuanvideo-community/HunyuanVideo scheduler: FlowMatch Euler, shift 7.0
    sched = FlowMatchEulerDiscreteScheduler(shift=7.0)
    return HunyuanVideoPipeline(text_encoder=llama, tokenizer=llama_tokenizer(), transformer=transformer,
                                vae=_hunyuan_vae(), scheduler=sched, text_encoder_2=tiny_clip(),
                                tokenizer_2=clip_tokenizer())


@register_demo("hunyuan_video_i2v", "hunyuan-video-i2v-demo")
def build_hunyuan_video_i2v():
    """HunyuanVideo-I2V in small: a LLaVA text encoder (tiny Llama + CLIP vision tower) and a latent_concat
    transformer (2 x latent channels + 1 mask channel in). The vision tower sees 336 px in 14 px patches: 576
    image tokens, the count the pipeline's default prompt template (image_emb_len 576) expects."""
    from diffusers import (FlowMatchEulerDiscreteScheduler, HunyuanVideoImageToVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = llama_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]}, replace_extra_special_tokens=False)
    image_token = tokenizer.convert_tokens_to_ids("<image>")
    text = LlamaConfig(hidden_size=16, intermediate_size=37, num_attention_heads=4, num_hidden_layers=3,
                       num_key_value_heads=4, vocab_size=len(tokenizer), pad_token_id=3, bos_token_id=1,
                       eos_token_id=2, max_position_embeddings=2048)
    vision = CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2,
                              image_size=336, patch_size=14, projection_dim=8)
    llava = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text,
                                                      image_token_index=image_token, pad_token_id=3,
                                                      vision_feature_layer=-2,
                                                      vision_feature_select_strategy="default")).eval()
    transformer = HunyuanVideoTransformer3DModel(in_channels=9, out_channels=4, num_attention_heads=2,
                                                 attention_head_dim=10, num_layers=1, num_single_layers=1,
                                                 num_refiner_layers=1, patch_size=2, patch_size_t=1,
                                                 guidance_embeds=True, text_embed_dim=16, pooled_projection_dim=32,
                                                 rope_axes_dim=(2, 4, 4), image_condition_type="latent_concat")
    # hunyuanvideo-community/HunyuanVideo-I2V scheduler: FlowMatch Euler, shift 7.0
    return HunyuanVideoImageToVideoPipeline(
        text_encoder=llava, tokenizer=tokenizer, transformer=transformer, vae=_hunyuan_vae(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=tiny_clip(),
        tokenizer_2=clip_tokenizer(),
        image_processor=CLIPImageProcessorPil(crop_size=336, size={"shortest_edge": 336}))


def _hunyuan15(task: str):
    from diffusers import (AutoencoderKLHunyuanVideo15, FlowMatchEulerDiscreteScheduler, HunyuanVideo15Pipeline,
                           HunyuanVideo15ImageToVideoPipeline, HunyuanVideo15Transformer3DModel)
    from diffusers.guiders import ClassifierFreeGuidance
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=1,
        num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16, text_embed_2_dim=32,
        image_embed_dim=12 if task == "i2v" else 12, rope_axes_dim=(2, 2, 4), target_size=32, task_type=task)
    vae = AutoencoderKLHunyuanVideo15(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16),
                                      layers_per_block=1, spatial_compression_ratio=4, temporal_compression_ratio=2,
                                      downsample_match_channel=False, upsample_match_channel=False)
    qwen = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        hidden_size=16, intermediate_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        vocab_size=300, rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        rope_theta=1000000.0, bos_token_id=None, eos_token_id=257, pad_token_id=256)).eval()
    byt5 = tiny_t5(vocab_size=384)  # ByT5: 256 bytes + 3 specials + 125 extra ids
    common = dict(text_encoder=qwen, tokenizer=qwen_tokenizer(), transformer=transformer, vae=vae,
                  scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0), text_encoder_2=byt5,
                  tokenizer_2=ByT5Tokenizer(), guider=ClassifierFreeGuidance(guidance_scale=6.0))
    if task == "t2v":
        return HunyuanVideo15Pipeline(**common)
    from transformers import SiglipVisionConfig, SiglipVisionModel
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=12, intermediate_size=16, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8)).eval()
    return HunyuanVideo15ImageToVideoPipeline(**common, image_encoder=encoder,
                                              feature_extractor=SiglipImageProcessorPil(size={"height": 32,
                                                                                              "width": 32}))


@register_demo("hunyuan_video15", "hunyuan-video15-demo")
def build_hunyuan_video15():
    return _hunyuan15("t2v")


@register_demo("hunyuan_video15_i2v", "hunyuan-video15-i2v-demo")
def build_hunyuan_video15_i2v():
    return _hunyuan15("i2v")


def _wan_transformer(in_channels: int, out_channels: int):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                 in_channels=in_channels, out_channels=out_channels, text_dim=32, freq_dim=256,
                                 ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                 rope_max_seq_len=32)


def _wan_scheduler(flow_shift: float):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler.from_config({**WAN_SCHEDULER, "flow_shift": flow_shift})


@register_demo("wan22_ti2v_5b", "wan22-ti2v-5b-demo")
def build_wan22_ti2v_5b():
    from diffusers import AutoencoderKLWan, WanPipeline

    # Wan2.2 VAE: 48 latent channels, patchified 2x2 input (16x spatial overall), 4x temporal.
    vae = AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
                           latents_mean=[0.0] * 48, latents_std=[1.0] * 48, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           scale_factor_spatial=16, scale_factor_temporal=4, temperal_downsample=[False, True, True])
    # Wan-AI/Wan2.2-TI2V-5B-Diffusers: flow_shift 5.0, expand_timesteps
    return WanPipeline(tokenizer=t5_tokenizer(), text_encoder=tiny_t5(umt5=True), vae=vae,
                       scheduler=_wan_scheduler(5.0), transformer=_wan_transformer(48, 48), transformer_2=None,
                       boundary_ratio=None, expand_timesteps=True)


def _wan21_vae():
    from diffusers import AutoencoderKLWan

    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True])


@register_demo("wan22_t2v_a14b", "wan22-t2v-a14b-demo")
def build_wan22_t2v_a14b():
    from diffusers import WanPipeline

    # Wan-AI/Wan2.2-T2V-A14B-Diffusers: boundary_ratio 0.875, flow_shift 12.0 (scheduler config)
    return WanPipeline(tokenizer=t5_tokenizer(), text_encoder=tiny_t5(umt5=True), vae=_wan21_vae(),
                       scheduler=_wan_scheduler(12.0), transformer=_wan_transformer(16, 16),
                       transformer_2=_wan_transformer(16, 16), boundary_ratio=0.875)


@register_demo("wan22_i2v_a14b", "wan22-i2v-a14b-demo")
def build_wan22_i2v_a14b():
    from diffusers import WanImageToVideoPipeline

    # Wan-AI/Wan2.2-I2V-A14B-Diffusers: boundary_ratio 0.9, flow_shift 5.0, 36 input channels, no image encoder
    return WanImageToVideoPipeline(tokenizer=t5_tokenizer(), text_encoder=tiny_t5(umt5=True), vae=_wan21_vae(),
                                   scheduler=_wan_scheduler(5.0), image_processor=None, image_encoder=None,
                                   transformer=_wan_transformer(36, 16), transformer_2=_wan_transformer(36, 16),
                                   boundary_ratio=0.9)


VIDEO_DEMO_FAMILIES = ("flux", "flux_schnell", "svd", "hunyuan_video", "hunyuan_video_i2v", "hunyuan_video15",
                       "hunyuan_video15_i2v", "wan22_ti2v_5b", "wan22_t2v_a14b", "wan22_i2v_a14b")

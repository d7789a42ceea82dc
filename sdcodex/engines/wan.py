"""WAN 2.2 engines: TI2V-5B (one transformer, 48-channel VAE, txt2vid and img2vid), T2V-A14B and I2V-A14B (two
experts: `transformer` runs the high-noise steps at or above `boundary_ratio` x 1000, `transformer_2` the
low-noise steps below it, each with its own guidance scale). Default sampler: UniPC in flow mode with the
model's flow shift."""
from __future__ import annotations

from typing import Any, ClassVar

from diffusers import WanImageToVideoPipeline, WanPipeline

from sdcodex.core.engine import EngineOutput
from sdcodex.core.enums import EngineKey, Prediction, Task
from sdcodex.core.events import EventSink
from sdcodex.core.params import Params
from sdcodex.core.registry import ENGINES

from .base import DiffusersEngine, build_pipeline, register_pipelines, resize_image
from .flux import FlowEngineMixin, collect_videos

_SETTINGS = ("boundary_ratio", "expand_timesteps")


class _WanEngine(FlowEngineMixin, DiffusersEngine):
    prediction = Prediction.FLOW
    default_sampler = "UniPC"
    frame_rule = (4, 1)      # 4x temporal VAE: 4k+1 frames
    min_size = 32
    max_size = 2048
    family_for_sampler = None
    prompt_family = "wan"
    #: the boundary_ratio the published model uses (the pipeline's own value wins when the folder has one)
    boundary_ratio: ClassVar[float | None] = None
    collect = staticmethod(collect_videos)  # type: ignore[assignment]

    def pipeline(self, task: Task) -> Any:
        cache = self.model.__dict__.setdefault("_pipelines", {})
        if task not in cache:
            comps = self.model.components
            extra = {k: comps[k] for k in _SETTINGS if comps.get(k) is not None}
            if self.boundary_ratio is not None and "boundary_ratio" not in extra:
                extra["boundary_ratio"] = self.boundary_ratio
            if task is Task.IMG2VID:
                extra.setdefault("image_processor", comps.get("image_processor"))
                extra.setdefault("image_encoder", comps.get("image_encoder"))
            extra.setdefault("transformer_2", comps.get("transformer_2"))
            cache[task] = build_pipeline(self.pipelines[task], comps, **extra)
        return cache[task]

    #: the VAE's spatial scale when a folder's vae config does not say (8 for WAN 2.1/A14B; TI2V-5B: 16)
    vae_spatial: ClassVar[int] = 8

    @classmethod
    def model_limits(cls, entry: Any) -> dict[str, tuple[int, str]]:
        """The transformer's rotary table (`rope_max_seq_len` positions per axis) bounds the latent grid: a Diffusers
        folder that declares a short one (the demo's 32) cannot make 1280-wide or long videos. Read from the
        folder's configs without loading; a single file uses the published 1024 (no practical limit)."""
        import json
        from pathlib import Path

        folder = Path(getattr(entry, "path", ""))
        try:
            tconf = json.loads((folder / "transformer" / "config.json").read_text())
        except (OSError, ValueError):
            return {}
        try:
            vconf = json.loads((folder / "vae" / "config.json").read_text())
        except (OSError, ValueError):
            vconf = {}
        rope = int(tconf.get("rope_max_seq_len") or 1024)
        p_t, p_h, p_w = (list(tconf.get("patch_size") or (1, 2, 2)) + [2, 2])[:3]
        spatial = int(vconf.get("scale_factor_spatial") or cls.vae_spatial)
        temporal = int(vconf.get("scale_factor_temporal") or 4)
        why = f"its transformer's rotary table covers {rope} positions per axis"
        k, r = cls.frame_rule or (temporal, 1)
        frames = (rope * p_t - 1) * temporal + 1
        frames -= (frames - r) % k
        return {"width": (rope * p_w * spatial, why), "height": (rope * p_h * spatial, why),
                "num_frames": (frames, why)}

    @property
    def two_experts(self) -> bool:
        return self.model.components.get("transformer_2") is not None

    def validate(self, params: Params) -> list[str]:
        if params.guidance_scale_2 is not None and not self.two_experts:
            return [f"guidance_scale_2 is ignored: {self.key.value} has one transformer (no low-noise expert)"]
        return []

    def call_kwargs(self, params: Params, pipe: Any, batch_size: int) -> dict[str, Any]:
        prompt: Any = params.prompt if batch_size == 1 else [params.prompt] * batch_size
        kw: dict[str, Any] = {"prompt": prompt, "height": params.height, "width": params.width,
                              "num_frames": params.num_frames, "num_inference_steps": params.steps,
                              "guidance_scale": params.cfg_scale, "output_type": "pil"}
        if params.negative_prompt:
            kw["negative_prompt"] = params.negative_prompt if batch_size == 1 else [params.negative_prompt] * batch_size
        if self.two_experts:
            kw["guidance_scale_2"] = params.guidance_scale_2 if params.guidance_scale_2 is not None else params.cfg_scale
        if params.task is Task.IMG2VID:
            kw["image"] = resize_image(params.init_image, params.width, params.height, params.resize_mode)
        return kw

    def run(self, params: Params, events: EventSink) -> EngineOutput:
        out = super().run(params, events)
        pipe = self.pipeline(params.task)
        out.info["experts"] = 2 if self.two_experts else 1
        if self.two_experts:
            ratio = pipe.config.get("boundary_ratio")
            out.info["boundary_ratio"] = ratio
            out.info["guidance_scale_2"] = (params.guidance_scale_2 if params.guidance_scale_2 is not None
                                            else params.cfg_scale)
            out.info.setdefault("infotext_extra", {}).update({"Boundary ratio": ratio,
                                                              "CFG scale 2": out.info["guidance_scale_2"]})
        return out


@ENGINES.register("wan22_ti2v_5b", "wan2.2-ti2v-5b", "wan22-ti2v-5b", "wan_ti2v")
class Wan22TI2V5BEngine(_WanEngine):
    key = EngineKey.WAN22_TI2V_5B
    label = "WAN 2.2 TI2V 5B"
    tasks = frozenset({Task.TXT2VID, Task.IMG2VID})
    size_multiple = 32       # 16x VAE (48 channels, 2x2 patchified) and 2x2 transformer patches
    vae_spatial = 16
    # Wan2.2 ti2v-5B config (Wan-Video/Wan2.2 wan/configs): 1280x704, 121 frames, 50 steps, guide 5.0, 24 fps
    defaults = {"width": 1280, "height": 704, "num_frames": 121, "steps": 50, "cfg_scale": 5.0, "fps": 24.0}
    pipelines = {Task.TXT2VID: WanPipeline, Task.IMG2VID: WanImageToVideoPipeline}


@ENGINES.register("wan22_t2v_a14b", "wan2.2-t2v-a14b", "wan22-t2v-a14b", "wan_t2v")
class Wan22T2VA14BEngine(_WanEngine):
    key = EngineKey.WAN22_T2V_A14B
    label = "WAN 2.2 T2V A14B"
    tasks = frozenset({Task.TXT2VID})
    size_multiple = 16       # 8x VAE and 2x2 transformer patches
    boundary_ratio = 0.875
    # Wan2.2 t2v-A14B config: 1280x720, 81 frames, 40 steps, guide (low 3.0, high 4.0), 16 fps
    defaults = {"width": 1280, "height": 720, "num_frames": 81, "steps": 40, "cfg_scale": 4.0,
                "guidance_scale_2": 3.0, "fps": 16.0}
    pipelines = {Task.TXT2VID: WanPipeline}


@ENGINES.register("wan22_i2v_a14b", "wan2.2-i2v-a14b", "wan22-i2v-a14b", "wan_i2v")
class Wan22I2VA14BEngine(_WanEngine):
    key = EngineKey.WAN22_I2V_A14B
    label = "WAN 2.2 I2V A14B"
    tasks = frozenset({Task.IMG2VID})
    size_multiple = 16
    boundary_ratio = 0.9
    # Wan2.2 i2v-A14B config: 1280x720, 81 frames, 40 steps, guide (3.5, 3.5), 16 fps
    defaults = {"width": 1280, "height": 720, "num_frames": 81, "steps": 40, "cfg_scale": 3.5,
                "guidance_scale_2": 3.5, "fps": 16.0}
    pipelines = {Task.IMG2VID: WanImageToVideoPipeline}


for _cls in (Wan22TI2V5BEngine, Wan22T2VA14BEngine, Wan22I2VA14BEngine):
    register_pipelines(_cls.key.value, _cls.pipelines)

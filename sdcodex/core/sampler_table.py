"""The sampler and schedule-type tables: UI names (A1111/Forge/ComfyUI spellings) -> Diffusers classes and config patches.

Pure data plus name lookup; the policy that applies it lives in `sdcodex.core.samplers`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .enums import Prediction

CLASSIC = (Prediction.EPSILON, Prediction.V_PREDICTION)
FLOW = (Prediction.FLOW,)


@dataclass(frozen=True)
class Variant:
    """How one UI sampler is built for one kind of model (classic noise-prediction or flow-matching)."""

    class_name: str
    patch: Mapping[str, Any] = field(default_factory=dict)
    default_schedule: str | None = None  # what "Automatic" schedule means for this sampler (A1111 1.10)
    # For flow variants: schedule types that apply cleanly on top of the shifted flow sigmas.
    flow_schedules: tuple[str, ...] = ("Automatic",)


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    aliases: tuple[str, ...] = ()
    classic: Variant | None = None
    flow: Variant | None = None
    requires: str | None = None  # optional Python module the Diffusers class needs
    flow_aliases: tuple[str, ...] = ()  # names that mean the flow form only ("Flow Euler")

    def variant(self, prediction: Prediction) -> Variant | None:
        return self.flow if prediction == Prediction.FLOW else self.classic


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    label: str
    aliases: tuple[str, ...] = ()
    # Config keys this schedule sets; sigma schedules also clear the other sigma flags.
    patch: Mapping[str, Any] = field(default_factory=dict)


SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")


def _dpm(order: int, algorithm: str = "dpmsolver++", solver_type: str = "midpoint") -> dict[str, Any]:
    return {"algorithm_type": algorithm, "solver_order": order, "solver_type": solver_type}


_FLOW_PRED = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}

SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("Euler a", ("euler_a", "k_euler_a", "euler_ancestral", "k_euler_ancestral", "eulera"),
                classic=Variant("EulerAncestralDiscreteScheduler")),
    SamplerSpec("Euler", ("euler", "k_euler"), flow_aliases=("Flow Euler", "flowmatch_euler", "FlowMatch Euler"),
                classic=Variant("EulerDiscreteScheduler"),
                flow=Variant("FlowMatchEulerDiscreteScheduler",
                             flow_schedules=("Automatic", "Karras", "Exponential", "Beta"))),
    SamplerSpec("Heun", ("heun", "k_heun"),
                classic=Variant("HeunDiscreteScheduler"),
                flow=Variant("FlowMatchHeunDiscreteScheduler")),
    SamplerSpec("DDIM", ("ddim",), classic=Variant("DDIMScheduler")),
    SamplerSpec("DDPM", ("ddpm",), classic=Variant("DDPMScheduler")),
    SamplerSpec("PLMS", ("plms", "pndm"), classic=Variant("PNDMScheduler", {"skip_prk_steps": True})),
    SamplerSpec("LMS", ("lms", "k_lms"), classic=Variant("LMSDiscreteScheduler")),
    SamplerSpec("DPM2", ("dpm2", "k_dpm_2", "dpm_2"),
                classic=Variant("KDPM2DiscreteScheduler", default_schedule="Karras")),
    SamplerSpec("DPM2 a", ("dpm2_a", "k_dpm_2_a", "dpm_2_ancestral", "dpm2_ancestral"),
                classic=Variant("KDPM2AncestralDiscreteScheduler", default_schedule="Karras")),
    SamplerSpec("DPM++ 2M", ("dpmpp_2m", "k_dpmpp_2m", "dpm++2m", "dpmsolver++"),
                classic=Variant("DPMSolverMultistepScheduler", _dpm(2), default_schedule="Karras"),
                flow=Variant("DPMSolverMultistepScheduler", {**_dpm(2), **_FLOW_PRED})),
    SamplerSpec("DPM++ 2M SDE", ("dpmpp_2m_sde", "k_dpmpp_2m_sde", "dpmpp_2m_sde_gpu"),
                classic=Variant("DPMSolverMultistepScheduler", _dpm(2, "sde-dpmsolver++"),
                                default_schedule="Exponential")),
    SamplerSpec("DPM++ 2M SDE Heun", ("dpmpp_2m_sde_heun", "k_dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu"),
                classic=Variant("DPMSolverMultistepScheduler", _dpm(2, "sde-dpmsolver++", "heun"),
                                default_schedule="Exponential")),
    SamplerSpec("DPM++ 3M SDE", ("dpmpp_3m_sde", "k_dpmpp_3m_sde", "dpmpp_3m_sde_gpu"),
                classic=Variant("DPMSolverMultistepScheduler", _dpm(3, "sde-dpmsolver++"),
                                default_schedule="Exponential")),
    SamplerSpec("DPM++ SDE", ("dpmpp_sde", "k_dpmpp_sde", "dpmpp_sde_gpu"),
                classic=Variant("DPMSolverSDEScheduler", default_schedule="Karras"), requires="torchsde"),
    SamplerSpec("UniPC", ("unipc", "uni_pc", "uni_pc_bh2", "unipc_bh2"),
                classic=Variant("UniPCMultistepScheduler"),
                flow=Variant("UniPCMultistepScheduler", dict(_FLOW_PRED))),
    # DEIS has no flow form here: in flow mode its last sigma repeats instead of reaching 0 (leaves noise).
    SamplerSpec("DEIS", ("deis",), classic=Variant("DEISMultistepScheduler")),
    SamplerSpec("LCM", ("lcm",), classic=Variant("LCMScheduler")),
    SamplerSpec("TCD", ("tcd",), classic=Variant("TCDScheduler")),
)

@dataclass(frozen=True)
class FamilyRow:
    """The sampler policy row of one model family: flow-matching or classic noise prediction, and the sampler
    "Automatic" means on it (None: the model's own scheduler class, else Euler for flow models)."""

    family: str
    flow: bool
    default_sampler: str | None = None


#: one row per engine family; a new family adds its row here and nothing else in the policy changes
FAMILIES: tuple[FamilyRow, ...] = (
    FamilyRow("sd15", False, "DPM++ 2M"),
    FamilyRow("sd2", False, "DPM++ 2M"),  # 2.x base (eps) and 768-v: the model's prediction type
    FamilyRow("sdxl", False, "DPM++ 2M"),
    FamilyRow("svd", False, "Euler"),
    FamilyRow("flux", True),
    FamilyRow("hunyuan_video", True),
    FamilyRow("hunyuan_video15", True),
    FamilyRow("wan22_ti2v_5b", True),
    FamilyRow("wan22_t2v_a14b", True),
    FamilyRow("wan22_i2v_a14b", True),
    # Z-Image (Turbo and base): the model's FlowMatchEulerDiscreteScheduler, shift 3.0 (Tongyi-MAI/Z-Image-Turbo)
    FamilyRow("z_image", True),
    # Chroma: FlowMatch Euler with FLUX.1's resolution-dependent shift (base 0.5, max 1.15)
    FamilyRow("chroma", True),
    FamilyRow("sd3", True, "Euler"),
    # Qwen-Image: FlowMatch Euler with a resolution-dependent shift (base 0.5, max 0.9, terminal 0.02)
    FamilyRow("qwen_image", True),  # FlowMatch Euler with the model's fixed shift (3.0 for SD3.5)
    FamilyRow("qwen_image_edit", True),  # Qwen-Image-Edit ships Qwen-Image's scheduler config
    # FLUX.2 dev and Klein: FlowMatch Euler with a resolution- and step-dependent shift (the pipeline passes mu from
    # its compute_empirical_mu; the folders ship use_dynamic_shifting), so flow_shift does not apply
    FamilyRow("flux2", True),
    FamilyRow("flux2_klein", True),
    # LTX-2: FlowMatch Euler with a token-count-dependent shift (base 0.95, max 2.05, terminal 0.1; the pipeline
    # passes mu and its own sigmas), one copy of the scheduler for the video latents and one for the audio latents
    FamilyRow("ltx2", True),
)
FAMILY_ROWS: Mapping[str, FamilyRow] = MappingProxyType({row.family: row for row in FAMILIES})

# Names users know that have no clean Diffusers counterpart: refused with a specific message.
NO_DIFFUSERS_EQUIVALENT: tuple[str, ...] = (
    "DPM fast", "DPM adaptive", "DPM++ 2S a", "Restart", "DDIM CFG++", "Euler CFG++", "LMS Karras CFG++",
    "UniPC bh1", "dpm_fast", "dpm_adaptive", "dpmpp_2s_ancestral", "restart", "ddim_cfgpp", "euler_cfg_pp",
)

SCHEDULES: tuple[ScheduleSpec, ...] = (
    ScheduleSpec("automatic", "Automatic", ("auto", "default", "none")),
    ScheduleSpec("karras", "Karras", ("ka",), {"use_karras_sigmas": True}),
    ScheduleSpec("exponential", "Exponential", ("exp",), {"use_exponential_sigmas": True}),
    ScheduleSpec("beta", "Beta", (), {"use_beta_sigmas": True}),
    # A1111 "Uniform" is k-diffusion's get_sigmas: timesteps evenly spaced from t_max to 0 (linspace).
    ScheduleSpec("uniform", "Uniform", ("linspace",), {"timestep_spacing": "linspace"}),
    ScheduleSpec("simple", "Simple", ("trailing",), {"timestep_spacing": "trailing"}),
    ScheduleSpec("sgm_uniform", "SGM Uniform", ("sgm",), {"timestep_spacing": "trailing"}),
    ScheduleSpec("ddim_uniform", "DDIM", ("ddim", "leading"), {"timestep_spacing": "leading"}),
    # "Normal" keeps the model's own timestep spacing (filled in by the policy from the base config).
    ScheduleSpec("normal", "Normal", ()),
)

# Flags a class accepts but ignores in set_timesteps: requesting them is reported like a dropped flag.
IGNORED_FLAGS: Mapping[str, frozenset[str]] = MappingProxyType({
    "LCMScheduler": frozenset({"timestep_spacing"}),
    "TCDScheduler": frozenset({"timestep_spacing"}),
})

_LEGACY_SUFFIX = re.compile(r"^(?P<base>.+?)[\s_]+(?P<sched>karras|exponential|ka)$", re.IGNORECASE)


def squash(name: str) -> str:
    """Lookup key: case-, space-, underscore- and hyphen-insensitive; '++' and 'pp' are the same."""
    key = name.strip().lower().replace("++", "pp")
    key = re.sub(r"[\s_\-]+", "", key)
    return key


def _build_index() -> dict[str, SamplerSpec]:
    index: dict[str, SamplerSpec] = {}
    for spec in SAMPLERS:
        for alias in (spec.name, *spec.aliases, *spec.flow_aliases):
            key = squash(alias)
            if index.get(key, spec) is not spec:
                raise RuntimeError(f"sampler alias {alias!r} is ambiguous")
            index[key] = spec
    return index


def _build_schedule_index() -> dict[str, ScheduleSpec]:
    index: dict[str, ScheduleSpec] = {}
    for spec in SCHEDULES:
        for alias in (spec.name, spec.label, *spec.aliases):
            key = squash(alias)
            if index.get(key, spec) is not spec:
                raise RuntimeError(f"schedule alias {alias!r} is ambiguous")
            index[key] = spec
    return index


SAMPLER_INDEX: Mapping[str, SamplerSpec] = MappingProxyType(_build_index())
SCHEDULE_INDEX: Mapping[str, ScheduleSpec] = MappingProxyType(_build_schedule_index())
SCHEDULE_BY_LABEL: Mapping[str, ScheduleSpec] = MappingProxyType({s.label: s for s in SCHEDULES})
_FLOW_ONLY_KEYS = frozenset(squash(a) for spec in SAMPLERS for a in spec.flow_aliases)
_NO_EQUIVALENT_KEYS = frozenset(squash(n) for n in NO_DIFFUSERS_EQUIVALENT)
_AUTOMATIC_KEYS = frozenset({"automatic", "auto", "default"})


def lookup_sampler(name: str) -> SamplerSpec | None:
    key = squash(name)
    if key.startswith("k") and key not in SAMPLER_INDEX and key[1:] in SAMPLER_INDEX:
        key = key[1:]  # "k_euler" style names not listed explicitly
    return SAMPLER_INDEX.get(key)


def is_flow_only_name(name: str) -> bool:
    return squash(name) in _FLOW_ONLY_KEYS


def lookup_schedule(name: str) -> ScheduleSpec | None:
    return SCHEDULE_INDEX.get(squash(name))


def is_automatic(name: str | None) -> bool:
    return name is None or squash(name) in _AUTOMATIC_KEYS or squash(name) == ""


def has_no_equivalent(name: str) -> bool:
    return squash(name) in _NO_EQUIVALENT_KEYS


def split_legacy_name(name: str) -> tuple[str, str | None]:
    """Split an A1111 legacy combined name: "DPM++ 2M Karras" -> ("DPM++ 2M", "Karras").

    Names without a schedule suffix come back unchanged with None ("Euler a" -> ("Euler a", None)).
    The suffix is only split off when the rest is a known sampler, so a future sampler whose own
    name ends in a schedule word is not cut in two.
    """
    text = name.strip()
    match = _LEGACY_SUFFIX.match(text)
    if match is None or lookup_sampler(text) is not None:
        return text, None
    base = match.group("base").strip()
    if lookup_sampler(base) is None and not has_no_equivalent(base):
        return text, None
    sched = match.group("sched").lower()
    return base, "Exponential" if sched == "exponential" else "Karras"

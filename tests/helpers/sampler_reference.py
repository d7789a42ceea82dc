"""An independent sampler table for the tests: A1111 sampler and schedule-type names -> the Diffusers scheduler
class and init flags, written from the documentation (not from `sdcodex.core.sampler_table`), plus a builder that
makes that scheduler directly from Diffusers' classes and a stepper that compares two schedulers by behaviour.

Sources:
- Diffusers, docs/source/en/api/schedulers/overview.md, "A1111/k-diffusion -> Diffusers" table and "Noise schedules
  and schedule types" (Karras -> use_karras_sigmas=True; sgm_uniform and simple -> timestep_spacing="trailing").
- A1111 1.10 `modules/sd_samplers_kdiffusion.py` / `sd_schedulers.py`: each sampler's default schedule type
  (DPM++ 2M, DPM++ SDE, DPM2, DPM2 a -> Karras; the DPM++ SDE multistep family -> Exponential), "Uniform" is
  k-diffusion's get_sigmas over evenly spaced timesteps (linspace), "DDIM" is ddim_discretize (leading + offset),
  "Normal" keeps the model's own spacing.
- k-diffusion `sample_dpmpp_sde` is a stochastic sampler with a Brownian-tree noise sampler; Diffusers'
  DPMSolverSDEScheduler is its port (its docs say so). The overview table's DPMSolverSinglestepScheduler is the
  deterministic ODE solver, so it is not used here.
- Flow-matching models (FLUX, HunyuanVideo, WAN): FlowMatchEulerDiscreteScheduler / FlowMatchHeunDiscreteScheduler
  take `shift`; UniPC and DPM++ 2M take `use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift` (the
  WAN model cards). Only FlowMatchEulerDiscreteScheduler's init takes the Karras/Exponential/Beta sigma flags on top
  of the shift; other schedule types do not apply to flow sigmas.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

# A1111 name -> (Diffusers class, init flags, schedule "Automatic" means for it)
CLASSIC: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}, None),
    "Euler": ("EulerDiscreteScheduler", {}, None),
    "Heun": ("HeunDiscreteScheduler", {}, None),
    "LMS": ("LMSDiscreteScheduler", {}, None),
    "DPM2": ("KDPM2DiscreteScheduler", {}, "Karras"),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}, "Karras"),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, "Karras"),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
                     "Exponential"),
    "DPM++ 2M SDE Heun": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2,
                                                          "solver_type": "heun"}, "Exponential"),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3},
                     "Exponential"),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}, "Karras"),
    "DDIM": ("DDIMScheduler", {}, None),
    "DDPM": ("DDPMScheduler", {}, None),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}, None),
    "UniPC": ("UniPCMultistepScheduler", {}, None),
    "DEIS": ("DEISMultistepScheduler", {}, None),
    "LCM": ("LCMScheduler", {}, None),
    "TCD": ("TCDScheduler", {}, None),
}
_FLOW_PRED = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
FLOW: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Heun": ("FlowMatchHeunDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, **_FLOW_PRED}),
    "UniPC": ("UniPCMultistepScheduler", dict(_FLOW_PRED)),
}
SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")
SCHEDULES: dict[str, dict[str, Any]] = {
    "Karras": {"use_karras_sigmas": True},
    "Exponential": {"use_exponential_sigmas": True},
    "Beta": {"use_beta_sigmas": True},
    "Uniform": {"timestep_spacing": "linspace"},
    "Simple": {"timestep_spacing": "trailing"},
    "SGM Uniform": {"timestep_spacing": "trailing"},
    "DDIM": {"timestep_spacing": "leading"},
    "Normal": {},
}
FLOW_SCHEDULES = ("Karras", "Exponential", "Beta")  # FlowMatchEulerDiscreteScheduler's own sigma flags
# A1111's legacy combined names (before schedule types were a separate setting, 1.9)
LEGACY: dict[str, tuple[str, str]] = {
    "DPM++ 2M Karras": ("DPM++ 2M", "Karras"), "DPM++ SDE Karras": ("DPM++ SDE", "Karras"),
    "DPM++ 2M SDE Karras": ("DPM++ 2M SDE", "Karras"), "DPM++ 2M SDE Exponential": ("DPM++ 2M SDE", "Exponential"),
    "DPM++ 2M SDE Heun Karras": ("DPM++ 2M SDE Heun", "Karras"),
    "DPM++ 2M SDE Heun Exponential": ("DPM++ 2M SDE Heun", "Exponential"),
    "DPM++ 3M SDE Karras": ("DPM++ 3M SDE", "Karras"), "DPM++ 3M SDE Exponential": ("DPM++ 3M SDE", "Exponential"),
    "DPM2 Karras": ("DPM2", "Karras"), "DPM2 a Karras": ("DPM2 a", "Karras"), "LMS Karras": ("LMS", "Karras"),
}


class NotOffered(Exception):
    """The table says this sampler has no form for this kind of model."""


def _cls(name: str) -> type:
    import diffusers

    return getattr(diffusers, name)


def _init_keys(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}


def reference_scheduler(name: str, schedule: str | None, model_config: dict[str, Any], *, flow: bool) -> Any:
    """The scheduler the table names for (sampler, schedule type) on a model with `model_config`."""
    if name in LEGACY:
        name, implied = LEGACY[name]
        schedule = implied if schedule in (None, "Automatic") else schedule
    schedule = None if schedule == "Automatic" else schedule
    config = {k: v for k, v in model_config.items() if not k.startswith("_")}
    if flow:
        if name not in FLOW:
            raise NotOffered(name)
        class_name, flags = FLOW[name]
        cls = _cls(class_name)
        if config.get("use_dynamic_shifting") and "use_dynamic_shifting" not in _init_keys(cls):
            raise NotOffered(f"{name}: no resolution-dependent shift")
        shift = config.get("shift", config.get("flow_shift", 1.0))
        flags = {**flags, ("shift" if class_name.startswith("FlowMatch") else "flow_shift"): shift}
        if schedule in FLOW_SCHEDULES and class_name == "FlowMatchEulerDiscreteScheduler":
            flags.update({f: False for f in SIGMA_FLAGS}, **SCHEDULES[schedule])
        return cls.from_config({**config, **flags})
    if name not in CLASSIC:
        raise NotOffered(name)
    class_name, flags, automatic = CLASSIC[name]
    cls = _cls(class_name)
    if config.get("timestep_type") == "continuous" and "timestep_type" not in _init_keys(cls):
        raise NotOffered(f"{name}: no continuous timesteps (SVD)")
    schedule = schedule or automatic
    flags = dict(flags)
    if schedule is not None:  # one sigma spacing at a time
        flags.update({f: False for f in SIGMA_FLAGS}, **SCHEDULES[schedule])
    return cls.from_config({**config, **flags})


def run_scheduler(scheduler: Any, steps: int = 4, *, mu: float | None = None) -> dict[str, torch.Tensor]:
    """Timesteps, sigmas and the latent after every step on a fixed stand-in model (what a sampler does)."""
    import copy

    scheduler = copy.deepcopy(scheduler)
    if hasattr(scheduler, "noise_sampler_seed") and "noise_sampler_seed" in scheduler.config:
        scheduler.noise_sampler_seed = 0
    kw = {"mu": mu} if scheduler.config.get("use_dynamic_shifting") and mu is not None else {}
    scheduler.set_timesteps(steps, **kw)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 4, 4, generator=gen, dtype=torch.float64).float()
    x = x * getattr(scheduler, "init_noise_sigma", 1.0)
    target = torch.randn(x.shape, generator=gen)
    takes_gen = "generator" in inspect.signature(scheduler.step).parameters
    step_gen = torch.Generator().manual_seed(1)
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t) if hasattr(scheduler, "scale_model_input") else x
        output = 0.5 * model_in + 0.1 * target
        x = scheduler.step(output, t, x, **({"generator": step_gen} if takes_gen else {})).prev_sample
    out = {"timesteps": scheduler.timesteps.float(), "latent": x}
    if getattr(scheduler, "sigmas", None) is not None:
        out["sigmas"] = torch.as_tensor(scheduler.sigmas).float()
    return out


def same_behaviour(ours: Any, theirs: Any, *, mu: float | None = None) -> str | None:
    """None when both schedulers are the same class and sample the same; else what differs."""
    if type(ours) is not type(theirs):
        return f"class {type(ours).__name__} != {type(theirs).__name__}"
    try:
        b = run_scheduler(theirs, mu=mu)
    except Exception as exc:  # noqa: BLE001 - Diffusers itself cannot sample this combination: ours must fail alike
        try:
            run_scheduler(ours, mu=mu)
        except type(exc):
            return None
        return f"Diffusers fails with {exc!r}, ours does not"
    a = run_scheduler(ours, mu=mu)
    for key in b:
        if key not in a or a[key].shape != b[key].shape or not torch.allclose(a[key], b[key], atol=1e-5, rtol=1e-5):
            return f"{key}: {a.get(key)} != {b[key]}"
    return None

"""Sampler policy: UI names -> Diffusers schedulers against real SD1.5/SDXL/SVD/FLUX/HunyuanVideo/WAN scheduler
configs, every name x schedule type x family checked against an independent table (tests/helpers/sampler_reference.py)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from sdcodex.core.errors import UnsupportedSamplerError, ValidationError
from sdcodex.core.samplers import create_sampler, list_samplers, list_schedulers, split_legacy_name

from tests.helpers import sampler_reference as ref

# runwayml/stable-diffusion-v1-5 scheduler/scheduler_config.json
SD15 = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
        "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
        "clip_sample": False}
# a v-prediction zero-terminal-SNR SDXL finetune
VPRED = {"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012,
         "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
         "timestep_spacing": "trailing", "steps_offset": 1, "num_train_timesteps": 1000}
# stabilityai/stable-video-diffusion-img2vid-xt scheduler config
SVD = {"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
       "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
       "prediction_type": "v_prediction", "set_alpha_to_one": False, "sigma_max": 700.0, "sigma_min": 0.002,
       "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading", "timestep_type": "continuous",
       "trained_betas": None, "use_karras_sigmas": True}
# black-forest-labs/FLUX.1-dev scheduler config
FLUX = {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.30.0.dev0",
        "base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
        "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}
# Wan-AI/Wan2.2-TI2V-5B-Diffusers scheduler config
WAN = {"_class_name": "UniPCMultistepScheduler", "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
       "disable_corrector": [], "dynamic_thresholding_ratio": 0.995, "final_sigmas_type": "zero", "flow_shift": 5.0,
       "lower_order_final": True, "num_train_timesteps": 1000, "predict_x0": True, "prediction_type": "flow_prediction",
       "rescale_betas_zero_snr": False, "sample_max_value": 1.0, "solver_order": 2, "solver_p": None,
       "solver_type": "bh2", "steps_offset": 0, "thresholding": False, "timestep_spacing": "linspace",
       "trained_betas": None, "use_beta_sigmas": False, "use_exponential_sigmas": False, "use_flow_sigmas": True,
       "use_karras_sigmas": False}

FLOW = [s["name"] for s in list_samplers("flow")]


# --------------------------------------------------------------------------- classes and flags


def test_expected_classes_and_flags():
    def cls(name, family="sd15", base=SD15):
        return create_sampler(name, None, family, base)

    assert cls("Euler a").class_name == "EulerAncestralDiscreteScheduler"
    assert cls("DPM2 a").class_name == "KDPM2AncestralDiscreteScheduler"
    assert cls("PLMS").config["skip_prk_steps"] is True
    sde = cls("DPM++ 2M SDE").config
    assert (sde["algorithm_type"], sde["solver_order"], sde["use_exponential_sigmas"]) == ("sde-dpmsolver++", 2, True)
    assert cls("DPM++ 3M SDE").config["solver_order"] == 3
    assert cls("DPM++ 2M SDE Heun").config["solver_type"] == "heun"
    assert cls("Euler", "flux", FLUX).class_name == "FlowMatchEulerDiscreteScheduler"
    assert cls("Heun", "wan22_ti2v_5b", WAN).class_name == "FlowMatchHeunDiscreteScheduler"
    assert cls("Heun", "wan22_ti2v_5b", WAN).config["shift"] == 5.0


def test_schedule_types_change_the_timesteps():
    ddim = {n: create_sampler("DDIM", n, "sd15", SD15).scheduler for n in ("Simple", "DDIM", "Uniform")}
    for s in ddim.values():
        s.set_timesteps(4)
    assert ddim["Simple"].timesteps.tolist() == [999, 749, 499, 249]   # trailing
    assert ddim["DDIM"].timesteps.tolist() == [751, 501, 251, 1]       # leading + steps_offset
    assert ddim["Uniform"].timesteps.tolist() == [999, 666, 333, 0]    # linspace
    karras = create_sampler("Euler", "Karras", "sd15", SD15).scheduler
    plain = create_sampler("Euler", None, "sd15", SD15).scheduler
    karras.set_timesteps(4)
    plain.set_timesteps(4)
    assert karras.config.use_karras_sigmas and not plain.config.use_karras_sigmas
    assert abs(karras.sigmas[0] - plain.sigmas[0]) < 1e-3 and abs(karras.sigmas[2] - plain.sigmas[2]) > 0.1


# --------------------------------------------------------------------------- names


def test_split_legacy_name():
    assert split_legacy_name("DPM++ 2M Karras") == ("DPM++ 2M", "Karras")
    assert split_legacy_name("DPM++ SDE Karras") == ("DPM++ SDE", "Karras")
    assert split_legacy_name("DPM++ 2M SDE Exponential") == ("DPM++ 2M SDE", "Exponential")
    assert split_legacy_name("DPM2 a Karras") == ("DPM2 a", "Karras")
    assert split_legacy_name("k_dpmpp_2m_ka") == ("k_dpmpp_2m", "Karras")
    assert split_legacy_name("Euler a") == ("Euler a", None)
    assert split_legacy_name("Karras") == ("Karras", None)
    assert split_legacy_name("Foo Karras") == ("Foo Karras", None)


def test_legacy_name_sets_schedule_and_conflict_is_an_error():
    choice = create_sampler("DPM++ 2M Karras", None, "sd15", SD15)
    assert (choice.sampler_in, choice.sampler_effective, choice.scheduler_effective) == \
        ("DPM++ 2M Karras", "DPM++ 2M", "Karras")
    assert choice.config["use_karras_sigmas"] is True
    assert create_sampler("DPM++ 2M Karras", "karras", "sd15", SD15).scheduler_effective == "Karras"
    assert create_sampler("DPM++ 2M Karras", "Automatic", "sd15", SD15).scheduler_effective == "Karras"
    with pytest.raises(ValidationError) as err:
        create_sampler("DPM++ 2M Karras", "Exponential", "sd15", SD15)
    assert err.value.field == "scheduler" and "Karras" in str(err.value)


@pytest.mark.parametrize("alias,name", [
    ("k_euler_a", "Euler a"), ("euler_ancestral", "Euler a"), ("EULER A", "Euler a"), ("k_euler", "Euler"),
    ("dpmpp_2m", "DPM++ 2M"), ("dpmpp_2m_sde", "DPM++ 2M SDE"), ("dpmpp_2m_sde_gpu", "DPM++ 2M SDE"),
    ("uni_pc", "UniPC"), ("lcm", "LCM"), ("ddim", "DDIM"), ("k_dpm_2_a", "DPM2 a"), ("k_lms", "LMS"),
    ("dpmpp_3m_sde", "DPM++ 3M SDE"), ("  dpm++ 2m  ", "DPM++ 2M"),
])
def test_aliases(alias, name):
    assert create_sampler(alias, None, "sd15", SD15).sampler_effective == name


@pytest.mark.parametrize("alias,label", [("karras", "Karras"), ("sgm_uniform", "SGM Uniform"),
                                         ("EXPONENTIAL", "Exponential"), ("ddim_uniform", "DDIM")])
def test_schedule_aliases(alias, label):
    assert create_sampler("Euler", alias, "sd15", SD15).scheduler_effective == label


def test_unknown_names_list_what_is_allowed():
    with pytest.raises(UnsupportedSamplerError) as err:
        create_sampler("Eulerish", None, "sd15", SD15)
    assert err.value.field == "sampler" and "DPM++ 2M" in err.value.allowed and "Euler a" in err.value.allowed
    with pytest.raises(UnsupportedSamplerError, match="no Diffusers equivalent"):
        create_sampler("DPM adaptive", None, "sd15", SD15)
    with pytest.raises(ValidationError) as err:
        create_sampler("Euler", "Polyexponential", "sd15", SD15)
    assert err.value.field == "scheduler" and "Karras" in err.value.allowed


# --------------------------------------------------------------------------- validity and flags


def test_karras_on_ddim_warns_and_reports_the_default():
    choice = create_sampler("DDIM", "Karras", "sd15", SD15)
    assert choice.warnings == ["Schedule type Karras is not supported by DDIM; used its default spacing"]
    assert choice.scheduler_effective == "Automatic"
    assert "use_karras_sigmas" not in choice.config
    assert choice.to_info()["warnings"] == choice.warnings


def test_classic_sampler_on_flow_family_is_refused_with_allowed_list():
    with pytest.raises(UnsupportedSamplerError) as err:
        create_sampler("Euler a", None, "flux", FLUX)
    assert err.value.field == "sampler"
    assert err.value.allowed == ["Automatic", "Euler", "DPM++ 2M", "UniPC"]
    assert create_sampler("Flow Euler", None, "flux", FLUX).class_name == "FlowMatchEulerDiscreteScheduler"
    with pytest.raises(UnsupportedSamplerError, match="flow-matching") as err:
        create_sampler("Flow Euler", None, "sd15", SD15)
    assert err.value.field == "sampler" and "Euler" in err.value.allowed
    with pytest.raises(UnsupportedSamplerError, match="LCM") as err:
        create_sampler("lcm", None, "hunyuan_video", FLUX)
    assert "LCM" not in err.value.allowed
    # DPM++ 2M is valid on WAN; the legacy Karras suffix cannot apply to flow sigmas and is reported
    choice = create_sampler("DPM++ 2M Karras", None, "wan22_t2v_a14b", WAN)
    assert (choice.sampler_effective, choice.scheduler_effective) == ("DPM++ 2M", "Automatic")
    assert choice.warnings == ["Schedule type Karras is not supported by DPM++ 2M on flow-matching models; "
                               "used the model's shift schedule"]


def test_heun_refused_for_dynamic_shift():
    with pytest.raises(UnsupportedSamplerError, match="use_dynamic_shifting") as err:
        create_sampler("Heun", None, "flux", FLUX)
    assert "Heun" not in err.value.allowed


def test_svd_allows_only_continuous_euler():
    choice = create_sampler(None, None, "svd", SVD)
    assert (choice.sampler_effective, choice.scheduler_effective) == ("Euler", "Karras")
    assert choice.config["timestep_type"] == "continuous" and choice.config["sigma_max"] == 700.0
    with pytest.raises(UnsupportedSamplerError) as err:
        create_sampler("DPM++ 2M", None, "svd", SVD)
    assert err.value.allowed == ["Automatic", "Euler"]


def test_v_prediction_config_is_kept():
    for name in ("Euler", "DPM++ 2M", "DDIM", "UniPC", "Euler a"):
        cfg = create_sampler(name, None, "sdxl", VPRED).config
        assert cfg["prediction_type"] == "v_prediction", name
        assert cfg["rescale_betas_zero_snr"] is True and cfg["timestep_spacing"] == "trailing", name
    lms = create_sampler("LMS", None, "sdxl", VPRED)
    assert lms.config["prediction_type"] == "v_prediction"
    assert lms.warnings == ["LMS ignores rescale_betas_zero_snr=True from the model's scheduler config (not supported)"]
    assert create_sampler("Euler", None, "sd15", SD15, "v_prediction").config["prediction_type"] == "v_prediction"


def test_prediction_and_family_errors():
    with pytest.raises(ValidationError) as err:
        create_sampler("Euler", None, "flux", FLUX, "epsilon")
    assert err.value.field == "prediction"
    with pytest.raises(ValidationError) as err:
        create_sampler("Euler", None, "no_such_family", SD15)
    assert err.value.field == "family" and "sdxl" in err.value.allowed


def test_dpmpp_sde_without_torchsde_says_why(monkeypatch):
    """DPM++ SDE needs torchsde (a dependency); a Python without it is simulated by hiding the module."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torchsde" else real(name, *a))
    with pytest.raises(UnsupportedSamplerError, match="torchsde") as err:
        create_sampler("DPM++ SDE Karras", None, "sd15", SD15)
    assert "DPM++ SDE" not in err.value.allowed and "DPM++ 2M SDE" in err.value.allowed
    assert [s["available"] for s in list_samplers(include_unavailable=True) if s["name"] == "DPM++ SDE"] == [False]
    assert "DPM++ SDE" not in [s["name"] for s in list_samplers()]


# --------------------------------------------------------------------------- defaults and modes


def test_automatic_defaults_per_family():
    sd = create_sampler("Automatic", None, "sd15", SD15)
    assert (sd.sampler_effective, sd.scheduler_effective, sd.sampler_in) == ("DPM++ 2M", "Karras", "Automatic")
    assert "family default" in sd.default_reason
    assert create_sampler(None, "Exponential", "sdxl", SD15).scheduler_effective == "Exponential"
    flux = create_sampler(None, None, "flux", FLUX)
    assert (flux.class_name, flux.sampler_effective, flux.scheduler_effective) == \
        ("FlowMatchEulerDiscreteScheduler", "Euler", "Automatic")
    assert flux.config["use_dynamic_shifting"] is True and flux.config["max_shift"] == 1.15 and flux.needs_mu
    wan = create_sampler(None, None, "wan22_ti2v_5b", WAN)
    assert (wan.sampler_effective, wan.config["flow_shift"], wan.config["solver_type"]) == ("UniPC", 5.0, "bh2")


def test_flow_solver_keeps_dynamic_shift_and_pipeline_hints():
    choice = create_sampler("DPM++ 2M", None, "flux", FLUX)
    assert choice.config["use_dynamic_shifting"] is True and choice.config["flow_shift"] == 3.0
    assert choice.scheduler.config["base_shift"] == 0.5 and choice.scheduler.config["max_image_seq_len"] == 4096
    assert choice.warnings == []


@pytest.mark.parametrize("mode,sampler,schedule,spacing", [
    ("lcm", "LCM", "Automatic", None), ("turbo", "Euler a", "SGM Uniform", "trailing"),
    ("lightning", "Euler", "SGM Uniform", "trailing"),
])
def test_modes_are_defaults_only(mode, sampler, schedule, spacing):
    choice = create_sampler(None, None, "sdxl", SD15, mode=mode)
    assert (choice.sampler_effective, choice.scheduler_effective) == (sampler, schedule)
    assert choice.default_reason == f"mode {mode} default"
    if spacing:
        assert choice.config["timestep_spacing"] == spacing
    assert create_sampler("DDIM", None, "sdxl", SD15, mode=mode).sampler_effective == "DDIM"


def test_deterministic_and_json_info():
    a = create_sampler("DPM++ 2M SDE Karras", None, "sd15", SD15)
    b = create_sampler("DPM++ 2M SDE Karras", None, "sd15", SD15)
    assert a.config == b.config and dict(a.scheduler.config) == dict(b.scheduler.config)
    assert a.scheduler is not b.scheduler
    info = json.loads(json.dumps(a.to_info()))
    assert info["sampler_effective"] == "DPM++ 2M SDE" and info["scheduler_effective"] == "Karras"
    assert info["diffusers_class"] == "DPMSolverMultistepScheduler"


def test_listings():
    names = [s["name"] for s in list_samplers()]
    assert {"Euler a", "Euler", "DPM++ 2M", "UniPC", "LCM", "DDIM"} <= set(names)
    assert FLOW == ["Euler", "Heun", "DPM++ 2M", "UniPC"]
    euler = next(s for s in list_samplers() if s["name"] == "Euler")
    assert euler["diffusers_class"]["flow"] == "FlowMatchEulerDiscreteScheduler"
    assert "k_euler" in euler["aliases"]
    labels = [s["label"] for s in list_schedulers()]
    assert labels[0] == "Automatic" and {"Karras", "Exponential", "Beta", "SGM Uniform"} <= set(labels)


# --------------------------------------------------------------------------- against an independent table

# HunyuanVideo 1.0/1.5 scheduler config (hunyuanvideo-community/HunyuanVideo): FlowMatch Euler, shift 7.0
HUNYUAN = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 7.0,
           "use_dynamic_shifting": False}
# black-forest-labs/FLUX.1-schnell scheduler config
SCHNELL = {**FLUX, "shift": 1.0, "use_dynamic_shifting": False}
# Tongyi-MAI/Z-Image-Turbo scheduler config
ZIMAGE = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0,
          "use_dynamic_shifting": False}
# stabilityai/stable-diffusion-3.5-large scheduler/scheduler_config.json
SD35 = {"_class_name": "FlowMatchEulerDiscreteScheduler", "_diffusers_version": "0.31.0.dev0",
        "num_train_timesteps": 1000, "shift": 3.0}
# Qwen/Qwen-Image scheduler/scheduler_config.json
QWEN_IMAGE = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
              "invert_sigmas": False, "max_image_seq_len": 8192, "max_shift": 0.9, "num_train_timesteps": 1000,
              "shift": 1.0, "shift_terminal": 0.02, "stochastic_sampling": False, "time_shift_type": "exponential",
              "use_beta_sigmas": False, "use_dynamic_shifting": True, "use_exponential_sigmas": False,
              "use_karras_sigmas": False}
# FLUX.2 dev / Klein folders: FLUX.1's dynamic-shift FlowMatch Euler config; the pipeline passes mu itself
FLUX2 = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
         "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
         "use_dynamic_shifting": True}
# stabilityai/stable-diffusion-2-1 scheduler/scheduler_config.json (768-v)
SD2 = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
       "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "v_prediction",
       "set_alpha_to_one": False, "steps_offset": 1, "trained_betas": None, "skip_prk_steps": True}
# Lightricks/LTX-2 scheduler/scheduler_config.json: shift from the video token count, terminal 0.1
LTX2 = {**QWEN_IMAGE, "base_image_seq_len": 1024, "max_image_seq_len": 4096, "base_shift": 0.95, "max_shift": 2.05,
        "shift_terminal": 0.1}
FAMILIES = {"sd15": (SD15, False), "sd2": (SD2, False), "sdxl": (VPRED, False), "svd": (SVD, False), "flux": (FLUX, True),
            "flux_schnell": (SCHNELL, True), "hunyuan_video": (HUNYUAN, True), "hunyuan_video15": (HUNYUAN, True),
            "wan22_ti2v_5b": (WAN, True), "wan22_t2v_a14b": ({**WAN, "flow_shift": 12.0}, True),
            "wan22_i2v_a14b": (WAN, True), "z_image": (ZIMAGE, True), "chroma": (FLUX, True),
            "sd3": (SD35, True), "qwen_image": (QWEN_IMAGE, True), "qwen_image_edit": (QWEN_IMAGE, True),
            "flux2": (FLUX2, True),
            "flux2_klein": (FLUX2, True), "ltx2": (LTX2, True)}
ENGINE_KEY = {"flux_schnell": "flux"}
NAMES = [*ref.CLASSIC, *ref.LEGACY]
SCHEDULE_NAMES = ["Automatic", *ref.SCHEDULES]


def test_the_name_table_covers_every_family():
    from sdcodex.core.sampler_table import FAMILIES as ROWS

    assert {row.family for row in ROWS} <= set(FAMILIES), "a new family needs a row in this test's FAMILIES"


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("name", NAMES)
def test_every_name_and_schedule_matches_the_documented_scheduler(name, family):
    """create_sampler builds what the table (written from A1111's and Diffusers' docs) names: same class, same
    timesteps/sigmas, same latents over 4 steps; what the table does not offer is refused naming the sampler."""
    base, flow = FAMILIES[family]
    failures = []
    for schedule in SCHEDULE_NAMES:
        implied = ref.LEGACY.get(name, (None, None))[1]
        if implied and schedule not in ("Automatic", implied):
            continue  # a conflicting schedule is an error (test_legacy_name_sets_schedule_and_conflict_is_an_error)
        try:
            theirs = ref.reference_scheduler(name, schedule, base, flow=flow)
        except ref.NotOffered:
            with pytest.raises(UnsupportedSamplerError) as err:
                create_sampler(name, schedule, ENGINE_KEY.get(family, family), base)
            assert err.value.field == "sampler"
            continue
        choice = create_sampler(name, schedule, ENGINE_KEY.get(family, family), base)
        for key, value in choice.config.items():  # the reported config is what the scheduler really holds
            if not key.startswith("_"):
                assert choice.scheduler.config[key] == value or value != value, (schedule, key)
        why = ref.same_behaviour(choice.scheduler, theirs, mu=0.8)
        if why:
            failures.append(f"{schedule}: {why}")
        dropped = [k for k, v in ref.SCHEDULES.get(schedule, {}).items() if theirs.config.get(k) != v]
        if dropped and not flow:
            assert choice.warnings and choice.scheduler_effective != schedule, (schedule, dropped)
    assert not failures, failures





@pytest.mark.parametrize("name,cls,shift_key", [
    ("Automatic", "FlowMatchEulerDiscreteScheduler", "shift"), ("Euler", "FlowMatchEulerDiscreteScheduler", "shift"),
    ("Heun", "FlowMatchHeunDiscreteScheduler", "shift"), ("DPM++ 2M", "DPMSolverMultistepScheduler", "flow_shift"),
    ("UniPC", "UniPCMultistepScheduler", "flow_shift")])
def test_sd35_row_flow_samplers_keep_the_fixed_shift(name, cls, shift_key):
    choice = create_sampler(name, None, "sd3", SD35)
    assert (choice.class_name, choice.prediction.value, choice.config[shift_key]) == (cls, "flow", 3.0)
    assert not choice.needs_mu and choice.warnings == []
    if name == "Automatic":
        assert choice.sampler_effective == "Euler" and "family default" in choice.default_reason


def test_sd35_row_refuses_classic_samplers():
    with pytest.raises(UnsupportedSamplerError) as err:
        create_sampler("DPM++ 2M SDE", "Karras", "sd3", SD35)
    assert err.value.field == "sampler" and "Euler" in err.value.allowed and "DDIM" not in err.value.allowed





def test_qwen_image_row_keeps_the_dynamic_shift_and_terminal():
    auto = create_sampler(None, None, "qwen_image", QWEN_IMAGE)
    assert (auto.class_name, auto.sampler_effective) == ("FlowMatchEulerDiscreteScheduler", "Euler")
    assert auto.needs_mu and auto.config["shift_terminal"] == 0.02 and auto.config["max_shift"] == 0.9
    unipc = create_sampler("UniPC", None, "qwen_image", QWEN_IMAGE)
    assert unipc.config["use_dynamic_shifting"] is True and unipc.config["use_flow_sigmas"] is True
    with pytest.raises(UnsupportedSamplerError) as err:
        create_sampler("Heun", None, "qwen_image", QWEN_IMAGE)
    assert "resolution-dependent shift" in str(err.value)


def test_ltx2_row_keeps_the_token_count_shift_and_terminal():
    auto = create_sampler(None, None, "ltx2", LTX2)
    assert (auto.class_name, auto.sampler_effective) == ("FlowMatchEulerDiscreteScheduler", "Euler")
    assert auto.needs_mu and auto.config["shift_terminal"] == 0.1 and auto.config["max_shift"] == 2.05
    with pytest.raises(UnsupportedSamplerError) as err:
        create_sampler("DDIM", None, "ltx2", LTX2)
    assert err.value.field == "sampler"


@pytest.mark.parametrize("family", ["flux2", "flux2_klein"])
def test_flux2_rows_keep_the_dynamic_shift(family):
    auto = create_sampler(None, None, family, FLUX2)
    assert auto.sampler_effective == "Euler" and auto.config["use_dynamic_shifting"] is True and auto.needs_mu
    with pytest.raises(UnsupportedSamplerError):
        create_sampler("DDIM", None, family, FLUX2)

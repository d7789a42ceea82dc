"""The per-family rows of the sampler policy (sampler_table.FAMILY_ROWS): every engine family has one, flow
families take only flow-form samplers with the model's shift kept, and "Automatic" means the row's default."""
from __future__ import annotations

import pytest

from sdcodex.core.enums import EngineKey
from sdcodex.core.errors import UnsupportedSamplerError, ValidationError
from sdcodex.core.sampler_table import FAMILY_ROWS
from sdcodex.core.samplers import create_sampler

# Tongyi-MAI/Z-Image-Turbo scheduler/scheduler_config.json
Z_IMAGE = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0,
           "use_dynamic_shifting": False}


def test_every_family_has_a_row():
    assert set(FAMILY_ROWS) == set(EngineKey.values())


@pytest.mark.parametrize("family,base", [("z_image", Z_IMAGE)])
def test_flow_family_row(family, base):
    auto = create_sampler(None, None, family, base)
    assert auto.prediction.value == "flow" and auto.sampler_effective == "Euler"
    assert auto.class_name == "FlowMatchEulerDiscreteScheduler" and auto.config["shift"] == 3.0
    unipc = create_sampler("UniPC", None, family, base)
    assert unipc.config["flow_shift"] == 3.0 and unipc.config["use_flow_sigmas"] is True
    dpm = create_sampler("DPM++ 2M", None, family, base)
    assert dpm.config["flow_shift"] == 3.0 and dpm.warnings == []
    for classic in ("Euler a", "DDIM", "LMS"):
        with pytest.raises(UnsupportedSamplerError) as err:
            create_sampler(classic, None, family, base)
        assert err.value.field == "sampler" and "Euler" in err.value.allowed
    with pytest.raises(ValidationError) as err:
        create_sampler("Euler", None, family, base, "epsilon")
    assert err.value.field == "prediction"


# lodestones/Chroma1-HD scheduler (FLUX.1's FlowMatch Euler with resolution-dependent shift)
CHROMA = {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
          "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
          "use_dynamic_shifting": True}


def test_chroma_row_keeps_dynamic_shifting():
    auto = create_sampler(None, None, "chroma", CHROMA)
    assert auto.sampler_effective == "Euler" and auto.config["use_dynamic_shifting"] is True and auto.needs_mu
    assert auto.config["max_shift"] == 1.15
    with pytest.raises(UnsupportedSamplerError) as err:
        create_sampler("Heun", None, "chroma", CHROMA)
    assert "resolution-dependent shift" in str(err.value)
    with pytest.raises(UnsupportedSamplerError):
        create_sampler("DPM++ 2M SDE", None, "chroma", CHROMA)

"""The ControlNet extension's IP-Adapter units in alwayson_scripts.controlnet.args become our `ip_adapter`; the
ControlNet units beside them keep their indices."""
from __future__ import annotations

import pytest

from sdcodex.core.errors import ValidationError
from sdcodex.core.request import validate_request
from sdcodex.server.a1111_map import Txt2ImgRequest, to_request


def _units(*units):
    return Txt2ImgRequest(prompt="x", alwayson_scripts={"controlnet": {"args": list(units)}})


def test_ip_adapter_unit_maps_onto_ip_adapter():
    body = _units({"enabled": True, "module": "canny", "model": "cn-sd15 [abcd1234]", "image": "AAAA"},
                  {"enabled": True, "module": "ip-adapter_clip_sd15", "model": "ip-adapter_sd15 [0123abcd]",
                   "image": "BBBB", "weight": 0.6, "guidance_end": 0.5},
                  {"enabled": False, "module": "ip-adapter_clip_sd15", "model": "other"})
    req, ignored = to_request(body, task="txt2img", options={})
    assert req["ip_adapter"] == {"model": "ip-adapter_sd15", "images": ["BBBB"], "scale": 0.6}
    assert [u["model"] for u in req["controls"]] == ["cn-sd15"]
    assert "alwayson_scripts.controlnet.args[1].guidance_end" in ignored
    validate_request({"task": "txt2img", **req})


def test_bad_ip_adapter_units_name_the_unit():
    two = _units({"module": "ip-adapter_clip_sd15", "model": "a", "image": "A"},
                 {"module": "ip-adapter_clip_sdxl", "model": "b", "image": "B"})
    with pytest.raises(ValidationError) as e:
        to_request(two, task="txt2img", options={})
    assert e.value.field == "alwayson_scripts.controlnet.args[1]"
    face = _units({"module": "ip-adapter_face_id_plus", "model": "ip-adapter-faceid-plus_sd15", "image": "A"})
    with pytest.raises(ValidationError) as e:
        to_request(face, task="txt2img", options={})
    assert e.value.field == "alwayson_scripts.controlnet.args[0].module"
    no_image = _units({"module": "ip-adapter_clip_sd15", "model": "a"})
    with pytest.raises(ValidationError) as e:
        to_request(no_image, task="txt2img", options={})
    assert e.value.field == "alwayson_scripts.controlnet.args[0].image"

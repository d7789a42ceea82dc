"""Component configs a module is built from: the bundled configs of each family (configs/<family>/<component>/) and
per-component overrides given by the caller (a mapping, or a Diffusers folder whose component configs are used)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from sdcodex.core.errors import ModelLoadError

CONFIG_ROOT = Path(__file__).parent / "configs"
CONFIG_FILES = ("config.json", "scheduler_config.json", "tokenizer_config.json")


def bundled(family: Any, component: str) -> dict[str, Any] | None:
    """A bundled config of a real model (configs/<family>/<component>/), None when there is none."""
    folder = CONFIG_ROOT / str(getattr(family, "value", family)) / component
    for name in CONFIG_FILES:
        if (folder / name).is_file():
            return json.loads((folder / name).read_text())
    return None


def bundled_config(family: Any, component: str) -> dict[str, Any]:
    """A bundled Diffusers/transformers config, e.g. ('sdxl', 'text_encoder_2') or ('sd15', 'unet_inpaint');
    a ModelLoadError when the family has none."""
    found = bundled(family, component)
    if found is None:
        have = sorted(p.name for p in CONFIG_ROOT.iterdir() if p.is_dir())
        raise ModelLoadError(f"no bundled config for {getattr(family, 'value', family)}/{component}", field="family",
                             allowed=have)
    return found


def configs_from(source: str | Path | Mapping[str, dict] | None) -> dict[str, dict]:
    """Per-component config overrides: a mapping, or a Diffusers folder whose component configs are used."""
    if source is None:
        return {}
    if isinstance(source, Mapping):
        return dict(source)
    out = {}
    for sub in Path(source).iterdir():
        for name in ("config.json", "scheduler_config.json"):
            if (sub / name).is_file():
                out[sub.name] = json.loads((sub / name).read_text())
    return out





# ---- a config kept beside a single file ----------------------------------------------------------------------------
#: Diffusers / transformers class of a one-component JSON config -> the component it configures
CLASS_COMPONENTS = {"UNet2DConditionModel": "unet", "AutoencoderKL": "vae", "CLIPTextModel": "text_encoder",
                    "CLIPTextModelWithProjection": "text_encoder_2", "FluxTransformer2DModel": "transformer",
                    "WanTransformer3DModel": "transformer", "HunyuanVideoTransformer3DModel": "transformer",
                    "HunyuanVideo15Transformer3DModel": "transformer",
                    "T5EncoderModel": "text_encoder", "UMT5EncoderModel": "text_encoder"}


def config_beside(path: str | Path, family: str) -> tuple[dict[str, dict], str | None]:
    """Configs kept next to a single file NAME.safetensors, used for that file, and where they came from:

    * NAME.yaml (or .yml): the original LDM config, as A1111 reads it (UNet widths, heads, depths, context,
      ADM input, `parameterization: v`, VAE scale factor);
    * NAME.json: one Diffusers/transformers component config (its `_class_name` / `architectures` says which
      component) or a map {component: config};
    * NAME/: a Diffusers config folder (component subfolders with config.json / scheduler_config.json).
    ({}, None) when there is none."""
    path = Path(path)
    for suffix in (".yaml", ".yml"):
        cand = path.with_suffix(suffix)
        if cand.is_file():
            return ldm_yaml_configs(_read_yaml(cand), family, cand), str(cand)
    cand = path.with_suffix(".json")
    if cand.is_file():
        return json_configs(cand), str(cand)
    folder = path.with_suffix("")
    if folder.is_dir() and folder != path:
        found = configs_from(folder)
        if found:
            return found, str(folder)
    return {}, None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{path}: cannot read the config beside the model ({exc})", field="model") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: the config beside the model is not a mapping", field="model")
    return data


def json_configs(path: Path) -> dict[str, dict]:
    """A NAME.json beside a model: one component config or {component: config}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot read the config beside the model ({exc})", field="model") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: the config beside the model is not a JSON object", field="model")
    cls = data.get("_class_name") or (data.get("architectures") or [None])[0]
    if cls:
        if cls not in CLASS_COMPONENTS:
            raise ModelLoadError(f"{path}: a {cls} config; a config beside a model configures one of "
                                 f"{', '.join(sorted(CLASS_COMPONENTS))}", field="model",
                                 allowed=sorted(CLASS_COMPONENTS))
        return {CLASS_COMPONENTS[cls]: data}
    if data and all(isinstance(v, dict) for v in data.values()):
        return {str(k): v for k, v in data.items()}
    raise ModelLoadError(f"{path}: not a Diffusers/transformers config (no _class_name) nor a map of component "
                         "configs", field="model")


def _uniform(values: list[Any]) -> Any:
    return values[0] if values and all(v == values[0] for v in values) else values


def ldm_yaml_configs(data: Mapping[str, Any], family: str, source: str | Path = "config") -> dict[str, dict]:
    """Diffusers configs from an original LDM / SGM config (A1111's NAME.yaml): `model.params.unet_config` (LDM) or
    `network_config` (SGM) for the UNet; `parameterization: v` for the scheduler; `scale_factor` for the VAE."""
    params = (data.get("model") or {}).get("params") or {}
    net = (params.get("unet_config") or params.get("network_config") or {}).get("params") or {}
    out: dict[str, dict] = {}
    if net:
        try:
            ch, mult = int(net["model_channels"]), [int(m) for m in net.get("channel_mult", [1, 2, 4, 4])]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{source}: model.params.unet_config.params needs model_channels and channel_mult "
                                 f"({exc})", field="model") from exc
        channels = [ch * m for m in mult]
        depth = net.get("transformer_depth", 1)
        depth = [int(depth)] * len(mult) if isinstance(depth, int) else [int(d) for d in depth][:len(mult)]
        rates = {int(r) for r in net.get("attention_resolutions", [])}
        attn = [2 ** i in rates and depth[i] > 0 for i in range(len(mult))]
        head_width, heads = int(net.get("num_head_channels", -1) or -1), int(net.get("num_heads", -1) or -1)
        cfg: dict[str, Any] = dict(bundled(family, "unet") or {})
        cfg.update(in_channels=int(net.get("in_channels", 4)), out_channels=int(net.get("out_channels", 4)),
                   block_out_channels=channels, layers_per_block=net.get("num_res_blocks", 2),
                   down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
                   up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)],
                   transformer_layers_per_block=_uniform([d if d > 0 else 1 for d in depth]),
                   use_linear_projection=bool(net.get("use_linear_in_transformer", False)),
                   attention_head_dim=_uniform([c // head_width for c in channels]) if head_width > 0 else heads,
                   num_attention_heads=None)
        if net.get("context_dim") is not None:
            cfg["cross_attention_dim"] = int(net["context_dim"])
        if net.get("adm_in_channels"):
            cfg.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=int(net["adm_in_channels"]),
                       addition_time_embed_dim=cfg.get("addition_time_embed_dim") or 256)
        out["unet"] = cfg
    if str(params.get("parameterization", "")).lower() in ("v", "v_prediction"):
        out["scheduler"] = {**(bundled(family, "scheduler_v_prediction") or bundled(family, "scheduler") or {}),
                            "prediction_type": "v_prediction"}
    if params.get("scale_factor") is not None:
        out["vae"] = {**(bundled(family, "vae") or {}), "scaling_factor": float(params["scale_factor"])}
    return out
__all__ = ["CONFIG_ROOT", "bundled", "bundled_config", "configs_from", "config_beside", "json_configs",
           "ldm_yaml_configs", "CLASS_COMPONENTS"]

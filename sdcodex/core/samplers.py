"""The sampler policy: UI sampler + schedule-type names -> a fresh Diffusers scheduler, and a report of what was used.

`create_sampler()` validates the names against the model's family and prediction type, builds the effective
scheduler config from the model's own scheduler config, and warns about every requested flag the Diffusers
class dropped or ignores (Diffusers' `from_config` drops them silently). The tables live in `sampler_table`.
"""
from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping

from .enums import EngineKey, Mode, Prediction
from .errors import UnsupportedSamplerError, ValidationError
from .sampler_table import (
    FAMILY_ROWS, IGNORED_FLAGS, SAMPLERS, SCHEDULE_BY_LABEL, SCHEDULES, SIGMA_FLAGS, SamplerSpec, Variant,
    has_no_equivalent, is_automatic, is_flow_only_name, lookup_sampler, lookup_schedule, split_legacy_name,
)

__all__ = ["SamplerChoice", "create_sampler", "list_samplers", "list_schedulers", "split_legacy_name",
           "prediction_for"]

_MODE_DEFAULT = {Mode.LCM: ("LCM", None), Mode.TURBO: ("Euler a", "SGM Uniform"),
                 Mode.LIGHTNING: ("Euler", "SGM Uniform")}
# Flow keys a pipeline reads from scheduler.config to compute `mu`; carried even where the class has no such arg.
_PIPELINE_HINTS = ("base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len")
_FLOW_MATCH_KEYS = ("num_train_timesteps", "use_dynamic_shifting", "base_shift", "max_shift", "base_image_seq_len",
                    "max_image_seq_len", "shift_terminal", "time_shift_type", "invert_sigmas")
_FLOW_SOLVER_KEYS = ("num_train_timesteps", "use_dynamic_shifting", "time_shift_type", "shift_terminal")


@dataclass
class SamplerChoice:
    """What the user asked, what was really used, and the ready scheduler."""

    sampler_in: str | None
    scheduler_in: str | None
    sampler_effective: str
    scheduler_effective: str
    scheduler: Any
    config: dict[str, Any]
    prediction: Prediction
    warnings: list[str] = field(default_factory=list)
    default_reason: str | None = None  # why the sampler/schedule was chosen when the user left it Automatic

    @property
    def class_name(self) -> str:
        return type(self.scheduler).__name__

    @property
    def needs_mu(self) -> bool:
        """True when set_timesteps needs `mu` (resolution-dependent shifting, e.g. FLUX)."""
        return bool(self.config.get("use_dynamic_shifting", False))

    @property
    def accepts_sigmas(self) -> bool:
        return "sigmas" in inspect.signature(self.scheduler.set_timesteps).parameters

    def to_info(self) -> dict[str, Any]:
        return {"sampler_in": self.sampler_in, "scheduler_in": self.scheduler_in,
                "sampler_effective": self.sampler_effective, "scheduler_effective": self.scheduler_effective,
                "diffusers_class": self.class_name, "prediction": self.prediction.value,
                "config": dict(self.config), "warnings": list(self.warnings), "default_reason": self.default_reason}


# ----------------------------------------------------------------------------- public API


def create_sampler(name: str | None, scheduler: str | None, family: EngineKey | str, base_config: Mapping[str, Any],
                   prediction: Prediction | str | None = None, *, mode: Mode | str | None = None) -> SamplerChoice:
    """Build the scheduler for UI sampler `name` and schedule type `scheduler` on a model of `family`.

    `base_config` is the model's own scheduler config (scheduler_config.json). Raises ValidationError
    (field "scheduler"/"family"/"prediction"/"mode") or UnsupportedSamplerError (field "sampler").
    """
    fam = _family(family)
    base_class = base_config.get("_class_name")
    base = {k: v for k, v in dict(base_config).items() if not k.startswith("_")}
    pred = prediction_for(fam, base, prediction)
    mode_v = _mode(mode)

    sampler_part, legacy = split_legacy_name(name) if name else (name, None)
    asked_schedule = _schedule_label(scheduler)
    if legacy is not None:
        if asked_schedule is not None and asked_schedule != legacy:
            raise ValidationError(f"sampler name {name!r} implies schedule type {legacy}, but {scheduler!r} was asked",
                                  field="scheduler", allowed=[legacy, "Automatic"])
        asked_schedule = legacy

    reason = None
    if is_automatic(sampler_part):
        spec, mode_schedule, reason = _default_sampler(fam, pred, base, base_class, mode_v)
        if asked_schedule is None and mode_schedule is not None:
            asked_schedule = mode_schedule
    else:
        spec = _resolve_sampler(sampler_part, pred, base)
    variant = spec.variant(pred)
    assert variant is not None

    warnings: list[str] = []
    schedule = asked_schedule
    if schedule is None and variant.default_schedule is not None:
        schedule = variant.default_schedule
        reason = (reason + "; " if reason else "") + f"schedule {schedule} is the recommended one for {spec.name}"
    if pred == Prediction.FLOW and schedule is not None and schedule not in variant.flow_schedules:
        warnings.append(f"Schedule type {schedule} is not supported by {spec.name} on flow-matching models; "
                        f"used the model's shift schedule")
        schedule = None

    if pred == Prediction.FLOW:
        config, asked, model_flags = _flow_config(variant, base, base_class)
    else:
        config, asked, model_flags = _classic_config(variant, base, pred)
    schedule_flags = _apply_schedule(config, schedule, base)
    asked.update(schedule_flags)

    built, config, dropped = _build(spec, variant, config, asked, model_flags, base, warnings, schedule, schedule_flags)
    effective_schedule = _effective_schedule(config, schedule, schedule_flags, dropped)
    return SamplerChoice(sampler_in=name, scheduler_in=scheduler, sampler_effective=spec.name,
                         scheduler_effective=effective_schedule, scheduler=built, config=config, prediction=pred,
                         warnings=warnings, default_reason=reason)


def list_samplers(prediction: Prediction | str | None = None, *,
                  include_unavailable: bool = False) -> list[dict[str, Any]]:
    """UI samplers: name, aliases, valid predictions, Diffusers class per prediction, availability.

    Samplers whose optional dependency is missing (DPM++ SDE without torchsde) are left out unless
    `include_unavailable`.
    """
    pred = _prediction_value(prediction) if prediction is not None else None
    out = []
    for spec in SAMPLERS:
        preds = [p for p in Prediction if spec.variant(p) is not None]
        if (pred is not None and pred not in preds) or not (include_unavailable or _requirement_met(spec)):
            continue
        out.append({"name": spec.name, "aliases": [*spec.aliases, *spec.flow_aliases], "predictions": [p.value for p in preds],
                    "diffusers_class": {p.value: spec.variant(p).class_name for p in preds},
                    "requires": spec.requires, "available": _requirement_met(spec)})
    return out


def list_schedulers() -> list[dict[str, Any]]:
    """Every schedule type: name (snake_case id), label (A1111 spelling), aliases, config patch."""
    return [{"name": s.name, "label": s.label, "aliases": list(s.aliases), "config": dict(s.patch)} for s in SCHEDULES]


def prediction_for(family: EngineKey | str, base_config: Mapping[str, Any],
                   prediction: Prediction | str | None = None) -> Prediction:
    """The prediction type that decides valid samplers: explicit, else flow for flow families, else the config's."""
    fam = _family(family)
    flow_family = _is_flow_family(fam)
    if prediction is None:
        declared = base_config.get("prediction_type", "epsilon")
        if flow_family or declared == "flow_prediction":
            pred = Prediction.FLOW
        else:
            pred = Prediction.V_PREDICTION if declared == "v_prediction" else Prediction.EPSILON
    else:
        pred = _prediction_value(prediction)
    if flow_family != (pred == Prediction.FLOW):
        allowed = [Prediction.FLOW.value] if flow_family else [Prediction.EPSILON.value, Prediction.V_PREDICTION.value]
        raise ValidationError(f"prediction {pred.value!r} does not fit model family {fam.value!r}",
                              field="prediction", allowed=allowed)
    return pred


# ----------------------------------------------------------------------------- resolution


def _family(family: EngineKey | str) -> EngineKey:
    try:
        return EngineKey(family)
    except ValueError:
        raise ValidationError(f"unknown model family {family!r}", field="family", allowed=EngineKey.values()) from None


def _is_flow_family(fam: EngineKey) -> bool:
    row = FAMILY_ROWS.get(fam.value)
    return bool(row and row.flow)


def _prediction_value(prediction: Prediction | str) -> Prediction:
    try:
        return Prediction(prediction)
    except ValueError:
        raise ValidationError(f"unknown prediction type {prediction!r}", field="prediction",
                              allowed=Prediction.values()) from None


def _mode(mode: Mode | str | None) -> Mode:
    if mode is None:
        return Mode.NORMAL
    try:
        return Mode(mode)
    except ValueError:
        raise ValidationError(f"unknown mode {mode!r}", field="mode", allowed=Mode.values()) from None


def _schedule_label(scheduler: str | None) -> str | None:
    """Canonical label of the asked schedule type; None for Automatic."""
    if scheduler is None or is_automatic(scheduler):
        return None
    spec = lookup_schedule(scheduler)
    if spec is None:
        raise ValidationError(f"unknown schedule type {scheduler!r}", field="scheduler",
                              allowed=[s.label for s in SCHEDULES])
    return None if spec.name == "automatic" else spec.label


def _requirement_met(spec: SamplerSpec) -> bool:
    return spec.requires is None or importlib.util.find_spec(spec.requires) is not None


def _scheduler_class(class_name: str) -> type:
    import diffusers  # imported here: listing names must not pay for importing diffusers

    return getattr(diffusers, class_name)


def _init_keys(cls: type) -> set[str]:
    return set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}


def _invalid_reason(spec: SamplerSpec, pred: Prediction, base: Mapping[str, Any]) -> str | None:
    variant = spec.variant(pred)
    if variant is None:
        kind = "flow-matching" if pred == Prediction.FLOW else f"{pred.value}"
        return f"sampler {spec.name} has no Diffusers form for {kind} models"
    if not _requirement_met(spec):
        return (f"sampler {spec.name} needs the Python package '{spec.requires}', which is not installed "
                f"(pip install {spec.requires}); choose another sampler")
    dynamic = bool(base.get("use_dynamic_shifting", False))
    if pred == Prediction.FLOW and dynamic:
        keys = _init_keys(_scheduler_class(variant.class_name))
        if "use_dynamic_shifting" not in keys:
            return f"sampler {spec.name} cannot do the resolution-dependent shift (use_dynamic_shifting) this model needs"
        if variant.class_name != "FlowMatchEulerDiscreteScheduler" and \
                base.get("time_shift_type", "exponential") != "exponential":
            return f"sampler {spec.name} supports dynamic shifting only with time_shift_type 'exponential'"
    if pred != Prediction.FLOW and base.get("timestep_type") == "continuous":
        if "timestep_type" not in _init_keys(_scheduler_class(variant.class_name)):
            return f"sampler {spec.name} cannot produce the continuous timesteps this model needs"
    return None


def _valid_names(pred: Prediction, base: Mapping[str, Any]) -> list[str]:
    return ["Automatic"] + [s.name for s in SAMPLERS if _invalid_reason(s, pred, base) is None]


def _resolve_sampler(name: str, pred: Prediction, base: Mapping[str, Any]) -> SamplerSpec:
    spec = lookup_sampler(name)
    if spec is None:
        why = "has no Diffusers equivalent" if has_no_equivalent(name) else "is not a known sampler"
        raise UnsupportedSamplerError(f"sampler {name!r} {why}", field="sampler", allowed=_valid_names(pred, base))
    reason = _invalid_reason(spec, pred, base)
    if reason is None and pred != Prediction.FLOW and is_flow_only_name(name):
        reason = f"sampler {name!r} is for flow-matching models; use {spec.name!r}"
    if reason is not None:
        raise UnsupportedSamplerError(reason, field="sampler", allowed=_valid_names(pred, base))
    return spec


def _default_sampler(fam: EngineKey, pred: Prediction, base: Mapping[str, Any], base_class: str | None,
                     mode: Mode) -> tuple[SamplerSpec, str | None, str]:
    """The sampler "Automatic" means: mode default, else family default, else the model's own class."""
    valid = [s for s in SAMPLERS if _invalid_reason(s, pred, base) is None]
    by_name = {s.name: s for s in valid}
    if pred != Prediction.FLOW and mode in _MODE_DEFAULT and _MODE_DEFAULT[mode][0] in by_name:
        name, schedule = _MODE_DEFAULT[mode]
        return by_name[name], schedule, f"mode {mode.value} default"
    own = next((s for s in valid if s.variant(pred).class_name == base_class), None)
    row = FAMILY_ROWS.get(fam.value)
    declared = by_name.get(row.default_sampler) if row and row.default_sampler else None
    if pred == Prediction.FLOW:
        spec = declared or own or by_name.get("Euler") or valid[0]
        why = "the model's own scheduler" if spec is own and declared is None else "family default"
    else:
        spec = declared or by_name.get("DPM++ 2M") or own or valid[0]
        why = "family default"
    if mode != Mode.NORMAL:
        why += f" (mode {mode.value} sets no sampler for this model)"
    return spec, None, why


# ----------------------------------------------------------------------------- config building


def _classic_config(variant: Variant, base: Mapping[str, Any], pred: Prediction) -> tuple[dict, dict, dict]:
    """Base config + sampler patch. Returns (config, flags the choice asks for, model flags that must survive)."""
    config = dict(base)
    model_flags = {k: v for k, v in base.items()
                   if (k == "rescale_betas_zero_snr" and v) or (k == "trained_betas" and v is not None)
                   or k in ("timestep_spacing", "timestep_type")}
    config.update(variant.patch)
    asked = dict(variant.patch)
    config["prediction_type"] = pred.value
    if pred == Prediction.V_PREDICTION:
        model_flags["prediction_type"] = pred.value
    return config, asked, model_flags


def _flow_config(variant: Variant, base: Mapping[str, Any], base_class: str | None) -> tuple[dict, dict, dict]:
    """Same class: the model's config as is. Otherwise its shift settings translated to the target class."""
    if base_class == variant.class_name:
        config = dict(base)
        config.update(variant.patch)
        return config, dict(variant.patch), {}
    shift = base.get("shift", base.get("flow_shift", 1.0))
    if variant.class_name.startswith("FlowMatch"):
        config = {k: base[k] for k in _FLOW_MATCH_KEYS if k in base}
        config["shift"] = shift
        model_flags = {"shift": shift}
    else:
        config = {k: base[k] for k in _FLOW_SOLVER_KEYS if k in base}
        config["flow_shift"] = shift
        model_flags = {"flow_shift": shift}
    if base.get("use_dynamic_shifting"):
        model_flags["use_dynamic_shifting"] = True
        model_flags["time_shift_type"] = base.get("time_shift_type", "exponential")
    if base.get("shift_terminal") is not None:
        model_flags["shift_terminal"] = base["shift_terminal"]
    config.update(variant.patch)
    return config, dict(variant.patch), model_flags


def _apply_schedule(config: dict, schedule: str | None, base: Mapping[str, Any]) -> dict[str, Any]:
    """Write the schedule type's flags into `config`; return the flags that must survive for it to apply."""
    if schedule is None:
        return {}
    spec = SCHEDULE_BY_LABEL[schedule]
    for flag in SIGMA_FLAGS:  # one sigma schedule at a time; the others are cleared where present
        if flag in config or flag in spec.patch:
            config[flag] = False
    patch = dict(spec.patch)
    if spec.name == "normal" and "timestep_spacing" in base:
        patch["timestep_spacing"] = base["timestep_spacing"]
    config.update(patch)
    return patch


def _build(spec: SamplerSpec, variant: Variant, config: dict, asked: dict, model_flags: dict,
           base: Mapping[str, Any], warnings: list[str], schedule: str | None,
           schedule_flags: Mapping[str, Any]) -> tuple[Any, dict, set[str]]:
    """from_config on the accepted keys, then report every asked or model flag that did not survive."""
    cls = _scheduler_class(variant.class_name)
    keys = _init_keys(cls)
    ignored = IGNORED_FLAGS.get(variant.class_name, frozenset())
    accepted = {k: v for k, v in sorted(config.items()) if k in keys}
    try:
        scheduler = cls.from_config(accepted)
    except (ValueError, ImportError, NotImplementedError, AssertionError) as exc:
        raise UnsupportedSamplerError(f"{variant.class_name} rejected the config for sampler {spec.name}"
                                      f"{' with schedule type ' + schedule if schedule else ''}: {exc}",
                                      field="sampler") from exc
    hints = {k: base[k] for k in _PIPELINE_HINTS if k in base and k not in keys}
    if hints:  # kept in scheduler.config for pipelines that compute `mu` from them
        scheduler.register_to_config(**hints)

    def lost(key: str, value: Any, ignore_counts: bool) -> bool:
        return key not in keys or (ignore_counts and key in ignored) or scheduler.config.get(key) != value

    dropped: set[str] = set()
    for key, value in sorted(asked.items()):
        if not lost(key, value, True):
            continue
        if key in schedule_flags:
            if not dropped & set(schedule_flags):
                warnings.append(f"Schedule type {schedule} is not supported by {spec.name}; used its default spacing")
        else:
            warnings.append(f"{spec.name}: {variant.class_name} did not keep {key}={value!r}")
        dropped.add(key)
    for key, value in sorted(model_flags.items()):
        if key in asked or not lost(key, value, False):
            continue
        dropped.add(key)
        got = f"used {scheduler.config.get(key)!r}" if key in keys else "not supported"
        warnings.append(f"{spec.name} ignores {key}={value!r} from the model's scheduler config ({got})")
    config_out = {k: _jsonable(scheduler.config[k]) for k in sorted(keys) if k in scheduler.config}
    config_out.update({k: _jsonable(v) for k, v in hints.items()})
    config_out["_class_name"] = variant.class_name
    return scheduler, config_out, dropped


def _effective_schedule(config: Mapping[str, Any], schedule: str | None, flags: Mapping[str, Any],
                        dropped: set[str]) -> str:
    """Name the schedule really in effect: the asked one if all its flags landed, else what the config does."""
    if schedule is not None and not (set(flags) & dropped):
        return schedule
    for flag, label in zip(SIGMA_FLAGS, ("Karras", "Exponential", "Beta")):
        if config.get(flag):
            return label
    return "Automatic"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value

"""Error classes. Every error says what was wrong, where (a JSON path when it is a field) and what is allowed."""
from __future__ import annotations

from typing import Any, Iterable


class CodexError(Exception):
    """Base of every error the core raises on purpose. `http_status` is what the server answers."""

    http_status = 500
    code = "error"

    def __init__(self, message: str, *, field: str | None = None, allowed: Any = None) -> None:
        self.message = message
        self.field = field
        self.allowed = allowed
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.field}: {self.message}" if self.field else self.message
        if self.allowed is not None:
            allowed = self.allowed
            if isinstance(allowed, (list, tuple, set, frozenset)):
                allowed = ", ".join(str(a) for a in allowed) or "(none)"
            text += f" (allowed: {allowed})"
        return text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.code, "message": str(self)}
        if self.field is not None:
            out["field"] = self.field
        if self.allowed is not None:
            out["allowed"] = list(self.allowed) if isinstance(self.allowed, (set, frozenset, tuple)) else self.allowed
        return out


class ValidationError(CodexError):
    """A request, preset or parameter is invalid. `errors` holds one dict per problem (field, message)."""

    http_status = 422
    code = "validation_error"

    def __init__(self, message: str, *, field: str | None = None, allowed: Any = None,
                 errors: Iterable[dict[str, Any]] | None = None) -> None:
        super().__init__(message, field=field, allowed=allowed)
        self.errors = list(errors) if errors else [{"field": field, "message": message}]

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["errors"] = self.errors
        return out


class PresetError(ValidationError):
    code = "preset_error"


class UnsupportedTaskError(CodexError):
    http_status = 422
    code = "unsupported_task"


class UnsupportedSamplerError(ValidationError):
    code = "unsupported_sampler"


class ModelNotFoundError(CodexError):
    """`allowed` lists the models that do exist."""

    http_status = 404
    code = "model_not_found"


class AmbiguousModelError(ModelNotFoundError):
    """A name matches several files; `allowed` lists their paths (any of them, or its A1111 title, is unique)."""

    http_status = 422
    code = "model_ambiguous"


class ModelLoadError(CodexError):
    """A model file exists but cannot be loaded (corrupt, truncated, unknown layout, wrong family)."""

    http_status = 422
    code = "model_load_error"


class PickleRefusedError(ModelLoadError):
    code = "pickle_refused"


class TokenizerMissingError(ModelLoadError):
    code = "tokenizer_missing"


class EngineError(CodexError):
    """The engine failed while generating."""

    http_status = 500
    code = "engine_error"


class InterruptedError_(CodexError):
    """Raised inside an engine when the user interrupts; the orchestrator keeps finished outputs."""

    http_status = 200
    code = "interrupted"

"""Logging for every face (CLI, server, UI): one setup on the "sdcodex" logger, secrets masked everywhere.

`setup_logging()` installs a stderr handler (text or JSON lines) and a rotating file handler
(`<log_dir>/sdcodex.log`, always JSON lines so `export-debug` can read it back). Every handler carries a
`Redactor` that masks tokens, passwords, `Authorization` headers, `--api-auth user:pass` and `hf_...` tokens
in the message, the arguments, the `extra` fields and the formatted traceback.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import logging.handlers
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Mapping

ROOT_LOGGER = "sdcodex"
LOG_FILE = "sdcodex.log"
REDACTED = "***REDACTED***"

__all__ = [
    "REDACTED", "ROOT_LOGGER", "LOG_FILE", "Redactor", "JsonFormatter", "TextFormatter", "setup_logging",
    "get_logger", "log_job", "recent_log_lines", "redact_text", "redact_value", "is_secret_key",
    "register_secret", "secret_env_values", "redact_line",
]

# ---------------------------------------------------------------------------------------------- redaction

# A key is secret when its name says so. "tokenizer" and "author" are not secrets; "authorization" is.
_KEY_CORE = r"(?:token(?!iz)|passw(?:or)?d|secret|api[_-]?key|auth(?!or(?!i))|credential|cookie|private[_-]?key)"
_SECRET_KEY = re.compile(_KEY_CORE, re.IGNORECASE)
_KEY_WORD = r"[\w.-]*" + _KEY_CORE + r"[\w.-]*"
_VALUE = (r"(?:\\\"(?:[^\"\\]|\\[^\"])*?\\\""    # \"escaped json string\"
          r"|\"[^\"]*\"|'[^']*'"                         # "quoted" or 'quoted'
          r"|(?:(?:bearer|basic|token)\s+)?[^\s\"',;}&)\]\\]+)")  # bare, with an optional auth scheme


def _mask(match: re.Match[str]) -> str:
    """Keep the key and the quotes around a value; replace only the value."""
    prefix, value = match.group(1), match.group(2)
    if value.startswith('\\"'):
        return f'{prefix}\\"{REDACTED}\\"'
    if value[:1] in ('"', "'"):
        return f"{prefix}{value[0]}{REDACTED}{value[0]}"
    return prefix + REDACTED


_TEXT_RULES: list[tuple[re.Pattern[str], Any]] = [
    # --api-auth user:pass, --hf-token=xyz, --password secret
    (re.compile(r"(?i)(--" + _KEY_WORD + r"(?:=|\s+))(" + _VALUE + ")"), _mask),
    # HF_TOKEN=xyz, "api_key": "xyz", Authorization: Bearer xyz, password=xyz, \"token\": \"xyz\"
    (re.compile(r"(?i)(\\?[\"']?" + _KEY_WORD + r"\\?[\"']?\s*[:=]\s*)(" + _VALUE + ")"), _mask),
    # credentials inside URLs: scheme://user:pass@host
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + REDACTED + "@"),
    # anything shaped like a Hugging Face token
    (re.compile(r"\bhf_[A-Za-z0-9]{8,}\b"), REDACTED),
]

_known_secrets: set[str] = set()
_known_lock = threading.Lock()


def is_secret_key(key: Any) -> bool:
    """True when a dict key / env var / argument name looks like it holds a secret (token, password...)."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def register_secret(value: str | None, *, min_length: int = 4) -> None:
    """Remember a secret value (e.g. the `--api-auth` argument) so it is masked wherever it appears."""
    if value and len(value) >= min_length:
        with _known_lock:
            _known_secrets.add(value)
            if ":" in value:  # user:pass -> the password alone is a secret too
                password = value.split(":", 1)[1]
                if len(password) >= 4:
                    _known_secrets.add(password)


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (HF_TOKEN, SDCODEX_API_AUTH, ...)."""
    env = os.environ if environ is None else environ
    return [v for k, v in env.items() if is_secret_key(k) and v]


def redact_text(text: str) -> str:
    """Mask every secret found in a free-form string."""
    if not text:
        return text
    with _known_lock:
        known = sorted(_known_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, repl in _TEXT_RULES:
        text = pattern.sub(repl, text)
    return text


def redact_value(value: Any, key: Any = None) -> Any:
    """Mask secrets inside any JSON-like value; a value under a secret-looking key is replaced whole."""
    if key is not None and is_secret_key(key) and value not in (None, "", False):
        if not isinstance(value, (dict, list, tuple)):
            return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_value(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_value(v) for v in value]
    return value


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class Redactor(logging.Filter):
    """Logging filter that masks secrets in the message, its arguments, `extra` fields and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_sdcodex_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        for key, value in _extras(record).items():
            setattr(record, key, redact_value(value, key))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        record._sdcodex_redacted = True
        return True


# --------------------------------------------------------------------------------------------- formatters

def _timestamp(record: logging.LogRecord) -> str:
    ts = _dt.datetime.fromtimestamp(record.created, tz=_dt.timezone.utc)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, every `extra` field, and `exc` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        # Redact the structure, not the dumped text, so the line stays valid JSON.
        return json.dumps(redact_value(out), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable: `2025-01-01T10:00:00.000Z INFO  sdcodex.cli: message key=value ...`."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<5} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(
                f"{k}={json.dumps(v, default=str, ensure_ascii=False) if not isinstance(v, str) else v}"
                for k, v in extras.items()
            )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return redact_text(line)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (so pytest capture and re-bound streams work)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property always reads sys.stderr
        pass


# ------------------------------------------------------------------------------------------------- setup

_setup_lock = threading.Lock()


def setup_logging(*, level: str | int = "INFO", fmt: str = "text", log_dir: Path | str | None = Path("logs"),
                  max_bytes: int = 5_000_000, backups: int = 3) -> logging.Logger:
    """Configure the "sdcodex" logger once for the whole process; calling again replaces, never duplicates.

    fmt: "text" or "json" for stderr. The file `<log_dir>/sdcodex.log` (if log_dir is not None) is always JSON
    lines, rotated at `max_bytes` with `backups` old files kept. Values of secret-looking env vars (HF_TOKEN...)
    are registered so they are masked even where no pattern would catch them.
    """
    if fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r} is not supported (allowed: text, json)")
    if isinstance(level, str):
        level_no = logging.getLevelName(level.upper())
        if not isinstance(level_no, int):
            raise ValueError(f"log level {level!r} is not supported (allowed: DEBUG, INFO, WARNING, ERROR)")
    else:
        level_no = level
    for secret in secret_env_values():
        register_secret(secret, min_length=8)  # short values ("1", "true") are flags, not secrets

    logger = logging.getLogger(ROOT_LOGGER)
    with _setup_lock:
        for handler in [h for h in logger.handlers if getattr(h, "_sdcodex_handler", False)]:
            logger.removeHandler(handler)
            handler.close()
        logger.setLevel(level_no)
        logger.propagate = False

        console = _StderrHandler()
        console.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
        _install(logger, console)

        if log_dir is not None:
            path = Path(log_dir) / LOG_FILE
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                file_handler = logging.handlers.RotatingFileHandler(
                    path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8", delay=True)
            except OSError as exc:
                logger.warning("log file %s cannot be written (%s); logging to stderr only", path, exc)
            else:
                file_handler.setFormatter(JsonFormatter())
                _install(logger, file_handler)
    return logger


def _install(logger: logging.Logger, handler: logging.Handler) -> None:
    handler.addFilter(Redactor())
    handler._sdcodex_handler = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


def get_logger(name: str = "") -> logging.Logger:
    """A logger inside the "sdcodex" hierarchy (`get_logger("cli")` -> "sdcodex.cli")."""
    if not name or name == ROOT_LOGGER:
        return logging.getLogger(ROOT_LOGGER)
    if name.startswith(ROOT_LOGGER + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{ROOT_LOGGER}.{name}")


_JOB_FIELDS = ("engine", "model", "preset_keys", "applied_preset_patch", "sampler_in", "sampler_effective",
               "timings")


def log_job(logger: logging.Logger, job_id: str, info: Mapping[str, Any], *, level: int = logging.INFO) -> None:
    """Log what a job did as ONE record: engine, model, preset keys, applied_preset_patch, sampler in/effective,
    stage timings (and any other keys in `info`) as `extra` fields, so JSON logs carry them as fields."""
    extra: dict[str, Any] = {"job_id": job_id}
    for key, value in info.items():
        safe_key = key if key not in _STANDARD_ATTRS else f"info_{key}"
        extra[safe_key] = value
    parts = [f"{k}={info[k]}" for k in ("engine", "model") if info.get(k) is not None]
    sampler_in, sampler_eff = info.get("sampler_in"), info.get("sampler_effective")
    if sampler_in is not None or sampler_eff is not None:
        parts.append(f"sampler={sampler_in}->{sampler_eff}")
    timings = info.get("timings")
    if isinstance(timings, Mapping) and timings:
        parts.append("timings=" + ",".join(f"{k}:{v}" for k, v in timings.items()))
    logger.log(level, "job %s: %s", job_id, " ".join(parts) or "done", extra=extra)


def _log_files(log_dir: Path, backups: int = 20) -> list[Path]:
    """The log file and its rotated backups, oldest first."""
    base = log_dir / LOG_FILE
    files = [log_dir / f"{LOG_FILE}.{i}" for i in range(backups, 0, -1)]
    files.append(base)
    return [f for f in files if f.is_file()]


def recent_log_lines(n: int = 500, log_dir: Path | str | None = Path("logs")) -> list[str]:
    """The last `n` lines of `<log_dir>/sdcodex.log` (reaching into rotated backups), oldest first, redacted."""
    if n <= 0 or log_dir is None:
        return []
    lines: list[str] = []
    for path in reversed(_log_files(Path(log_dir))):
        try:
            chunk = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        lines = chunk + lines
        if len(lines) >= n:
            break
    return [redact_line(line) for line in lines[-n:]]


def redact_line(line: str) -> str:
    """Redact one log line: a JSON line is redacted field by field (and stays valid JSON), other text as text."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError:
            pass
        else:
            return json.dumps(redact_value(data), default=str, ensure_ascii=False)
    return redact_text(line)

"""Building an `AuditConfig` from a TOML file, CLI flags and Python keyword arguments (later wins)."""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.config import AuditConfig

# Flat names accepted by the CLI and `datakit.audit(**kwargs)`, and where they live in the config.
SHORTCUTS: dict[str, tuple[str, str]] = {
    "max_tokens": ("length", "max_tokens"),
    "min_response_tokens": ("length", "min_response_tokens"),
    "tokenizer": ("length", "tokenizer"),
    "against": ("leakage", "against"),
    "threshold": ("near_duplicate", "threshold"),
    "task_type": ("volume", "task_type"),
}


class ConfigError(Exception):
    """The configuration is unusable; the message names the file or option and the problem."""


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e}).") from None
    return data.get("audit", data)  # either a bare file or an [audit] table inside a larger one


def build_config(config_file: str | Path | None = None, **overrides: Any) -> AuditConfig:
    data: dict[str, Any] = load_toml(config_file) if config_file else {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in SHORTCUTS:
            section, name = SHORTCUTS[key]
            data.setdefault(section, {})[name] = value
        elif isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    try:
        return AuditConfig.model_validate(data)
    except ValidationError as e:
        where = f"{config_file}: " if config_file else ""
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{where}invalid configuration: {problems}. See `datakit rules` for options and defaults.") from None

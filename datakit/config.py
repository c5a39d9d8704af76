"""Building an `AuditConfig` from a config file (TOML, YAML or JSON), CLI flags and Python keyword arguments (later wins).

A mistake in a config is the normal case, not a crash: every problem is named by its dotted key (`length.max_tokens`)
and where it came from (the file, or the option), with the value given and what is expected.
"""
from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from schemas.config import AuditConfig

# Flat names accepted by the CLI and `datakit.audit(**kwargs)`, and where they live in the config.
SHORTCUTS: dict[str, tuple[str, str]] = {
    "max_tokens": ("length", "max_tokens"),
    "min_response_tokens": ("length", "min_response_tokens"),
    "tokenizer": ("length", "tokenizer"),
    "against": ("leakage", "against"),
    "threshold": ("near_duplicate", "threshold"),
    "task_type": ("volume", "task_type"),
    "score_model": ("correspondence", "score_model"),
}


class ConfigError(Exception):
    """The configuration is unusable; the message names the file or option and the problem."""


def read_settings(path: str | Path) -> dict[str, Any]:
    """The mapping of settings in a config file: YAML for .yaml/.yml, JSON for .json, TOML otherwise."""
    p = Path(path)
    kind = {".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}.get(p.suffix.lower(), "TOML")
    try:
        text = p.read_text(encoding="utf-8")
        data = tomllib.loads(text) if kind == "TOML" else json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found.") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, not a config file.") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}); save the config as UTF-8.") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: not valid {kind} ({' '.join(str(e).split())}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of setting: value at the top, got a {type(data).__name__}.")
    return {str(k): v for k, v in data.items()}


def load_toml(path: str | Path) -> dict[str, Any]:
    """The audit settings of a config file: an [audit] table inside a larger one, or the whole file."""
    data = read_settings(path)
    audit = data.get("audit", data)
    if not isinstance(audit, dict):
        raise ConfigError(f"{path}: audit: expected a table of settings, got {audit!r}.")
    return audit


def build_config(config_file: str | Path | None = None, **overrides: Any) -> AuditConfig:
    data: dict[str, Any] = load_toml(config_file) if config_file else {}
    options: dict[tuple, str] = {}  # dotted key -> the option that set it
    for key, value in overrides.items():
        if value is None:
            continue
        if key in SHORTCUTS:
            section, name = SHORTCUTS[key]
            if isinstance(data.setdefault(section, {}), dict):  # else the file's own mistake is reported
                data[section][name] = value
                options[(section, name)] = "--" + key.replace("_", "-")
        elif isinstance(value, dict) and isinstance(data.setdefault(key, {}), dict):
            data[key].update(value)
            options.update({(key, name): f"{key}.{name} (given as an option)" for name in value})
        else:
            data[key] = value
            options[(key,)] = "--" + key.replace("_", "-")

    def origin(loc: tuple) -> str:
        return next((options[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in options), dotted(loc))

    try:
        config = AuditConfig.model_validate(data)
    except ValidationError as e:
        in_file = config_file and any(origin(tuple(err["loc"])) == dotted(tuple(err["loc"])) for err in e.errors())
        raise ConfigError(f"{f'{config_file}: ' if in_file else ''}invalid configuration: {explain(e, AuditConfig, origin)}. "
                          "See `datakit rules` for what each setting does.") from None
    _check_families(config, config_file, origin)
    return config


def _check_families(config: AuditConfig, config_file: str | Path | None, origin: Callable[[tuple], str]) -> None:
    from validators import select

    for key in ("only", "skip"):
        try:
            select(**{key: getattr(config, key)})
        except ValueError as e:
            where = origin((key,))
            raise ConfigError(f"{f'{config_file}: ' if where == key else ''}{where}: {e}") from None


def dotted(loc: tuple) -> str:
    """('leakage', 'internal_patterns', 1) -> 'leakage.internal_patterns[1]'."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".") or "(top level)"


def explain(error: ValidationError, model: type[BaseModel], origin: Callable[[tuple], str]) -> str:
    """pydantic's errors as one line: where each problem is (`origin` of its key), the value given, what is expected."""
    return "; ".join(_one(e, model, origin).rstrip(".") for e in error.errors(include_url=False))


def _one(e: dict, model: type[BaseModel], origin: Callable[[tuple], str]) -> str:
    loc, where = tuple(e["loc"]), origin(tuple(e["loc"]))
    if e["type"] == "extra_forbidden":
        known = _keys_at(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{where}: unknown setting{hint}; known here: {', '.join(known)}"
    if e["type"] == "value_error":  # our own validators quote the value themselves
        return f"{where}: {e['msg'].removeprefix('Value error, ')}"
    bound = next((f"a number {sign} {e['ctx'][k]:g}" for k, sign in _BOUNDS.items() if k in e.get("ctx", {})), None)
    if bound:
        expected = bound
    elif e["type"] in ("model_type", "model_attributes_type", "dict_type"):
        expected = f"a table of settings ({', '.join(_keys_at(model, loc)) or 'key: value'})"
    else:
        expected = e["msg"].removeprefix("Input should be ")
    return f"{where}: expected {expected}, got {_shown(e.get('input'))}"


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _keys_at(model: type[BaseModel], loc: tuple) -> list[str]:
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return []
        model = field.annotation
    return list(model.model_fields)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

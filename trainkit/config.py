"""`--config train.yaml`: every `trainkit train` option as plain YAML keys (dashes or underscores); flags win."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import yaml

from datakit.config import ConfigError

# what a model folder may run or unpickle is asked on the command line each time, never taken from a shared YAML file
NOT_CONFIGURABLE = {"console", "callbacks", "progress", "trust_remote_code", "allow_pickle_weights"}


def configurable(func) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p not in NOT_CONFIGURABLE]


def load_yaml(path: str | Path, allowed: list[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--config {p}: no such file.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config {p}: not valid YAML ({str(e).splitlines()[0]}).") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {p}: expected a mapping of option: value, got a {type(data).__name__}.")
    out = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(out) - set(allowed))
    if unknown:
        raise ConfigError(f"--config {p}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}.")
    return out


def merged_options(config: str | Path | None, flags: dict[str, Any], allowed: list[str]) -> dict[str, Any]:
    """YAML values, overridden by every flag given on the command line (None / False mean not given)."""
    options = load_yaml(config, allowed) if config else {}
    options.update({k: v for k, v in flags.items() if v is not None and v is not False})
    return options

"""`--config train.yaml` (or .json, .toml): every `trainkit train` option as plain keys (dashes or underscores); flags win.

Every option is checked before anything is loaded: an unknown key, a wrong type or a value out of range names the
option and where it came from (the config file, or the flag), with what is expected.
"""
from __future__ import annotations

import difflib
import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from datakit.config import ConfigError, explain, read_settings

# what a model folder may run or unpickle is asked on the command line each time, never taken from a shared YAML file
FLAG_ONLY = {"trust_remote_code": "--trust-remote-code", "allow_pickle_weights": "--allow-pickle-weights"}
NOT_CONFIGURABLE = {"console", "callbacks", "progress", *FLAG_ONLY}
NOT_OPTIONS = {"console", "callbacks", "progress"}  # arguments of train() that no user gives

# What each option may be, beyond its type in train()'s signature: a wrong value fails here, naming its source, rather
# than deep inside the run (or silently: a negative learning rate trains the wrong way).
LIMITS: dict[str, Any] = {
    "max_steps": Field(ge=1), "epochs": Field(gt=0), "learning_rate": Field(gt=0, lt=1), "max_length": Field(ge=1),
    "effective_batch": Field(ge=1), "micro_batch": Field(ge=1), "lora_r": Field(ge=1), "lora_dropout": Field(ge=0, lt=1),
    "trainable_layers": Field(ge=1), "layer_lr_decay": Field(gt=0, le=1), "save_steps": Field(ge=1),
    "keep_checkpoints": Field(ge=1), "seed": Field(ge=0), "gpu_mem_gib": Field(gt=0), "compare_base": Field(ge=0),
}
# Flags whose name is not the option's with dashes.
FLAG_NAMES = {"data": "DATA", "learning_rate": "--lr", "eval_data": "--eval", "gpu_mem_gib": "--gpu-mem"}


def configurable(func) -> list[str]:
    return [p for p in inspect.signature(func).parameters if p not in NOT_CONFIGURABLE]


def load_yaml(path: str | Path, allowed: list[str]) -> dict[str, Any]:
    """The options in a config file (YAML, or JSON / TOML by suffix), keys with dashes read as underscores."""
    out = {k.replace("-", "_"): v for k, v in read_settings(path).items()}
    if trusts := [FLAG_ONLY[k] for k in sorted(out) if k in FLAG_ONLY]:
        raise ConfigError(f"{path}: {', '.join(trusts)}: what a model folder may run or unpickle is given only on the "
                          "command line, never in a config file; remove it from the file and pass the flag if you mean it.")
    unknown = sorted(set(out) - set(allowed))
    if unknown:
        close = {k: difflib.get_close_matches(k, allowed, n=1) for k in unknown}
        named = ", ".join(f"{k} (did you mean {close[k][0]}?)" if close[k] else k for k in unknown)
        raise ConfigError(f"{path}: unknown option(s) {named}; known: {', '.join(sorted(allowed))}.")
    return out


def merged_options(config: str | Path | None, flags: dict[str, Any], func) -> dict[str, Any]:
    """The config file's values, overridden by every flag given on the command line (None / False mean not given),
    checked against `func`'s signature and LIMITS; values come back converted to their types."""
    from_file = load_yaml(config, configurable(func)) if config else {}
    given = {k: v for k, v in flags.items() if v is not None and v is not False}
    options = {**from_file, **given}
    required = [n for n, p in inspect.signature(func).parameters.items() if p.default is inspect.Parameter.empty]
    missing = [_flag(n) for n in required if options.get(n) is None]
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}: give it on the command line or in --config.")
    model = options_model(func)

    def origin(loc: tuple) -> str:
        name = str(loc[0])
        return _flag(name) if name in given else f"{config}: {name}"

    try:
        checked = model.model_validate(options)
    except ValidationError as e:
        raise ConfigError(f"invalid option value(s): {explain(e, model, origin)}.") from None
    return {name: getattr(checked, name) for name in options}


def _flag(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def options_model(func) -> type[BaseModel]:
    """A pydantic model of `func`'s options: their types from its signature, ranges from LIMITS, choices from the
    names the run knows."""
    from trainkit.plan import METHODS
    from trainkit.templates import TEMPLATE_NAMES

    choices = {"method": METHODS, "template": TEMPLATE_NAMES, "targets": ("all", "minimal"),
               "attention": ("sdpa", "eager", "flex_attention")}
    hints = typing.get_type_hints(func)
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(func).parameters.items():
        if name in NOT_OPTIONS:
            continue
        kind = hints[name]
        optional = type(None) in typing.get_args(kind)
        if name in choices or name in LIMITS:
            plain = next(t for t in (*typing.get_args(kind), kind) if t is not type(None))  # int in `int | None`
            kind = Literal[choices[name]] if name in choices else Annotated[plain, LIMITS[name]]
            kind = kind | None if optional else kind
        fields[name] = (kind, ... if param.default is inspect.Parameter.empty else param.default)
    return create_model("TrainOptions", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)

"""What trainkit agrees to load from a model folder: tensors and configs, never code, unless the user says so.

A model folder is data someone else made. Its `auto_map` can name Python files that transformers would import
(and, left unset, transformers asks on stdin, so a piped "y" would run them); a `pytorch_model.bin` is a pickle,
which can run code when loaded. So `trust_remote_code` is always passed, False unless --trust-remote-code; weights
load from safetensors only unless --allow-pickle-weights, and even then through torch's `weights_only` unpickler,
which refuses anything but tensors.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
CODE_CONFIGS = ("config.json", "tokenizer_config.json")


@dataclass(frozen=True)
class ModelTrust:
    """The user's explicit allowances; the default allows neither."""

    remote_code: bool = False
    pickle_weights: bool = False

    def code_options(self) -> dict:
        """from_pretrained keywords for configs and tokenizers."""
        return {"trust_remote_code": self.remote_code, "local_files_only": True}

    def weight_options(self) -> dict:
        """from_pretrained keywords for models: safetensors only, or pickles through the weights_only unpickler."""
        return self.code_options() | {"use_safetensors": None if self.pickle_weights else True, "weights_only": True}


NO_TRUST = ModelTrust()


def code_hint(folder: str | Path) -> str:
    """A sentence for a load error when the folder names its own Python code (`auto_map`), else ''."""
    for name in CODE_CONFIGS:
        try:
            config = json.loads((Path(folder) / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("auto_map"):
            return (f" Its {name} names its own Python code (auto_map), which trainkit does not run unless you pass "
                    "--trust-remote-code; read that code first, it runs with your permissions.")
    return ""


def refuse_pickle_weights(folder: str | Path, trust: ModelTrust, flag: str = "--model") -> None:
    """Stop before loading when the folder's weights exist only as pickles and the user has not allowed them."""
    from trainkit.model_info import ModelError  # imported here: model_info imports this module

    p = Path(folder)
    if trust.pickle_weights or not p.is_dir() or any(p.glob("*.safetensors")):
        return
    pickles = sorted(f.name for f in p.iterdir() if f.is_file() and f.name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise ModelError(f"{flag} {p}: its weights are only in pickle file(s) ({', '.join(pickles[:3])}), which can run "
                         "code when loaded; trainkit loads safetensors. Save the model once with `save_pretrained` where "
                         "you trust it (that writes model.safetensors), or pass --allow-pickle-weights to load them with "
                         "torch's weights_only unpickler (tensors only).")

"""What the plan needs to know about a model, read from its folder without loading any weights.

The architecture is built from config.json on PyTorch's `meta` device (shapes only, no memory), which
gives the exact parameter count and the names of its linear projections (the LoRA targets).
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from trainkit.trust import NO_TRUST, ModelTrust, code_hint

Q_NAMES = ("q_proj", "query", "q")
V_NAMES = ("v_proj", "value", "v")


class ModelError(ValueError):
    """The model folder cannot be used; the message says what is missing and what to pass."""


class ModelInfo(BaseModel):
    path: str
    model_type: str
    params: int
    hidden_size: int
    num_layers: int
    vocab_size: int
    max_positions: int | None
    linear_modules: list[str]  # leaf names of the linear projections inside the decoder layers
    has_chat_template: bool
    final_logit_softcapping: bool = False  # the model post-processes logits, so the loss must use its own forward

    @property
    def billions(self) -> float:
        return self.params / 1e9

    @property
    def size(self) -> str:
        return parameter_count(self.params)


def parameter_count(params: int) -> str:
    """1.54B, 350.0M, 205.4K: readable at every model size."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if params >= scale:
            return f"{params / scale:.{2 if unit == 'B' else 1}f}{unit}"
    return str(params)


def read_config(model_dir: str | Path) -> dict:
    p = Path(model_dir)
    if not p.is_dir():
        raise ModelError(f"--model {p}: not a directory. Pass a local model folder (one saved with `save_pretrained`, "
                         "holding config.json and the tokenizer files); models are never downloaded.")
    cfg = p / "config.json"
    if not cfg.is_file():
        raise ModelError(f"--model {p}: no config.json in it, so it is not a Hugging Face model folder.")
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ModelError(f"{cfg}: not valid JSON ({e}).") from None


def inspect_model(model_dir: str | Path, trust: ModelTrust = NO_TRUST) -> ModelInfo:
    """Parameter count and linear module names from the architecture built on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    raw = read_config(model_dir)
    try:
        config = AutoConfig.from_pretrained(model_dir, **trust.code_options())
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust.remote_code)
    except Exception as e:  # noqa: BLE001  an unknown model_type or a config transformers rejects
        raise ModelError(f"--model {model_dir}: transformers cannot build a causal LM from its config.json "
                         f"({type(e).__name__}: {e})." + code_hint(model_dir)) from None
    params = sum(p.numel() for p in model.parameters())
    out_emb = model.get_output_embeddings()
    linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and m is not out_emb and _in_numbered_layer(name)})
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return ModelInfo(
        path=str(model_dir), model_type=raw.get("model_type", "unknown"), params=params,
        hidden_size=getattr(text, "hidden_size", 0) or 0, num_layers=getattr(text, "num_hidden_layers", 0) or 0,
        vocab_size=getattr(text, "vocab_size", 0) or 0, max_positions=getattr(text, "max_position_embeddings", None),
        linear_modules=linear, has_chat_template=_has_chat_template(Path(model_dir)),
        final_logit_softcapping=bool(getattr(text, "final_logit_softcapping", None)) or hasattr(text, "logit_scale"),
    )


def _in_numbered_layer(name: str) -> bool:
    """True for modules inside a repeated block (`model.layers.3.mlp.up_proj`), not heads or embeddings."""
    return any(part.isdigit() for part in name.split("."))


def _has_chat_template(p: Path) -> bool:
    if (p / "chat_template.jinja").is_file() or (p / "chat_template.json").is_file():
        return True
    tc = p / "tokenizer_config.json"
    try:
        return bool(json.loads(tc.read_text(encoding="utf-8")).get("chat_template")) if tc.is_file() else False
    except json.JSONDecodeError:
        return False


def minimal_targets(linear_modules: list[str]) -> list[str]:
    """The query and value projections: the documents' minimal LoRA choice (as in the LoRA paper)."""
    found = []
    for group in (Q_NAMES, V_NAMES):
        hit = next((n for n in group if n in linear_modules), None)
        if hit:
            found.append(hit)
    if len(found) < 2:
        raise ModelError(f"cannot find query/value projections among the model's linear layers ({', '.join(linear_modules)}); "
                         "use --targets all or name them with --target-modules.")
    return found

"""Loading the model (bf16 on the GPU, fp32 on the CPU, 4-bit nf4 for QLoRA) and wrapping it for the chosen method.

Every method is peft's where peft has one (lora, qlora, dora, loha, lokr, ia3, prefix, prompt);
`full` trains every weight and `freeze` only the last N decoder layers.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from trainkit.model_info import ModelError
from trainkit.trust import NO_TRUST, ModelTrust, code_hint, refuse_pickle_weights

VIRTUAL_TOKENS = 20  # prefix / prompt tuning length, peft's examples' usual choice
IA3_FEEDFORWARD = ("down_proj", "fc2", "w2", "dense_4h_to_h", "c_proj")
IA3_ATTENTION = ("k_proj", "v_proj", "key", "value")


def quiet_transformers() -> None:
    """No per-shard progress bars, deprecation notes or advisory warnings from the libraries in our own display.

    bitsandbytes would also say at import that it cannot fetch an optional CPU kernel from the hub (we never do).
    """
    import logging
    import warnings

    from transformers.utils import logging as hf_logging

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*(deprecated|will be removed).*", category=FutureWarning)
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_tokenizer(model_dir: str | Path, trust: ModelTrust = NO_TRUST):
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(str(model_dir), **trust.code_options())
    except Exception as e:  # noqa: BLE001  transformers raises many types for a folder without tokenizer files
        raise ModelError(f"--model {model_dir}: cannot load its tokenizer ({type(e).__name__}: {e}). The folder needs "
                         "the tokenizer files saved with the model (tokenizer.json, tokenizer_config.json)."
                         + code_hint(model_dir)) from None


def torch_dtype(precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def quantization_config(precision: str):
    """QLoRA's storage: nf4 with double quantisation; matmuls in bf16 on the GPU (fp32 on the CPU)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch_dtype(precision))


def load_model(model_dir: str | Path, *, method: str, precision: str, attn_implementation: str, trust: ModelTrust = NO_TRUST):
    """The base model, loaded through `from_pretrained` from local files only (safetensors unless the user allowed
    pickles, no code from the folder unless allowed), ready for training (no KV cache)."""
    import pickle

    from transformers import AutoModelForCausalLM

    quiet_transformers()
    refuse_pickle_weights(model_dir, trust)
    kwargs = {"dtype": torch_dtype(precision), "attn_implementation": attn_implementation, **trust.weight_options()}
    if method == "qlora":
        kwargs["quantization_config"] = quantization_config(precision)
        if torch.cuda.is_available():
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    except ImportError as e:
        raise ModelError(f"--method {method}: {e}") from None
    except pickle.UnpicklingError as e:
        raise ModelError(f"--model {model_dir}: its pickle weights hold more than tensors, so torch's weights_only "
                         f"unpickler refused them ({str(e).splitlines()[-1]}); loading them fully could run code. Use a "
                         "safetensors copy of the model.") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"--model {model_dir}: cannot load the weights ({type(e).__name__}: {e})." + code_hint(model_dir)) from None
    model.config.use_cache = False
    if method == "qlora" and not torch.cuda.is_available():
        keep_cpu_4bit_trainable(model)
    return model


def keep_cpu_4bit_trainable(model) -> None:
    """bitsandbytes 0.50 on an AVX512-BF16 CPU repacks 4-bit weights for inference on the first eval-mode forward,
    and its matmul on repacked weights has no backward: training after an evaluation then fails. Keep the
    trainable layout."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def decoder_layers(model) -> torch.nn.ModuleList:
    layers = getattr(model.get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ModelError(f"{type(model).__name__}: cannot find its decoder layers, so --method freeze cannot pick the last ones.")
    return layers


def peft_config(method: str, *, lora: dict, target_modules: list[str], linear_modules: list[str]):
    """peft's config for the method: LoRA family with the plan's rank/alpha/dropout, IA3 on k/v and the MLP output."""
    import peft

    common = {"task_type": "CAUSAL_LM"}
    if method in ("lora", "qlora", "dora"):
        return peft.LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"], target_modules=target_modules,
                               use_dora=method == "dora", **common)
    if method == "loha":
        return peft.LoHaConfig(r=lora["r"], alpha=lora["alpha"], module_dropout=lora["dropout"], target_modules=target_modules, **common)
    if method == "lokr":
        return peft.LoKrConfig(r=lora["r"], alpha=lora["alpha"], module_dropout=lora["dropout"], target_modules=target_modules, **common)
    if method == "ia3":
        ff = [n for n in IA3_FEEDFORWARD if n in linear_modules]
        targets = [n for n in IA3_ATTENTION if n in linear_modules] + ff
        if not ff or len(targets) < 2:
            raise ModelError(f"--method ia3: cannot find key/value and MLP output projections among {', '.join(linear_modules)}.")
        return peft.IA3Config(target_modules=targets, feedforward_modules=ff, **common)
    if method == "prefix":
        return peft.PrefixTuningConfig(num_virtual_tokens=VIRTUAL_TOKENS, **common)
    if method == "prompt":
        return peft.PromptTuningConfig(num_virtual_tokens=VIRTUAL_TOKENS, **common)
    raise ValueError(f"--method {method}: not a peft method")


def wrap(model, method: str, *, lora: dict, target_modules: list[str], linear_modules: list[str], trainable_layers: int = 2):
    """The model with only the method's parameters trainable: a PeftModel, or the model itself for full / freeze."""
    if method == "full":
        model.requires_grad_(True)
        return model
    if method == "freeze":
        layers = decoder_layers(model)
        if not 1 <= trainable_layers <= len(layers):
            raise ValueError(f"--trainable-layers {trainable_layers}: the model has {len(layers)} decoder layers; pick 1-{len(layers)}.")
        model.requires_grad_(False)
        for layer in layers[-trainable_layers:]:
            layer.requires_grad_(True)
        return model
    from peft import get_peft_model

    return get_peft_model(model, peft_config(method, lora=lora, target_modules=target_modules, linear_modules=linear_modules))


def layerwise_param_groups(model, lr: float, decay: float, trainable_layers: int) -> list[dict]:
    """Optimizer groups for `freeze` with layer-wise lr decay: the top layer at `lr`, each one below x`decay`."""
    layers = decoder_layers(model)
    groups = []
    for depth, layer in enumerate(reversed(layers[-trainable_layers:])):
        params = [p for p in layer.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "lr": lr * decay**depth})
    return groups


def virtual_tokens(method: str) -> int:
    """Positions prompt tuning prepends to every sequence's outputs (prefix tuning adds keys/values, not positions)."""
    return VIRTUAL_TOKENS if method == "prompt" else 0

"""`trainkit merge`: fold a run's adapter into its base model and write one ordinary, full model folder.

A QLoRA adapter is merged into the base loaded at its stored precision (not 4-bit): merging into
quantised weights would round the adapter away.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from trainkit.model import load_tokenizer, quiet_transformers
from trainkit.train import RUN_FILE, RunError
from trainkit.trust import NO_TRUST, ModelTrust, refuse_pickle_weights


def merge(run_dir: str | Path, output: str | Path, base_model: str | Path | None = None, trust: ModelTrust = NO_TRUST) -> Path:
    """Write base + adapter of RUN_DIR as a full model to OUTPUT (loadable by `AutoModelForCausalLM.from_pretrained`).
    The base and the adapter load as `trust` allows (trainkit.trust: safetensors, no code from the folder)."""
    run_dir, output = Path(run_dir), Path(output)
    run_file = run_dir / RUN_FILE
    if not run_file.is_file():
        raise RunError(f"{run_dir}: not a trainkit run folder (no {RUN_FILE}); pass the --output folder of `trainkit train`.")
    run = json.loads(run_file.read_text(encoding="utf-8"))
    method = run["plan"]["method"]["value"]
    if output.exists() and any(output.iterdir()):
        raise RunError(f"-o {output}: exists and is not empty; choose a new folder so nothing is overwritten.")
    if method in ("full", "freeze"):
        source = run_dir / "model"
        if not source.is_dir():
            raise RunError(f"{run_dir}: the run has not finished (no model/ folder); resume it first.")
        shutil.copytree(source, output, dirs_exist_ok=True)
        return output
    if method in ("prefix", "prompt"):
        raise RunError(f"{run_dir}: {method} tuning adds virtual tokens, not weight changes; there is nothing to merge. "
                       "Load it with peft's PeftModel.from_pretrained instead.")
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise RunError(f"{run_dir}: no finished adapter (adapter/adapter_config.json); resume the run first.")
    base_dir = Path(base_model or run["model"])
    refuse_pickle_weights(base_dir, trust, "--base")
    refuse_pickle_weights(adapter, trust, "adapter")
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="auto", **trust.weight_options())
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(str(output))
    load_tokenizer(adapter, trust).save_pretrained(str(output))
    return output

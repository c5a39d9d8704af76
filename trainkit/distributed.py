"""Several processes training together (`accelerate launch`, `torchrun`): who writes, and what the processes share.

Every process runs the whole of `train()`. The process group comes from the launcher's environment through
accelerate's shared state, the same one the Trainer uses, so a plain `trainkit train` is one process and needs
nothing. Only the main process writes files and prints; the others wait where the run folder must be complete.
"""
from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import gather_object

TRAINER_DDP_TIMEOUT_S = 1800  # transformers' TrainingArguments.ddp_timeout default


def process_state() -> PartialState:
    """The launcher's process group (set up on first use: gloo on CPUs, nccl on GPUs); one process without a launcher.

    Set up as the Trainer's arguments will set it up (CPU when there is no GPU, the Trainer's default timeout):
    without `cpu=True`, accelerate ignores a CPU launch and every process would believe it is the only one."""
    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=TRAINER_DDP_TIMEOUT_S))


def gather(value: Any) -> list[Any]:
    """`value` of every process, in rank order (a list of one outside a launch)."""
    return gather_object([value])


def any_process(flag: bool) -> bool:
    """True on every process when it is True on one: a decision to stop must be taken by all of them at the same step."""
    state = process_state()
    if state.num_processes == 1:
        return flag
    vote = torch.tensor([int(flag)], device=state.device)
    torch.distributed.all_reduce(vote, op=torch.distributed.ReduceOp.MAX)
    return bool(vote.item())


def weights_sha256(model) -> str:
    """sha256 of the trainable weights' bytes (by parameter name): data-parallel copies stay bit-identical, so
    processes that report different values have diverged."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes())
    return digest.hexdigest()


def fsdp_requested() -> bool:
    """`accelerate launch --use_fsdp` (or an accelerate config with FSDP) launched this process."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def fsdp_problem(method: str) -> str | None:
    """Why this FSDP launch cannot train `method` on GPUs, as the launch flag to change; None when it can.

    Only `--method full` is sharded (adapters train under DDP: each GPU keeps the frozen base), with FSDP2 (the
    loss applies the output layer after the model's forward, when FSDP1 has already resharded it), and with a full
    state dict (the Trainer saves nothing for a sharded one, so the run would end without its model folder)."""
    if method != "full":
        return (f"--method {method} with FSDP: FSDP here shards --method full only; launch {method} without --use_fsdp "
                "(data parallelism: every GPU keeps the frozen base model, only the adapter's gradients travel).")
    if os.environ.get("FSDP_VERSION", "1") != "2":
        return "--method full with FSDP needs FSDP2: add --fsdp_version 2 to `accelerate launch`."
    if os.environ.get("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT") != "FULL_STATE_DICT":
        return ("--method full with FSDP: add --fsdp_state_dict_type FULL_STATE_DICT to `accelerate launch`, so the "
                "trained model is gathered and saved as one folder.")
    return None

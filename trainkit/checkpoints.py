"""Checkpoints and outputs a kill cannot spoil: resume only from a checkpoint the Trainer finished writing, and put
the trained adapter (or model) in place in one rename.

The Trainer writes a checkpoint folder file by file and `trainer_state.json` last, so a folder whose state file is
missing, cut short, or for another step was being written when the process died (kill -9, the OOM killer, a lost
machine); resuming from it would fail or continue from a mix of two steps.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from transformers.trainer import TRAINER_STATE_NAME

_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def is_complete(checkpoint: Path) -> bool:
    """Whether the Trainer finished writing `checkpoint` (its state file parses and names the folder's step)."""
    found = _CHECKPOINT.fullmatch(checkpoint.name)
    try:
        state = json.loads((checkpoint / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return found is not None and isinstance(state, dict) and state.get("global_step") == int(found[1])


def _by_step(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.fullmatch(p.name)[1]))


def drop_incomplete(folder: Path) -> list[Path]:
    """Remove the checkpoints in `folder` that a killed run left half-written; returns them."""
    broken = [p for p in _by_step(folder) if not is_complete(p)]
    for p in broken:
        shutil.rmtree(p, ignore_errors=True)
    return broken


def last_complete(folder: Path) -> Path | None:
    """The checkpoint of the latest step that was written completely, or None."""
    return next((p for p in reversed(_by_step(folder)) if is_complete(p)), None)


def resume_point(folder: Path) -> Path | None:
    """The checkpoint to resume from: the last complete one, unless it is the run's final step (the run was stopped
    while evaluating or saving): the Trainer resumed there trains one step more than asked (transformers 5.24), so the
    one before it is taken and the last steps are trained again, exactly as the first time. None: from the start."""
    complete = [p for p in _by_step(folder) if is_complete(p)]
    if complete and _state(complete[-1]).get("global_step", 0) >= _state(complete[-1]).get("max_steps", float("inf")):
        complete.pop()
    return complete[-1] if complete else None


def _state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / TRAINER_STATE_NAME).read_text(encoding="utf-8"))


def partial_folder(target: Path, owner: bool = True) -> Path:
    """Where `target`'s new content is written before `put_in_place` renames it over `target`; a `.NAME.partial` a
    killed run left is cleared first. Only the `owner` (the main process under a launcher) removes and renames."""
    partial = target.with_name(f".{target.name}.partial")
    if owner:
        shutil.rmtree(partial, ignore_errors=True)
    return partial


def put_in_place(partial: Path, target: Path, owner: bool = True) -> Path:
    """Replace `target` by the finished `partial`: a kill leaves the old `target`, or none, never half of one."""
    if owner:
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)
    return target

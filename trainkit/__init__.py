"""trainkit: LoRA/QLoRA fine-tuning straight from a dataset datakit has audited.

Every CLI command is a Python function of the same name: `plan(data, model_dir) -> TrainPlan`,
`train(data, model, output, **options) -> RunResult`, `merge(run_dir, output) -> Path`.
"""
import logging

__version__ = "0.1.0"

# bitsandbytes (imported by peft) says at import that it cannot fetch an optional CPU kernel from the hub;
# trainkit never downloads, so the note is noise for its users.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

from trainkit.merge import merge
from trainkit.plan import plan
from trainkit.train import train

__all__ = ["__version__", "merge", "plan", "train"]

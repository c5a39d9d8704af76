"""trainkit: LoRA/QLoRA fine-tuning straight from a dataset datakit has audited."""
__version__ = "0.1.0"

"""datakit: audit, repair, rebalance and split supervised fine-tuning datasets.

Every CLI command is a Python function of the same name: `datakit.audit(path, **options) -> AuditReport`.
"""
__version__ = "0.1.0"

from datakit.audit import audit  # noqa: E402

__all__ = ["__version__", "audit"]

"""datakit: audit, repair, rebalance and split supervised fine-tuning datasets.

Every CLI command is a Python function of the same name: `datakit.audit(path, **options) -> AuditReport`.
"""
__version__ = "0.1.0"

from datakit.audit import audit
from datakit.balance import balance
from datakit.convert import convert
from datakit.fix import fix
from datakit.mix import mix
from datakit.split import split

__all__ = ["__version__", "audit", "balance", "convert", "fix", "mix", "split"]

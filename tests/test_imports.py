"""Every module imports on its own in a fresh interpreter: rule families import datakit.measure, and datakit
imports the rule registry, so an import cycle shows only when a module other than datakit is imported first."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

# The package roots, and every module of the packages that import datakit (where a cycle can start).
MODULES = ["datakit", "schemas", "trainkit", "datakit.measure"] + sorted(
    p.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
    for pkg in ("validators", "reports") for p in (ROOT / pkg).glob("*.py"))


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_first(module):
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]

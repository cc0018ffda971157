"""The examples run as they are (with few rounds)."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.timeout(300)


def test_custom_node_example_learns():
    module = runpy.run_path(str(EXAMPLES / "custom_node.py"))
    assert module["main"](20) >= 0.9


@pytest.mark.slow
def test_ps_digits_example_runs_as_a_script():
    env = {**os.environ, "PYTHONPATH": str(EXAMPLES.parent), "DASK_LOGGING__DISTRIBUTED": "warning"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / "ps_digits.py"), "10"], capture_output=True, text=True,
                          env=env, timeout=240, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dashboard: http://127.0.0.1:" in proc.stdout
    assert "round  10  accuracy" in proc.stdout

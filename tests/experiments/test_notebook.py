"""The example notebook runs top to bottom (reduced grid) and shows its tables and plots."""

import importlib.util
import os
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "robustness_sweep.ipynb"
MISSING = [name for name in ("nbclient", "nbformat", "ipykernel") if importlib.util.find_spec(name) is None]


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (pip install 'byzdask[test]')")
def test_robustness_sweep_notebook_runs(tmp_path, monkeypatch):
    import nbformat
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    monkeypatch.setenv("BYZDASK_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("BYZDASK_NOTEBOOK_WORKERS", "2")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "warning")
    root = str(NOTEBOOK.parents[2])  # byzdask importable from the kernel, which runs in tmp_path
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # IPC sockets in tmp_path: the kernel listens on no network port.
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    client = NotebookClient(nb, km=km, timeout=180, resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "\n".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "32 trainings" in text
    counts = re.search(r"(\d+) runs ok, (\d+) failed, (\d+) skipped", text)
    assert counts and int(counts[2]) == 0 and int(counts[1]) + int(counts[3]) == 32 and int(counts[1]) >= 24
    html = "\n".join(out.get("data", {}).get("text/html", "") for out in outputs)
    assert "Dashboard:" in "\n".join(out.get("data", {}).get("text/markdown", "") for out in outputs)
    assert "127.0.0.1" in html  # the Client widget with the dashboard link
    assert html.count("<table") >= 3  # worst case, ranking, per attack
    images = [out for out in outputs if "image/png" in out.get("data", {})]
    assert len(images) == 3  # curves, heatmaps, worst-case bars: each shown once
    assert (tmp_path / "robustness-sweep" / "results.nc").exists()
    assert len(list((tmp_path / "robustness-sweep" / "report").glob("*.png"))) == 6

"""What ``byzdask doctor`` reports: which parts of the software stack are installed and usable.

Each probe checks one component: whether it is installed (a distribution or module is found),
its version, and whether it is usable (its module imports and, for the GPU stack, a device is
present). Probes never raise: a failure becomes ``usable=False`` with the reason in ``detail``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Probe", "format_table", "probe_module", "run_doctor"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Probe:
    """The state of one component of the stack.

    Parameters
    ----------
    name : str
        The component, e.g. ``"torch"`` or ``"CUDA (torch)"``.
    installed : bool
        Whether the component is present.
    version : str or None
        Its version, when installed and known.
    usable : bool
        Whether it works here: the module imports, and for GPU components a device is present.
    detail : str
        Why it is not usable, or what was found (e.g. device names).

    Examples
    --------
    >>> Probe("numpy", True, "2.0.0", True, "").as_dict()["usable"]
    True
    """

    name: str
    installed: bool
    version: str | None
    usable: bool
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The probe as a JSON-ready dict."""
        return asdict(self)


def _distribution_version(distributions: tuple[str, ...]) -> str | None:
    for dist in distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _import_error(module: str) -> tuple[Any, str]:
    """Import ``module``; return (module, "") or (None, reason)."""
    try:
        return importlib.import_module(module), ""
    # Any failure while importing an optional package (missing shared library, CUDA driver
    # mismatch...) means "not usable"; the reason is reported, not hidden.
    except Exception as exc:
        logger.debug("importing %s failed", module, exc_info=True)
        return None, f"import {module} failed: {type(exc).__name__}: {exc}"


def probe_module(
    name: str,
    module: str,
    distributions: tuple[str, ...] = (),
    *,
    check: Callable[[Any], tuple[bool, str]] | None = None,
) -> Probe:
    """Probe one Python package: installed, version, and whether it imports.

    Parameters
    ----------
    name : str
        The name shown in the report.
    module : str
        The module to import, e.g. ``"dask_jobqueue"``.
    distributions : tuple of str, optional
        Distribution names that may carry the package (the first one found gives the version),
        e.g. ``("cupy-cuda12x", "cupy-cuda13x", "cupy")``; defaults to ``(name,)``.
    check : callable, optional
        Called with the imported module; returns ``(usable, detail)``, e.g. to require a device.

    Returns
    -------
    Probe

    Examples
    --------
    >>> probe_module("numpy", "numpy").usable
    True
    >>> p = probe_module("no-such-package", "no_such_package_xyz")
    >>> (p.installed, p.usable, p.version)
    (False, False, None)
    """
    if importlib.util.find_spec(module) is None:
        return Probe(name, False, None, False, "not installed")
    version = _distribution_version(distributions or (name,))
    mod, error = _import_error(module)
    if mod is None:
        return Probe(name, True, version, False, error)
    if version is None:
        version = getattr(mod, "__version__", None)
    if check is None:
        return Probe(name, True, version, True, "")
    usable, detail = check(mod)
    return Probe(name, True, version, usable, detail)


def _torch_cuda(torch: Any) -> tuple[bool, str]:
    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return True, ", ".join(names)


def _cupy_device(cupy: Any) -> tuple[bool, str]:
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    # cupy raises its own CUDARuntimeError (not a subclass of a public base) without a driver.
    except Exception as exc:  # noqa: BLE001
        return False, f"no CUDA device: {type(exc).__name__}: {exc}"
    if count == 0:
        return False, "no CUDA device"
    return True, f"{count} device(s)"


def _probe_cuda() -> Probe:
    """CUDA as torch sees it: the CUDA version torch was built with, and the devices."""
    if importlib.util.find_spec("torch") is None:
        return Probe("CUDA (torch)", False, None, False, "torch is not installed")
    torch, error = _import_error("torch")
    if torch is None:
        return Probe("CUDA (torch)", False, None, False, error)
    built = torch.version.cuda
    if built is None:
        return Probe("CUDA (torch)", False, None, False, "torch was built without CUDA (CPU build)")
    usable, detail = _torch_cuda(torch)
    return Probe("CUDA (torch)", True, built, usable, detail)


def run_doctor() -> list[Probe]:
    """Probe Python, byzdask and the packages byzdask uses or can use.

    Returns
    -------
    list of Probe
        In a fixed order: Python, byzdask, numpy, dask, distributed, torch, CUDA (torch),
        cupy, dask-cuda, distributed-ucxx, dask-jobqueue, numba.

    Examples
    --------
    >>> probes = run_doctor()
    >>> [p.name for p in probes][:3]
    ['Python', 'byzdask', 'numpy']
    >>> all(p.usable for p in probes if p.name in ("Python", "byzdask", "numpy", "dask"))
    True
    """
    python = Probe(
        "Python", True, platform.python_version(), True, f"{platform.python_implementation()} at {sys.executable}"
    )
    return [
        python,
        probe_module("byzdask", "byzdask"),
        probe_module("numpy", "numpy"),
        probe_module("dask", "dask"),
        probe_module("distributed", "distributed"),
        probe_module("torch", "torch"),
        _probe_cuda(),
        probe_module(
            "cupy",
            "cupy",
            ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"),
            check=_cupy_device,
        ),
        probe_module("dask-cuda", "dask_cuda", ("dask-cuda", "dask_cuda")),
        probe_module(
            "distributed-ucxx",
            "distributed_ucxx",
            ("distributed-ucxx-cu13", "distributed-ucxx-cu12", "distributed-ucxx"),
        ),
        probe_module("dask-jobqueue", "dask_jobqueue", ("dask-jobqueue", "dask_jobqueue")),
        probe_module("numba", "numba"),
        # the sweep and notebook stack (extras experiments and notebook)
        probe_module("xarray", "xarray"),
        probe_module("matplotlib", "matplotlib"),
        probe_module("netCDF4", "netCDF4"),
        probe_module("nbclient", "nbclient"),
        probe_module("ipywidgets", "ipywidgets"),
    ]


def format_table(probes: list[Probe]) -> str:
    """The probes as an aligned text table (what ``byzdask doctor`` prints).

    Examples
    --------
    >>> print(format_table([Probe("numpy", True, "2.0.0", True, ""), Probe("cupy", False, None, False, "not installed")]))
    component  installed  version  usable  detail
    numpy      yes        2.0.0    yes
    cupy       no         -        no      not installed
    """
    header = ("component", "installed", "version", "usable", "detail")
    rows = [
        (p.name, "yes" if p.installed else "no", p.version or "-", "yes" if p.usable else "no", p.detail)
        for p in probes
    ]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header) - 1)]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)

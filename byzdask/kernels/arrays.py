"""Array families: turn user inputs into one (n, d) matrix and results back into the user's family.

byzdask accepts numpy arrays, torch tensors (CPU or CUDA) and cupy arrays. The kernels work on a
numpy-like namespace ``xp`` (numpy on the CPU, cupy on a GPU): torch CPU tensors are viewed as
numpy arrays without a copy, torch CUDA tensors as cupy arrays through DLPack when cupy is
installed (otherwise they are copied to the host and the result copied back to their device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from byzdask.errors import InputError

__all__ = ["Batch", "array_family", "as_batch", "finite_rows", "get_cupy", "restore_like"]

_FLOATS = (np.float32, np.float64)


def get_cupy():
    """Return the cupy module, or None when it is not importable (or has no usable device)."""
    try:
        import cupy
    except Exception:  # noqa: BLE001 - cupy missing, or installed without a CUDA driver (raises many types)
        return None
    return cupy


def _torch():
    import torch

    return torch


def array_family(x: Any) -> str:
    """Name the family of ``x``: ``"numpy"``, ``"torch"`` or ``"cupy"``.

    Raises
    ------
    InputError
        When ``x`` is none of them.

    Examples
    --------
    >>> array_family(np.zeros(3))
    'numpy'
    """
    if isinstance(x, np.ndarray):
        return "numpy"
    module = type(x).__module__
    if module.startswith("torch"):
        return "torch"
    if module.startswith("cupy"):
        return "cupy"
    raise InputError(f"expected a numpy array, torch tensor or cupy array, got {type(x).__name__}")


@dataclass
class Batch:
    """n vectors of one shape stacked into an (n, d) matrix, with what is needed to undo it.

    Attributes
    ----------
    matrix : array
        (n, d), C-contiguous, float32 or float64, in namespace ``xp``.
    xp : module
        ``numpy`` or ``cupy``.
    family : str
        The user's family: ``"numpy"``, ``"torch"`` or ``"cupy"``.
    dtype : object
        The user's dtype (a numpy dtype or a torch dtype).
    device : object
        The torch device or cupy device of the inputs, None for numpy.
    shape : tuple
        The shape of one input vector.
    stacked : bool
        Whether the user passed one stacked array rather than a sequence.
    """

    matrix: Any
    xp: Any
    family: str
    dtype: Any
    device: Any
    shape: tuple
    stacked: bool

    @property
    def n(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def d(self) -> int:
        return int(self.matrix.shape[1])

    def restore(self, vector: Any) -> Any:
        """Turn a (d,) result of the kernels into one vector of the user's family, dtype, shape."""
        return restore_like(vector, self)

    def restore_rows(self, matrix: Any) -> Any:
        """Turn an (m, d) result into the user's form: a list of vectors, or one stacked array."""
        m = int(matrix.shape[0])
        if self.stacked:
            out = restore_like(matrix.reshape(-1), self, shape=(m, *self.shape))
            return out
        return [restore_like(matrix[i], self) for i in range(m)]


def _to_xp(x: Any, family: str):
    """View one array of a family as numpy/cupy (no copy where possible). Returns (array, xp, dtype, device)."""
    if family == "numpy":
        return x, np, x.dtype, None
    if family == "cupy":
        cp = get_cupy()
        return x, cp, x.dtype, x.device
    torch = _torch()
    t = x.detach()
    dtype, device = t.dtype, t.device
    if t.dtype not in (torch.float32, torch.float64):
        if not t.dtype.is_floating_point:
            raise InputError(f"expected floating-point tensors (float16, bfloat16, float32, float64), got {t.dtype}")
        t = t.to(torch.float32)
    if device.type == "cuda":
        cp = get_cupy()
        if cp is not None:
            return cp.from_dlpack(t.contiguous()), cp, dtype, device
        t = t.cpu()
    return t.numpy(), np, dtype, device


def as_batch(inputs: Any, *, what: str = "gradients") -> Batch:
    """Stack a sequence of same-shaped vectors (or take one stacked array) into a :class:`Batch`.

    Parameters
    ----------
    inputs : sequence of arrays, or one array of shape (n, ...)
        numpy arrays, torch tensors or cupy arrays, all of one family, shape and dtype.
    what : str
        How the inputs are called in error messages.

    Raises
    ------
    InputError
        Empty input, ragged shapes, mixed families or dtypes, a non-floating dtype.

    Examples
    --------
    >>> b = as_batch([np.ones((2, 2)), np.zeros((2, 2))])
    >>> b.matrix.shape, b.shape
    ((2, 4), (2, 2))
    """
    if isinstance(inputs, (list, tuple)):
        if len(inputs) == 0:
            raise InputError(f"{what}: expected at least one vector, got an empty sequence")
        families = {array_family(v) for v in inputs}
        if len(families) != 1:
            raise InputError(f"{what}: all vectors must be of one array family, got a mix of {sorted(families)}")
        family = families.pop()
        shapes = {tuple(v.shape) for v in inputs}
        if len(shapes) != 1:
            raise InputError(f"{what}: all vectors must have one shape, got shapes {sorted(shapes)}")
        dtypes = {str(v.dtype) for v in inputs}
        if len(dtypes) != 1:
            raise InputError(f"{what}: all vectors must have one dtype, got {sorted(dtypes)}")
        if family == "torch":
            devices = {str(v.device) for v in inputs}
            if len(devices) != 1:
                raise InputError(f"{what}: all tensors must be on one device, got {sorted(devices)}")
            torch = _torch()
            stacked_input = torch.stack([v.detach() for v in inputs])
        elif family == "cupy":
            cp = get_cupy()
            stacked_input = cp.stack(inputs)
        else:
            stacked_input = np.stack(inputs)
        batch = _batch_from_stacked(stacked_input, family, what)
        batch.stacked = False
        return batch
    family = array_family(inputs)
    if inputs.ndim < 2:
        raise InputError(
            f"{what}: a single array must be stacked with shape (n, ...), got shape {tuple(inputs.shape)}; "
            "pass a list of vectors or an (n, d) array"
        )
    if inputs.shape[0] == 0:
        raise InputError(f"{what}: expected at least one vector, got an array of shape {tuple(inputs.shape)}")
    return _batch_from_stacked(inputs, family, what)


def _batch_from_stacked(stacked: Any, family: str, what: str) -> Batch:
    arr, xp, dtype, device = _to_xp(stacked, family)
    if arr.dtype not in _FLOATS and family in ("numpy", "cupy"):
        if arr.dtype.kind != "f":
            raise InputError(f"{what}: expected floating-point vectors (float32 or float64), got dtype {arr.dtype}")
        arr = arr.astype(np.float32)  # float16 and other floats compute in float32
    shape = tuple(int(s) for s in stacked.shape[1:])
    n = int(stacked.shape[0])
    d = int(np.prod(shape)) if shape else 1
    matrix = xp.ascontiguousarray(arr.reshape(n, d))
    if xp is np and not matrix.flags.aligned:
        # distributed reads a lone array into the same buffer as its message header, so it can
        # arrive at an odd address; numpy and numba run several times slower on such an array
        # (and numba compiles a second specialisation): one aligned copy costs less
        matrix = np.require(matrix, requirements="A")
    return Batch(matrix=matrix, xp=xp, family=family, dtype=dtype, device=device, shape=shape, stacked=True)


def restore_like(result: Any, batch: Batch, *, shape: tuple | None = None) -> Any:
    """Give a flat kernel result the family, dtype, device and shape of ``batch``'s inputs."""
    shape = batch.shape if shape is None else shape
    out = result.reshape(shape)
    if batch.family == "numpy":
        return out.astype(batch.dtype, copy=False)
    if batch.family == "cupy":
        return out.astype(batch.dtype, copy=False)
    torch = _torch()
    if batch.xp is np:
        t = torch.from_numpy(np.ascontiguousarray(out))
    else:
        t = torch.from_dlpack(out)
    return t.to(device=batch.device, dtype=batch.dtype)


def finite_rows(matrix: Any, xp: Any = np) -> Any:
    """Boolean mask of the rows of ``matrix`` that hold only finite values.

    One cheap pass: the row sums as one BLAS matrix-vector product with a vector of ones (NaN and
    Inf propagate through it; about twice as fast as ``matrix.sum(axis=1)``, which sums pairwise);
    a row sum is finite unless the row holds NaN/Inf or overflows, and only rows whose sum is not
    finite are checked element by element.

    Examples
    --------
    >>> finite_rows(np.array([[1.0, 2.0], [np.nan, 0.0], [3e38, 3e38]], dtype=np.float32)).tolist()
    [True, False, True]
    """
    d = matrix.shape[1] if matrix.ndim == 2 else 0
    with np.errstate(over="ignore", invalid="ignore"):
        if d and matrix.dtype in _FLOATS:
            sums = matrix @ xp.ones(d, dtype=matrix.dtype)
        else:
            sums = matrix.sum(axis=1)
    ok = xp.isfinite(sums)
    if bool(ok.all()):
        return ok
    for i in xp.flatnonzero(~ok).tolist():
        ok[i] = bool(xp.isfinite(matrix[i]).all())
    return ok

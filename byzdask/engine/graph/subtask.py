"""Units of fan-out work that an operator hands to the scheduler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SubTask"]


@dataclass(frozen=True)
class SubTask:
    """One piece of an operator's work: ``fn(*args, **kwargs)``.

    Parameters
    ----------
    fn : callable
        A plain, picklable function of arrays. It receives arrays, never clients or handles.
    args, kwargs
        Its arguments.
    name : str, optional
        A readable name, used in task keys and error messages.
    affinity : str, optional
        ``"cpu"``, ``"gpu"`` (a resource restriction) or a worker name (a worker restriction).
    max_retries : int
        How many times the engine reruns it after a worker failure.

    Examples
    --------
    >>> import numpy as np
    >>> task = SubTask(max, args=(1, 3), name="max")
    >>> task.run()
    3
    """

    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    name: str | None = None
    affinity: str | None = None
    max_retries: int = 0

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"SubTask.fn must be callable, got {type(self.fn).__name__}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ValueError(f"SubTask.max_retries must be a non-negative integer, got {self.max_retries!r}")

    def run(self) -> Any:
        """Run the subtask in this process."""
        return self.fn(*self.args, **self.kwargs)

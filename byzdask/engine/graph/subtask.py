"""Units of fan-out work that an operator hands to the scheduler, and the task bodies that run nodes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from byzdask.engine.graph.operator import OpContext, Operator

__all__ = ["SubTask", "reduce_node", "run_node", "run_piece", "split_on_worker", "subtask_meta", "subtask_piece"]


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


# -- task functions -----------------------------------------------------------------------


def run_node(op: Operator, context: OpContext, /, **inputs: Any) -> Any:
    """Task body of an ordinary node: ``op.compute(inputs, context=context)``."""
    return op.compute(inputs, context=context)


def reduce_node(op: Operator, context: OpContext, partials: list, /, **inputs: Any) -> Any:
    """Task body of a fanned-out node's reduce: ``op.reduce_subtasks(partials, inputs, ...)``."""
    return op.reduce_subtasks(list(partials), inputs, context=context)


def split_on_worker(op: Operator, context: OpContext, /, **inputs: Any) -> list[tuple]:
    """Task body that creates a node's subtasks next to its inputs (when they live on a worker).

    Returns one ``(fn, args, kwargs, name, affinity, max_retries)`` tuple per subtask: plain
    containers, so the arrays in them travel zero-copy.
    """
    return [(st.fn, tuple(st.args), dict(st.kwargs), st.name, st.affinity, st.max_retries)
            for st in op.create_subtasks(inputs, context=context)]


def subtask_meta(pieces: list[tuple]) -> list[tuple]:
    """Name, affinity and retries of each piece of :func:`split_on_worker` (small, for the client)."""
    return [(name, affinity, retries) for _, _, _, name, affinity, retries in pieces]


def subtask_piece(pieces: list[tuple], index: int) -> tuple:
    """The ``(fn, args, kwargs)`` of one piece: a key of its own, so each piece moves alone."""
    fn, args, kwargs = pieces[index][:3]
    return fn, args, kwargs


def run_piece(piece: tuple) -> Any:
    """Task body of a subtask made on a worker."""
    fn, args, kwargs = piece
    return fn(*args, **kwargs)

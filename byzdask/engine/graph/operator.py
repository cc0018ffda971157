"""The operator model: every aggregator, pre-aggregator and attack is an :class:`Operator`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from byzdask.engine.graph.subtask import SubTask

__all__ = ["OpContext", "Operator"]


@dataclass(frozen=True)
class OpContext:
    """What an operator knows about the place it runs in.

    Parameters
    ----------
    node_name : str, optional
        The graph node running the operator.
    metadata : mapping
        Free-form metadata given to the scheduler (round number, node id, ...).
    """

    node_name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


class Operator:
    """A reusable, stateless compute primitive.

    Subclasses implement :meth:`compute`. Operators that gain from fan-out set
    ``supports_subtasks = True`` and implement :meth:`create_subtasks` and
    :meth:`reduce_subtasks`; running the subtasks and the reduce gives the result of
    :meth:`compute` (to float round-off).

    ``input_keys`` names the entries of the ``inputs`` mapping the operator reads.
    """

    name: str = "operator"
    input_keys: tuple[str, ...] = ()
    supports_subtasks: bool = False

    def compute(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        """Compute the operator's output directly, in this process."""
        raise NotImplementedError

    def create_subtasks(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Sequence[SubTask]:
        """Split the work into independent :class:`SubTask` objects."""
        raise NotImplementedError(f"{type(self).__name__} does not support subtasks")

    def reduce_subtasks(
        self, partials: Sequence[Any], inputs: Mapping[str, Any], *, context: OpContext | None = None
    ) -> Any:
        """Combine the subtasks' results (in the order of :meth:`create_subtasks`)."""
        raise NotImplementedError(f"{type(self).__name__} does not support subtasks")

    def run_subtasks_locally(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        """Run the fan-out path in this process: create, run each subtask, reduce."""
        context = context or OpContext()
        tasks = self.create_subtasks(inputs, context=context)
        return self.reduce_subtasks([t.run() for t in tasks], inputs, context=context)

    def _require(self, inputs: Mapping[str, Any], key: str) -> Any:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"{type(self).__name__}.compute expects a mapping of inputs, got {type(inputs).__name__}")
        try:
            return inputs[key]
        except KeyError:
            raise KeyError(
                f"{type(self).__name__} needs input {key!r}; got keys {sorted(map(str, inputs))}"
            ) from None

    def __repr__(self) -> str:
        params = getattr(self, "_repr_params", {})
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        return f"{type(self).__name__}({args})"

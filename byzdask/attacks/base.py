"""Base class of the attacks: what a Byzantine node sends instead of its honest vector."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from byzdask.engine.graph.operator import OpContext, Operator

__all__ = ["Attack"]


class Attack(Operator):
    """Produce one Byzantine vector.

    The flags say what an attack reads, so that a training loop gives it only that:

    ``uses_honest_grads``
        the honest nodes' vectors of this round (a sequence, in node order);
    ``uses_base_grad``
        the Byzantine node's own honest-looking gradient;
    ``uses_model_batch``
        a torch model and a batch ``(x, y)``;
    ``uses_defence``
        the defender's rule and pre-aggregators: the constructor takes ``aggregator`` and
        ``pre_aggregators`` (as ByzFL's optimal attacks do), and the one place that builds attacks
        from short names (:func:`byzdask.train.build_job`) passes the run's own.

    :meth:`apply` returns one vector with the family, dtype, device and shape of the vectors it
    was given.
    """

    name = "attack"
    uses_honest_grads = False
    uses_base_grad = False
    uses_model_batch = False
    uses_defence = False

    @property
    def input_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        keys: list[str] = []
        if self.uses_model_batch:
            keys += ["model", "x", "y"]
        if self.uses_honest_grads:
            keys.append("honest_grads")
        if self.uses_base_grad:
            keys.append("base_grad")
        return tuple(keys)

    def apply(self, *, model: Any = None, x: Any = None, y: Any = None, honest_grads: Any = None,
              base_grad: Any = None) -> Any:
        """Return the Byzantine vector."""
        raise NotImplementedError

    def __call__(self, **kwargs: Any) -> Any:
        return self.apply(**kwargs)

    def compute(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Any:
        if not isinstance(inputs, Mapping):
            raise TypeError(f"{type(self).__name__}.compute expects a mapping of inputs, got {type(inputs).__name__}")
        kwargs = {k: inputs[k] for k in ("model", "x", "y", "honest_grads", "base_grad") if k in inputs}
        return self.apply(**kwargs)

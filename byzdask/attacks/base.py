"""Base class of the attacks: what a Byzantine node sends instead of its honest vector."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from byzdask.engine.graph.operator import OpContext, Operator
from byzdask.engine.graph.subtask import SubTask
from byzdask.errors import ConfigurationError

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
    #: Whether each output column depends only on the same column of the inputs (then
    #: ``chunk_size`` fans the attack out over column blocks, as ByzPy's ``chunk_size``).
    columnwise = False
    #: Column-block width of the fan-out; None runs the attack in one piece.
    chunk_size: int | None = None
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

    def _set_chunk_size(self, chunk_size: Any) -> None:
        if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
                                       or chunk_size < 1):
            raise ConfigurationError(f"{type(self).__name__}: chunk_size must be None or an integer >= 1, "
                                     f"got {chunk_size!r}")
        self.chunk_size = chunk_size

    @property
    def supports_subtasks(self) -> bool:  # type: ignore[override]
        return self.columnwise and self.chunk_size is not None

    def create_subtasks(self, inputs: Mapping[str, Any], *, context: OpContext | None = None) -> Sequence[SubTask]:
        """One subtask per column block of at most ``chunk_size`` columns (more blocks for a larger
        ``context.metadata["pool_size"]``); each runs :meth:`apply` on its columns."""
        from byzdask.aggregators.base import chunk_block_count
        from byzdask.attacks._common import honest_batch, template_batch
        from byzdask.kernels.blocks import column_blocks

        if not self.supports_subtasks:
            raise NotImplementedError(f"{type(self).__name__} fans out only with columnwise attacks and a chunk_size")
        honest = inputs.get("honest_grads") if self.uses_honest_grads else None
        base = inputs.get("base_grad") if self.uses_base_grad else None
        hon = honest_batch(honest, type(self).__name__) if honest is not None else None
        one = template_batch(type(self).__name__, base_grad=base) if base is not None else None
        d = (hon or one).d
        meta = dict(getattr(context, "metadata", None) or {})
        blocks = column_blocks(d, n_blocks=chunk_block_count(d, self.chunk_size, meta.get("pool_size")))
        return [SubTask(_attack_block, args=(self, None if hon is None else hon.matrix[:, sl],
                                             None if one is None else one.matrix[0, sl]),
                        name=f"{self.name}-block-{i}") for i, sl in enumerate(blocks)]

    def reduce_subtasks(self, partials: Sequence[Any], inputs: Mapping[str, Any], *,
                        context: OpContext | None = None) -> Any:
        """The column blocks joined into one vector of the inputs' family, dtype, device and shape."""
        from byzdask.attacks._common import template_batch

        template = template_batch(type(self).__name__, inputs.get("honest_grads") if self.uses_honest_grads else None,
                                  inputs.get("base_grad") if self.uses_base_grad else None)
        xp = template.xp
        return template.restore(xp.concatenate([xp.asarray(p).reshape(-1) for p in partials]))


def _attack_block(attack: Attack, honest: Any, base: Any) -> Any:
    """``attack`` on one column block (an (n, b) honest matrix and/or a (b,) base gradient)."""
    return attack.apply(honest_grads=honest, base_grad=base)

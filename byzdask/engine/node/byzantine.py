"""The Byzantine node: sends what its attack makes instead of an honest vector."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from byzdask.attacks.base import Attack
from byzdask.data.dataset import Dataset
from byzdask.engine.node.base import LossFn, Node
from byzdask.errors import ConfigurationError, InputError

__all__ = ["ByzantineNode", "round_seed"]


def round_seed(seed: int, node_id: int, round_index: int) -> int:
    """The seed a seeded attack uses in one round: a pure function of (seed, node, round).

    Examples
    --------
    >>> round_seed(0, 1, 2) == round_seed(0, 1, 2), round_seed(0, 1, 2) == round_seed(0, 1, 3)
    (True, False)
    """
    state = np.random.SeedSequence([int(seed), int(node_id), int(round_index)]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


class ByzantineNode(Node):
    """A node that runs an :class:`~byzdask.attacks.base.Attack`.

    The attack's flags say what it reads; :meth:`attack_vector` passes only that:

    ``uses_honest_grads``
        the honest vectors of this round, in node order (required from the caller);
    ``uses_base_grad``
        an honest-looking vector of the Byzantine node; when the caller gives none, the node
        computes the gradient of its own next minibatch (with ``model`` and ``data``), else it
        passes the honest vectors instead (SignFlip then flips their mean, as in ByzFL);
    ``uses_model_batch``
        a model and a batch ``(x, y)``; by default the node's own model and next minibatch.

    Parameters
    ----------
    attack : Attack
        What the node sends.
    model : torch.nn.Module, optional
        The node's copy of the model (needed by attacks that read a model or a base gradient
        when the caller gives none; the orchestrator keeps its parameters current).
    data : Dataset, optional
        The node's own shard, for the same attacks.
    batch_size, seed, node_id, loss_fn
        As for :class:`~byzdask.engine.node.base.Node`.

    Notes
    -----
    To plug in your own attack, subclass :class:`~byzdask.attacks.base.Attack` (set its flags
    and implement ``apply``) and pass it here; to change how the node builds the attack's
    inputs, subclass this node and override :meth:`attack_vector`.

    Examples
    --------
    >>> from byzdask.attacks.base import Attack
    >>> class Opposite(Attack):
    ...     uses_honest_grads = True
    ...     def apply(self, *, honest_grads=None, **_):
    ...         return -torch.stack(list(honest_grads)).mean(dim=0)
    >>> node = ByzantineNode(Opposite())
    >>> node.attack_vector(honest_grads=[torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0])]).tolist()
    [-2.0, -3.0]
    """

    def __init__(self, attack: Attack, *, model: nn.Module | None = None, data: Dataset | None = None,
                 batch_size: int = 32, seed: int = 0, node_id: int = 0, loss_fn: LossFn | None = None) -> None:
        if not isinstance(attack, Attack):
            raise ConfigurationError(
                f"attack must be a byzdask.attacks.base.Attack, got {type(attack).__name__}"
            )
        super().__init__(model, data, batch_size=batch_size, seed=seed, node_id=node_id, loss_fn=loss_fn)
        self.attack = attack

    @property
    def needs_honest_grads(self) -> bool:
        """Whether the caller must pass this round's honest vectors."""
        return bool(self.attack.uses_honest_grads)

    def _own_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.data is None:
            raise InputError(
                f"{type(self.attack).__name__} reads a batch: pass x and y, or give ByzantineNode "
                f"{self.node_id} a data shard"
            )
        batch = self.sample_batch(self.step)
        self.step += 1
        return batch

    def base_gradient(self) -> torch.Tensor:
        """The gradient of the node's own next minibatch at its model's parameters."""
        if self.model is None or self.data is None:
            raise InputError(
                f"{type(self.attack).__name__} reads a base gradient: pass base_grad, or give "
                f"ByzantineNode {self.node_id} a model and a data shard"
            )
        x, y = self._own_batch()
        return self.compute_gradient(x, y)

    def attack_for_round(self, round_index: int | None) -> Attack:
        """The attack to run in round ``round_index``.

        An attack with an integer ``seed`` attribute (e.g. ``GaussianAttack(seed=7)``) draws the
        same vector on every call; in training it gets a copy seeded with
        :func:`round_seed(seed, node_id, round_index) <round_seed>`, so the noise is fresh each
        round and the run reproducible. Other attacks (and ``round_index=None``) are returned as is.
        """
        attack = self.attack
        seed = getattr(attack, "seed", None)
        if round_index is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            return attack
        fresh = copy.copy(attack)
        fresh.seed = round_seed(seed, self.node_id, round_index)
        return fresh

    def attack_vector(self, *, honest_grads: Any = None, base_grad: Any = None, model: nn.Module | None = None,
                      x: torch.Tensor | None = None, y: torch.Tensor | None = None,
                      round_index: int | None = None) -> Any:
        """The vector this node sends this round.

        Parameters
        ----------
        honest_grads : sequence of vectors, optional
            This round's honest vectors in node order (required when the attack uses them).
        base_grad : vector, optional
            The node's honest-looking vector (computed from its own data when omitted).
        model : torch.nn.Module, optional
            Model for attacks that read one (default: the node's own).
        x, y : torch.Tensor, optional
            Batch for attacks that read one (default: the node's next minibatch).

        Returns
        -------
        vector
            The attack's output: same family, dtype and shape as the vectors it read.

        Raises
        ------
        InputError
            When the attack needs an input that is neither given nor derivable.
        """
        attack = self.attack_for_round(round_index)
        kwargs: dict[str, Any] = {}
        if attack.uses_honest_grads:
            if honest_grads is None or len(honest_grads) == 0:
                raise InputError(
                    f"{type(attack).__name__} reads the honest vectors: pass honest_grads (got "
                    f"{'none' if honest_grads is None else 'an empty sequence'})"
                )
            kwargs["honest_grads"] = honest_grads
        if attack.uses_base_grad:
            if base_grad is not None:
                kwargs["base_grad"] = base_grad
            elif self.model is not None and self.data is not None:
                kwargs["base_grad"] = self.base_gradient()
            elif honest_grads is not None and len(honest_grads) > 0:
                # no own gradient to offer: attacks that read a base gradient fall back on the
                # honest vectors (e.g. SignFlip flips their mean, as ByzFL does)
                kwargs["honest_grads"] = honest_grads
            else:
                self.base_gradient()  # raises the InputError that names what is missing
        if attack.uses_model_batch:
            model = model if model is not None else self.model
            if model is None:
                raise InputError(
                    f"{type(attack).__name__} reads a model: pass model, or give ByzantineNode {self.node_id} one"
                )
            if x is None or y is None:
                x, y = self._own_batch()
            kwargs.update(model=model, x=x, y=y)
        return attack.apply(**kwargs)

"""Training nodes: honest nodes compute gradients on their shard, Byzantine nodes run attacks."""

from byzdask.engine.node.application import (
    ByzantineNodeApplication,
    HonestNodeApplication,
    NodeApplication,
)
from byzdask.engine.node.base import (
    Node,
    batch_indices,
    evaluate_model,
    stochastic_gradient,
)
from byzdask.engine.node.byzantine import ByzantineNode
from byzdask.engine.node.honest import HonestNode

__all__ = [
    "ByzantineNode",
    "ByzantineNodeApplication",
    "HonestNode",
    "HonestNodeApplication",
    "Node",
    "NodeApplication",
    "batch_indices",
    "evaluate_model",
    "stochastic_gradient",
]

"""Peer-to-peer training: topologies and the :class:`PeerToPeer` orchestrator.

``PeerToPeer`` is imported lazily: :mod:`byzdask.engine.node.training` imports the topologies
from here, and ``PeerToPeer`` builds on that module.
"""

from typing import Any

from byzdask.engine.peer_to_peer.topology import Topology

__all__ = ["PeerToPeer", "Topology"]


def __getattr__(name: str) -> Any:
    if name == "PeerToPeer":
        from byzdask.engine.peer_to_peer.train import PeerToPeer

        return PeerToPeer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

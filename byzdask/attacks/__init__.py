"""Attacks: what Byzantine nodes send: ``from byzdask.attacks import LittleAttack``."""

from byzdask.attacks.base import Attack

__all__ = ["Attack"]

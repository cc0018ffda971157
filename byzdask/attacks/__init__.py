"""Attacks: what Byzantine nodes send: ``from byzdask.attacks import LittleAttack``."""

from byzdask.attacks.base import Attack
from byzdask.attacks.empire import EmpireAttack
from byzdask.attacks.fang import FangAttack
from byzdask.attacks.gaussian import GaussianAttack
from byzdask.attacks.inf import InfAttack
from byzdask.attacks.label_flip import LabelFlipAttack
from byzdask.attacks.little import LittleAttack
from byzdask.attacks.mimic import MimicAttack
from byzdask.attacks.min_max import MinMaxAttack, MinSumAttack
from byzdask.attacks.optimal import OptimalEmpireAttack, OptimalLittleAttack
from byzdask.attacks.sign_flip import SignFlipAttack

__all__ = [
    "Attack",
    "EmpireAttack",
    "FangAttack",
    "GaussianAttack",
    "InfAttack",
    "LabelFlipAttack",
    "LittleAttack",
    "MimicAttack",
    "MinMaxAttack",
    "MinSumAttack",
    "OptimalEmpireAttack",
    "OptimalLittleAttack",
    "SignFlipAttack",
]

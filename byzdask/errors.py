"""Exception hierarchy of byzdask.

Every error a user can trigger derives from :class:`ByzdaskError`; configuration and input
errors also derive from :class:`ValueError`, so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class ByzdaskError(Exception):
    """Base class of every byzdask error."""


class ConfigurationError(ByzdaskError, ValueError):
    """A parameter of a rule, attack, graph or cluster is invalid (raised by constructors)."""


class InputError(ByzdaskError, ValueError):
    """The vectors given to a call are invalid: empty, ragged, mixed families, bad dtype."""


class ToleranceError(ByzdaskError, ValueError):
    """A rule cannot tolerate the requested number of Byzantine inputs for this n."""


class NonFiniteError(ByzdaskError, ValueError):
    """More input vectors hold NaN or Inf than the rule may treat as Byzantine."""


class CapabilityError(ByzdaskError, RuntimeError):
    """No worker of the cluster offers a capability a task asked for."""


class ActorLostError(ByzdaskError, RuntimeError):
    """The worker that held an actor was lost."""


class MessageTimeoutError(ByzdaskError, TimeoutError):
    """A wait for a message ran past its timeout."""


class MessageRejectedError(ByzdaskError, PermissionError):
    """A channel refused a message: its sender is not an in-neighbour, or it is not stamped by
    the sender's own endpoint, or the sender already spoke in that round."""

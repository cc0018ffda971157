"""The progress bar of training rounds (shared by the parameter server and peer-to-peer)."""

from __future__ import annotations

from typing import Any

__all__ = ["round_progress"]


def round_progress(total: int, enabled: bool, *, desc: str = "rounds") -> Any:
    """A tqdm bar over ``total`` rounds, or None when ``enabled`` is false.

    Examples
    --------
    >>> round_progress(3, False) is None
    True
    """
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="round", leave=True)

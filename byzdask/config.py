"""byzdask's defaults in ``dask.config``.

The defaults live in ``byzdask/byzdask.yaml`` and are merged into ``dask.config`` under the
``byzdask`` namespace when :mod:`byzdask` is imported, the way distributed does with its own
``distributed.yaml``. Every option can be set with ``dask.config.set``, a YAML file in
``~/.config/dask/`` or a ``DASK_BYZDASK__...`` environment variable.
"""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml
from dask.utils import parse_timedelta

from byzdask.errors import ConfigurationError

__all__ = ["DEFAULTS_PATH", "get", "get_timeout"]

DEFAULTS_PATH = os.path.join(os.path.dirname(__file__), "byzdask.yaml")

_MISSING = object()


def _merge_defaults() -> None:
    with open(DEFAULTS_PATH, encoding="utf-8") as file:
        defaults = yaml.safe_load(file)
    dask.config.update_defaults(defaults)


def get(key: str, default: Any = _MISSING) -> Any:
    """Read the option ``byzdask.<key>`` from ``dask.config``.

    Parameters
    ----------
    key : str
        Dotted key below the ``byzdask`` namespace, e.g. ``"pool.host"``.
    default : object, optional
        Returned when the key is not set; without it a missing key raises ``KeyError``.

    Returns
    -------
    object
        The configured value.

    Examples
    --------
    >>> get("pool.host")
    '127.0.0.1'
    >>> import dask
    >>> with dask.config.set({"byzdask.pool.host": "10.0.0.5"}):
    ...     get("pool.host")
    '10.0.0.5'
    """
    if default is _MISSING:
        return dask.config.get(f"byzdask.{key}")
    return dask.config.get(f"byzdask.{key}", default=default)


def get_timeout(key: str, override: Any = None) -> float | None:
    """A timeout in seconds: ``override`` when given, else the option ``byzdask.<key>``.

    Parameters
    ----------
    key : str
        Dotted key below ``byzdask``, e.g. ``"pool.start-timeout"``.
    override : float, str or None
        A value the caller passed explicitly (seconds, or a string such as ``"2 minutes"``).

    Returns
    -------
    float or None
        Seconds; ``None`` means no limit (only when configured as ``null``).

    Raises
    ------
    ConfigurationError
        When the value is not a positive duration.

    Examples
    --------
    >>> get_timeout("pool.start-timeout")
    60.0
    >>> get_timeout("pool.start-timeout", "2 minutes")
    120.0
    """
    value = get(key) if override is None else override
    if value is None:
        return None
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:
            seconds = float(parse_timedelta(value, default="seconds"))
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigurationError(
            f"byzdask.{key} must be a duration such as 30 or '2 minutes', got {value!r}"
        ) from exc
    if seconds <= 0:
        raise ConfigurationError(f"byzdask.{key} must be a positive duration, got {value!r}")
    return seconds


_merge_defaults()

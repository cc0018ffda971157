"""Descriptions of the registered rules, pre-aggregators and attacks (for ``byzdask list``)."""

from __future__ import annotations

import inspect
import re
from typing import Any

from byzdask.registry import AGGREGATORS, ATTACKS, PRE_AGGREGATORS, resolve

__all__ = ["describe", "reference_of"]

_TABLES = {"aggregator": AGGREGATORS, "pre-aggregator": PRE_AGGREGATORS, "attack": ATTACKS}
# Arguments that let a rule be built just to ask it for its tolerance.
_PROBE_KWARGS = {"f": 1, "c_tau": 1.0, "bucket_size": 2, "mu": 0.0, "sigma": 1.0}


def reference_of(cls: type) -> str:
    """The first entry of the ``References`` section of a class docstring ("" when it has none).

    Examples
    --------
    >>> class Rule:
    ...     '''A rule.
    ...
    ...     References
    ...     ----------
    ...     .. [1] A. Author, "A paper", 2020.
    ...     '''
    >>> reference_of(Rule)
    'A. Author, "A paper", 2020.'
    """
    doc = inspect.getdoc(cls) or ""
    match = re.search(r"References\n-+\n(.*?)(?:\n\s*\n|\Z)", doc, flags=re.DOTALL)
    if not match:
        return ""
    text = " ".join(line.strip() for line in match.group(1).splitlines())
    return re.sub(r"^\.\. \[\w+\]\s*", "", text)


def _probe(cls: type) -> Any:
    params = inspect.signature(cls).parameters
    kwargs = {k: v for k, v in _PROBE_KWARGS.items() if k in params and params[k].default is inspect.Parameter.empty}
    return cls(**kwargs)


def describe(kind: str, *, n: int = 13) -> list[dict[str, Any]]:
    """One dict per registered name of ``kind``: name, class, reference, and for rules max_f at ``n``."""
    rows = []
    for name in _TABLES[kind]:
        cls = resolve(kind, name)
        row: dict[str, Any] = {"name": name, "class": cls.__name__, "reference": reference_of(cls)}
        if kind == "aggregator":
            row["max_f"] = _probe(cls).max_f(n)
        rows.append(row)
    return rows

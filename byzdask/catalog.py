"""Descriptions of the registered rules, pre-aggregators and attacks (for ``byzdask list``)."""

from __future__ import annotations

import inspect
import re
from typing import Any

from byzdask.registry import AGGREGATORS, ATTACKS, PRE_AGGREGATORS, resolve

__all__ = ["defaults_of", "describe", "reference_of"]

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


def defaults_of(cls: type) -> str:
    """The constructor's parameters: ``name=default``, or the bare name of one without a default.

    ``byzdask train`` and sweeps fill ``f``, ``seed`` and the like from the run; the others are
    what ``--aggregator-kwargs`` / ``--attack-kwargs`` change.

    Examples
    --------
    >>> from byzdask.aggregators import CoordinateWiseTrimmedMean
    >>> defaults_of(CoordinateWiseTrimmedMean)
    'f, chunk_size=None'
    """
    parts = []
    for p in inspect.signature(cls).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(parts)


#: The attack name that means no attack (``byzdask train --attack none``, sweeps).
_NO_ATTACK = {"name": "none", "class": "-", "defaults": "",
              "reference": "no attack: the Byzantine nodes are left out of the run (n = the honest nodes)"}


def describe(kind: str, *, n: int = 13) -> list[dict[str, Any]]:
    """One dict per registered name of ``kind``: name, class, defaults, reference, and for rules max_f at ``n``.

    Examples
    --------
    >>> [row["name"] for row in describe("attack")][-1]
    'none'
    """
    rows = []
    for name in _TABLES[kind]:
        cls = resolve(kind, name)
        row: dict[str, Any] = {"name": name, "class": cls.__name__, "defaults": defaults_of(cls),
                               "reference": reference_of(cls)}
        if kind == "aggregator":
            row["max_f"] = _probe(cls).max_f(n)
        rows.append(row)
    if kind == "attack":
        rows.append(dict(_NO_ATTACK))
    return rows

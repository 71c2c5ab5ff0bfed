"""Traffic weights the way Azure ML stores them, computed for the user.

Azure wants whole percents per deployment that sum to 100, deployment names in lower case, and
(through the SDK) drops zero weights before sending. Users give fractions (``{"blue": 0.9,
"green": 0.1}``), percents, or any proportions; :func:`percentages` turns them into Azure's form,
keeping every named deployment (zero included) so the result says where traffic went.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from mldeploy.errors import UsageError


def percentages(weights: Mapping[str, float], known: Iterable[str]) -> dict[str, int]:
    """``weights`` (any positive scale) as whole percents summing to 100 over ``known``
    deployments (names compared lower-cased; a known deployment not named gets 0).
    Largest-remainder rounding, so 1/3 each gives 34/33/33, never 99 or 101."""
    known = [k.lower() for k in known]
    given: dict[str, float] = {}
    for raw, value in weights.items():
        key = str(raw).strip().lower()
        if key not in known:
            raise UsageError(f"no deployment {raw!r} behind this endpoint",
                             hint=f"its deployments: {', '.join(sorted(known)) or 'none'}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value) or value < 0:
            raise UsageError(f"the weight of {raw!r} must be a number >= 0, not {value!r}")
        given[key] = given.get(key, 0.0) + float(value)
    total = sum(given.values())
    if total <= 0:
        raise UsageError("at least one deployment needs a weight above 0",
                         hint="e.g. --weight blue=90 --weight green=10")
    exact = {k: given.get(k, 0.0) * 100.0 / total for k in known}
    out = {k: int(math.floor(v)) for k, v in exact.items()}
    short = 100 - sum(out.values())
    for k in sorted(known, key=lambda k: (-(exact[k] - out[k]), k))[:short]:
        out[k] += 1
    return out


def shares(traffic: Mapping[str, int], names: Iterable[str]) -> dict[str, float]:
    """Azure's traffic (zero weights possibly dropped) as fractions for every deployment."""
    low = {k.lower(): int(v) for k, v in (traffic or {}).items()}
    return {n: low.get(n.lower(), 0) / 100.0 for n in names}


def steps(target_steps: list[int], old: Mapping[str, int], new: str) -> list[dict[str, int]]:
    """The traffic after each step of a blue/green shift: ``new`` gets each step's percent and
    the old deployments share the rest in their current proportions."""
    old = {k: v for k, v in old.items() if k != new}
    out = []
    for pct in target_steps:
        rest = {k: float(v) for k, v in old.items()} or {}
        if 100 - pct > 0 and sum(rest.values()) > 0:
            w = {k: v * (100 - pct) / sum(rest.values()) for k, v in rest.items()}
            w[new] = float(pct)
        else:
            w = {k: 0.0 for k in rest}
            w[new] = 100.0
        out.append(percentages(w, w.keys()))
    return out


__all__ = ["percentages", "shares", "steps"]

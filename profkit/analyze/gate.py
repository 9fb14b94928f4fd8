"""`profkit report compare --fail-if`: thresholds a CI job gates on.

A threshold is `METRIC>LIMIT`: METRIC got larger, from the first capture (the base) to another,
by more than LIMIT.

    METRIC  step_ms          median ms/step under nsys (each capture's run.json)
            gpu_ms           GPU time (kernels, memcpy, memset) per measured step
            category:NAME    one kernel category's GPU time per measured step (e.g. category:gemm)
    LIMIT   +PCT%            relative growth, percent of the base (the `+` is optional)
            +X ms            absolute growth in milliseconds per step

    >>> parse_threshold("category:gemm > +10%")
    Threshold(metric='category:gemm', limit=10.0, unit='%')
    >>> crossed(parse_threshold("step_ms>+5%"), 100.0, 106.0), crossed(parse_threshold("gpu_ms>0.5ms"), 10.0, 10.4)
    (True, False)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported by the caller's frames, not by loading this module (cold reports)
    import pandas as pd

_THRESHOLD = re.compile(r"^\s*(?P<metric>step_ms|gpu_ms|category:[^<>]+?)\s*>\s*\+?(?P<limit>\d+(?:\.\d+)?)\s*"
                        r"(?P<unit>%|ms)\s*$")
METRICS = ("step_ms", "gpu_ms", "category:NAME")


@dataclass(frozen=True, slots=True)
class Threshold:
    metric: str
    limit: float
    unit: str  # "%" (of the base) or "ms"

    def __str__(self) -> str:
        return f"{self.metric}>+{self.limit:g}{self.unit}"


@dataclass(frozen=True, slots=True)
class Crossing:
    """One threshold crossed: the capture, the base and new values (ms per step)."""

    threshold: Threshold
    capture: str
    base_ms: float
    new_ms: float

    def __str__(self) -> str:
        grew = self.new_ms - self.base_ms
        pct = f"{100 * grew / self.base_ms:+.1f}%" if self.base_ms > 0 else "new"
        return (f"{self.capture}: {self.threshold.metric} {self.base_ms:,.3f} -> {self.new_ms:,.3f} ms "
                f"({pct}, {grew:+,.3f} ms; limit +{self.threshold.limit:g}{self.threshold.unit})")


def parse_threshold(text: str) -> Threshold:
    """`METRIC>LIMIT` as a Threshold.

    Raises:
        ValueError: not of that form (the message shows the form).
    """
    m = _THRESHOLD.match(text)
    if m is None:
        raise ValueError(f"--fail-if {text!r}: write METRIC>+PCT% or METRIC>+Xms, METRIC one of "
                         f"{', '.join(METRICS)} (e.g. 'step_ms>+5%', 'category:gemm>+0.2ms')")
    return Threshold(m["metric"].strip(), float(m["limit"]), m["unit"])


def crossed(t: Threshold, base_ms: float, new_ms: float) -> bool:
    """Did `new_ms` grow from `base_ms` by more than the limit? From 0 any growth crosses a % limit."""
    grew = new_ms - base_ms
    if t.unit == "ms":
        return grew > t.limit
    return grew > 0 if base_ms <= 0 else 100 * grew / base_ms > t.limit


def values(t: Threshold, shares: pd.DataFrame, step_ms: list[float | None], names: list[str]) -> list[float]:
    """The metric per capture, in ms per step, from compare_shares()'s table and each run's median.

    Raises:
        ValueError: step_ms without a capture's run.json; a category no capture has.
    """
    if t.metric == "step_ms":
        missing = [n for n, v in zip(names, step_ms, strict=True) if v is None]
        if missing:
            raise ValueError(f"--fail-if {t}: step_ms needs each capture's run.json ({', '.join(missing)} has none); "
                             "gate on gpu_ms instead")
        return [float(v) for v in step_ms if v is not None]
    per = shares
    if t.metric.startswith("category:"):
        category = t.metric.removeprefix("category:")
        if category not in set(shares["category"]):
            have = dict.fromkeys(map(str, shares["category"]))
            raise ValueError(f"--fail-if {t}: no capture has category {category!r} (they have: {', '.join(have)})")
        per = shares[shares["category"] == category]
    totals = per.groupby("capture", sort=False)["per_step_ns"].sum()
    return [float(totals.get(n, 0.0)) / 1e6 for n in names]


def gate(thresholds: list[Threshold], shares: pd.DataFrame, step_ms: list[float | None],
         names: list[str]) -> list[Crossing]:
    """Every threshold crossed by a capture against the first (names[0]), in threshold then capture order.

    Raises:
        ValueError: as values().
    """
    out = []
    for t in thresholds:
        v = values(t, shares, step_ms, names)
        out += [Crossing(t, n, v[0], x) for n, x in zip(names[1:], v[1:], strict=True) if crossed(t, v[0], x)]
    return out


def summary(crossings: list[Crossing], checked: int) -> str:
    """One line: the regressions, or that none of the `checked` comparisons crossed its limit."""
    if not crossings:
        return f"gate: passed ({checked} threshold check{'s' if checked != 1 else ''}, none crossed)"
    return f"gate: {len(crossings)} regression{'s' if len(crossings) > 1 else ''}: " + "; ".join(map(str, crossings))

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


# --- `--fail-above PCT`: a regression beyond the noise the captures' own steps show -------------------------

NOISE_K = 2.0
"""Default k: the difference of medians must pass k robust standard deviations of the two captures' steps."""
MAD_SIGMA = 1.4826
"""MAD x 1.4826 estimates a normal distribution's standard deviation (and ignores a stray step)."""


def median(values: list[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count).

    >>> median([3.0, 1.0, 2.0]), median([1.0, 4.0])
    (2.0, 2.5)
    """
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def spread(values: list[float]) -> float | None:
    """A robust standard deviation of one capture's per-step values: 1.4826 x the median absolute
    deviation from the median. None for fewer than 2 values (one step shows no spread).

    >>> spread([10.0, 10.0, 10.0, 13.0]), spread([10.0, 12.0]), spread([10.0])
    (0.0, 1.4826, None)
    """
    if len(values) < 2:
        return None
    m = median(values)
    return MAD_SIGMA * median([abs(v - m) for v in values])


@dataclass(frozen=True, slots=True)
class NoiseCheck:
    """One quantity of one capture against the base: per-step values (ms) and the verdict.

    Regression when change_pct > limit_pct + noise_pct, where noise = k x sqrt(s_base^2 + s_new^2)
    (s: spread() of each capture's per-step values) and both percentages are of the base median.
    Without a spread (a capture of one step) the noise is unknown and the limit alone decides.
    """

    quantity: str  # "ms/step" or "range:NAME"
    capture: str
    base: tuple[float, ...]
    new: tuple[float, ...]
    limit_pct: float
    k: float

    @property
    def base_ms(self) -> float:
        return median(list(self.base))

    @property
    def new_ms(self) -> float:
        return median(list(self.new))

    @property
    def noise_ms(self) -> float | None:
        sb, sn = spread(list(self.base)), spread(list(self.new))
        return None if sb is None or sn is None else self.k * (sb * sb + sn * sn) ** 0.5

    @property
    def change_pct(self) -> float | None:
        """Percent of the base median; None when the base is 0 (any growth beyond the noise fails)."""
        return 100 * (self.new_ms - self.base_ms) / self.base_ms if self.base_ms > 0 else None

    @property
    def noise_pct(self) -> float | None:
        noise = self.noise_ms
        return None if noise is None or self.base_ms <= 0 else 100 * noise / self.base_ms

    @property
    def failed(self) -> bool:
        grew, noise = self.new_ms - self.base_ms, self.noise_ms or 0.0
        if self.base_ms <= 0:
            return grew > noise
        return 100 * (grew - noise) / self.base_ms > self.limit_pct

    def line(self) -> str:
        """`gate ms/step NEW: 94.345 -> 105.244 ms (+11.6%), noise ±9.2% (2+2 steps), limit +1% (+10.2% with
        the noise): FAIL`"""
        change = "new" if self.change_pct is None else f"{self.change_pct:+.1f}%"
        if self.noise_ms is None:
            noise = f"noise unknown ({len(self.base)}+{len(self.new)} steps: one step shows no spread)"
        elif self.noise_pct is None:
            noise = f"noise ±{self.noise_ms:,.3f} ms ({len(self.base)}+{len(self.new)} steps)"
        else:
            noise = f"noise ±{self.noise_pct:.1f}% ({len(self.base)}+{len(self.new)} steps)"
        bar = "" if self.noise_pct is None else f" (+{self.limit_pct + self.noise_pct:.1f}% with the noise)"
        return (f"gate {self.quantity} {self.capture}: {self.base_ms:,.3f} -> {self.new_ms:,.3f} ms ({change}), "
                f"{noise}, limit +{self.limit_pct:g}%{bar}: {'FAIL' if self.failed else 'pass'}")

    def as_dict(self) -> dict[str, object]:
        def rounded(x: float | None) -> float | None:
            return None if x is None else round(x, 6)

        return {"quantity": self.quantity, "capture": self.capture, "base_ms": rounded(self.base_ms),
                "new_ms": rounded(self.new_ms), "change_ms": rounded(self.new_ms - self.base_ms),
                "change_pct": rounded(self.change_pct), "noise_ms": rounded(self.noise_ms),
                "noise_pct": rounded(self.noise_pct), "limit_pct": self.limit_pct, "k": self.k,
                "base_steps": len(self.base), "new_steps": len(self.new),
                "base_values_ms": [rounded(v) for v in self.base], "new_values_ms": [rounded(v) for v in self.new],
                "result": "fail" if self.failed else "pass"}


def step_times_ms(ranges: pd.DataFrame) -> list[float]:
    """Each measured step's wall time (its step_i range's end - start), in ms, in step order.

    Raises:
        TypeError: ranges without start_ns, end_ns or path.
    """
    missing = {"start_ns", "end_ns", "path"} - set(ranges.columns)
    if missing:
        raise TypeError(f"step_times_ms needs columns {sorted(missing)}")
    from profkit.analyze.nvtx import step_number
    from profkit.analyze.timeline import per_distinct

    is_step = per_distinct(ranges["path"], lambda p: p.str.fullmatch(r"step_\d+"))  # once per distinct path
    top = ranges[is_step & ranges["end_ns"].notna().to_numpy()]
    steps = sorted(zip(map(step_number, top["path"].astype(str)), top["end_ns"] - top["start_ns"], strict=True))
    return [float(d) / 1e6 for _, d in steps]


def _rel(path: str) -> tuple[str, ...]:
    """A range path below its step, as components (`step_3/forward/layer_2` -> (forward, layer_2))."""
    return tuple(path.split("/")[1:])


def _holds(rel: tuple[str, ...], name: tuple[str, ...]) -> bool:
    """Does the path (components) run through `name` (one component or a sub-path)?"""
    n = len(name)
    return any(rel[i:i + n] == name for i in range(len(rel) - n + 1))


def range_paths(ranges: pd.DataFrame) -> list[str]:
    """The distinct paths of an analysis's ranges, in first-seen order."""
    return list(dict.fromkeys(ranges["path"].astype(str)))


def range_names(ranges: pd.DataFrame) -> list[str]:
    """The names (and sub-paths below the step) of the ranges inside the measured steps."""
    return _names(range_paths(ranges))


def _names(paths: list[str]) -> list[str]:
    from profkit.analyze.nvtx import step_number

    out: dict[str, None] = {}
    for p in paths:
        if step_number(p) >= 0:
            rel = _rel(p)
            out.update(dict.fromkeys(rel))
            out.update(dict.fromkeys("/".join(rel[:i]) for i in range(2, len(rel) + 1)))
    return list(out)


def path_ns(kernels: pd.DataFrame) -> dict[str, int]:
    """Kernel time per owner path (kernels outside every range left out), summed on the paths'
    codes: no text or row copied per kernel.

    Raises:
        TypeError: kernels without range_path and dur_ns.
    """
    import numpy as np

    missing = {"range_path", "dur_ns"} - set(kernels.columns)
    if missing:
        raise TypeError(f"range_times_ms needs kernel columns {sorted(missing)}")
    paths = kernels["range_path"].astype("category")  # the analysis's already is: no copy
    codes, dur = paths.cat.codes.to_numpy(), kernels["dur_ns"].to_numpy(np.int64)
    sums = np.zeros(len(paths.cat.categories), dtype=np.int64)
    for lo in range(0, len(codes), 1 << 20):
        c, d = codes[lo:lo + (1 << 20)], dur[lo:lo + (1 << 20)]
        np.add.at(sums, c[c >= 0], d[c >= 0])
    out: dict[str, int] = {}
    for path, ns in zip(paths.cat.categories.astype(str), sums.tolist(), strict=True):
        out[path] = out.get(path, 0) + ns
    return out


def range_times_ms(kernels: pd.DataFrame, ranges: pd.DataFrame, name: str) -> list[float]:
    """GPU time (kernels, as `report nvtx` counts them) of a range in each measured step, in ms,
    in step order: every kernel whose owner path below the step runs through NAME (a range
    name, or a sub-path such as `forward/layer_2`), each kernel once however deep the name nests.

    Raises:
        ValueError: NAME is no range of the measured steps (the message lists close names).
        TypeError: kernels without range_path and dur_ns.
    """
    return path_times_ms(path_ns(kernels), range_paths(ranges), name)


def path_times_ms(sums: dict[str, int], paths: list[str], name: str) -> list[float]:
    """range_times_ms() from path_ns() of the kernels and range_paths() of the ranges.

    Raises:
        ValueError: as range_times_ms().
    """
    import difflib

    from profkit.analyze.nvtx import step_number

    want = tuple(p for p in name.strip("/").split("/") if p)
    names = _names(paths)
    if not want or "/".join(want) not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"close: {', '.join(close)}" if close else f"some: {', '.join(names[:8]) or 'none'}"
        raise ValueError(f"--range {name!r}: no range of that name inside the measured steps ({hint})")
    steps = sorted({step_number(p) for p in paths} - {-1})
    per = dict.fromkeys(steps, 0)
    for path, ns in sums.items():
        step = step_number(path)
        if step in per and _holds(_rel(path), want):
            per[step] += ns
    return [per[s] / 1e6 for s in steps]


def noise_summary(checks: list[NoiseCheck]) -> str:
    """One line after the per-quantity lines."""
    failed = [c for c in checks if c.failed]
    if not failed:
        return f"gate: passed ({len(checks)} check{'s' if len(checks) != 1 else ''} within limit + noise)"
    return (f"gate: {len(failed)} regression{'s' if len(failed) > 1 else ''} beyond limit + noise: "
            + ", ".join(f"{c.capture} {c.quantity}" for c in failed))

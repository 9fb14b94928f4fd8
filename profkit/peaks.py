"""Measured GPU ceilings: the cache `profkit doctor --measure-peaks` writes and `profkit report
flops --peaks measured` reads (no torch, no pandas).

One JSON file per GPU and driver under `$XDG_CACHE_HOME/profkit/peaks/` (`~/.cache/...`
without it), outside every capture folder: a measurement belongs to the machine, not to a
run. A driver update can move the ceilings, so an entry is keyed by both; a report whose
capture ran on another driver still uses the GPU's newest entry and says so.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from profkit import cache, layout
from profkit.errors import ProfkitError

PEAKS_DIR = "peaks"
"""The folder under cache.root(); cache.evict() never removes it."""
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
VERSION = 1


@dataclass(frozen=True, slots=True)
class Measured:
    """One measurement of a GPU's ceilings (medians of repeats), as cached."""

    gpu: str
    """torch.cuda.get_device_name(), the name nsys stores in TARGET_INFO_GPU."""
    driver: str | None
    measured_at: str
    """ISO 8601, UTC."""
    flops: dict[str, float]
    """FLOP/s per precision (fp32, tf32, bf16, fp16): 2·n³ over the median matmul time."""
    bandwidth: float
    """B/s of a device-to-device copy: bytes read plus bytes written over the median time."""
    method: dict[str, object] = field(default_factory=dict)
    """Sizes, repeats, torch and CUDA versions: how the numbers were taken."""
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"


def folder() -> Path:
    return cache.root() / PEAKS_DIR


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def entry_path(gpu: str, driver: str | None) -> Path:
    """The cache file of one GPU and driver.

    >>> entry_path("NVIDIA H200", "570.86.15").name
    'NVIDIA-H200--driver-570.86.15.json'
    """
    return folder() / f"{_slug(gpu)}--driver-{_slug(driver or 'unknown')}.json"


def write(m: Measured) -> Path:
    """Store a measurement (replacing the one of the same GPU and driver: it is a cache)."""
    path = entry_path(m.gpu, m.driver)
    path.parent.mkdir(parents=True, exist_ok=True)
    layout.write_text(path, m.to_json())
    return path


def read(path: Path) -> Measured:
    """One cache file.

    Raises:
        ProfkitError: unreadable, or not a measurement of this format.
    """
    try:
        d = json.loads(path.read_text())
        if d.get("version") != VERSION:
            raise ValueError(d.get("version"))
        flops = {k: float(d["flops"][k]) for k in PRECISIONS}
        return Measured(gpu=str(d["gpu"]), driver=d.get("driver"), measured_at=str(d["measured_at"]), flops=flops,
                        bandwidth=float(d["bandwidth"]), method=dict(d.get("method") or {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ProfkitError(f"{path} is not a peak measurement of this profkit; run `profkit doctor "
                           "--measure-peaks` again") from None


def cached() -> list[Measured]:
    """Every readable measurement in the cache, newest first (unreadable files are skipped)."""
    found = []
    for path in sorted(folder().glob("*.json")) if folder().is_dir() else []:
        try:
            found.append(read(path))
        except ProfkitError:
            continue
    return sorted(found, key=lambda m: m.measured_at, reverse=True)


def lookup(gpu: str | None, driver: str | None = None) -> Measured | None:
    """The measurement for this GPU and driver; else the GPU's newest with another driver; else None."""
    mine = [m for m in cached() if m.gpu == gpu]
    same = [m for m in mine if driver is not None and m.driver == driver]
    found = same or mine
    return found[0] if found else None

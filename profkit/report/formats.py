"""One table, three formats: markdown for people, CSV and JSON (names kept whole) for programs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from profkit.errors import ProfkitError
from profkit.table import Table

if TYPE_CHECKING:
    import pandas as pd

    from profkit.pipeline import Attributed

FORMATS = ("markdown", "csv", "json")


class ReportError(ProfkitError):
    """Bad report options."""


def render(frame: pd.DataFrame | Table, fmt: str, markdown: str) -> str:
    """`frame` as CSV or JSON (records, whole names, final newline), or the given markdown.

    >>> import pandas as pd
    >>> render(pd.DataFrame({"a": [1]}), "json", "| a |")
    '[\\n  {\\n    "a": 1\\n  }\\n]\\n'
    """
    if fmt == "markdown":
        return markdown
    if isinstance(frame, Table):
        if fmt in ("csv", "json"):
            return frame.to_csv() if fmt == "csv" else frame.to_json()
    elif fmt == "csv":
        return frame.to_csv(index=False)
    elif fmt == "json":
        records = json.loads(frame.to_json(orient="records"))
        return json.dumps(records, indent=2) + "\n"
    raise ReportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def graph_note(replays: int, total_ns: int) -> str | None:
    """The one line every report on a capture with whole CUDA-graph rows carries (None: none).

    >>> graph_note(4, 7_371_892).split(";")[0]
    'Note: 4 CUDA graph replays (7.372 ms) counted as whole graphs'
    """
    if not replays:
        return None
    return (f"Note: {replays:,} CUDA graph replay{'s' if replays != 1 else ''} ({total_ns / 1e6:,.3f} ms) counted as "
            "whole graphs; per-kernel detail needs `--cuda-graph-trace=node` (profkit profile's default).")


def att_graph_note(att: Attributed) -> str | None:
    """graph_note() of the arrays `report kernels` and `report nvtx` take."""
    from profkit.analyze.kernels import graph_replays

    return graph_note(*graph_replays(att.category, att.categories, att.kernels.dur_ns))


def frame_graph_note(kernels: pd.DataFrame) -> str | None:
    """graph_note() of an Analysis's kernels."""
    from profkit.analyze.kernels import graph_replays_of

    return graph_note(*graph_replays_of(kernels))


def with_note(markdown: str, note: str | None) -> str:
    """`markdown` with `note` as its last paragraph (unchanged when None)."""
    if note is None:
        return markdown
    return markdown.rstrip("\n") + "\n\n" + note + "\n"

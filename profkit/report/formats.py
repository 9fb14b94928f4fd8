"""One table, three formats: markdown for people, CSV and JSON (names kept whole) for programs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from profkit.errors import ProfkitError
from profkit.table import Table

if TYPE_CHECKING:
    import pandas as pd

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

"""One table, three formats: markdown for people, CSV and JSON (names kept whole) for programs."""

from __future__ import annotations

import json

import pandas as pd

from profkit.errors import ProfkitError

FORMATS = ("markdown", "csv", "json")


class ReportError(ProfkitError):
    """Bad report options."""


def render(frame: pd.DataFrame, fmt: str, markdown: str) -> str:
    """`frame` as CSV or JSON (records, whole names, final newline), or the given markdown.

    >>> render(pd.DataFrame({"a": [1]}), "json", "| a |")
    '[\\n  {\\n    "a": 1\\n  }\\n]\\n'
    """
    if fmt == "markdown":
        return markdown
    if fmt == "csv":
        return frame.to_csv(index=False)
    if fmt == "json":
        records = json.loads(frame.to_json(orient="records"))
        return json.dumps(records, indent=2) + "\n"
    raise ReportError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")

"""A small table of named columns, for the paths that never import pandas (a cold `report kernels`
or `report nvtx`: pandas alone takes a third of a second to import, reports/bench.md).

Columns are numpy arrays or lists of equal length; rows come out as named tuples (the way
profkit.report.tables reads a DataFrame's `itertuples()`), whole tables as CSV and JSON, and as a
DataFrame for the callers that want one.

CSV is written as pandas' `to_csv(index=False)` writes it (floats as `repr`, NaN and None empty,
fields quoted only when needed); JSON as records, floats as `repr` (exact: they read back to the
same double), NaN as null.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import namedtuple
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


class Table:
    """Named columns of equal length (numpy arrays or lists), in order.

    >>> t = Table({"name": ["a", "b"], "ns": np.array([3, 4])})
    >>> [(r.name, int(r.ns)) for r in t.itertuples()], len(t), t.to_csv()
    ([('a', 3), ('b', 4)], 2, 'name,ns\\na,3\\nb,4\\n')
    """

    __slots__ = ("_columns",)

    def __init__(self, columns: dict[str, Sequence[Any] | np.ndarray]) -> None:
        lengths = {len(c) for c in columns.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns of different lengths: {sorted(lengths)}")
        self._columns = dict(columns)

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def __getitem__(self, name: str) -> Sequence[Any] | np.ndarray:
        return self._columns[name]

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()))) if self._columns else 0

    @property
    def empty(self) -> bool:
        return len(self) == 0

    def take(self, rows: np.ndarray | Sequence[int]) -> Table:
        """The rows at these positions, in that order."""
        idx = np.asarray(rows, dtype=np.int64)
        return Table({k: v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx.tolist()]
                      for k, v in self._columns.items()})

    def head(self, n: int) -> Table:
        return self.take(np.arange(min(n, len(self))))

    def itertuples(self) -> Iterator[Any]:
        """Rows as named tuples of plain Python values (attribute per column)."""
        row = namedtuple("Row", self.columns)  # type: ignore[misc]
        lists = [v.tolist() if isinstance(v, np.ndarray) else list(v) for v in self._columns.values()]
        return (row._make(values) for values in zip(*lists, strict=True))

    def to_csv(self) -> str:
        """As pandas' `DataFrame.to_csv(index=False)` writes the same columns."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(self.columns)
        lists = [[_csv_cell(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
                 for v in self._columns.values()]
        writer.writerows(zip(*lists, strict=True))
        return buf.getvalue()

    def to_json(self) -> str:
        """Records, two-space indented, final newline; floats exact, NaN as null."""
        lists = [[_json_value(x) for x in (v.tolist() if isinstance(v, np.ndarray) else v)]
                 for v in self._columns.values()]
        records = [dict(zip(self.columns, values, strict=True)) for values in zip(*lists, strict=True)]
        return json.dumps(records, indent=2) + "\n"

    def to_frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({k: v if isinstance(v, np.ndarray) else pd.array(v, dtype=object)
                             for k, v in self._columns.items()})


def _csv_cell(x: Any) -> Any:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return repr(x) if isinstance(x, float) else x


def _json_value(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    return x

"""What every stage that holds DataFrames shares: pandas' copy-on-write, and the entry check.

Copy-on-write (as nsys-jax sets it) makes every derived frame a view until written, so no
function can mutate its caller's frame by accident; pandas 3 has it always on.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

if int(pd.__version__.split(".")[0]) < 3:
    pd.options.mode.copy_on_write = True


def require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    """HTA's entry check: raise TypeError naming the columns `frame` lacks.

    >>> require(pd.DataFrame({"a": [1]}), ["a", "b"], "kernels")
    Traceback (most recent call last):
    ...
    TypeError: kernels lacks columns ['b']
    """
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TypeError(f"{what} lacks columns {missing}")

"""DataFrames as one cache entry and back, without a copy on the way back: the storage of the
cache's analysis stage. Generic over frames; what goes in them is profkit.pipeline's choice.
Kept apart from profkit.cache, which a cache hit imports and which therefore imports neither
pandas nor numpy.
"""

from __future__ import annotations

import json

from profkit import cache

ALIGN = 64


def put_frames(store: cache.Cache, name: str, frames: dict[str, object]) -> None:
    """Store frames (int, float, bool, Int64, category, str and object columns, default index) and JSON
    values as one entry: the header's length, a JSON header, then each column's raw bytes (64-byte
    aligned), read back without a copy. A frame of another shape is not stored (then only the cache
    is lost)."""
    import numpy as np
    import pandas as pd

    buffers: list[memoryview] = []
    offset = 0

    def add(values: np.ndarray) -> list[object]:
        nonlocal offset
        values = np.ascontiguousarray(values)
        pad = -offset % ALIGN
        if pad:
            buffers.append(memoryview(bytes(pad)))
            offset += pad
        spec: list[object] = [offset, values.dtype.str, len(values)]
        buffers.append(memoryview(values.view(np.uint8)))  # type: ignore[arg-type]
        offset += values.nbytes
        return spec

    header: dict[str, object] = {}
    try:
        for key, frame in frames.items():
            if isinstance(frame, dict) and set(frame) == {"json"}:
                header[key] = frame
                continue
            assert isinstance(frame, pd.DataFrame)
            if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0 or frame.index.step != 1:
                return
            cols: list[list[object]] = []
            for col, values in frame.items():
                dt = values.dtype
                if isinstance(dt, pd.CategoricalDtype):
                    cats = dt.categories
                    cols.append([col, "category", add(values.cat.codes.to_numpy()), bool(dt.ordered), str(cats.dtype),
                                 cats.to_numpy(object).tolist()])
                elif isinstance(dt, np.dtype) and dt.kind in "biuf":
                    cols.append([col, "numpy", add(values.to_numpy())])
                elif str(dt) == "Int64":
                    cols.append([col, "Int64", add(values.to_numpy(dtype=np.int64, na_value=0)),
                                 add(values.isna().to_numpy())])
                elif pd.api.types.is_object_dtype(dt) or isinstance(dt, pd.StringDtype):
                    codes, uniq = pd.factorize(values)
                    cols.append([col, "strings", add(codes), str(dt), pd.Series(uniq, dtype=object).tolist()])
                else:
                    return
            header[key] = {"rows": len(frame), "columns": cols}
        head = json.dumps(header).encode()
    except (TypeError, ValueError):  # a value JSON cannot hold: not stored
        return
    lead = len(head).to_bytes(8, "little") + head
    lead += bytes(-len(lead) % ALIGN)
    store.put(name, [memoryview(lead), *buffers])


def get_frames(store: cache.Cache, name: str) -> dict[str, object] | None:
    """The frames of entry `name` (put_frames), or None: missing, damaged or not of this shape."""
    import numpy as np
    import pandas as pd

    raw = store.get_view(name)
    if raw is None:
        return None
    try:
        length = int.from_bytes(raw[:8], "little")
        header = json.loads(bytes(raw[8:8 + length]))
        base = 8 + length + (-(8 + length) % ALIGN)

        def array(spec: list[object]) -> np.ndarray:
            off, dtype, n = spec
            return np.frombuffer(raw, dtype=np.dtype(str(dtype)), count=int(n), offset=base + int(off))  # type: ignore[call-overload]

        out: dict[str, object] = {}
        for key, spec in header.items():
            if "json" in spec:
                out[key] = spec["json"]
                continue
            data: dict[str, object] = {}
            for col, kind, first, *rest in spec["columns"]:
                if kind == "category":
                    ordered, cat_dtype, cats = rest
                    dt = pd.CategoricalDtype(pd.Index(cats, dtype=pd.api.types.pandas_dtype(cat_dtype)), ordered)
                    data[col] = pd.Categorical.from_codes(array(first), dtype=dt)
                elif kind == "numpy":
                    data[col] = array(first)
                elif kind == "Int64":
                    data[col] = pd.arrays.IntegerArray(array(first), array(rest[0]))
                else:
                    dtype, uniq = rest
                    values = np.array([*uniq, None], dtype=object)[array(first)]  # -1: the None at the end
                    data[col] = pd.array(values, dtype=pd.api.types.pandas_dtype(dtype))
            frame = pd.DataFrame(data, copy=False) if data else pd.DataFrame(index=pd.RangeIndex(spec["rows"]))
            if len(frame) != spec["rows"]:
                return None
            out[key] = frame
        return out
    except (ValueError, KeyError, TypeError, IndexError, json.JSONDecodeError):
        return None

"""Each kernel name of an export with its instances and total time, read with plain SQL, as a
JSON line: the evidence the category test (tests/test_categories_gpu.py) checks `other` against.

    python scripts/kernel_names.py CAPTURE_DIR LABEL >> kernel_names.jsonl
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

folder, label = Path(sys.argv[1]), sys.argv[2]
db = sqlite3.connect(f"file:{folder / 'profile.sqlite'}?mode=ro", uri=True)
rows = db.execute("SELECT s.value, count(*), sum(k.end - k.start) FROM CUPTI_ACTIVITY_KIND_KERNEL k "
                  "JOIN StringIds s ON s.id = k.demangledName GROUP BY s.value ORDER BY 3 DESC").fetchall()
run = json.loads((folder / "run.json").read_text())
print(json.dumps({"capture": label, "config": {k: run["config"][k] for k in ("model", "mode", "dtype", "attn",
                                                                            "compile")},
                  "gpu": run["environment"]["gpu"], "kernels": [[n, c, t] for n, c, t in rows]}))

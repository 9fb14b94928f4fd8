"""Kernel categories from an ordered rule table (profkit/rules.toml, extendable by --rules)."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from profkit.columns import GRAPH_NAME
from profkit.errors import ProfkitError

if TYPE_CHECKING:
    import pandas as pd


class RulesError(ProfkitError):
    """A rules file that cannot be used."""


@dataclass(frozen=True, slots=True)
class Rule:
    category: str
    pattern: re.Pattern[str]


def _parse(text: str, source: str) -> list[Rule]:
    try:
        rules = tomllib.loads(text).get("rule", [])
    except tomllib.TOMLDecodeError as e:
        raise RulesError(f"{source} is not valid TOML: {e}") from None
    out = []
    for i, r in enumerate(rules):
        if not isinstance(r, dict) or not {"category", "pattern"} <= r.keys():
            raise RulesError(f"{source}: rule {i + 1} needs `category` and `pattern`")
        try:
            out.append(Rule(str(r["category"]), re.compile(str(r["pattern"]), re.IGNORECASE)))
        except re.error as e:
            raise RulesError(f"{source}: rule {i + 1} has a bad pattern {r['pattern']!r}: {e}") from None
    return out


BUILTIN_RULES = Path(__file__).resolve().parent.parent / "rules.toml"
"""profkit's own rules, beside the package's modules (as importlib.resources finds them for an
installed package; read from the path, a cold report does not import importlib.resources,
tempfile and zipfile: ~10 ms of its start-up)."""


def load_rules(extra: Path | None = None) -> list[Rule]:
    """The user's rules (tried first) followed by profkit's own."""
    builtin = _parse(BUILTIN_RULES.read_text(), "profkit/rules.toml")
    if extra is None:
        return builtin
    try:
        text = extra.read_text()
    except OSError as e:
        raise RulesError(f"cannot read rules file {extra}: {e.strerror}") from None
    return _parse(text, str(extra)) + builtin


GRAPH_CATEGORY = "cuda graph"
"""A whole CUDA-graph replay's category, whatever the rules say: it is no one kernel."""


def category_of(name: str, rules: list[Rule]) -> str:
    """The category of one kernel name: the first matching rule's, `other` if none; a whole
    CUDA-graph replay's (profkit.columns.graph_name) is always GRAPH_CATEGORY.

    >>> category_of("ampere_sgemm_128x64_tn", load_rules()), category_of("CUDA graph 4 (exec 5)", load_rules())
    ('gemm', 'cuda graph')
    """
    if GRAPH_NAME.match(name):
        return GRAPH_CATEGORY
    for rule in rules:
        if rule.pattern.search(name):
            return rule.category
    return "other"


def categorize(names: pd.Series, rules: list[Rule]) -> pd.Series:
    """Category of each distinct kernel name (first matching rule; `other` if none).

    >>> import pandas as pd
    >>> categorize(pd.Series(["ampere_sgemm_128x64_tn", "void at::native::vectorized_elementwise_kernel<4>"]),
    ...            load_rules()).tolist()
    ['gemm', 'elementwise']
    """
    import pandas as pd

    lookup = {n: category_of(str(n), rules) for n in pd.unique(names)}
    return names.map(lookup)


_TRITON = re.compile(r"^triton_(poi|red|per|tem|for|spl)_(fused_)?(.*?)(_\d+)?$")
_TRITON_KINDS = {"poi": "pointwise", "red": "reduction", "per": "persistent reduction", "tem": "template",
                 "for": "foreach", "spl": "split scan"}


def triton_fuses(name: str) -> str | None:
    """What an inductor kernel fuses, read from its name; None if the name does not tell.

    >>> triton_fuses("triton_poi_fused__to_copy_add_mul_0")
    'pointwise: _to_copy_add_mul'
    >>> triton_fuses("triton_tem_fused_mm_3")
    'template: mm'
    """
    m = _TRITON.match(name)
    if m is None:
        return None
    # Op names themselves contain underscores (native_layer_norm, _to_copy), so the fused list
    # is shown as inductor wrote it rather than split into a guess.
    kind = _TRITON_KINDS[m.group(1)]
    return f"{kind}: {m.group(3)}" if m.group(3) else kind

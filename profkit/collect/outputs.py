"""What a model returns, made into the loss `profkit run` backpropagates (torch).

The contract for `--model package.module:factory` (README, "Your own model"):

- `make_batch(device)` returns `(inputs, targets)`. `inputs` is a tensor (`model(inputs)`), a
  tuple (`model(*inputs)`) or a dict (`model(**inputs)`, keyword arguments as they are:
  Hugging Face's `input_ids`, `attention_mask`, `labels`). `targets` is a tensor of class ids,
  or None when the model computes its own loss.
- The model returns a scalar loss; a tensor of logits (last dimension: classes); a
  dataclass, `transformers` ModelOutput or dict with `loss` and/or `logits`; or a tuple whose
  first element is the loss (a scalar) or the logits (what `return_dict=False` gives).
- The model's own loss wins when it returns one (not None). Else profkit takes cross-entropy
  of the logits against `targets`, in fp32.

profkit never passes `labels=` itself: Hugging Face's causal LMs shift the labels inside
(labels are the input ids), while `targets` are the next tokens, so adding one for the other
would silently train on the wrong tokens. Put `labels` in the keyword arguments instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from profkit.errors import RunError

ACCEPTED = ("profkit accepts a scalar loss, a tensor of logits, a ModelOutput, dataclass or dict with `loss` or "
            "`logits`, or a tuple whose first element is the loss or the logits")


class UnsupportedOutput(RunError):
    """The model returned something profkit cannot make a loss of."""


def type_name(obj: object) -> str:
    """`int`, `torch.Tensor`, `transformers.modeling_outputs.CausalLMOutputWithPast`.

    >>> type_name(3), type_name(dataclasses.field)
    ('int', 'function')
    """
    t = type(obj)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _field(out: object, key: str) -> Any:
    if isinstance(out, Mapping):
        return out.get(key)
    if dataclasses.is_dataclass(out) or hasattr(out, key):
        return getattr(out, key, None)
    return None


def loss_of(out: object, targets: Tensor | None) -> Tensor:
    """The loss to backpropagate from a model's output (see the module docstring).

    Raises:
        UnsupportedOutput: `out` is none of the accepted shapes, or holds logits and no
            targets were given.
    """
    loss: Any = None
    logits: Any = None
    if isinstance(out, Tensor):
        loss, logits = (out, None) if out.dim() == 0 else (None, out)
    elif isinstance(out, tuple) and out and isinstance(out[0], Tensor):
        loss, logits = (out[0], None) if out[0].dim() == 0 else (None, out[0])
    elif not isinstance(out, (str, bytes, tuple, list)):
        loss, logits = _field(out, "loss"), _field(out, "logits")
    if isinstance(loss, Tensor) and loss.dim() == 0:
        return loss
    if isinstance(logits, Tensor) and logits.dim() >= 2:
        if targets is None:
            raise UnsupportedOutput(f"the model returned logits ({type_name(out)}, no loss) and make_batch gave no "
                                    "targets; return (inputs, targets), or pass labels in the inputs so the model "
                                    "computes its loss")
        return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten())
    what = type_name(out)
    if isinstance(out, Tensor):
        what = f"a tensor of shape {tuple(out.shape)}"
    elif loss is None and logits is None and not isinstance(out, (str, bytes, tuple, list, int, float)):
        what += " without loss or logits"
    raise UnsupportedOutput(f"the model returned {what}; {ACCEPTED}")

"""What user models return: every accepted shape gives the loss, anything else one error line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from profkit.cli import cli
from profkit.collect.outputs import UnsupportedOutput, loss_of
from tests import hf_like
from tests.conftest import TESTS, read_run

LOGITS = torch.randn(2, 3, 5)
TARGETS = torch.tensor([[0, 1, 2], [3, 4, 0]])
CE = F.cross_entropy(LOGITS.flatten(0, 1), TARGETS.flatten())
OWN = torch.tensor(1.25)


@pytest.mark.parametrize("out,expected", [
    (LOGITS, CE),
    (OWN, OWN),
    ((LOGITS, None), CE),
    ((OWN, LOGITS), OWN),
    ({"logits": LOGITS, "hidden_states": None}, CE),
    ({"loss": OWN, "logits": LOGITS}, OWN),
    ({"loss": None, "logits": LOGITS}, CE),
    (hf_like.CausalLMOutput(logits=LOGITS), CE),
    (hf_like.CausalLMOutput(loss=OWN, logits=LOGITS), OWN),
])
def test_accepted_outputs(out: object, expected: torch.Tensor) -> None:
    torch.testing.assert_close(loss_of(out, TARGETS), expected, rtol=0, atol=0)


@pytest.mark.parametrize("out,message", [
    ("text", "the model returned str; profkit accepts a scalar loss, a tensor of logits, a ModelOutput, dataclass "
             "or dict with `loss` or `logits`, or a tuple whose first element is the loss or the logits"),
    (hf_like.CausalLMOutput(), "the model returned tests.hf_like.CausalLMOutput without loss or logits; "),
    ({"hidden": LOGITS}, "the model returned dict without loss or logits; "),
    ((None, LOGITS), "the model returned tuple; "),
    (torch.ones(3), "the model returned a tensor of shape (3,); "),
    (7, "the model returned int; "),
])
def test_unsupported_outputs(out: object, message: str) -> None:
    with pytest.raises(UnsupportedOutput) as e:
        loss_of(out, TARGETS)
    assert str(e.value).startswith(message)


def test_logits_without_targets() -> None:
    with pytest.raises(UnsupportedOutput, match=r"returned logits \(tests.hf_like.CausalLMOutput, no loss\) and "
                                                "make_batch gave no targets"):
        loss_of(hf_like.CausalLMOutput(logits=LOGITS), None)


def _run(tmp_path: Path, factory: str, *extra: str):
    return CliRunner().invoke(cli, ["run", "--model", f"hf_like:{factory}", "--mode", "step", "--device", "cpu",
                                    "--batch-size", "2", "--context-length", "8", "--warmup", "1", "--steps", "1",
                                    "--out", str(tmp_path / "o"), *extra])


@pytest.mark.parametrize("factory", ["causal_lm_with_labels", "causal_lm_logits", "returns_dict", "returns_tuple",
                                     "returns_tuple_loss", "returns_scalar", "returns_tensor"])
def test_run_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    result = _run(tmp_path, factory, "--nvtx", "on", "--nvtx-depth", "3")
    assert result.exit_code == 0, result.output
    assert read_run(tmp_path / "o")["resolved"]["tokens_per_step"] == 16


@pytest.mark.parametrize("factory,what", [
    ("returns_string", "str"),
    ("returns_empty", "tests.hf_like.CausalLMOutput without loss or logits"),
])
def test_run_refuses_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, factory: str, what: str) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    result = _run(tmp_path, factory)
    assert result.exit_code == 2
    what = what.replace("tests.hf_like", "hf_like")  # imported as a top-level module here
    # One line (the progress bar, stopped when the error came, leaves a blank one off a terminal).
    assert result.stderr.strip("\n") == (
        f"Error: --model hf_like:{factory}: the model returned {what}; profkit accepts a scalar loss, a tensor of "
        "logits, a ModelOutput, dataclass or dict with `loss` or `logits`, or a tuple whose first element is the loss "
        "or the logits")
    assert not (tmp_path / "o" / "run.json").exists()


def test_profile_shows_the_programs_error_line(tmp_path: Path) -> None:
    """`profkit profile` prints the profiled run's own one-line error, not its traceback."""
    env = {"FAKE_NSYS_MODE": "runs_program", "PYTHONPATH": f"{TESTS}:{TESTS.parent}"}
    result = CliRunner(env=env).invoke(cli, [
        "profile", "--model", "hf_like:returns_string", "--device", "cpu", "--warmup", "0", "--steps", "1",
        "--name", "cap", "--out-dir", str(tmp_path), "--nsys", str(TESTS / "fake_nsys.py")])
    assert result.exit_code == 2
    assert result.stderr == ("Error: --model hf_like:returns_string: the model returned str; profkit accepts a scalar "
                             "loss, a tensor of logits, a ModelOutput, dataclass or dict with `loss` or `logits`, or "
                             f"a tuple whose first element is the loss or the logits (log: {tmp_path}/cap.failed/"
                             "nsys.log)\n")

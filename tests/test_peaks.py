"""Measured peaks: `profkit doctor --measure-peaks`'s arithmetic with a fake timer, its cache
(round trip, GPU and driver keys, eviction), and `report flops --peaks measured` reading it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from profkit import cache, peaks
from profkit.cli import cli
from profkit.collect import doctor

DATA = Path(__file__).parent / "data"
H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "profkit" / "peaks"


def _measured(gpu: str = H100, driver: str | None = "580.1", when: str = "2026-01-02T03:04:05+00:00",
              bf16: float = 700e12) -> peaks.Measured:
    return peaks.Measured(gpu=gpu, driver=driver, measured_at=when,
                          flops={"fp32": 50e12, "tf32": 400e12, "bf16": bf16, "fp16": 690e12}, bandwidth=3e12)


def test_measure_with_a_fake_timer(home: Path) -> None:
    torch = pytest.importorskip("torch")
    from profkit.collect import peaks as measuring

    calls: list[int] = []

    def timer(fn: object, repeats: int) -> list[float]:
        fn()  # type: ignore[operator]  # the real call runs (tiny, on CPU): the closure is sound
        calls.append(repeats)
        return [3e-3, 1e-3, 2e-3, 9e-3, 2e-3][:repeats]  # median 2 ms

    before = torch.get_float32_matmul_precision()
    m = measuring.measure(timer, gpu="Fake GPU", driver="1.2", device="cpu", n=16, copy_bytes=4096, repeats=5)
    assert torch.get_float32_matmul_precision() == before  # restored
    assert calls == [5] * 5  # four matmuls and the copy
    assert m.flops == {p: 2 * 16**3 / 2e-3 for p in ("fp32", "tf32", "bf16", "fp16")}
    assert m.bandwidth == 2 * 4096 / 2e-3  # read once, written once
    assert m.method["matmul_n"] == 16 and m.method["repeats"] == 5
    path = peaks.write(m)
    assert path == home / "Fake-GPU--driver-1.2.json"
    assert peaks.read(path) == m


def test_lookup_by_gpu_and_driver(home: Path) -> None:
    assert peaks.lookup(H100, "580.1") is None
    old = _measured(driver="570.0", when="2025-01-01T00:00:00+00:00", bf16=600e12)
    peaks.write(old)
    peaks.write(_measured(gpu="NVIDIA H200", driver="580.1"))
    assert peaks.lookup(H100, "580.1") == old  # another driver: still the GPU's newest
    mine = _measured()
    peaks.write(mine)
    assert peaks.lookup(H100, "580.1") == mine
    assert peaks.lookup(H100, None) == mine  # unknown driver: the newest
    (home / "junk.json").write_text("{not json")
    assert len(peaks.cached()) == 3  # unreadable entries are skipped


def test_bad_cache_file(home: Path) -> None:
    home.mkdir(parents=True)
    bad = home / "x.json"
    bad.write_text(json.dumps({"version": 99}))
    with pytest.raises(peaks.ProfkitError, match="--measure-peaks"):
        peaks.read(bad)


def test_eviction_keeps_measurements(home: Path) -> None:
    peaks.write(_measured())
    key = cache.root() / ("a" * 32)
    key.mkdir(parents=True)
    (key / "entry").write_bytes(b"x" * 100)
    removed = cache.evict(cache.root(), 0)
    assert removed == [key] and (home / "NVIDIA-H100-80GB-HBM3--driver-580.1.json").is_file()


def test_doctor_row(home: Path) -> None:
    assert doctor.peaks_row(H100, "580.1") == (
        "measured peaks", "none for this GPU: `profkit doctor --measure-peaks` measures them (~10 s)", "")
    peaks.write(_measured(driver="570.0"))
    what, found, fix = doctor.peaks_row(H100, "580.1")
    assert found == ("bf16 700, fp16 690, tf32 400, fp32 50 TFLOP/s; copy 3.00 TB/s; measured "
                     "2026-01-02T03:04:05+00:00 with driver 570.0 (this one is 580.1; measure again)")
    assert fix == ""  # not a fault: doctor's exit code stays 0 for it


def test_measure_peaks_without_gpu(home: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    r = CliRunner().invoke(cli, ["doctor", "--measure-peaks"])
    assert r.exit_code == 2
    assert r.output == ("Error: --measure-peaks needs a CUDA GPU visible to torch, and none is (see the GPU row of "
                        "`profkit doctor`)\n")


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    folder = tmp_path / "cap"
    shutil.copytree(DATA / "h100_small_step_bf16", folder)
    r = CliRunner().invoke(cli, ["flops", "--model", "small", "--mode", "step", "--dtype", "bf16", "--out",
                                 str(folder)])
    assert r.exit_code == 0, r.output
    return folder


def test_report_says_which_peak(home: Path, capture: Path) -> None:
    r = CliRunner().invoke(cli, ["report", "flops", str(capture), "--no-cache"])
    assert r.exit_code == 0, r.output
    assert f"Peak: {H100}, H100 SXM datasheet: 989.4 TFLOP/s bf16" in r.output
    r = CliRunner().invoke(cli, ["report", "flops", str(capture), "--peaks", "measured", "--no-cache"])
    assert r.exit_code == 2
    assert r.output.startswith(f"Error: no measured peaks for GPU '{H100}' in {home}; run `profkit doctor "
                               "--measure-peaks`")
    peaks.write(_measured(driver="999"))  # the capture's driver is another
    r = CliRunner().invoke(cli, ["report", "flops", str(capture), "--peaks", "measured", "--no-cache"])
    assert r.exit_code == 0, r.output
    driver = json.loads((capture / "run.json").read_text())["environment"]["driver"]
    assert (f"Peak: {H100}, measured by `profkit doctor --measure-peaks` on 2026-01-02T03:04:05+00:00, driver "
            f"999; the capture ran on driver {driver}: 700.0 TFLOP/s bf16") in r.output
    datasheet = json.loads(CliRunner().invoke(cli, ["report", "flops", str(capture), "--format", "json",
                                                    "--no-cache"]).output)
    measured = json.loads(CliRunner().invoke(cli, ["report", "flops", str(capture), "--format", "json",
                                                   "--peaks", "measured", "--no-cache"]).output)
    for d, m in zip(datasheet, measured, strict=True):  # same rates of work, another ceiling
        assert d["tflops_per_s"] == m["tflops_per_s"]
        if d["pct_of_peak"] is not None and d["pct_of_peak"] > 0 and d["path"] == "forward/lm_head":
            assert m["pct_of_peak"] == pytest.approx(d["pct_of_peak"] * 989.4 / 700, rel=1e-12)

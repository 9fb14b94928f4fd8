"""`profkit doctor --measure-peaks`: this GPU's real ceilings, not its datasheet's.

Large square matmuls per precision (bf16, fp16, tf32, fp32) and a device-to-device copy, on
random data (never zeros: tensor cores draw less power on zeros, and some parts clock higher
for it), each timed with CUDA events around single calls after warm-up, the median of the
repeats kept. A matmul of n×n by n×n is 2·n³ FLOPs (one multiply and one add per term); a
copy moves its bytes twice (read once, written once), the convention of STREAM's Copy and
of the datasheet bandwidth it is compared with. The result is cached per GPU and driver
(profkit.peaks), where `profkit report flops --peaks measured` finds it.

The timing is passed in (`Timer`), so the arithmetic and the cache are tested on CPU with a
fake one; only `cuda_timer` and `measure_this_gpu` need a GPU.
"""

from __future__ import annotations

import datetime
import statistics
from collections.abc import Callable

import torch

from profkit import peaks
from profkit.errors import ProfkitError

MATMUL_N = 8192
"""2·8192³ = 1.1 TFLOP per call: ~1.4 ms at 800 TFLOP/s, long enough that launch cost is noise."""
COPY_BYTES = 1 << 30
"""1 GiB, far beyond any L2 (50-60 MB on Hopper): the copy runs at DRAM speed."""
REPEATS = 30
WARMUP = 3
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# torch.set_float32_matmul_precision: "highest" keeps fp32 GEMMs on FFMA, "high" allows TF32.
FP32_MODE = {"fp32": "highest", "tf32": "high"}

Timer = Callable[[Callable[[], object], int], list[float]]
"""(the call, how many timed repeats) -> seconds of each repeat."""


class PeaksError(ProfkitError):
    """No GPU to measure."""


def cuda_timer(fn: Callable[[], object], repeats: int) -> list[float]:  # pragma: no cover - needs a GPU
    """Seconds of each of `repeats` calls of `fn`, by CUDA events, after WARMUP untimed ones."""
    for _ in range(WARMUP):
        fn()
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    torch.cuda.synchronize()
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) / 1e3 for start, end in events]


def measure(timer: Timer, *, gpu: str, driver: str | None, device: str = "cuda", n: int = MATMUL_N,
            copy_bytes: int = COPY_BYTES, repeats: int = REPEATS, seed: int = 0) -> peaks.Measured:
    """Time the matmuls and the copy with `timer`; FLOP/s and B/s from the medians.

    Args:
        timer: cuda_timer on a GPU; a fake in tests.
        gpu, driver: what the measurement is cached under.
        device, n, copy_bytes, repeats: the sizes (tests use a tiny CPU case).
    """
    gen = torch.Generator(device).manual_seed(seed)
    rates: dict[str, float] = {}
    medians: dict[str, float] = {}
    before = torch.get_float32_matmul_precision()
    try:
        for precision, dtype in DTYPES.items():
            torch.set_float32_matmul_precision(FP32_MODE.get(precision, before))
            a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
            b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
            c = torch.empty(n, n, device=device, dtype=dtype)

            def matmul(a: torch.Tensor = a, b: torch.Tensor = b, c: torch.Tensor = c) -> object:
                return torch.mm(a, b, out=c)

            medians[precision] = statistics.median(timer(matmul, repeats))
            rates[precision] = 2.0 * n**3 / medians[precision]
            del a, b, c
    finally:
        torch.set_float32_matmul_precision(before)
    src = torch.randn(copy_bytes // 4, device=device, generator=gen)
    dst = torch.empty_like(src)
    medians["copy"] = statistics.median(timer(lambda: dst.copy_(src), repeats))
    bandwidth = 2.0 * src.numel() * src.element_size() / medians["copy"]
    method = {"matmul_n": n, "copy_bytes": src.numel() * src.element_size(), "repeats": repeats, "warmup": WARMUP,
              "statistic": "median", "median_s": medians, "torch": torch.__version__, "cuda": torch.version.cuda,
              "flops_per_matmul": 2 * n**3, "copy_counts": "bytes read + bytes written"}
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    return peaks.Measured(gpu=gpu, driver=driver, measured_at=now, flops=rates, bandwidth=bandwidth, method=method)


def measure_this_gpu(driver: str | None) -> peaks.Measured:  # pragma: no cover - needs a GPU
    """Measure GPU 0 and cache the result.

    Raises:
        PeaksError: no CUDA GPU visible to torch.
    """
    if not torch.cuda.is_available():
        raise PeaksError("--measure-peaks needs a CUDA GPU visible to torch, and none is (see the GPU row of "
                         "`profkit doctor`)")
    m = measure(cuda_timer, gpu=torch.cuda.get_device_name(0), driver=driver)
    peaks.write(m)
    return m

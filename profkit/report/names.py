"""Kernel names a person can read, that still tell kernels apart.

A demangled PyTorch kernel name is kilobytes of templates; folding every template away
(`at::native::vectorized_elementwise_kernel<…>`) throws away exactly what distinguishes the
kernels: the operation (the functor or lambda: `direct_copy`, `bfloat16_copy`, `MulFunctor`,
the Adam step's `LerpFunctor`) and the dtype. `readable_name` keeps those:

    at::native::vectorized_elementwise_kernel<(int)8, at::native::bfloat16_copy_kernel_cuda(...)::[lambda(float)
    (instance 1)], ...>                                      -> elementwise: copy float→bf16 (vec8)
    multi_tensor_apply_kernel<..., LerpFunctor<float>, float> -> multi_tensor_apply: lerp scalar float (foreach)
    nvjet_sm90_tst_192x96_64x5_1x2_h_bz_NTT                  -> gemm: nvjet 192x96 NTT

and `unique_names` makes sure no two rows of one table read the same. CSV and JSON keep the
full demangled name.
"""

from __future__ import annotations

import re

from profkit.columns import GRAPH_NAME

DTYPES = {"c10::BFloat16": "bf16", "c10::Half": "fp16", "float": "float", "double": "double", "long": "int64",
          "int": "int32", "bool": "bool", "unsigned char": "uint8", "signed char": "int8", "short": "int16",
          "c10::complex<float>": "complex64", "c10::Float8_e4m3fn": "fp8e4m3", "c10::Float8_e5m2": "fp8e5m2",
          "cutlass::bfloat16_t": "bf16", "cutlass::half_t": "fp16"}
_TYPE = "|".join(re.escape(t) for t in sorted(DTYPES, key=len, reverse=True))
# Operations named inside PyTorch's elementwise and reduction kernels, most specific first.
_OPS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(bfloat16|float16|float8\w*)_copy_kernel"), "copy →{0}"),
    (re.compile(r"direct_copy_kernel"), "copy"),
    (re.compile(r"binary_internal::(\w+?)Functor"), "{0}"),
    (re.compile(r"CUDAFunctorOnSelf_(\w+?)<"), "{0} (in place)"),
    (re.compile(r"CUDAFunctor_(\w+?)<"), "{0}"),
    (re.compile(r"(\w+?)_kernel_(?:cuda|impl)\b"), "{0}"),
    (re.compile(r"::(?:<unnamed>::)?(?!gpu_)(\w+?)_kernel(?:_\w+)?[<(]"), "{0}"),
    (re.compile(r"::(?:launch_)?(\w+?)\(at::TensorIteratorBase"), "{0}"),
    (re.compile(r"::(\w+?)Functor<"), "{0}"),
    (re.compile(r"ReduceOp<[^,]+, at::native::(\w+?)Ops<"), "{0}"),
    (re.compile(r"(\w+?)_functor<"), "{0}"),
]
_FOREACH_OPS: list[tuple[re.Pattern[str], str]] = [
    # the op is the template argument after the functor: LerpFunctor<float>, Sqrt<float>, std::divides<float>
    (re.compile(r">, (?:at::native::|std::)?(\w+?)(?:Functor)?<[^<>]*>(?:, \w+)?>\(T1"), "{0}"),
]
_STD_OPS = {"multiplies": "mul", "plus": "add", "minus": "sub", "divides": "div"}


def _dtype(name: str) -> str:
    """The first element dtype the name mentions (a lambda's argument, a functor's parameter)."""
    m = re.search(rf"(?:lambda\(|Functor\w*<|Op\w*<|ReduceOp<|kernel\w*<|, )({_TYPE})\b", name)
    return DTYPES[m.group(1)] if m else ""


def _op(name: str, table: list[tuple[re.Pattern[str], str]]) -> str:
    for pattern, template in table:
        m = pattern.search(name)
        if m:
            word = next((g for g in m.groups() if g), "")
            word = _STD_OPS.get(word, word)
            word = {"bfloat16": "bf16", "float16": "fp16"}.get(word, word)
            return template.format(re.sub(r"(?<!^)(?=[A-Z])", "_", word).lower().strip("_"))
    return ""


def _base(name: str) -> str:
    """The function's own name: no return type, templates or parameters, last `::` part."""
    s = name.removeprefix("void ").strip()
    out, depth = [], 0
    for ch in s:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(ch)
    return "".join(out).strip().split("::")[-1] or s


def readable_name(name: str, width: int = 70) -> str:
    """A short name that keeps a kernel's operation and dtype.

    >>> readable_name("void at::native::vectorized_elementwise_kernel<(int)4, at::native::CUDAFunctor_add<float>, "
    ...               "std::array<char *, (unsigned long)3>>(int, T2, T3)")
    'elementwise: add float (vec4)'
    >>> readable_name("void at::native::vectorized_elementwise_kernel<(int)8, at::native::bfloat16_copy_kernel_cuda("
    ...               "at::TensorIteratorBase &)::[lambda(float) (instance 1)], std::array<char *, 2>>(int, T2, T3)")
    'elementwise: copy float→bf16 (vec8)'
    >>> readable_name("void at::native::<unnamed>::multi_tensor_apply_kernel<at::native::<unnamed>::TensorListMetadata"
    ...               "<(int)2>, at::native::<unnamed>::TernaryOpScalarFunctor<float, (int)2, (int)2, (int)0>, "
    ...               "at::native::LerpFunctor<float>, float>(T1, T2, T3...)")
    'multi_tensor_apply: lerp scalar float (foreach)'
    >>> readable_name("void at::native::<unnamed>::multi_tensor_apply_kernel<at::native::<unnamed>::"
    ...               "FusedOptimizerTensorListMetadata<(int)4>, at::native::<unnamed>::FusedAdamMathFunctor<float, "
    ...               "(int)4, (at::native::ADAM_MODE)1, (bool)0>, const float *, double>(T1, T2, T3...)")
    'multi_tensor_apply: fused AdamW float'
    >>> readable_name("nvjet_sm90_tst_192x96_64x5_1x2_h_bz_NTT")
    'gemm: nvjet 192x96 NTT'
    >>> readable_name("triton_poi_fused__to_copy_t_1")
    'triton_poi_fused__to_copy_t_1'
    >>> readable_name("CUDA graph 4 (exec 5)")
    'CUDA graph 4 (exec 5)'
    """
    if GRAPH_NAME.match(name):  # a whole graph replay: its name is already short, the exec id part of it
        return name
    base = _base(name)
    nvjet = re.match(r"nvjet_sm\d+_\w+?_(\d+x\d+)_\w*?_(coop[AB]_)?([NT]{3})$", name)
    if nvjet:
        return f"gemm: nvjet {nvjet.group(1)} {nvjet.group(3)}" + (f" {nvjet.group(2)[:-1]}" if nvjet.group(2) else "")
    xmma = re.match(r"sm\d+_xmma_gemm_(\w+?)_(\w+?)_(tn|nt|nn|tt)_n_tilesize(\w+?)_", name)
    if xmma:
        mma = re.search(r"_(ffma|hmma|imma|dmma)_", name)
        return f"gemm: xmma {xmma.group(1)} {xmma.group(3)} {xmma.group(4)}" + (f" ({mma.group(1)})" if mma else "")
    if "multi_tensor_apply_kernel" in name:
        fused = re.search(r"Fused(\w+?)MathFunctor<(\w+)", name)
        if fused:  # torch's fused optimizers (fused=True): one kernel per chunk of tensors for the whole update
            which = "AdamW" if fused.group(1) == "Adam" and "ADAM_MODE)1" in name else fused.group(1)
            return _fit(f"multi_tensor_apply: fused {which} {fused.group(2)}", width)
        op = _op(name, _FOREACH_OPS) or "op"
        op = f"addc{op}" if "PointwiseOp" in name else op  # addcmul / addcdiv: PyTorch's pointwise ops
        scalar = " scalar list" if "ScalarListFunctor" in name else " scalar" if "ScalarFunctor" in name else ""
        dtype = _dtype(name)
        return _fit(f"multi_tensor_apply: {op}{scalar}{' ' + dtype if dtype else ''} (foreach)", width)
    kind = {"vectorized_elementwise_kernel": "elementwise", "elementwise_kernel": "elementwise",
            "unrolled_elementwise_kernel": "elementwise", "reduce_kernel": "reduce"}.get(base)
    if kind is not None:
        inner = name[name.find("<") + 1:]  # the kernel's template arguments: what it runs, not itself
        op = _op(inner, _OPS)
        if re.search(r"[AB]UnaryFunctor<", inner):  # a binary op with one operand a CPU scalar
            op += " scalar"
        dtype = _dtype(inner)
        if op.startswith("copy") and "→" in op:
            op = f"copy {dtype}{op[4:].replace(' ', '')}" if dtype else op
            dtype = ""
        vec = re.match(r"void at::native::\w+<\(int\)(\d+)", name)
        how = {"vectorized_elementwise_kernel": f"vec{vec.group(1)}" if vec else "vec",
               "unrolled_elementwise_kernel": "unrolled", "elementwise_kernel": "strided",
               "reduce_kernel": f"{vec.group(1)} threads" if vec else ""}[base]
        text = f"{kind}: {op or base}{' ' + dtype if dtype else ''}" + (f" ({how})" if how else "")
        return _fit(text, width)
    cutlass = re.search(r"cutlass::Kernel2?<(cutlass_\w+)>", name)
    if cutlass:
        return _fit(f"cutlass: {cutlass.group(1).removeprefix('cutlass_')}", width)
    if "<" in name or "(" in name:
        dtype = _dtype(name)
        return _fit(f"{base}{' ' + dtype if dtype and dtype not in base else ''}", width)
    return _fit(name, width)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def unique_names(names: list[str], width: int = 70) -> list[str]:
    """readable_name of each, numbered `#2`, `#3` where two different kernels still read the same.

    >>> unique_names(["a<(int)4>(x)", "a<(int)8>(x)", "b"])
    ['a', 'a #2', 'b']
    """
    out: list[str] = []
    seen: dict[str, int] = {}
    cache: dict[str, str] = {}
    for n in names:
        if n in cache:
            out.append(cache[n])
            continue
        short = readable_name(n, width)
        seen[short] = seen.get(short, 0) + 1
        label = short if seen[short] == 1 else f"{short} #{seen[short]}"
        cache[n] = label
        out.append(label)
    return out

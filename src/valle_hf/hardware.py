"""Which number formats are fast on the machine at hand, decided when the model runs (machines differ).

The AR stage multiplies one row by every weight at each step (matrix-vector products, bound by memory bandwidth); the
NAR multiplies a thousand rows (matrix products, bound by compute). On CPUs, bfloat16 matrix products are several
times faster than float32 where the CPU has AMX or AVX512-BF16, and slower elsewhere, while bfloat16 matrix-vector
products are often slower than float32 even there. So the precision is chosen per stage and per machine:
`nar_autocast_dtype` for the NAR's matrix products; the AR keeps the model's dtype.
"""

from __future__ import annotations

import torch

from .errors import VallEValueError

__all__ = ["NAR_DTYPES", "cpu_has_fast_bf16_matmul", "nar_autocast_dtype"]

NAR_DTYPES = ("auto", "float32", "bfloat16", "float16")


def cpu_has_fast_bf16_matmul() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX tiles or AVX512-BF16), from torch's CPU flags."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def nar_autocast_dtype(setting: str, device: torch.device, model_dtype: torch.dtype) -> torch.dtype | None:
    """The dtype the NAR's matrix products run in under `torch.autocast`, or None to run in `model_dtype` as is.

    `setting`: "float32" / "bfloat16" / "float16", or "auto": bfloat16 on CUDA (where supported) and on CPUs with fast
    bfloat16 matrix products, the model's own dtype elsewhere. A model already loaded in a 16-bit dtype is left as is.
    """
    if setting not in NAR_DTYPES:
        raise VallEValueError(f"nar_dtype must be one of {NAR_DTYPES}, got {setting!r}")
    if model_dtype != torch.float32:
        return None
    if setting == "auto":
        fast = torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_fast_bf16_matmul()
        return torch.bfloat16 if fast and device.type in ("cuda", "cpu") else None
    dtype = getattr(torch, setting)
    return None if dtype == model_dtype else dtype

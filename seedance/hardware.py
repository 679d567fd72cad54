"""Which number formats this machine runs fast.

bf16 is Seedance's fast path where the hardware has it: on a CPU with AMX or AVX-512 bf16 a bf16 matmul ran
about 8x faster than fp32 (1.9 TFLOP/s against 230-290 GFLOP/s on 2 cores). A CPU without those units
emulates bf16, and there it is the slow path: on an AVX2-only AMD EPYC with 2 cores a 2048x2048 bf16 matmul
ran at 0.29 GFLOP/s against 148 GFLOP/s in fp32 (500x slower), and one 25-step clip took 12.5 s under bf16
autocast against 2.65 s in fp32. So "bf16" in Seedance's defaults means "bf16 where it is native":

    resolve_precision("auto", device)   # -> "bf16" or "fp32"
    native_bf16(device)                 # -> bool

An explicit "bf16" or "fp32" is kept as asked.
"""

from __future__ import annotations

from functools import cache

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@cache
def _cpu_has_native_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    checks = [c for c in checks if callable(c)]
    if not checks:  # a torch without these helpers: assume nothing
        return False
    return any(bool(c()) for c in checks)


def native_bf16(device: torch.device | str | None = None) -> bool:
    """Whether bf16 matmuls run natively (fast) on `device` (the CPU when None)."""
    kind = torch.device(device).type if device is not None else "cpu"
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        return _cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device | str | None = None) -> str:
    """"auto" -> "bf16" where bf16 is native on `device`, else "fp32"; "fp32" and "bf16" stay as they are."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def auto_mixed_precision(requested: str) -> str:
    """A training recipe's --mixed-precision: "auto" -> "bf16" where the training device runs it natively, else
    "no" (fp32). Other values are passed on to accelerate as they are."""
    if requested != "auto":
        return requested
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return "bf16" if native_bf16(device) else "no"

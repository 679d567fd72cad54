"""A linear layer whose bf16 weight is packed once for sampling on a CPU.

Under CPU bf16 autocast an `nn.Linear` casts its input to bf16, looks its weight up in autocast's cache and
runs oneDNN's matmul, which lays the weight out in its blocked format again on every call. At the
transformer's sizes (40-384 tokens, 128-576 features) that per-call work is a large part of each matmul: on
a 2-core AMX CPU a [384,192]x[192,576] product took 121 us through autocast and 53 us with a weight packed
ahead (torch's own `mkldnn._reorder_linear_weight`, the layout Inductor's CPU backend prepacks).

`Linear` keeps that packed bf16 copy beside the fp32 parameters and uses it only where the result is the
same to the bit as autocast's: no autograd, a CPU tensor, bf16 autocast on, a contiguous input, and a CPU
whose oneDNN runs bf16. Training, fp32 sampling, GPUs and torch.compile take `nn.Linear`'s own path. The
copy is made again when the weight changes (an optimizer step or a load bumps its version) and never enters
the state dict.
"""

from __future__ import annotations

from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

# Module-level so a benchmark can time both paths in one process.
PACKED_BF16 = True


@cache
def _packing_available() -> bool:
    """torch's oneDNN linear ops are present and this CPU runs bf16 in them."""
    ops = getattr(torch.ops, "mkldnn", None)
    try:
        return (torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise")
                and hasattr(ops, "_reorder_linear_weight") and bool(ops._is_mkldnn_bf16_supported()))
    except (AttributeError, RuntimeError):
        return False


def _autocast_cpu_bf16() -> bool:
    try:
        return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    except TypeError:  # a torch without the device-type argument
        return torch.is_autocast_cpu_enabled() and torch.get_autocast_cpu_dtype() == torch.bfloat16


class Linear(nn.Linear):
    """`nn.Linear` with a packed bf16 weight for CPU sampling under bf16 autocast (see the module docstring)."""

    def _packed(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        w, b = self.weight, self.bias
        key = (w.data_ptr(), w._version, None if b is None else (b.data_ptr(), b._version))
        cached = self.__dict__.get("_packed_bf16")
        if cached is None or cached[0] != key:
            packed = torch.ops.mkldnn._reorder_linear_weight(w.detach().to(torch.bfloat16))
            cached = (key, packed, None if b is None else b.detach().to(torch.bfloat16))
            self.__dict__["_packed_bf16"] = cached  # a plain attribute: not a buffer, not in the state dict
        return cached[1], cached[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (PACKED_BF16 and x.device.type == "cpu" and not torch.is_grad_enabled() and x.is_contiguous()
                and not torch.compiler.is_compiling() and _autocast_cpu_bf16() and _packing_available()):
            weight, bias = self._packed()
            return torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), weight, bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

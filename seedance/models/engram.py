"""Engram: a hashed n-gram memory with a context-aware gate (after DeepSeek's Engram).

Static knowledge ("cornflower blue" is a colour, "bass drum" an instrument) is
looked up, not computed. For every position t and every suffix n-gram ending at
t (orders 2 and 3), K hash heads map the n-gram of compressed token ids to one
row each of an embedding table; the rows are concatenated into e_t.

    hash_{n,k}(x_{t-n+1..t}) = XOR_j ((x_{t-j} + 1) * a_{n,k,j})  mod p_{n,k}

with odd multipliers a and a distinct prime p per head (different primes make
two n-grams that collide in one head unlikely to collide in another).

The indices depend on the token ids only, so they are computed before the
network runs and the rows can be gathered ahead of the layer that needs them:
the table may live outside the model, in host RAM or a memory-mapped file
(`HostEngramTable`), and be prefetched while the first layer computes (on CUDA:
pinned memory, a non-blocking copy on a side stream).

Given hidden state h_t and e_t (DESIGN.md):
    k_t = W_K e_t,  v_t = W_V e_t
    alpha_t = sigmoid(RMSNorm(h_t) . RMSNorm(k_t) / sqrt(d))        # one scalar gate per token
    u_t = alpha_t * v_t
    y_t = SiLU(CausalConv(RMSNorm(u))_t) + u_t                      # depthwise, kernel 4, dilation 3, zero-init
and the block adds y_t to the residual stream.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    r = int(math.isqrt(n))
    return all(n % f for f in range(3, r + 1, 2))


def distinct_primes(start: int, count: int) -> list[int]:
    """`count` increasing primes >= start (one table size per hash head)."""
    primes, n = [], max(2, start)
    while len(primes) < count:
        if _is_prime(n):
            primes.append(n)
        n += 1
    return primes


class NgramHasher(nn.Module):
    """Token ids [B,L] -> global table row indices [B,L,H], H = len(orders) * heads_per_order."""

    def __init__(self, orders: tuple[int, ...], heads_per_order: int, rows_per_head: int, seed: int = 0):
        super().__init__()
        self.orders = tuple(int(n) for n in orders)
        self.num_heads = len(self.orders) * heads_per_order
        primes = distinct_primes(rows_per_head, self.num_heads)
        offsets = np.concatenate([[0], np.cumsum(primes)[:-1]])
        rng = np.random.default_rng(seed)
        max_order = max(self.orders)
        # Odd multipliers below 2**31: (id + 1) * a stays far below 2**63 for any vocabulary under 2**31.
        mult = rng.integers(1 << 20, 1 << 31, size=(self.num_heads, max_order), dtype=np.int64) | 1
        self.register_buffer("primes", torch.tensor(primes, dtype=torch.long), persistent=False)
        self.register_buffer("offsets", torch.tensor(offsets, dtype=torch.long), persistent=False)
        self.register_buffer("multipliers", torch.from_numpy(mult), persistent=False)
        self.total_rows = int(sum(primes))

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids.long() + 1  # +1 so the "before the start" filler (0) differs from token id 0
        B, L = ids.shape
        # shifted[j] = x_{t-j}, filled with 0 before the sequence start: [max_order, B, L]
        max_order = max(self.orders)
        shifted = torch.zeros(max_order, B, L, dtype=torch.long, device=ids.device)
        for j in range(max_order):
            shifted[j, :, j:] = ids[:, : L - j]
        heads = []
        h = 0
        for n in self.orders:
            for _ in range(self.num_heads // len(self.orders)):
                acc = torch.zeros(B, L, dtype=torch.long, device=ids.device)
                for j in range(n):
                    acc = acc ^ (shifted[j] * self.multipliers[h, j])
                heads.append(acc % self.primes[h] + self.offsets[h])
                h += 1
        return torch.stack(heads, dim=-1)  # [B,L,H]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class EngramMemory(nn.Module):
    """The table, the gate and the causal conv. `forward(h, rows)` returns (y [B,L,D], gate [B,L])."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        total_rows: int,
        dim_per_head: int,
        conv_kernel: int = 4,
        conv_dilation: int = 3,
    ):
        super().__init__()
        self.num_heads, self.dim_per_head = num_heads, dim_per_head
        mem_dim = num_heads * dim_per_head
        self.table = nn.Embedding(total_rows, dim_per_head)
        self.key_proj = nn.Linear(mem_dim, hidden_size, bias=False)
        self.value_proj = nn.Linear(mem_dim, hidden_size, bias=False)
        self.norm_hidden = RMSNorm(hidden_size)
        self.norm_key = RMSNorm(hidden_size)
        self.norm_value = RMSNorm(hidden_size)
        # Depthwise causal conv as explicit shifted multiply-adds: tap k reads position t - (K-1-k)*dilation.
        # (Same maths as a grouped Conv1d with left padding, but its CPU backward is ~10x cheaper here.)
        self.conv_kernel, self.conv_dilation = conv_kernel, conv_dilation
        self.conv_weight = nn.Parameter(torch.zeros(conv_kernel, hidden_size))  # [K,D]
        self.conv_bias = nn.Parameter(torch.zeros(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.table.weight, std=0.5)
        nn.init.normal_(self.key_proj.weight, std=self.key_proj.in_features**-0.5)
        nn.init.normal_(self.value_proj.weight, std=0.02)
        # Zero-initialised conv: at the start the branch is exactly alpha * W_V e.
        nn.init.zeros_(self.conv_weight)
        nn.init.zeros_(self.conv_bias)

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        """Indices [B,L,H] -> rows [B,L,H,dim_per_head] from the in-model table."""
        return F.embedding(indices, self.table.weight)

    def forward(self, hidden: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, L, D = hidden.shape
        e = rows.reshape(B, L, self.num_heads * self.dim_per_head).to(hidden.dtype)  # e_t [B,L,H*dm]
        key, value = self.key_proj(e), self.value_proj(e)  # [B,L,D]
        gate = torch.sigmoid((self.norm_hidden(hidden) * self.norm_key(key)).sum(-1) / math.sqrt(D))  # [B,L]
        u = gate.unsqueeze(-1) * value  # [B,L,D]
        y = F.silu(self.causal_conv(self.norm_value(u))) + u  # [B,L,D]
        return y, gate

    def causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise causal dilated conv over the sequence: x [B,L,D] -> [B,L,D]."""
        L = x.shape[1]
        pad = (self.conv_kernel - 1) * self.conv_dilation
        xp = F.pad(x, (0, 0, pad, 0))  # zeros before the sequence start: [B,L+pad,D]
        out = self.conv_bias.expand_as(x)
        for k in range(self.conv_kernel):
            start = k * self.conv_dilation
            out = out + self.conv_weight[k] * xp[:, start : start + L]
        return out


class _Ready:
    """A finished prefetch (same interface as a Future)."""

    def __init__(self, value: torch.Tensor):
        self.value = value

    def result(self) -> torch.Tensor:
        return self.value


class _CudaCopy:
    """A host-to-device copy in flight on a side stream."""

    def __init__(self, value: torch.Tensor, event, pinned: torch.Tensor):
        self.value, self.event = value, event
        self.pinned = pinned  # keep the pinned source alive until the copy is done

    def result(self) -> torch.Tensor:
        stream = torch.cuda.current_stream(self.value.device)
        stream.wait_event(self.event)
        self.value.record_stream(stream)  # allocated on the side stream, used on this one
        self.pinned = None
        return self.value


class HostEngramTable:
    """An Engram table kept outside the model: a host tensor or a memory-mapped .npy file.

    `prefetch(indices)` starts gathering the rows and returns a handle whose
    `.result()` gives [B,L,H,dm]; the model calls it before its first layer and
    collects the rows after, so the gather overlaps the first layer's compute
    (a worker thread on CPU; on CUDA a gather into pinned memory and a
    non-blocking copy on a side stream).
    """

    def __init__(self, weight: torch.Tensor | np.ndarray, device: str | torch.device = "cpu", threaded: bool = False):
        if isinstance(weight, np.ndarray):  # np.memmap included: rows are read on demand
            self._np = weight
            self.weight = None
        else:
            self._np = None
            self.weight = weight.detach().to("cpu")
        self.shape = tuple(weight.shape)
        self.device = torch.device(device)
        self.threaded = threaded
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, **kwargs) -> HostEngramTable:
        return cls(model.engram.table.weight.detach().clone(), **kwargs)

    @classmethod
    def save_npy(cls, weight: torch.Tensor, path: str | os.PathLike) -> Path:
        path = Path(path)
        np.save(path, weight.detach().float().cpu().numpy())
        return path

    @classmethod
    def memmap(cls, path: str | os.PathLike, **kwargs) -> HostEngramTable:
        return cls(np.load(path, mmap_mode="r"), **kwargs)

    @classmethod
    def create_random_memmap(
        cls, path: str | os.PathLike, rows: int, dim: int, seed: int = 0, chunk_rows: int = 1 << 20
    ) -> Path:
        """Write a big float32 [rows, dim] .npy table in chunks (for the O(1)-lookup benchmark)."""
        path = Path(path)
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, dim))
        rng = np.random.default_rng(seed)
        for start in range(0, rows, chunk_rows):
            stop = min(rows, start + chunk_rows)
            arr[start:stop] = rng.standard_normal((stop - start, dim), dtype=np.float32) * 0.5
        arr.flush()
        del arr
        return path

    # ---- lookup -------------------------------------------------------------------------------------------
    def _gather_cpu(self, indices: torch.Tensor) -> torch.Tensor:
        flat = indices.reshape(-1).cpu()
        if self._np is not None:
            rows = torch.from_numpy(np.ascontiguousarray(self._np[flat.numpy()]))
        else:
            rows = self.weight.index_select(0, flat)
        return rows.reshape(*indices.shape, self.shape[1])

    def gather(self, indices: torch.Tensor) -> torch.Tensor:
        return self.prefetch(indices).result()

    def prefetch(self, indices: torch.Tensor):
        if self.device.type == "cuda":
            # gather on the host into pinned memory, then copy without blocking on a side stream:
            # the copy runs while the default stream computes the layers before the Engram layer
            rows = self._gather_cpu(indices).pin_memory()
            with torch.cuda.stream(self._stream):
                on_device = rows.to(self.device, non_blocking=True)
                event = torch.cuda.Event()
                event.record(self._stream)
            return _CudaCopy(on_device, event, rows)
        if not self.threaded:
            return _Ready(self._gather_cpu(indices))
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engram-prefetch")
        future: Future = self._pool.submit(self._gather_cpu, indices)
        return future

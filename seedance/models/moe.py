"""Mixture-of-Experts feed-forward: fine-grained routed SwiGLU experts + one shared expert.

Routing (DeepSeek-V3 style):
- affinity s_{t,i} = sigmoid(x_t . r_i); the top-k experts are chosen by
  s_{t,i} + b_i, where b is a per-expert bias that is not trained by gradient:
  after each step it moves by +-gamma toward even load (`update_bias`), so the
  router balances without an auxiliary loss that fights the main objective;
- the chosen experts' weights are s_{t,i} renormalised over the k chosen (b
  plays no part in the weights);
- a tiny sequence-wise balance loss alpha * sum_i f_i P_i keeps single
  sequences from collapsing onto one expert;
- no token is dropped: every token gets its k experts.

Dispatch sorts the (token, expert) pairs by expert so each expert reads one
contiguous slice, then runs the expert matmuls either as one grouped matmul
(`torch._grouped_mm`, used only where this torch has it and it runs correctly
on the tensors' device, checked once) or as a loop over experts. Both give the
same result; `dispatch="loop"` forces the fallback.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(a) * b)


@functools.cache
def grouped_mm_works(device_type: str) -> bool:
    """True if torch._grouped_mm exists and gives loop-equal values and gradients here (checked once per device)."""
    fn = getattr(torch, "_grouped_mm", None)
    if fn is None:
        return False
    try:
        with torch.inference_mode(False), torch.enable_grad():  # the probe may first run inside no_grad()
            return _probe_grouped_mm(fn, device_type)
    except Exception:  # missing kernel for this device/dtype, or an older signature
        return False


def _probe_grouped_mm(fn, device_type: str) -> bool:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 16, generator=g).to(device_type).requires_grad_()
    w = torch.randn(3, 16, 8, generator=g).to(device_type).requires_grad_()
    offs = torch.tensor([5, 5, 12], dtype=torch.int32, device=device_type)  # expert 1 gets no rows
    y = fn(x, w, offs=offs)
    ref = torch.cat([x[:5] @ w[0], x[5:] @ w[2]])
    grad = torch.randn(y.shape, generator=g).to(device_type)
    gx, gw = torch.autograd.grad(y, (x, w), grad)
    rx, rw = torch.autograd.grad(ref, (x, w), grad)
    return bool(
        torch.allclose(y, ref, atol=1e-4) and torch.allclose(gx, rx, atol=1e-4) and torch.allclose(gw, rw, atol=1e-4)
    )


def _contiguous_grad(t: torch.Tensor) -> torch.Tensor:
    # _grouped_mm's backward rejects broadcast (stride-0) gradients; hand it a dense one.
    if t.requires_grad:
        t.register_hook(lambda g: g.contiguous())
    return t


class MoEFeedForward(nn.Module):
    """Tokens [T,D] (padding already removed) -> [T,D]; records per-expert load for bias balancing."""

    def __init__(
        self,
        dim: int,
        num_experts: int,
        experts_per_token: int,
        expert_hidden: int,
        shared_hidden: int,
        balance_alpha: float = 1e-4,
        dispatch: str = "auto",
    ):
        super().__init__()
        if not 1 <= experts_per_token <= num_experts:
            raise ValueError("experts_per_token must be between 1 and num_experts")
        self.num_experts, self.top_k, self.hidden = num_experts, experts_per_token, expert_hidden
        self.balance_alpha = balance_alpha
        self.dispatch = dispatch
        self.router = nn.Linear(dim, num_experts, bias=False)
        self.register_buffer("route_bias", torch.zeros(num_experts))  # b_i: moved by update_bias, not by gradient
        # All experts stacked: one parameter each, so every expert is "used" every step (DDP-friendly).
        self.w_gate_up = nn.Parameter(torch.empty(num_experts, dim, 2 * expert_hidden))  # [E,D,2h]
        self.w_down = nn.Parameter(torch.empty(num_experts, expert_hidden, dim))  # [E,h,D]
        self.shared = SwiGLU(dim, shared_hidden)
        self.last_load: torch.Tensor | None = None  # tokens per expert in the latest forward [E]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        dim = self.w_gate_up.shape[1]
        nn.init.normal_(self.router.weight, std=dim**-0.5)
        nn.init.normal_(self.w_gate_up, std=dim**-0.5)
        nn.init.normal_(self.w_down, std=self.hidden**-0.5 * 0.5)

    def _use_grouped(self, x: torch.Tensor) -> bool:
        if self.dispatch == "loop":
            return False
        if x.dtype != torch.float32 and x.device.type == "cpu":
            return False
        return grouped_mm_works(x.device.type)

    def _experts(self, xs: torch.Tensor, counts: list[int], grouped: bool) -> torch.Tensor:
        """xs [N,D] sorted by expert, counts[e] rows each -> [N,D]."""
        if grouped:
            offs = torch.tensor(counts, device=xs.device).cumsum(0).to(torch.int32)
            try:
                a, b = _contiguous_grad(torch._grouped_mm(xs, self.w_gate_up, offs=offs)).chunk(2, dim=-1)
                return _contiguous_grad(torch._grouped_mm((F.silu(a) * b).contiguous(), self.w_down, offs=offs))
            except RuntimeError:  # e.g. the CPU kernel's 16-byte alignment rule (torch 2.9-2.12): use the loop
                pass
        outs, start = [], 0
        for e, n in enumerate(counts):
            if n:
                a, b = (xs[start : start + n] @ self.w_gate_up[e]).chunk(2, dim=-1)
                outs.append((F.silu(a) * b) @ self.w_down[e])
            start += n
        return torch.cat(outs) if outs else xs.new_zeros(0, xs.shape[1])

    def forward(
        self, x: torch.Tensor, seq_ids: torch.Tensor | None = None, num_seqs: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T,D]; seq_ids [T] (which sequence each token is in) for the sequence-wise loss.

        Returns (y [T,D], balance_loss scalar).
        """
        T, _ = x.shape
        E, k = self.num_experts, self.top_k
        # 1. route: sigmoid affinities, top-k on affinity + bias, weights renormalised over the k
        scores = torch.sigmoid(self.router(x).float())  # [T,E]
        chosen = torch.topk(scores + self.route_bias, k, dim=-1).indices  # [T,k]
        weights = scores.gather(1, chosen)
        weights = (weights / weights.sum(-1, keepdim=True)).to(x.dtype)  # [T,k]
        # 2. sort (token, expert) pairs by expert: expert e reads rows offs[e-1]:offs[e]
        flat_expert = chosen.reshape(-1)  # [T*k]
        order = torch.argsort(flat_expert, stable=True)
        token_of = order // k  # which token each sorted row came from
        counts_t = torch.bincount(flat_expert, minlength=E)
        self.last_load = counts_t.detach().float()
        # 3. experts, then weighted scatter-add back to tokens
        ys = self._experts(x[token_of], counts_t.tolist(), self._use_grouped(x))  # [T*k,D]
        ys = ys * weights.reshape(-1)[order].unsqueeze(-1)
        y = torch.zeros_like(x).index_add_(0, token_of, ys) + self.shared(x)
        # 4. sequence-wise balance loss: alpha * mean_seq sum_i f_i P_i
        loss = x.new_zeros(())
        if self.training and self.balance_alpha > 0 and T > 0:
            if seq_ids is None:
                seq_ids, num_seqs = torch.zeros(T, dtype=torch.long, device=x.device), 1
            picked = torch.zeros(T, E, device=x.device).scatter_(1, chosen, 1.0)  # [T,E]
            probs = scores / scores.sum(-1, keepdim=True)  # [T,E]
            tokens = torch.bincount(seq_ids, minlength=num_seqs).clamp_min(1).float().unsqueeze(-1)  # [S,1]
            f = torch.zeros(num_seqs, E, device=x.device).index_add_(0, seq_ids, picked) * E / (k * tokens)
            p = torch.zeros(num_seqs, E, device=x.device).index_add_(0, seq_ids, probs) / tokens
            loss = self.balance_alpha * (f * p).sum(-1).mean()
        return y, loss

    @torch.no_grad()
    def update_bias(self, load: torch.Tensor, gamma: float) -> None:
        """Auxiliary-loss-free balancing: raise the bias of under-loaded experts, lower over-loaded ones."""
        self.route_bias += gamma * torch.sign(load.mean() - load).to(self.route_bias.dtype)


def load_imbalance(load: torch.Tensor) -> float:
    """max/mean - 1 of tokens per expert (0 = perfectly even)."""
    load = load.float()
    return float(load.max() / load.mean().clamp_min(1e-9) - 1.0)

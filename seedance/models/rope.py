"""Rotary position embedding on physical coordinates.

Positions are real numbers, not token indices: time in **seconds** (so an audio
token at 0.75 s and a video token at 0.75 s get the same rotation, whatever the
two latent rates), space in latent-grid cells. Each axis gets a share of the
head's rotation pairs with wavelengths spread geometrically over a range that
fits the axis: for time, from a fraction of a video frame up to longer than the
longest clip, so both a 50 ms shift and a 6 s span stay distinguishable.

Layout is "half split": a head vector [x1 | x2] of two halves rotates pairwise
(x1[i], x2[i]) by angle[i].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class RopeAxis:
    """One coordinate axis: how many rotation pairs it gets and its wavelength range (in its own unit)."""

    pairs: int
    min_wavelength: float
    max_wavelength: float

    def frequencies(self) -> torch.Tensor:
        """Angular frequencies [pairs], geometric from 2*pi/min_wavelength down to 2*pi/max_wavelength."""
        if self.pairs <= 0:
            return torch.zeros(0, dtype=torch.float64)
        if self.pairs == 1:
            wavelengths = torch.tensor([self.min_wavelength], dtype=torch.float64)
        else:
            ratio = self.max_wavelength / self.min_wavelength
            steps = torch.arange(self.pairs, dtype=torch.float64) / (self.pairs - 1)
            wavelengths = self.min_wavelength * ratio**steps
        return 2 * math.pi / wavelengths


def rope_angles(coords: torch.Tensor, axes: tuple[RopeAxis, ...]) -> torch.Tensor:
    """Rotation angles for tokens at `coords`.

    coords: [..., N, len(axes)] positions (float, any unit the axes agree with)
    returns: [..., N, sum(axis.pairs)] angles in radians (float32)
    """
    if coords.shape[-1] != len(axes):
        raise ValueError(f"coords have {coords.shape[-1]} axes, expected {len(axes)}")
    parts = []
    for i, axis in enumerate(axes):
        freqs = axis.frequencies().to(coords.device)  # [P_i]
        # float64 keeps 8 s * 125 rad/s exact enough before the cast
        parts.append(coords[..., i : i + 1].double() * freqs)
    return torch.cat(parts, dim=-1).float()


def rope_cos_sin(coords: torch.Tensor, axes: tuple[RopeAxis, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    angles = rope_angles(coords, axes)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, H, N, D] by angles given as cos/sin [N, P] or [B, N, P], P <= D/2.

    Pairs beyond P (if the axes do not fill the head) pass through unrotated.
    """
    d = x.shape[-1]
    p = cos.shape[-1]
    if 2 * p > d:
        raise ValueError(f"{p} rotation pairs do not fit a head of {d} channels")
    if cos.dim() == 3:  # per-sample positions -> broadcast over heads
        cos, sin = cos[:, None], sin[:, None]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    half = d // 2
    x1, x2 = x[..., :half], x[..., half:]
    r1, r2 = x1[..., :p], x2[..., :p]
    rot1 = r1 * cos - r2 * sin
    rot2 = r1 * sin + r2 * cos
    if p == half:
        return torch.cat([rot1, rot2], dim=-1)
    return torch.cat([rot1, x1[..., p:], rot2, x2[..., p:]], dim=-1)


class RotaryTables:
    """One set of token positions' rotation, laid out for the whole head, for a forward that rotates often.

    `apply_rope` slices, casts and concatenates on every call, and the transformer rotates with the same
    positions up to eight times a block. Here the head-wide tables are built once:

        cos_full = [cos | 1 | cos | 1],  sin_full = [-sin | 0 | sin | 0]   (the 1s and 0s: unrotated pairs)

    and x rotates as x * cos_full + swap_halves(x) * sin_full: apply_rope's arithmetic term by term
    (a + (-b) is a - b in IEEE arithmetic, and negation rounds exactly), so the result is the same to the bit
    in six operations instead of about thirteen. The tables are also kept cast to `dtype`, the dtype the
    rotated tensors are expected in (bf16 under autocast); another dtype is cast on the fly, as apply_rope does.
    """

    def __init__(self, cos: torch.Tensor, sin: torch.Tensor, head_dim: int, dtype: torch.dtype | None = None):
        p, half = cos.shape[-1], head_dim // 2
        if 2 * p > head_dim or head_dim % 2:
            raise ValueError(f"{p} rotation pairs do not fit a head of {head_dim} channels")
        if cos.dim() == 3:  # per-sample positions [B,N,P] -> broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        ones = torch.ones(*cos.shape[:-1], half - p, dtype=cos.dtype, device=cos.device)
        zeros = torch.zeros_like(ones)
        self.head_dim = head_dim
        self.cos_full = torch.cat([cos, ones, cos, ones], dim=-1)  # [..., N, D] float32
        self.sin_full = torch.cat([-sin, zeros, sin, zeros], dim=-1)
        self.dtype = dtype if dtype is not None else cos.dtype
        self.cast = (self.cos_full.to(self.dtype), self.sin_full.to(self.dtype))

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,H,N,D] -> x rotated, as apply_rope(x, cos, sin)."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"tables for heads of {self.head_dim} channels, got {x.shape[-1]}")
        cos, sin = self.cast if x.dtype == self.dtype else (self.cos_full.to(x.dtype), self.sin_full.to(x.dtype))
        half = self.head_dim // 2
        swapped = torch.cat([x[..., half:], x[..., :half]], dim=-1)
        return x * cos + swapped * sin


def time_axes(head_dim: int, min_wavelength_s: float, max_wavelength_s: float) -> tuple[RopeAxis, ...]:
    """1-D RoPE over time in seconds using the whole head."""
    return (RopeAxis(head_dim // 2, min_wavelength_s, max_wavelength_s),)


def video_axes(
    head_dim: int, min_wavelength_s: float, max_wavelength_s: float, max_grid: float
) -> tuple[RopeAxis, ...]:
    """3-D RoPE (t in seconds, h and w in grid cells): half the pairs for time, a quarter for each spatial axis."""
    pairs = head_dim // 2
    t_pairs = pairs // 2
    h_pairs = (pairs - t_pairs) // 2
    w_pairs = pairs - t_pairs - h_pairs
    return (
        RopeAxis(t_pairs, min_wavelength_s, max_wavelength_s),
        RopeAxis(h_pairs, 2.0, 4.0 * max_grid),
        RopeAxis(w_pairs, 2.0, 4.0 * max_grid),
    )

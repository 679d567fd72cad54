"""Measured object cues for the colour and count probes: which palette colours are drawn, how many objects move.

    cues = object_cues(frames, palette)   # frames [B,F,3,H,W] in [0,1], palette [K,3] in [0,1] -> [B, 3K + 12]

A CNN that sees four frames misses what a whole clip shows plainly: a key lights up in its colour for a few
frames only, and a bouncing object hides behind another or sits still for most of the clip. These cues read
every frame and are fixed measurements (nothing to learn); the probe's trained heads weigh them.

Per clip, in this order:
- palette shares, tight: for each palette colour, the largest share over the frames of pixels within
  TIGHT_DISTANCE of it or of a lit version of it (up to 25% whiter: SyncWorld's bouncing objects are lit from
  above). log(share + 1e-4). [K]
- palette shares, loose: the same within LOOSE_DISTANCE, averaged over the frames (a decoded or generated
  clip's colours drift from the palette). [K]
- palette shares of moving pixels: the share among foreground pixels (below), over the whole clip. [K]
- object counts: foreground pixels differ from their row's background (the per-row median over all frames
  and columns: an object on screen covers a small part of any row, so the median is the backdrop even where
  an object rests all clip long, which a per-pixel temporal median would take for background); connected
  foreground regions of MIN_OBJECT_PIXELS or more are objects. The share of frames showing 0..4 and 5+ objects
  [6], and the largest count as one-hot over 0..4, 5+ [6] (objects overlap in some frames, never in all).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

TIGHT_DISTANCE = 20.0 / 255.0
LOOSE_DISTANCE = 40.0 / 255.0
FOREGROUND_THRESHOLD = 0.12
MIN_OBJECT_PIXELS = 3
MAX_COUNT = 5  # counts of 5 or more share one bin
LIT_LEVELS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)
FRAMES_PER_CHUNK = 32


def object_cue_dim(num_colors: int) -> int:
    return 3 * num_colors + 2 * (MAX_COUNT + 1)


def _palette_distance(pixels: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """pixels [..., 3], palette [K,3] -> [..., K]: distance to the nearest lit version of each colour."""
    lit = torch.stack([palette + (1.0 - palette) * a for a in LIT_LEVELS], dim=1)  # [K,L,3]
    K, L = lit.shape[:2]
    flat = lit.reshape(K * L, 3)
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2: one matmul instead of a [..., K, L, 3] difference tensor
    d2 = pixels.square().sum(-1, keepdim=True) - 2.0 * pixels @ flat.T + flat.square().sum(-1)  # [..., K*L]
    return d2.unflatten(-1, (K, L)).amin(dim=-1).clamp(min=0.0).sqrt()


def _count_objects(foreground: np.ndarray) -> np.ndarray:
    """bool [F,H,W] -> int [F]: connected regions of MIN_OBJECT_PIXELS or more per frame."""
    counts = np.zeros(foreground.shape[0], np.int64)
    for t, mask in enumerate(foreground):
        labels, n = ndimage.label(mask)
        if n:
            sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
            counts[t] = int((sizes >= MIN_OBJECT_PIXELS).sum())
    return counts


@torch.no_grad()
def object_cues(frames: torch.Tensor, palette: torch.Tensor) -> torch.Tensor:
    """frames [B,F,3,H,W] in [0,1], palette [K,3] in [0,1] -> [B, object_cue_dim(K)] (see the module doc)."""
    if frames.ndim != 5 or frames.shape[2] != 3:
        raise ValueError(f"object_cues needs frames [B,F,3,H,W], got {tuple(frames.shape)}")
    out = []
    for clip in frames.float():  # [F,3,H,W]: one clip at a time bounds the memory of the distances
        pixels = clip.permute(0, 2, 3, 1)  # [F,H,W,3]
        F_, H, W = pixels.shape[:3]
        K = palette.shape[0]
        backdrop = pixels.permute(1, 0, 2, 3).reshape(H, F_ * W, 3).median(dim=1).values  # [H,3]
        foreground = (pixels - backdrop[None, :, None, :]).abs().amax(dim=-1) > FOREGROUND_THRESHOLD  # [F,H,W]
        tight, loose, moving = [], [], torch.zeros(K)
        for start in range(0, F_, FRAMES_PER_CHUNK):  # chunks bound the [frames,H,W,K*L] distances' memory
            part = slice(start, start + FRAMES_PER_CHUNK)
            dist = _palette_distance(pixels[part], palette.to(pixels))  # [f,H,W,K]
            nearest = dist.argmin(dim=-1, keepdim=True)
            onehot = torch.zeros_like(dist).scatter_(-1, nearest, 1.0)  # each pixel counts for one colour at most
            best = dist.gather(-1, nearest)
            tight.append((onehot * (best < TIGHT_DISTANCE)).mean(dim=(1, 2)))  # [f,K]
            loose.append((onehot * (best < LOOSE_DISTANCE)).mean(dim=(1, 2)))
            fg = foreground[part]
            moving += (onehot[fg] * (best[fg] < LOOSE_DISTANCE)).sum(dim=0)
        tight, loose = torch.cat(tight).amax(dim=0), torch.cat(loose).mean(dim=0)  # [K] each
        moving_share = moving / max(1, int(foreground.sum()))
        counts = np.minimum(_count_objects(foreground.numpy()), MAX_COUNT)
        histogram = torch.from_numpy(np.bincount(counts, minlength=MAX_COUNT + 1) / F_).float()
        largest = torch.zeros(MAX_COUNT + 1)
        largest[int(counts.max())] = 1.0
        shares = torch.cat([tight, loose, moving_share]).clamp(min=0.0)
        out.append(torch.cat([torch.log(shares + 1e-4), histogram, largest]))  # [object_cue_dim(K)]
    return torch.stack(out)

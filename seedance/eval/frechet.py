"""Frechet distances between two sets of clips on our own encoders: "FVD-analog" and "FAD-analog".

Each clip is embedded by the prompt-adherence probe's encoders (probes.py): the
video encoder (8 frames, pooled) for the FVD-analog and the audio encoder (whole
log-mel, pooled) for the FAD-analog. Each set is summarised by the mean and
covariance of its embeddings, and

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))

These are NOT comparable with published FVD (I3D features) or FAD (VGGish):
the encoders are small and trained on SyncWorld only. Use them to compare runs
of this project with each other; with few clips (tens) the numbers are noisy
and biased upward, so compare sets of equal size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg

from seedance.errors import SeedanceError
from seedance.eval.probes import AttributeProbe, prepare_inputs


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """Frechet distance between Gaussians fitted to feature sets a [N,D] and b [M,D] (N, M >= 2)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise SeedanceError(f"a Frechet distance needs at least 2 clips per set, got {a.shape[0]} and {b.shape[0]}")
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)  # the matrix alone (disp=False, which added an error estimate, is deprecated)
    if not np.isfinite(covmean).all():  # near-singular product: regularise, as the FID reference code does
        offset = np.eye(cov_a.shape[0]) * eps
        covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)
    d2 = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(d2, 0.0)


@dataclass
class Embeddings:
    video: np.ndarray  # [N,D]
    audio: np.ndarray  # [N,D]


@torch.no_grad()
def embed_clips(model: AttributeProbe, clips: list[tuple[np.ndarray, np.ndarray]]) -> Embeddings:
    """Clips already at the probe's fps/size/rate: [(frames uint8 [F,H,W,3], audio [S]), ...]."""
    video, audio = [], []
    for frames, wave in clips:
        x, mel, _ = prepare_inputs(model, frames, wave)
        video.append(model.embed_video(x)[0].numpy())
        audio.append(model.embed_audio(mel)[0].numpy())
    dim = model.config.embed_dim
    return Embeddings(
        video=np.stack(video) if video else np.zeros((0, dim)), audio=np.stack(audio) if audio else np.zeros((0, dim))
    )


def frechet_report(a: Embeddings, b: Embeddings) -> dict:
    return {
        "fvd_analog": round(frechet_distance(a.video, b.video), 6),
        "fad_analog": round(frechet_distance(a.audio, b.audio), 6),
    }


__all__ = ["Embeddings", "embed_clips", "frechet_distance", "frechet_report"]

"""Pictures the app shows: waveform + spectrogram + sync traces, shift curves, text-encoder heatmaps.

Matplotlib through its object API with the Agg canvas (no pyplot): pyplot keeps
global state, and the app draws from several request threads at once.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from seedance.config import ClipPreset  # noqa: E402

DPI = 100


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, format="png")
    return path


def log_mel(audio: np.ndarray, preset: ClipPreset) -> np.ndarray:
    """[n_mels, M] with the project's one log-mel definition (seedance.models.mel.LogMel)."""
    import torch

    from seedance.models.mel import LogMel

    with torch.no_grad():
        mel = LogMel(preset)(torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None])
    return mel[0].numpy()


def clip_figure(frames: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int, preset: ClipPreset,
                path: Path, title: str = "") -> Path:
    """Waveform, log-mel spectrogram, and the per-frame visual and audio traces av_offset correlates."""
    from seedance.eval.offset import audio_trace, visual_trace

    duration = len(audio) / sample_rate
    fig = Figure(figsize=(8, 6.4))
    fig.subplots_adjust(left=0.1, right=0.97, top=0.95, bottom=0.08, hspace=0.35)  # fixed: layout engines are slow
    ax_wave, ax_mel, ax_sync = fig.subplots(3, 1, sharex=True, height_ratios=[1, 1.4, 1])
    t = np.arange(len(audio)) / sample_rate
    ax_wave.plot(t, audio, lw=0.5, color="#1f4e79")
    ax_wave.set_ylabel("amplitude")
    ax_wave.set_title(title or "waveform")
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    ax_wave.set_ylim(-max(peak, 1e-3) * 1.05, max(peak, 1e-3) * 1.05)

    mel = log_mel(audio, replace(preset, sample_rate=int(sample_rate)))
    ax_mel.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=(0, duration, 0, mel.shape[0]))
    ax_mel.set_ylabel("mel bin")
    ax_mel.set_title("log-mel spectrogram")

    n = frames.shape[0]
    tf = np.arange(n) / fps
    if n >= 2:
        visual = visual_trace(frames)
        sound = audio_trace(audio, sample_rate, fps, n)
        ax_sync.plot(tf, _unit(visual), label="picture: motion + impacts", color="#2e7d32")
        ax_sync.plot(tf, _unit(sound), label="sound: spectral flux", color="#c62828", alpha=0.8)
        ax_sync.legend(loc="upper right", fontsize=8)
    ax_sync.set_xlabel("time (s)")
    ax_sync.set_ylabel("normalised")
    ax_sync.set_title("what moves vs what sounds (per video frame)")
    ax_sync.set_xlim(0, max(duration, n / fps))
    return _save(fig, path)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    span = x.max() - x.min() if x.size else 0.0
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def shift_figure(shifts, correlation, offset_frames: int, fps: float, path: Path,
                 expert_shifts=None, expert_distances=None) -> Path:
    """Correlation (and SyncExpert distance, when given) against audio shift in frames."""
    fig = Figure(figsize=(7, 3.6))
    fig.subplots_adjust(left=0.11, right=0.88, top=0.9, bottom=0.14)
    ax = fig.subplots()
    ax.plot(shifts, correlation, marker="o", ms=3, color="#1f4e79", label="picture/sound trace correlation")
    ax.axvline(offset_frames, color="#c62828", ls="--",
               label=f"offset {offset_frames:+d} frames ({1000 * offset_frames / fps:+.0f} ms)")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("audio shift (frames; positive = audio late)")
    ax.set_ylabel("correlation")
    if expert_shifts is not None and expert_distances is not None:
        ax2 = ax.twinx()
        ax2.plot(expert_shifts, expert_distances, color="#6a1b9a", alpha=0.7, label="SyncExpert distance")
        ax2.set_ylabel("SyncExpert distance (lower = in sync)")
        lines = ax.get_legend_handles_labels()
        lines2 = ax2.get_legend_handles_labels()
        ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="lower right")
    else:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title("audio-visual offset search")
    return _save(fig, path)


def token_labels(tokens: list[str]) -> list[str]:
    return [t.replace("\n", "\\n") if t.strip() else repr(t) for t in tokens]


def engram_figure(tokens: list[str], gates: np.ndarray, update_ratio: np.ndarray, path: Path) -> Path:
    """Per token: Engram gate alpha_t and |Engram update| / |hidden state| (a 2-row heatmap)."""
    data = np.stack([gates, update_ratio])  # [2,L]
    width = min(2 + 0.45 * len(tokens), 40)
    fig = Figure(figsize=(width, 2.6), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(1.0, float(data.max())))
    ax.set_yticks([0, 1], ["gate α", "|update|/|h|"])
    ax.set_xticks(range(len(tokens)), token_labels(tokens), rotation=60, ha="right", fontsize=8)
    for j in range(data.shape[1]):
        for i in range(2):
            ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title("Engram memory per token")
    return _save(fig, path)


def routing_figure(tokens: list[str], routing: np.ndarray, layer_names: list[str], path: Path) -> Path:
    """routing [n_layers, E, L]: each MoE layer's routing weight of every expert for every token."""
    n_layers, n_experts, _ = routing.shape
    width = min(2.5 + 0.45 * len(tokens), 40)
    fig = Figure(figsize=(width, 1.0 + 0.32 * n_experts * n_layers), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_layers, 1, sharex=True))
    for ax, weights, name in zip(axes, routing, layer_names):
        im = ax.imshow(weights, aspect="auto", cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_yticks(range(n_experts), [f"e{e}" for e in range(n_experts)], fontsize=7)
        ax.set_ylabel(name, fontsize=8)
    axes[-1].set_xticks(range(len(tokens)), token_labels(tokens), rotation=60, ha="right", fontsize=8)
    fig.colorbar(im, ax=list(axes), fraction=0.03, label="routing weight")
    axes[0].set_title("MoE routing per token and layer (top-k experts, weights renormalised)")
    return _save(fig, path)

"""Audio-visual offset by cross-correlation: when does the picture change, when does the sound start?

    r = av_offset(frames, audio, fps=16, sample_rate=16000)
    r.offset_frames, r.offset_ms, r.confidence

Visual side: per-frame motion energy, i.e. how much the picture changes at each
frame (mean absolute frame difference, plus the change of that motion, which
peaks where a moving object stops or turns, e.g. at an impact). Audio side:
onset strength (librosa's spectral flux on a log-mel spectrogram) pooled into
one value per video frame, the window centred on the frame's time. Both are
standardised and correlated over shifts -max_shift..+max_shift frames.

Sign: a positive offset means the audio is late (its events come `offset`
frames after the matching visual ones); delaying audio by d frames makes a
clip read +d. Confidence = peak - median of the correlation curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import librosa
import numpy as np

from seedance.errors import SeedanceError

# Onset envelope resolution: this many audio onset values per video frame before pooling.
ONSET_STEPS_PER_FRAME = 4
MIN_OVERLAP_FRAMES = 4


@dataclass
class OffsetResult:
    offset_frames: int  # positive: audio late
    offset_ms: float
    confidence: float  # peak - median of `correlation`
    shifts: np.ndarray  # int [K], frames
    correlation: np.ndarray  # float [K], mean product of standardised signals at each shift

    def to_dict(self) -> dict:
        return {
            "offset_frames": int(self.offset_frames),
            "offset_ms": float(self.offset_ms),
            "confidence": float(self.confidence),
            "shifts": [int(s) for s in self.shifts],
            "correlation": [float(c) for c in self.correlation],
        }


def as_frames(frames) -> np.ndarray:
    """uint8/float [F,H,W,3] (numpy or torch) -> float32 [F,H,W,3] in [0,1]."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise SeedanceError(f"frames must be [F,H,W,3], got shape {tuple(frames.shape)}")
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / 255.0
    return frames.astype(np.float32)


def as_mono(audio) -> np.ndarray:
    """float [S] or [C,S] (numpy or torch) -> float32 mono [S]."""
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    if audio.ndim != 1:
        raise SeedanceError(f"audio must be [S] or [C,S], got shape {tuple(audio.shape)}")
    return audio


def crop_frames(frames: np.ndarray, crop: tuple[int, int, int, int] | None) -> np.ndarray:
    """Cut a box (top, left, bottom, right) in pixels out of [F,H,W,3] frames."""
    if crop is None:
        return frames
    top, left, bottom, right = (int(c) for c in crop)
    H, W = frames.shape[1:3]
    if not (0 <= top < bottom <= H and 0 <= left < right <= W):
        raise SeedanceError(f"crop {crop} is outside the {H}x{W} frame; give (top, left, bottom, right) inside it")
    return frames[:, top:bottom, left:right]


def motion_energy(frames, crop: tuple[int, int, int, int] | None = None, mode: str = "diff") -> np.ndarray:
    """Per-frame visual change, float32 [F] (frame k compares k with k-1; frame 0 gets 0).

    mode "diff": mean |first difference| (appearing, lighting up, opening);
    "accel": mean |second difference| (a moving object that stops or turns at an
    impact); "both": their sum.
    """
    if mode not in ("diff", "accel", "both"):
        raise SeedanceError(f"motion mode must be 'diff', 'accel' or 'both', got {mode!r}")
    x = crop_frames(as_frames(frames), crop).mean(axis=-1)  # [F,H,W] grey
    F = x.shape[0]
    first = np.zeros(F, np.float32)
    second = np.zeros(F, np.float32)
    if F > 1:
        d1 = np.diff(x, axis=0)  # [F-1]: change into frame k
        first[1:] = np.abs(d1).mean(axis=(1, 2))
        if F > 2:
            # d1[k] - d1[k-1] compares the motion into k+1 with that into k: it belongs to frame k.
            second[1:-1] = np.abs(np.diff(d1, axis=0)).mean(axis=(1, 2))
    if mode == "diff":
        return first
    if mode == "accel":
        return second
    return first + second


def onset_per_frame(audio, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """Audio onset strength pooled to video frames, float32 [num_frames].

    Frame k takes the max of the onset envelope over [(k - 0.5)/fps, (k + 0.5)/fps).
    """
    y = as_mono(audio)
    hop = max(1, int(round(sample_rate / (fps * ONSET_STEPS_PER_FRAME))))
    n_fft = 1
    while n_fft < 4 * hop:  # ~ 2-4 onset steps of window: sharp in time
        n_fft *= 2
    if y.size < n_fft:
        y = np.pad(y, (0, n_fft - y.size))
    env = librosa.onset.onset_strength(y=y, sr=sample_rate, hop_length=hop, n_fft=n_fft, n_mels=64, center=True)
    times = np.arange(env.shape[0]) * hop / sample_rate
    out = np.zeros(num_frames, np.float32)
    idx = np.floor(times * fps + 0.5).astype(int)  # nearest frame centre
    valid = (idx >= 0) & (idx < num_frames)
    np.maximum.at(out, idx[valid], env[valid].astype(np.float32))
    return out


def _standardise(x: np.ndarray) -> np.ndarray:
    s = x.std()
    return (x - x.mean()) / s if s > 1e-8 else np.zeros_like(x)


def shifted_correlation(visual: np.ndarray, audio: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """corr[d] = mean_k v[k] * a[k + d] over the overlap, both standardised; d in -max_shift..max_shift."""
    v, a = _standardise(visual.astype(np.float64)), _standardise(audio.astype(np.float64))
    F = v.shape[0]
    shifts = np.arange(-max_shift, max_shift + 1)
    corr = np.zeros(shifts.shape[0])
    for j, d in enumerate(shifts):
        lo, hi = max(0, -d), min(F, F - d)
        corr[j] = np.mean(v[lo:hi] * a[lo + d : hi + d]) if hi - lo > 0 else 0.0
    return shifts, corr


def av_offset(
    frames,
    audio,
    fps: float,
    sample_rate: int,
    max_shift: int = 15,
    crop: tuple[int, int, int, int] | None = None,
) -> OffsetResult:
    """Estimate the audio-visual offset of one clip (positive = audio late).

    frames: uint8 [F,H,W,3] (or float in [0,1]); audio: float [S] or [C,S];
    crop: optional (top, left, bottom, right) box to watch, e.g. a mouth.
    The search range shrinks to F - 4 frames for very short clips.
    """
    if fps <= 0 or sample_rate <= 0:
        raise SeedanceError(f"fps and sample_rate must be positive, got {fps}, {sample_rate}")
    if max_shift < 0:
        raise SeedanceError(f"max_shift must be >= 0, got {max_shift}")
    visual = motion_energy(frames, crop)
    F = visual.shape[0]
    if F < MIN_OVERLAP_FRAMES + 1:
        raise SeedanceError(f"clip too short for an offset: {F} frames; give at least {MIN_OVERLAP_FRAMES + 1}")
    onset = onset_per_frame(audio, sample_rate, fps, F)
    max_shift = int(min(max_shift, F - MIN_OVERLAP_FRAMES))
    shifts, corr = shifted_correlation(visual, onset, max_shift)
    best = int(np.argmax(corr))
    offset = int(shifts[best])
    return OffsetResult(
        offset_frames=offset,
        offset_ms=1000.0 * offset / fps,
        confidence=float(corr[best] - np.median(corr)),
        shifts=shifts,
        correlation=corr.astype(np.float32),
    )


def shift_audio(audio: np.ndarray, frames_late: int, fps: float, sample_rate: int) -> np.ndarray:
    """Delay (positive) or advance (negative) mono audio by whole video frames, keeping its length."""
    y = as_mono(audio)
    n = int(round(frames_late * sample_rate / fps))
    if n == 0:
        return y.copy()
    out = np.zeros_like(y)
    if n > 0:
        out[n:] = y[: y.shape[0] - n] if n < y.shape[0] else out[n:]
    else:
        out[: y.shape[0] + n] = y[-n:] if -n < y.shape[0] else out[: y.shape[0] + n]
    return out


__all__ = ["OffsetResult", "av_offset", "motion_energy", "onset_per_frame", "shift_audio", "shifted_correlation"]

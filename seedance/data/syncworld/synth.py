"""Small sound-synthesis kit for SyncWorld: modal impacts, plucked strings, membranes, mixing.

Everything is vectorised numpy (one `sin` over a [modes, samples] grid), returns
float32 and is deterministic given the numpy Generator passed in. Sounds start
at their first sample with a ~1 ms ramp (no click before the event, a sharp
onset at it), so a sound mixed in at sample round(t * sr) has its onset at t.

Shared by the bouncing-objects scene (impacts per material) and the keys /
drum-pads scene (instrument timbres).
"""

from __future__ import annotations

import numpy as np

ATTACK_S = 0.001  # onset ramp: long enough to avoid a DC click, short enough to keep the onset sharp


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((float(pitch) - 69.0) / 12.0)


def attack_ramp(n: int, sample_rate: int, attack_s: float = ATTACK_S) -> np.ndarray:
    """[n] gain rising linearly from 0 to 1 over attack_s, then 1."""
    k = max(1, int(round(attack_s * sample_rate)))
    ramp = np.ones(n, dtype=np.float32)
    ramp[: min(k, n)] = np.linspace(0.0, 1.0, k, endpoint=False, dtype=np.float32)[: min(k, n)]
    return ramp


def fade_out(n: int, sample_rate: int, fade_s: float = 0.15) -> np.ndarray:
    """[n] gain that is 1, then falls to 0 along a half cosine over the last fade_s: a sound cut
    short would otherwise end in a click, which onset detectors (rightly) report as an event."""
    k = min(n, max(1, int(round(fade_s * sample_rate))))
    gain = np.ones(n, dtype=np.float32)
    gain[n - k :] = (0.5 + 0.5 * np.cos(np.linspace(0.0, np.pi, k))).astype(np.float32)
    return gain


def modal(
    freqs: np.ndarray,
    decays: np.ndarray,
    amps: np.ndarray,
    n: int,
    sample_rate: int,
    phases: np.ndarray | None = None,
) -> np.ndarray:
    """Sum of exponentially damped sinusoids: sum_k a_k exp(-t / d_k) sin(2 pi f_k t + phi_k).

    freqs, decays (seconds, time constant), amps: [K]. Modes at or above 0.45 * sr are dropped
    (they would alias). Each mode is computed only until it has decayed by 60 dB (7 time
    constants), in float32 (phase error a few milliradians): the bright, fast-dying upper
    modes cost little. Returns float32 [n].
    """
    out = np.zeros(max(n, 0), dtype=np.float32)
    freqs = np.asarray(freqs, dtype=np.float64)
    decays = np.asarray(decays, dtype=np.float64)
    amps = np.asarray(amps, dtype=np.float64)
    phases = np.zeros_like(freqs) if phases is None else np.asarray(phases, dtype=np.float64)
    t = np.arange(max(n, 0), dtype=np.float32) / np.float32(sample_rate)
    for f, d, a, phi in zip(freqs, decays, amps, phases):
        if f >= 0.45 * sample_rate or a == 0.0:
            continue
        m = min(n, int(7.0 * d * sample_rate) + 1)
        tm = t[:m]
        out[:m] += (
            np.float32(a)
            * np.exp(tm * np.float32(-1.0 / d))
            * np.sin(tm * np.float32(2.0 * np.pi * f) + np.float32(phi))
        )
    return out


def noise_burst(rng: np.random.Generator, n: int, sample_rate: int, decay_s: float, smooth: int = 1) -> np.ndarray:
    """Exponentially decaying white noise, optionally low-passed by a `smooth`-tap moving average.

    Only the first 10 time constants (-87 dB) are drawn; the rest of the [n] result is silence.
    """
    out = np.zeros(max(n, 0), dtype=np.float32)
    m = min(n, int(10.0 * decay_s * sample_rate) + 1)
    noise = rng.standard_normal(m)
    if smooth > 1:
        noise = np.convolve(noise, np.ones(smooth) / np.sqrt(smooth), mode="same")
    out[:m] = noise * np.exp(-np.arange(m) / (decay_s * sample_rate))
    return out


def karplus_strong(
    rng: np.random.Generator, freq: float, n: int, sample_rate: int, damping: float = 0.996, brightness: float = 0.5
) -> np.ndarray:
    """Plucked string: a noise burst circulating in a delay line with an averaging low-pass.

    y[i] = damping * (y[i - N] + y[i - N - 1]) / 2, seeded with N samples of (smoothed) noise.
    Within one period every sample depends only on the previous period, so each period is one
    vectorised numpy step (n / N steps, a few hundred per note) instead of n scalar steps.
    brightness in (0, 1]: 1 = white-noise pluck, lower = a softer, rounder pluck.
    """
    period = max(2, int(round(sample_rate / freq - 0.5)))  # the averaging filter adds half a sample of delay
    seed = rng.uniform(-1.0, 1.0, period)
    taps = max(1, int(round((1.0 - brightness) * 6)) + 1)
    if taps > 1:  # circular smoothing of the excitation
        seed = np.convolve(np.concatenate([seed[-taps:], seed, seed[:taps]]), np.ones(taps) / taps, mode="same")
        seed = seed[taps:-taps]
    seed -= seed.mean()
    out = np.zeros(n + 1, dtype=np.float64)  # out[0] is the y[-1] = 0 the first period reads
    first = min(period, n)
    out[1 : first + 1] = seed[:first]
    start = period + 1
    while start < n + 1:
        stop = min(start + period, n + 1)
        width = stop - start
        out[start:stop] = (
            damping * 0.5 * (out[start - period : start - period + width] + out[start - period - 1 : stop - period - 1])
        )
        start = stop
    return out[1:].astype(np.float32)


def mix_at(buffer: np.ndarray, sound: np.ndarray, start: int, gain: float = 1.0) -> None:
    """Add `sound * gain` into `buffer` from sample `start` on (clipped to the buffer), in place."""
    if start >= buffer.shape[0] or start + sound.shape[0] <= 0:
        return
    lo = max(start, 0)
    hi = min(start + sound.shape[0], buffer.shape[0])
    buffer[lo:hi] += gain * sound[lo - start : hi - start]


def finish(audio: np.ndarray, peak: float = 0.85) -> np.ndarray:
    """Peak-normalise to `peak`, clip to [-1, 1], float32."""
    m = float(np.max(np.abs(audio))) if audio.size else 0.0
    if m > 0:
        audio = audio * (peak / m)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)

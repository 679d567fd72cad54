"""Score audio-visual sync of a set of clips, each figure beside its chance level (and ceiling).

    from seedance.eval.sync import SyncClip, evaluate_sync
    report = evaluate_sync([SyncClip("a", frames, audio, 16, 16000), ...])

Per clip: the cross-correlation offset (offset.py), the SyncExpert's LSE-D /
LSE-C / offset (syncexpert.py), AV-Align and event F1 (events.py).

Aggregates over the set, each reported three ways:
- `aggregate`: the clips as given;
- `chance`: the same videos, each paired with the next clip's audio (a cyclic
  derangement; audio resampled and cut or padded to the video's length), so a
  figure can be read against what unrelated sound scores (needs >= 2 clips);
- `ceiling`: the same figures on real, in-sync reference clips, when given.

"within 1 frame" counts |offset| <= 1 video frame (the SyncNet convention); for
a set that should be in sync that is the share of clips judged in sync.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import resample_poly

from seedance.eval.events import av_align, event_f1
from seedance.eval.offset import as_mono, av_offset, impact_score

SCHEMA = "seedance.eval.sync/1"


@dataclass
class SyncClip:
    name: str
    frames: np.ndarray  # uint8 [F,H,W,3]
    audio: np.ndarray  # float32 mono [S]
    fps: float
    sample_rate: int


def score_clip(clip: SyncClip, expert=None, crop=None, max_shift: int = 15) -> dict:
    """Every sync measure of one clip, as a JSON-ready dict."""
    from seedance.eval.syncexpert import score_sync

    impacts = impact_score(clip.frames, crop)  # object tracking, shared by the offset and the visual onsets
    offset = av_offset(
        clip.frames, clip.audio, clip.fps, clip.sample_rate, max_shift=max_shift, crop=crop, impacts=impacts
    )
    row = {
        "name": clip.name,
        "ok": True,
        "fps": float(clip.fps),
        "sample_rate": int(clip.sample_rate),
        "num_frames": int(clip.frames.shape[0]),
        "duration_s": round(clip.frames.shape[0] / clip.fps, 4),
        "offset": offset.to_dict(),
        "av_align": av_align(clip.frames, clip.audio, clip.fps, clip.sample_rate, crop).to_dict(),
        "event_f1": event_f1(clip.frames, clip.audio, clip.fps, clip.sample_rate, crop, impacts=impacts).to_dict(),
        "syncexpert": None,
    }
    if expert is not None:
        s = score_sync(expert, clip.frames, clip.audio, clip.fps, clip.sample_rate, crop=crop, max_shift=max_shift)
        row["syncexpert"] = s.to_dict()
    return row


def aggregate(rows: list[dict]) -> dict | None:
    """Means and shares over scored clips (failed ones left out)."""
    rows = [r for r in rows if r.get("ok")]
    if not rows:
        return None

    def mean(values) -> float | None:
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return round(float(np.mean(values)), 6) if values else None

    out = {
        "n_clips": len(rows),
        "offset_within_1_frame": mean([abs(r["offset"]["offset_frames"]) <= 1 for r in rows]),
        "offset_zero": mean([r["offset"]["offset_frames"] == 0 for r in rows]),
        "offset_abs_frames_mean": mean([abs(r["offset"]["offset_frames"]) for r in rows]),
        "offset_confidence_mean": mean([r["offset"]["confidence"] for r in rows]),
        "av_align_mean": mean([r["av_align"]["score"] for r in rows]),
        "event_f1_mean": mean([r["event_f1"]["score"] for r in rows]),
    }
    experts = [r["syncexpert"] for r in rows if r.get("syncexpert")]
    if experts:
        out.update(
            {
                "lse_d_mean": mean([s["lse_d"] for s in experts]),
                "lse_c_mean": mean([s["lse_c"] for s in experts]),
                "lse_c_median": round(float(np.median([s["lse_c"] for s in experts])), 6),
                "syncexpert_within_1_frame": mean(
                    [abs(s["offset_ms"]) <= 1000.0 / r["fps"] + 1e-6 for s, r in zip(experts, rows)]
                ),
            }
        )
    return out


def fit_audio(audio: np.ndarray, sample_rate: int, to_rate: int, num_samples: int) -> np.ndarray:
    """Resample mono audio to `to_rate` and cut or zero-pad it to `num_samples`."""
    y = as_mono(audio)
    if int(sample_rate) != int(to_rate):
        g = math.gcd(int(sample_rate), int(to_rate))
        y = resample_poly(y, int(to_rate) // g, int(sample_rate) // g).astype(np.float32)
    y = y[:num_samples]
    return np.pad(y, (0, num_samples - y.shape[0])) if y.shape[0] < num_samples else y


def mismatched_pairs(clips: list[SyncClip]) -> list[SyncClip]:
    """Clip i's video with clip (i+1)'s audio: the chance-level pairs (>= 2 clips)."""
    out = []
    for i, clip in enumerate(clips):
        other = clips[(i + 1) % len(clips)]
        n = int(round(clip.frames.shape[0] / clip.fps * clip.sample_rate))
        audio = fit_audio(other.audio, other.sample_rate, clip.sample_rate, n)
        out.append(SyncClip(f"{clip.name}+audio_of:{other.name}", clip.frames, audio, clip.fps, clip.sample_rate))
    return out


def evaluate_sync(
    clips: list[SyncClip],
    expert=None,
    crop=None,
    max_shift: int = 15,
    failures: list[dict] | None = None,
    reference: list[SyncClip] | None = None,
    settings: dict | None = None,
) -> dict:
    """The full sync report (schema `seedance.eval.sync/1`, see README)."""
    rows = [score_clip(c, expert, crop, max_shift) for c in clips]
    failures = failures or []
    chance = None
    if len(clips) >= 2:
        chance = aggregate([score_clip(c, expert, crop, max_shift) for c in mismatched_pairs(clips)])
    ceiling = aggregate([score_clip(c, expert, crop, max_shift) for c in reference]) if reference else None
    return {
        "schema": SCHEMA,
        "settings": {"max_shift_frames": int(max_shift), "crop": list(crop) if crop else None, **(settings or {})},
        "sign": "positive offset = audio late",
        "clips": rows + failures,
        "aggregate": aggregate(rows),
        "chance": chance,
        "chance_note": "same videos, each with the next clip's audio" if chance else "needs at least 2 clips",
        "ceiling": ceiling,
        "n_failed": len(failures),
    }


__all__ = ["SCHEMA", "SyncClip", "aggregate", "evaluate_sync", "mismatched_pairs", "score_clip"]

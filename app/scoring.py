"""The sync report the app shows for a clip: offset, confidence, SyncExpert LSE-D/LSE-C, AV-Align, event F1.

All measures come from seedance.eval (the code `seedance eval sync` runs); this
module only gathers them into one JSON-ready dict plus the curves the shift
plot draws. The SyncExpert is optional: without its weights the report says so
instead of showing a number.
"""

from __future__ import annotations

import math

import numpy as np

from seedance.config import ClipPreset


def _num(x: float, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def score_clip(frames: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int, preset: ClipPreset,
               syncexpert=None, syncexpert_note: str | None = None) -> tuple[dict, dict]:
    """frames uint8 [F,H,W,3], mono audio [S] -> (report, curves for the shift plot)."""
    from seedance.eval.events import av_align, event_f1
    from seedance.eval.offset import av_offset

    result = av_offset(frames, audio, fps, sample_rate)
    report = {
        "offset_frames": int(result.offset_frames),
        "offset_ms": round(float(result.offset_ms), 1),
        "offset_sign": "positive = audio late",
        "confidence": _num(result.confidence),
        "in_sync_within_1_frame": abs(int(result.offset_frames)) <= 1,
    }
    curves = {"shifts": np.asarray(result.shifts), "correlation": np.asarray(result.correlation)}

    if syncexpert is not None:
        from seedance.eval.syncexpert import score_sync

        s = score_sync(syncexpert, frames, audio, fps, sample_rate)
        report["syncexpert"] = {"lse_d": _num(s.lse_d), "lse_c": _num(s.lse_c), "offset_frames": int(s.offset_frames),
                                "offset_ms": round(float(s.offset_ms), 1),
                                "scale": "own SyncExpert scale, not SyncNet's"}
        curves["expert_shifts"] = np.asarray(s.shifts_ms) * fps / 1000.0
        curves["expert_distances"] = np.asarray(s.distances)
    else:
        report["syncexpert"] = {"lse_d": None, "lse_c": None, "note": syncexpert_note or "no SyncExpert loaded"}

    align = av_align(frames, audio, fps, sample_rate)
    report["av_align"] = _num(align.score)
    report["av_align_events"] = {"audio": int(align.audio_times.size), "visual": int(align.visual_times.size),
                                 "matched": int(align.matched)}
    f1 = event_f1(frames, audio, fps, sample_rate)
    report["event_f1"] = _num(f1.score)
    return report, curves

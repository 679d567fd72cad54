"""The sync report the app shows for a clip: offset, confidence, SyncExpert LSE-D/LSE-C, AV-Align, event F1.

One clip is scored by `seedance.eval.sync.score_clip`, the code `seedance eval
sync` runs, so the app and the CLI agree to the digit. This module puts the
headline figures first (what a person reads) and keeps the per-measure details
below them, without the curves, which the shift plot draws instead.
"""

from __future__ import annotations

import math

import numpy as np

from seedance.config import ClipPreset


def _num(x, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def score_clip(frames: np.ndarray, audio: np.ndarray, fps: float, sample_rate: int, preset: ClipPreset,
               syncexpert=None, syncexpert_note: str | None = None) -> tuple[dict, dict]:
    """frames uint8 [F,H,W,3], mono audio [S] -> (report, curves for the shift plot)."""
    from seedance.eval.sync import SyncClip
    from seedance.eval.sync import score_clip as eval_score_clip

    row = eval_score_clip(SyncClip("clip", frames, audio, fps, sample_rate), expert=syncexpert)
    offset, expert = row["offset"], row.get("syncexpert")
    report = {
        "offset_frames": int(offset["offset_frames"]),
        "offset_ms": round(float(offset["offset_ms"]), 1),
        "offset_sign": "positive = audio late",
        "confidence": _num(offset["confidence"]),
        "in_sync_within_1_frame": abs(int(offset["offset_frames"])) <= 1,
        "lse_d": _num(expert["lse_d"]) if expert else None,
        "lse_c": _num(expert["lse_c"]) if expert else None,
        "av_align": _num(row["av_align"]["score"]) if row["av_align"]["score"] is not None else None,
        "event_f1": _num(row["event_f1"]["score"]) if row["event_f1"]["score"] is not None else None,
    }
    if expert:
        report["syncexpert"] = {"offset_frames": int(expert["offset_frames"]),
                                "offset_ms": round(float(expert["offset_ms"]), 1),
                                "scale": "own SyncExpert scale, not SyncNet's"}
    else:
        report["syncexpert"] = {"note": syncexpert_note or "no SyncExpert loaded: LSE-D/LSE-C not measured"}
    report["events"] = {name: {k: v for k, v in row[name].items() if k != "score"} for name in ("av_align", "event_f1")}

    curves = {"shifts": np.asarray(offset["shifts"]), "correlation": np.asarray(offset["correlation"])}
    if expert:
        curves["expert_shifts"] = np.asarray(expert["shifts_ms"]) * fps / 1000.0
        curves["expert_distances"] = np.asarray(expert["distances"])
    return report, curves

#!/usr/bin/env python
"""Validate the evaluation suite on held-out SyncWorld clips; print JSON.

    python bench/eval_validation.py --quick     # a small run, under a minute on an idle core
    python bench/eval_validation.py             # the full sweep

Measures (all on test-split clips with seeds from --first-seed, never seen in training or validation):
- xcorr_offset_acc / syncexpert_offset_acc: the audio is shifted by d frames
  (d in -8..+8), the clip is written as mp4 (H.264 + AAC) and as mkv (H.264 +
  PCM), read back, and each estimator's offset must be within +-1 frame of d.
- in_sync_reads_zero: share of unshifted clips that read offset 0 exactly, in
  every container/codec pair (mp4/AAC, mkv/PCM, mkv/FLAC, mov/PCM, webm/Opus,
  mkv/MP3), per estimator; and the share whose file reads agree with the
  in-memory clip (what the codec's delay could break).
- lsec_matched_median / lsec_mismatched_median: SyncExpert LSE-C of in-sync clips
  (read from mp4) against the same videos with another clip's audio.
- probe_accuracy: each prompt-adherence probe's accuracy.
- chance: every sync figure again with each video paired with another clip's audio.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seedance.config import get_preset  # noqa: E402
from seedance.data.media import read_clip, write_clip  # noqa: E402
from seedance.data.syncworld import make_sample  # noqa: E402
from seedance.errors import SeedanceError  # noqa: E402
from seedance.eval.events import event_f1  # noqa: E402
from seedance.eval.offset import av_offset, shift_audio  # noqa: E402

SWEEP_CONTAINERS = (("mp4", "aac"), ("mkv", "pcm"))
IN_SYNC_CONTAINERS = (("mp4", "aac"), ("mkv", "pcm"), ("mkv", "flac"), ("mov", "pcm"), ("webm", "opus"), ("mkv", "mp3"))
SCENES = ("face", "bounce", "keys")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="3 clips per scene, shifts -8,-4,0,4,8, 10 probe clips/scene")
    p.add_argument("--clips-per-scene", type=int, default=None)
    p.add_argument("--probe-clips-per-scene", type=int, default=None)
    p.add_argument("--first-seed", type=int, default=1000, help="test-split seeds start here (unseen in training)")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--syncexpert", default=None, help="SyncExpert weights folder (default weights/syncexpert)")
    p.add_argument("--probes", default=None, help="probe weights folder (default weights/probes)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.clips_per_scene is None:
        args.clips_per_scene = 3 if args.quick else 20
    if args.probe_clips_per_scene is None:
        args.probe_clips_per_scene = 10 if args.quick else 100
    args.shifts = (-8, -4, 0, 4, 8) if args.quick else tuple(range(-8, 9))
    return args


def share(values) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def load_models(args):
    expert = probes = None
    notes = {}
    try:
        from seedance.eval.syncexpert import load_syncexpert

        expert = load_syncexpert(args.syncexpert)
    except SeedanceError as e:
        notes["syncexpert"] = str(e)
    try:
        from seedance.eval.probes import load_probes

        probes = load_probes(args.probes)
    except SeedanceError as e:
        notes["probes"] = str(e)
    return expert, probes, notes


def roundtrip(tmp: Path, name: str, frames, audio, preset, container: str, codec: str):
    path = write_clip(tmp / f"{name}.{container}", frames, audio, preset.fps, preset.sample_rate, audio_codec=codec)
    clip = read_clip(path, fps=preset.fps, size=(preset.height, preset.width), sample_rate=preset.sample_rate)
    path.unlink()
    return clip


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    fps, sr = preset.fps, preset.sample_rate
    t_start = time.time()
    expert, probes, notes = load_models(args)
    from seedance.eval.syncexpert import score_sync

    def se_offset(frames, audio):
        return score_sync(expert, frames, audio, fps, sr) if expert is not None else None

    samples = [
        make_sample(scene, args.first_seed + i, preset, "test") for scene in SCENES for i in range(args.clips_per_scene)
    ]
    from seedance.data.syncworld.face import TEST_VOICES

    hits = {"xcorr": [], "syncexpert": []}
    chance_hits = {"xcorr": [], "syncexpert": []}
    by_scene: dict[str, dict[str, list]] = {s: {"xcorr": [], "syncexpert": []} for s in SCENES}
    held_out_voice = {"xcorr": [], "syncexpert": []}
    in_sync = {"xcorr": [], "syncexpert": [], "agrees_with_memory": []}
    in_sync_by_container: dict[str, dict[str, list]] = {}
    lsec_matched, lsec_mismatched = [], []
    f1_matched, f1_mismatched = [], []

    with tempfile.TemporaryDirectory(prefix="seedance_evalval_") as tmpdir:
        tmp = Path(tmpdir)
        for n, s in enumerate(samples):
            other = samples[(n + 1) % len(samples)]  # chance: another clip's audio
            memory = av_offset(s.frames, s.audio, fps, sr).offset_frames
            # 1. shift sweep through real files
            for d in args.shifts:
                shifted = shift_audio(s.audio, d, fps, sr)
                for container, codec in SWEEP_CONTAINERS:
                    clip = roundtrip(tmp, f"c{n}_{d}", s.frames, shifted, preset, container, codec)
                    ok = abs(av_offset(clip.frames, clip.audio, fps, sr).offset_frames - d) <= 1
                    hits["xcorr"].append(ok)
                    by_scene[s.scene]["xcorr"].append(ok)
                    if s.scene == "face" and s.labels["voice"] in TEST_VOICES:
                        held_out_voice["xcorr"].append(ok)
                    se = se_offset(clip.frames, clip.audio)
                    if se is not None:
                        ok = abs(se.offset_frames - d) <= 1
                        hits["syncexpert"].append(ok)
                        by_scene[s.scene]["syncexpert"].append(ok)
                        if s.scene == "face" and s.labels["voice"] in TEST_VOICES:
                            held_out_voice["syncexpert"].append(ok)
                # chance: the same shift applied to another clip's audio, in memory
                wrong = shift_audio(other.audio[: s.audio.shape[0]], d, fps, sr)
                chance_hits["xcorr"].append(abs(av_offset(s.frames, wrong, fps, sr).offset_frames - d) <= 1)
                se = se_offset(s.frames, wrong)
                if se is not None:
                    chance_hits["syncexpert"].append(abs(se.offset_frames - d) <= 1)
            # 2. in-sync clip in every container/codec pair
            for container, codec in IN_SYNC_CONTAINERS:
                clip = roundtrip(tmp, f"z{n}", s.frames, s.audio, preset, container, codec)
                key = f"{container}/{codec}"
                row = in_sync_by_container.setdefault(key, {"xcorr": [], "syncexpert": []})
                x = av_offset(clip.frames, clip.audio, fps, sr).offset_frames
                in_sync["xcorr"].append(x == 0)
                in_sync["agrees_with_memory"].append(x == memory)
                row["xcorr"].append(x == 0)
                se = se_offset(clip.frames, clip.audio)
                if se is not None:
                    in_sync["syncexpert"].append(se.offset_frames == 0)
                    row["syncexpert"].append(se.offset_frames == 0)
                    if container == "mp4":
                        lsec_matched.append(se.lse_c)
                if container == "mp4":
                    f1_matched.append(event_f1(clip.frames, clip.audio, fps, sr).score)
            # 3. mismatched audio (in memory): LSE-C and event F1 at chance
            wrong = other.audio[: s.audio.shape[0]]
            se = se_offset(s.frames, wrong)
            if se is not None:
                lsec_mismatched.append(se.lse_c)
            f1_mismatched.append(event_f1(s.frames, wrong, fps, sr).score)

    # 4. probes on fresh held-out clips
    probe_accuracy = None
    if probes is not None:
        from seedance.eval.probes import MULTI_LABEL, predict, targets_from_labels

        correct: dict[str, list] = {}
        for scene in SCENES:
            for i in range(args.probe_clips_per_scene):
                s = make_sample(scene, args.first_seed + 5000 + i, preset, "test")
                target = targets_from_labels(s.labels, probes.classes)
                pred = predict(probes, s.frames, s.audio)
                for name, t in target.items():
                    if t is None:
                        continue
                    classes = probes.classes[name]
                    if name in MULTI_LABEL:
                        want = {c for c, flag in zip(classes, t) if flag}
                        probs = pred[name]["probs"]
                        got = set(sorted(probs, key=probs.get, reverse=True)[: len(want)])
                        correct.setdefault(name, []).append(got == {str(c) for c in want})
                    else:
                        correct.setdefault(name, []).append(str(pred[name]["top"]) == str(classes[t]))
        probe_accuracy = {name: share(v) for name, v in correct.items()}
        probe_accuracy["n_clips"] = 3 * args.probe_clips_per_scene

    nanmean = lambda v: round(float(np.nanmean(v)), 4) if len(v) else None  # noqa: E731
    report = {
        "xcorr_offset_acc": share(hits["xcorr"]),
        "syncexpert_offset_acc": share(hits["syncexpert"]),
        "in_sync_reads_zero": {
            "xcorr": share(in_sync["xcorr"]),
            "syncexpert": share(in_sync["syncexpert"]),
            "xcorr_file_agrees_with_memory": share(in_sync["agrees_with_memory"]),
            "by_container": {
                k: {est: share(v) for est, v in row.items() if v} for k, row in in_sync_by_container.items()
            },
        },
        "lsec_matched_median": round(float(np.median(lsec_matched)), 4) if lsec_matched else None,
        "lsec_mismatched_median": round(float(np.median(lsec_mismatched)), 4) if lsec_mismatched else None,
        "lsec_matched_quartiles": np.percentile(lsec_matched, [25, 50, 75]).round(4).tolist() if lsec_matched else None,
        "lsec_mismatched_quartiles": (
            np.percentile(lsec_mismatched, [25, 50, 75]).round(4).tolist() if lsec_mismatched else None
        ),
        "probe_accuracy": probe_accuracy,
        "chance": {
            "xcorr_offset_acc": share(chance_hits["xcorr"]),
            "syncexpert_offset_acc": share(chance_hits["syncexpert"]),
            "event_f1_mean": nanmean(f1_mismatched),
        },
        "event_f1_mean": nanmean(f1_matched),
        "by_scene": {s: {est: share(v) for est, v in row.items() if v} for s, row in by_scene.items()},
        "held_out_voices": {est: share(v) for est, v in held_out_voice.items() if v},
        "settings": {
            "quick": args.quick,
            "clips": len(samples),
            "shifts": list(args.shifts),
            "sweep_containers": [f"{c}/{a}" for c, a in SWEEP_CONTAINERS],
            "first_seed": args.first_seed,
            "preset": preset.name,
        },
        "notes": notes,
        "seconds": round(time.time() - t_start, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sync measures: cross-correlation offset, events (F1, AV-Align), SyncExpert protocol, chance levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seedance.data.syncworld import make_sample
from seedance.errors import SeedanceError
from seedance.eval.events import av_align, event_f1, match_events, optical_flow, visual_event_times
from seedance.eval.offset import (
    as_frames,
    av_offset,
    impact_score,
    impact_trace,
    shift_audio,
    tracking_background,
    visual_trace,
)
from seedance.eval.sync import SyncClip, aggregate, evaluate_sync, mismatched_pairs
from seedance.eval.syncexpert import SyncExpert, load_syncexpert, mel_windows, score_sync, video_windows

FPS, SR = 16, 16_000


@pytest.fixture(scope="module")
def expert():
    return load_syncexpert()  # the shipped weights/syncexpert


@pytest.fixture(scope="module")
def clips():
    return {scene: make_sample(scene, 7, "tiny", "test") for scene in ("face", "bounce", "keys")}


# --------------------------------------------------------------------------- cross-correlation


@pytest.mark.parametrize("scene", ["face", "bounce", "keys"])
def test_xcorr_recovers_shifts_with_the_documented_sign(clips, scene):
    s = clips[scene]
    # In sync: exactly 0 (bench/eval_validation.py counts how often that holds on held-out clips).
    assert av_offset(s.frames, s.audio, FPS, SR).offset_frames == 0
    for d in (-5, 3):  # audio delayed by d frames reads +d (positive = audio late)
        r = av_offset(s.frames, shift_audio(s.audio, d, FPS, SR), FPS, SR)
        assert abs(r.offset_frames - d) <= 1, (scene, d, r.offset_frames)
        assert math.isclose(r.offset_ms, 1000 * r.offset_frames / FPS)
        assert r.confidence > 0
        assert r.shifts.tolist() == list(range(-15, 16)) and r.correlation.shape == (31,)


def test_xcorr_handles_silence_and_stillness():
    frames = np.zeros((32, 16, 16, 3), np.uint8)
    r = av_offset(frames, np.zeros(32000, np.float32), FPS, SR)
    assert r.offset_frames == 0 and r.confidence == 0.0
    with pytest.raises(SeedanceError, match="too short"):
        av_offset(frames[:3], np.zeros(3000, np.float32), FPS, SR)


def test_impacts_mark_the_bounce_not_the_fall(clips):
    s = clips["bounce"]
    trace = visual_trace(s.frames)
    contact_frames = {int(round(t * FPS)) for t in s.events}
    peaks = set(np.argsort(trace)[-len(contact_frames) :].tolist())
    # the strongest frames of the visual trace sit on (or next to) the ground-truth contacts
    near = sum(any(abs(p - c) <= 1 for c in contact_frames) for p in peaks)
    assert near >= len(peaks) - 1


@pytest.mark.parametrize("backdrop", ["plain", "striped"])
def test_an_object_that_comes_to_rest_marks_its_stop(backdrop):
    # A square falls and stops at frame 9, then rests for the rest of the clip. On a plain backdrop it is
    # found against the row colours and stays an object: its stop is a velocity change. On a striped
    # backdrop the temporal median holds it, so it vanishes from the foreground at its stop: the rule for
    # objects gone away from the edges marks the same frame.
    frames = np.zeros((32, 64, 64, 3), np.uint8)
    if backdrop == "striped":
        frames[:, :, ::8] = 90  # vertical stripes: every row holds two colours
        frames[:, :, 1::8] = 90
    rows = [4 + 5 * k for k in range(9)] + [56] * 23  # 4, 9, ..., 44, then at rest at 56 (the floor) from frame 9
    for k, r in enumerate(rows):
        frames[k, r : r + 8, 28:36] = 255
    background = tracking_background(as_frames(frames))
    assert background.shape == ((64, 1, 3) if backdrop == "plain" else (64, 64, 3))
    trace = impact_trace(frames)
    assert int(np.argmax(trace)) == 9 and trace[9] > 0.05
    assert trace[:8].max() < 0.03  # steady fall: no impact


def test_bounce_clips_whose_objects_come_to_rest_read_in_sync():
    # Held-out clips with one or two low-bounce objects that settle on the floor. Against the temporal
    # median (which holds the resting object) each read +1; against the plain backdrop they read 0.
    for seed in (1005, 1008, 1010, 1013, 1015):
        s = make_sample("bounce", seed, "tiny", "test")
        assert av_offset(s.frames, s.audio, FPS, SR).offset_frames == 0, seed


def test_talking_faces_whose_first_sound_is_a_burst_read_in_sync():
    # Held-out voices: the plosive's burst ("ten", "pie") comes a frame before the vowel opens the mouth.
    # Uncompressed, the burst's flux outweighed the opening and the clips read -1.
    for seed in (1014, 1017):
        s = make_sample("face", seed, "tiny", "test")
        assert av_offset(s.frames, s.audio, FPS, SR).offset_frames == 0, seed


def test_a_shape_that_grows_is_no_bouncing_object():
    # A mouth-like blob opens downward from a fixed top edge and closes again: its centroid moves down, stops
    # and moves up, as a bouncing object's would, but its area more than triples from frame to frame. Only a
    # blob that keeps its size is tracked as an object.
    frames = np.zeros((32, 64, 64, 3), np.uint8)
    heights = ([1] * 4 + [4, 16, 16, 4]) * 4
    for k, h in enumerate(heights):
        frames[k, 30 : 30 + h, 24:40] = 255
    assert impact_trace(frames).max() < 0.03
    rigid = np.zeros_like(frames)
    for k, r in enumerate([4 + 5 * k for k in range(9)] + [44 - 4 * k for k in range(1, 12)]):
        rigid[k, r : r + 8, 28:36] = 255  # falls, then bounces up at frame 8
    assert int(np.argmax(impact_trace(rigid))) == 8


def test_shift_audio_keeps_length_and_moves_content():
    y = np.zeros(16000, np.float32)
    y[1000] = 1.0
    assert int(np.argmax(shift_audio(y, 2, FPS, SR))) == 1000 + 2 * SR // FPS
    assert int(np.argmax(shift_audio(y, -1, FPS, SR))) == 1000 - SR // FPS
    assert shift_audio(y, 100, FPS, SR).shape == y.shape and not shift_audio(y, 100, FPS, SR).any()


# --------------------------------------------------------------------------- events


def test_match_events_is_one_to_one_within_tolerance():
    assert match_events([0.0, 1.0, 2.0], [0.05, 0.06, 2.2], tolerance_s=0.0625) == 1
    assert match_events([0.0, 1.0], [0.01, 0.02], tolerance_s=0.05) == 1  # one visual event serves one onset
    assert match_events([0.0, 1.0], [0.05, 1.07], tolerance_s=0.0625) == 1
    assert match_events([], [0.1], 0.1) == 0


def test_optical_flow_recovers_a_translation():
    from scipy import ndimage

    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.random((64, 64)), 2) * 255
    moved = ndimage.shift(img, (-2, 3), order=1, mode="nearest")
    flow = optical_flow(img, moved)
    assert abs(np.median(flow[0][12:-12, 12:-12]) - 3) < 0.3  # dx
    assert abs(np.median(flow[1][12:-12, 12:-12]) + 2) < 0.3  # dy


def test_visual_events_sit_on_the_bounces():
    # Every floor or wall contact of held-out bouncing-object clips has a visual event within one frame
    # (peaks of motion energy alone sat in the flights and found about half of them).
    for seed in range(1000, 1005):
        s = make_sample("bounce", seed, "tiny", "test")
        found = visual_event_times(s.frames, FPS)
        assert match_events(s.events, found, 1.0 / FPS) == len(s.events), (seed, s.events, found)


@pytest.mark.parametrize("backdrop", ["plain", "striped"])
def test_visual_onsets_are_departures_from_rest_not_returns(backdrop):
    # A key lights up at frame 4 and stays lit until frame 26 (most of the clip, so a temporal median would
    # hold it lit); a mouth-like patch opens at frame 10 and closes at frame 15. Onsets: 4 and 10 only.
    frames = np.full((32, 64, 64, 3), 40, np.uint8)
    if backdrop == "striped":
        frames[:, :, ::4] = 120
    frames[4:26, 8:20, 8:20] = 230
    frames[10:15, 40:50, 30:46] = 230
    onsets = np.round(visual_event_times(frames, FPS) * FPS).astype(int).tolist()
    assert onsets == [4, 10]


def test_talking_face_onsets_are_word_starts():
    # Held-out talking faces: each word opens the mouth once (its start) and closes it once (not an onset).
    found = total = 0
    for seed in range(1000, 1006):
        s = make_sample("face", seed, "tiny", "test")
        onsets = visual_event_times(s.frames, FPS)
        found += match_events(s.events, onsets, 1.0 / FPS)
        total += len(s.events)
        assert len(onsets) <= 2 * len(s.events), (seed, s.events, onsets)
    assert found == total


def test_precomputed_impacts_give_the_same_readings(clips):
    # score_clip tracks a clip's objects once and hands the impacts to both the offset and the onsets
    s = clips["bounce"]
    impacts = impact_score(s.frames)
    assert impacts.max() > 0  # the clip has bounces to share
    plain, shared = av_offset(s.frames, s.audio, FPS, SR), av_offset(s.frames, s.audio, FPS, SR, impacts=impacts)
    assert plain.offset_frames == shared.offset_frames and np.array_equal(plain.correlation, shared.correlation)
    events = event_f1(s.frames, s.audio, FPS, SR).to_dict()
    assert events == event_f1(s.frames, s.audio, FPS, SR, impacts=impacts).to_dict()
    with pytest.raises(SeedanceError, match="one value per frame"):
        av_offset(s.frames, s.audio, FPS, SR, impacts=impacts[:-1])


def test_event_f1_and_av_align_prefer_real_pairs(clips):
    s, other = clips["keys"], clips["bounce"]
    matched = event_f1(s.frames, s.audio, FPS, SR)
    mismatched = event_f1(s.frames, other.audio, FPS, SR)
    assert matched.score > 0.7 and matched.score > mismatched.score
    assert 0 <= av_align(s.frames, s.audio, FPS, SR).score <= 1
    silent = event_f1(np.zeros((32, 16, 16, 3), np.uint8), np.zeros(32000, np.float32), FPS, SR)
    assert math.isnan(silent.score) and silent.to_dict()["score"] is None


# --------------------------------------------------------------------------- SyncExpert


def test_syncexpert_windows_and_protocol_shapes():
    model = SyncExpert(video_widths=(8, 8), audio_widths=(8, 8), embed_dim=8).eval()
    frames = torch.rand(32, 3, 48, 48)
    w = video_windows(frames, torch.tensor([0, 10, 31]), 5)
    assert w.shape == (3, 5, 3, 48, 48)
    assert torch.equal(w[0, 0], frames[0]) and torch.equal(w[2, 4], frames[31])  # edges repeat
    mel = torch.randn(64, 200)
    mw = mel_windows(mel, torch.tensor([0.0, 1.0, 5.0]), 100.0, 20)
    assert mw.shape == (3, 64, 20)
    assert torch.equal(mw[1], mel[:, 90:110])  # centred on 1.0 s
    assert float(mw[2].max()) == pytest.approx(math.log(1e-5))  # silence beyond the clip
    s = make_sample("keys", 1, "tiny", "test")
    score = score_sync(model, s.frames, s.audio, FPS, SR)
    assert score.distances.shape == (31,)
    assert score.lse_d == pytest.approx(score.distances.min())
    assert score.lse_c == pytest.approx(np.median(score.distances) - score.distances.min())
    assert score.offset_ms == pytest.approx(score.shifts_ms[int(np.argmin(score.distances))])


def test_shipped_syncexpert_reads_sync_and_its_absence(expert, clips):
    for scene, s in clips.items():
        assert score_sync(expert, s.frames, s.audio, FPS, SR).offset_frames == 0, scene
        late = score_sync(expert, s.frames, shift_audio(s.audio, 5, FPS, SR), FPS, SR)
        assert abs(late.offset_frames - 5) <= 1, scene
    matched = [score_sync(expert, s.frames, s.audio, FPS, SR).lse_c for s in clips.values()]
    pairs = mismatched_pairs([SyncClip(k, s.frames, s.audio, FPS, SR) for k, s in clips.items()])
    mismatched = [score_sync(expert, c.frames, c.audio, FPS, SR).lse_c for c in pairs]
    assert min(matched) > max(mismatched)


def test_syncexpert_scores_other_rates_and_crops(expert, clips):
    s = clips["face"]
    # the same clip at 32 fps (every frame twice) and 48 kHz reads in sync, offsets in the clip's own frames
    frames32 = np.repeat(s.frames, 2, axis=0)
    from scipy.signal import resample_poly

    audio48 = resample_poly(s.audio, 3, 1).astype(np.float32)
    r = score_sync(expert, frames32, shift_audio(audio48, 8, 32, 48_000), 32, 48_000)
    assert abs(r.offset_frames - 8) <= 2 and abs(r.offset_ms - 250) <= 63
    from seedance.data.syncworld.face import mouth_box

    x0, y0, x1, y1 = mouth_box(__import__("seedance.config", fromlist=["x"]).get_preset("tiny"))
    crop = (max(0, y0 - 8), max(0, x0 - 4), min(64, y1 + 4), min(64, x1 + 4))
    assert score_sync(expert, s.frames, s.audio, FPS, SR, crop=crop).offset_frames == 0
    with pytest.raises(SeedanceError, match="outside"):
        score_sync(expert, s.frames, s.audio, FPS, SR, crop=(0, 0, 100, 100))


def test_syncexpert_save_and_load_round_trip(tmp_path, expert, clips):
    from seedance.models.io import load_component

    expert.save_pretrained(tmp_path / "se")
    again = load_component(SyncExpert, tmp_path / "se").eval()
    s = clips["bounce"]
    a = score_sync(expert, s.frames, s.audio, FPS, SR)
    b = score_sync(again, s.frames, s.audio, FPS, SR)
    assert np.allclose(a.distances, b.distances, atol=1e-5)


# --------------------------------------------------------------------------- set-level report


def test_evaluate_sync_reports_chance_beside_the_aggregate(expert, clips):
    given = [SyncClip(k, s.frames, s.audio, FPS, SR) for k, s in clips.items()]
    report = evaluate_sync(given, expert)
    assert report["schema"] == "seedance.eval.sync/1"
    agg, chance = report["aggregate"], report["chance"]
    assert agg["n_clips"] == chance["n_clips"] == 3
    assert agg["syncexpert_within_1_frame"] == 1.0
    assert agg["lse_c_mean"] > chance["lse_c_mean"]
    assert agg["event_f1_mean"] > chance["event_f1_mean"]
    single = evaluate_sync(given[:1], None)
    assert single["chance"] is None and "at least 2" in single["chance_note"]
    assert aggregate([{"ok": False}]) is None


def test_mismatched_pairs_resample_and_fit_the_audio():
    a = SyncClip("a", np.zeros((32, 8, 8, 3), np.uint8), np.ones(32000, np.float32), 16, 16000)
    b = SyncClip("b", np.zeros((16, 8, 8, 3), np.uint8), np.full(48000, 0.5, np.float32), 16, 48000)
    pa, pb = mismatched_pairs([a, b])
    assert pa.audio.shape == (32000,)  # b's 1 s of audio at 16 kHz, then silence to a's 2 s
    assert np.allclose(pa.audio[1000:15000], 0.5, atol=1e-3) and not pa.audio[17000:].any()
    assert pb.audio.shape == (48000,) and np.allclose(pb.audio[1000:47000], 1.0, atol=1e-3)  # resampled a

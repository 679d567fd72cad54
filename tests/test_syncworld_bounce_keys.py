"""SyncWorld bouncing objects and keys / drum pads: shapes, determinism, the split, and sync.

The sync tests measure events independently of the generator's own bookkeeping:
audio onsets with librosa's onset detector, visual events from the pixels
(an object newly touching the floor or a wall; a key region newly turning
towards its light colour), and compare both with the ground-truth event times
within one video frame.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from seedance.config import ClipPreset, get_preset
from seedance.data.syncworld import bounce, keys, make_sample, sample_caption, sample_labels
from seedance.data.syncworld.common import BACKGROUNDS, COLORS, scene_rng
from seedance.data.syncworld.synth import midi_to_hz

SCENES = ("bounce", "keys")
N_SYNC_CLIPS = 12  # test-split clips per family for the sync checks
ODD_PRESET = ClipPreset(name="odd", height=48, width=80, fps=12, duration_s=1.5)


def _match(detected: list[float], truth: list[float], tol: float) -> tuple[int, int, int]:
    """Greedy one-to-one matching within tol: (matched, detected, true)."""
    used: set[int] = set()
    matched = 0
    for t in truth:
        free = [j for j, d in enumerate(detected) if j not in used and abs(d - t) <= tol]
        if free:
            used.add(min(free, key=lambda j: abs(detected[j] - t)))
            matched += 1
    return matched, len(detected), len(truth)


def _precision_recall(counts: list[tuple[int, int, int]]) -> tuple[float, float]:
    m, d, t = (sum(c[i] for c in counts) for i in range(3))
    assert t > 0
    return (m / d if d else 0.0), m / t


def _audio_onsets(audio: np.ndarray, preset: ClipPreset) -> list[float]:
    """librosa onsets (s), on the project's analysis grid (the preset's hop and FFT size)."""
    env = librosa.onset.onset_strength(y=audio, sr=preset.sample_rate, hop_length=preset.hop_length, n_fft=preset.n_fft)
    return list(
        librosa.onset.onset_detect(
            onset_envelope=env, sr=preset.sample_rate, hop_length=preset.hop_length, units="time"
        )
    )


def _contact_frames(frames: np.ndarray, background: str, floor: int) -> list[int]:
    """Frames where some object newly touches the floor (the row above it) or a side wall (the edge columns)."""
    fr = frames.astype(np.int32)
    bg = np.asarray(BACKGROUNDS[background])

    def fg(px: np.ndarray) -> np.ndarray:
        return np.abs(px - bg).sum(-1) > 40

    touch = np.concatenate([fg(fr[:, floor - 1, :]), fg(fr[:, :floor, 0]), fg(fr[:, :floor, -1])], axis=1)  # [F,P]
    new = (touch[1:] & ~touch[:-1]).any(axis=1)
    return [int(f) + 1 for f in np.flatnonzero(new)]


def _light_levels_from_pixels(frames: np.ndarray, labels: dict, preset: ClipPreset) -> np.ndarray:
    """[F, K] how far each key region's mean colour has moved from the key colour towards the light colour."""
    key = np.asarray(COLORS[labels["key_color"]], dtype=np.float64)
    light = np.asarray(COLORS[labels["light_color"]], dtype=np.float64)
    d = light - key
    fr = frames.astype(np.float64)
    cols = [
        ((fr[:, y0:y1, x0:x1].mean(axis=(1, 2)) - key) @ d) / (d @ d)
        for x0, y0, x1, y1 in keys.key_boxes(labels, preset)
    ]
    return np.stack(cols, axis=1)


# ----------------------------------------------------------------------------- shapes and determinism


@pytest.mark.parametrize("scene", SCENES)
def test_same_seed_same_clip_other_seed_other_clip(scene):
    a = make_sample(scene, 7, "tiny", "train")
    b = make_sample(scene, 7, "tiny", "train")
    c = make_sample(scene, 8, "tiny", "train")
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert a.events == b.events and a.caption == b.caption and a.labels == b.labels
    assert np.array_equal(a.visual, b.visual)
    assert not np.array_equal(a.audio, c.audio) and not np.array_equal(a.frames, c.frames)
    # render() alone is a function of (labels, preset, rng state)
    module = bounce if scene == "bounce" else keys
    r1 = module.render(a.labels, get_preset("tiny"), scene_rng(scene, 7, "train", "render"))
    r2 = module.render(a.labels, get_preset("tiny"), scene_rng(scene, 7, "train", "render"))
    assert np.array_equal(r1.frames, r2.frames) and np.array_equal(r1.audio, r2.audio) and r1.events == r2.events


@pytest.mark.parametrize("scene", SCENES)
@pytest.mark.parametrize("preset_name", ["tiny", "base", "odd"])
def test_shapes_ranges_and_event_spacing(scene, preset_name):
    preset = ODD_PRESET if preset_name == "odd" else get_preset(preset_name)
    for seed in range(2 if preset_name == "base" else 4):
        s = make_sample(scene, seed, preset, "test" if seed % 2 else "train")
        assert s.frames.dtype == np.uint8 and s.frames.shape == (preset.num_frames, preset.height, preset.width, 3)
        assert s.audio.dtype == np.float32 and s.audio.shape == (preset.num_samples,)
        assert np.all(np.abs(s.audio) <= 1.0) and np.max(np.abs(s.audio)) > 0.1
        assert s.visual.dtype == np.float32 and s.visual.shape == (preset.num_frames,)
        ev = np.asarray(s.events)
        assert ev.size >= 1 and np.all(np.diff(ev) > 0)
        assert ev[0] >= 0.2 and ev[-1] < preset.duration_s - 0.09
        assert np.all(np.diff(ev) >= 3.0 / preset.fps - 1e-9), "events closer than 3 frames"
        # the visual trace is non-zero exactly at the frames nearest the events
        expected = np.zeros(preset.num_frames, dtype=bool)
        expected[np.minimum(np.round(ev * preset.fps).astype(int), preset.num_frames - 1)] = True
        assert np.array_equal(s.visual > 0, expected)


@pytest.mark.parametrize("scene", SCENES)
def test_event_timing_is_measurable_over_many_clips(scene):
    """First event after 0.2 s, none in the last 0.09 s, any two at least 3 frames apart, in every clip."""
    preset = get_preset("tiny")
    module = bounce if scene == "bounce" else keys
    for seed in range(150):
        split = "test" if seed % 2 else "train"
        labels = sample_labels(scene, seed, split)
        ev = np.asarray(module.render(labels, preset, scene_rng(scene, seed, split, "render")).events)
        assert ev.size >= 1 and ev[0] >= 0.2 and ev[-1] < preset.duration_s - 0.09, (seed, ev)
        assert np.all(np.diff(ev) >= 3.0 / preset.fps - 1e-9), (seed, ev)


# ----------------------------------------------------------------------------- the split


def test_bounce_split_holds_out_shape_material_colour_combinations():
    train = [sample_labels("bounce", seed, "train") for seed in range(300)]
    test = [sample_labels("bounce", seed, "test") for seed in range(300)]
    train_combos = set().union(*(bounce.combos(lab) for lab in train))
    test_held = {c for lab in test for c in bounce.combos(lab) if bounce.is_test_combo(*c)}
    assert not any(bounce.is_test_combo(*c) for c in train_combos), "a train clip shows a held-out combination"
    assert all(any(bounce.is_test_combo(*c) for c in bounce.combos(lab)) for lab in test)
    assert len(test_held) >= 20 and not (train_combos & test_held)
    # the factors themselves all appear in training; only their combinations are new
    assert {lab["material"] for lab in test} <= {lab["material"] for lab in train}
    assert {c for lab in test for c in lab["colors"]} <= {c for lab in train for c in lab["colors"]}


def test_keys_split_holds_out_instrument_light_colour_combinations():
    train = {(lab["instrument"], lab["light_color"]) for lab in (sample_labels("keys", s, "train") for s in range(300))}
    test = {(lab["instrument"], lab["light_color"]) for lab in (sample_labels("keys", s, "test") for s in range(300))}
    assert len(test) >= 5 and not (train & test)
    assert {i for i, _ in test} <= {i for i, _ in train} and {c for _, c in test} <= {c for _, c in train}


# ----------------------------------------------------------------------------- sync: audio and pixels


@pytest.mark.parametrize("scene", SCENES)
def test_audio_onsets_match_events_within_one_frame(scene):
    preset = get_preset("tiny")
    counts = []
    for seed in range(N_SYNC_CLIPS):
        s = make_sample(scene, seed, preset, "test")
        counts.append(_match(_audio_onsets(s.audio, preset), s.events, 1.0 / preset.fps))
    precision, recall = _precision_recall(counts)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_bounce_contact_frames_from_pixels_match_events():
    preset = get_preset("tiny")
    counts = []
    for seed in range(N_SYNC_CLIPS):
        s = make_sample("bounce", seed, preset, "test")
        frames = _contact_frames(s.frames, s.labels["background"], bounce.floor_top(preset))
        counts.append(_match([f / preset.fps for f in frames], s.events, 1.0 / preset.fps))
    precision, recall = _precision_recall(counts)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_key_lights_from_pixels_match_events():
    preset = get_preset("tiny")
    counts = []
    for seed in range(N_SYNC_CLIPS):
        s = make_sample("keys", seed, preset, "test")
        rise = np.diff(_light_levels_from_pixels(s.frames, s.labels, preset), axis=0, prepend=0.0)
        frames = np.flatnonzero((rise > 0.3).any(axis=1))
        counts.append(_match([f / preset.fps for f in frames], s.events, 1.0 / preset.fps))
    precision, recall = _precision_recall(counts)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_higher_notes_light_up_further_right():
    """From the pixels: where the picture changes at each note-on, against the note's pitch."""
    preset = get_preset("tiny")
    checked = 0
    for seed in range(N_SYNC_CLIPS):
        s = make_sample("keys", seed, preset, "test")
        xs, pitches = [], []
        for j, t in enumerate(s.events):
            f = int(round(t * preset.fps))
            change = np.abs(s.frames[f].astype(np.int32) - s.frames[f - 1].astype(np.int32)).sum(-1)  # [H,W]
            turned_on = change * (np.abs(s.frames[f].astype(np.int32) - COLORS[s.labels["key_color"]]).sum(-1) > 30)
            cols = turned_on.sum(axis=0)
            xs.append(float((cols * np.arange(preset.width)).sum() / cols.sum()))
            pitches.append(s.labels["notes"][j % len(s.labels["notes"])])  # the phrase loops
        for a in range(len(xs)):
            for b in range(len(xs)):
                if pitches[a] < pitches[b]:
                    assert xs[a] <= xs[b] + 0.5, (seed, pitches, xs)
                    checked += 1
                if pitches[a] == pitches[b]:
                    assert abs(xs[a] - xs[b]) < 0.5
    assert checked >= 10


# ----------------------------------------------------------------------------- sound content


def test_impact_sound_follows_material():
    """Glass rings high and long, rubber thuds low: spectral centroid and decay from the same scene."""
    preset = get_preset("tiny")
    labels = {
        "shape": "circle",
        "color": "red",
        "colors": ["red"],
        "count": 1,
        "size": "medium",
        "bounciness": "low",
        "background": "black",
    }
    stats = {}
    for material in ("glass", "rubber", "metal", "wood"):
        r = bounce.render({**labels, "material": material}, preset, np.random.default_rng(0))
        start = int(round(r.events[0] * preset.sample_rate))
        hit = r.audio[start : start + 2400]  # 150 ms of the first impact
        spec = np.abs(np.fft.rfft(hit))
        freqs = np.fft.rfftfreq(hit.size, 1.0 / preset.sample_rate)
        late = np.sqrt(np.mean(hit[1600:2400] ** 2)) / np.sqrt(np.mean(hit[:400] ** 2))
        stats[material] = (float((spec * freqs).sum() / spec.sum()), float(late))
    assert stats["glass"][0] > 2 * stats["rubber"][0]
    assert stats["metal"][1] > stats["wood"][1] and stats["glass"][1] > stats["rubber"][1]


@pytest.mark.parametrize("instrument", ["piano", "marimba", "harp", "glockenspiel", "synth"])
def test_notes_sound_at_their_pitch(instrument):
    preset = get_preset("tiny")
    pitch = 60 if instrument != "glockenspiel" else 76
    sound = keys._note_sound(instrument, pitch, 8000, preset.sample_rate, np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(sound[400:8000] * np.hanning(7600)))
    peak = np.fft.rfftfreq(7600, 1.0 / preset.sample_rate)[np.argmax(spec)]
    assert abs(12 * np.log2(peak / midi_to_hz(pitch))) < 0.5, (instrument, peak)


# ----------------------------------------------------------------------------- captions


@pytest.mark.parametrize("scene", SCENES)
def test_captions_name_the_factors_in_varied_wording(scene):
    captions = []
    for seed in range(60):
        text, labels = sample_caption(scene, seed, "train")
        captions.append(text)
        assert labels["background"] in text
        if scene == "bounce":
            assert all(c in text for c in labels["colors"])
            assert any(w in text for w in bounce._MATERIAL_WORDS[labels["material"]])
            assert any(w in text.split() for w in ("one", "two", "three", "a", "an"))
        else:
            assert labels["key_color"] in text and labels["light_color"] in text
            assert any(w in text for w in keys._INSTRUMENT_WORDS[labels["instrument"]])
    # several templates: the first three words vary a lot
    assert len({" ".join(c.split()[:3]) for c in captions}) >= 15
    # the same labels get different wordings from different caption rngs
    labels = sample_labels(scene, 0, "train")
    module = bounce if scene == "bounce" else keys
    assert len({module.caption(labels, np.random.default_rng(i)) for i in range(20)}) >= 5

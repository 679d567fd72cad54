"""SyncWorld talking face and the espeak-ng speech under it: determinism, shapes, the split, and sync.

The sync tests measure events independently of the generator's bookkeeping:
audio onsets with librosa's onset detector, visual events from the pixels (the
frames where the dark inside of the mouth newly appears), and compare both with
the ground-truth word onsets within one video frame.
"""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from seedance.config import ClipPreset, get_preset
from seedance.data.syncworld import face, make_sample, sample_caption, sample_labels
from seedance.data.syncworld.common import BACKGROUNDS, COLORS, scene_rng
from seedance.data.syncworld.speech import clear_cache, synthesize
from seedance.errors import SeedanceError

N_SYNC_CLIPS = 12  # test-split clips for the sync checks


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
    """librosa onsets (s) on the preset's analysis grid. Speech has many small spectral changes inside a
    word, so peaks must stand 0.2 above the local mean and be 100 ms apart (librosa's defaults: 0.07, 10 ms)."""
    env = librosa.onset.onset_strength(y=audio, sr=preset.sample_rate, hop_length=preset.hop_length, n_fft=preset.n_fft)
    wait = int(round(0.1 * preset.sample_rate / preset.hop_length))
    onsets = librosa.onset.onset_detect(
        onset_envelope=env, sr=preset.sample_rate, hop_length=preset.hop_length, units="time", delta=0.2, wait=wait
    )
    return [float(t) for t in onsets]


def _mouth_area(frames: np.ndarray, preset: ClipPreset) -> np.ndarray:
    """[F] pixels of the mouth's dark inside, counted in the region the mouth can occupy."""
    x0, y0, x1, y1 = face.mouth_box(preset)
    box = frames[:, y0:y1, x0:x1].astype(np.int32)
    return (np.abs(box - np.asarray(face.MOUTH_INTERIOR)).sum(-1) < 60).sum(axis=(1, 2)).astype(np.float64)


def _mouth_openings(frames: np.ndarray, preset: ClipPreset) -> list[int]:
    """Frames where the mouth newly opens: its inside grows past 10% of the clip's widest opening."""
    area = _mouth_area(frames, preset)
    is_open = area > 0.1 * max(area.max(), 1.0)
    return [int(f) + 1 for f in np.flatnonzero(is_open[1:] & ~is_open[:-1])]


# ----------------------------------------------------------------------------- speech


def test_synthesize_gives_audio_phonemes_and_words_at_the_requested_rate():
    s16 = synthesize("tea for two", "en-us", 170, 50, sample_rate=16_000)
    s22 = synthesize("tea for two", "en-us", 170, 50, sample_rate=22_050)
    assert s16.audio.dtype == np.float32 and s16.sample_rate == 16_000
    assert abs(s16.duration_s - s22.duration_s) < 1e-3  # resampled, not cut or stretched
    assert 0.3 < s16.duration_s < 2.0 and np.max(np.abs(s16.audio)) > 0.05
    assert [w for _, w in s16.words] == ["tea", "for", "two"]
    word_times = [t for t, _ in s16.words]
    assert word_times == sorted(word_times) and word_times[0] < 0.05 and word_times[-1] > 0.2
    phoneme_times = [t for t, _ in s16.phonemes]
    assert phoneme_times == sorted(phoneme_times) and len(s16.phonemes) >= 6
    assert {"t", "f"} <= {name.lstrip("',") for _, name in s16.phonemes}
    with pytest.raises(ValueError):
        s16.audio[0] = 1.0  # cached arrays are read-only


def test_synthesis_does_not_depend_on_what_was_spoken_before():
    clear_cache()
    first = synthesize("cool", "en+f3", 130, 30).audio.copy()
    clear_cache()
    for word, voice in [("hello there", "en-us"), ("go", "en-us+m7"), ("zoo", "en+f5")]:
        synthesize(word, voice, 210, 70)
    clear_cache()
    assert np.array_equal(first, synthesize("cool", "en+f3", 130, 30).audio)


def _f0(audio: np.ndarray, sr: int = 16_000) -> float:
    """Median fundamental frequency (Hz) over the loud frames."""
    x = np.asarray(audio, np.float64)
    f0 = librosa.yin(x, fmin=60, fmax=500, sr=sr, frame_length=1024, hop_length=160)
    rms = librosa.feature.rms(y=x, frame_length=1024, hop_length=160)[0][: len(f0)]
    return float(np.median(f0[rms > 0.5 * rms.max()]))


def test_voice_rate_and_pitch_change_the_sound():
    base = synthesize("see", "en-us", 170, 50)
    assert synthesize("see", "en-us", 130, 50).duration_s > base.duration_s + 0.03  # slower = longer
    for voice in ("en-us", "en+f3"):
        low, mid, high = (_f0(synthesize("see", voice, 170, p).audio) for p in (20, 50, 80))
        assert low < mid < high and high > 1.4 * low, (voice, low, mid, high)
    assert _f0(synthesize("see", "en+f3", 170, 50).audio) > 1.5 * _f0(base.audio)  # female voice: higher
    assert not np.array_equal(synthesize("see", "en-us+f2", 170, 50).audio[:2000], base.audio[:2000])


def _class_f0(voice: str, pitch: str) -> float:
    setting = face.pitch_setting(voice, pitch)
    return float(np.median([_f0(synthesize(w, voice, 170, setting).audio) for w in ("go", "tea", "sun")]))


def test_each_pitch_class_of_a_held_out_male_voice_sits_in_the_training_voices_band():
    # A caption's "deep voice" must sound deep: every held-out male voice speaks each class within the
    # F0 range the training male voices speak it in (en-us+m8 at the plain settings was a class low).
    train_males = [v for v in face.TRAIN_VOICES if face.VOICES[v][0] == "male"]
    for pitch in face.PITCHES:
        band = [_class_f0(v, pitch) for v in train_males]
        lo, hi = 0.95 * min(band), 1.05 * max(band)
        for voice in sorted(face.TEST_VOICES):
            if face.VOICES[voice][0] == "male":
                assert lo <= _class_f0(voice, pitch) <= hi, (voice, pitch, _class_f0(voice, pitch), lo, hi)


@pytest.mark.parametrize(
    "args",
    [("", "en-us", 170, 50), ("hi", "xx-nope", 170, 50), ("hi", "en-us+nope", 170, 50), ("hi", "en-us", 20, 50),
     ("hi", "en-us", 170, 101)],
)  # fmt: skip
def test_bad_speech_arguments_raise_one_line_errors(args):
    with pytest.raises(SeedanceError) as err:
        synthesize(*args)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- shapes and determinism


def test_same_seed_same_clip_other_seed_other_clip():
    a = make_sample("face", 7, "tiny", "train")
    b = make_sample("face", 7, "tiny", "train")
    c = make_sample("face", 8, "tiny", "train")
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert np.array_equal(a.visual, b.visual)
    assert a.events == b.events and a.caption == b.caption and a.labels == b.labels
    assert not np.array_equal(a.audio, c.audio) and not np.array_equal(a.frames, c.frames)
    r = face.render(a.labels, get_preset("tiny"), scene_rng("face", 7, "train", "render"))
    assert np.array_equal(r.frames, a.frames) and np.array_equal(r.audio, a.audio) and r.events == a.events


@pytest.mark.parametrize("preset_name", ["tiny", "base"])
def test_shapes_ranges_and_labels(preset_name):
    preset = get_preset(preset_name)
    for seed in range(3):
        s = make_sample("face", seed, preset, "test" if seed % 2 else "train")
        assert s.frames.dtype == np.uint8 and s.frames.shape == (preset.num_frames, preset.height, preset.width, 3)
        assert s.audio.dtype == np.float32 and s.audio.shape == (preset.num_samples,)
        assert np.all(np.abs(s.audio) <= 1.0) and np.max(np.abs(s.audio)) > 0.5
        assert s.visual.dtype == np.float32 and s.visual.shape == (preset.num_frames,)
        assert s.visual.min() >= 0.0 and s.visual.max() <= 1.0 and s.visual.max() > 0.3
        ev = np.asarray(s.events)
        assert len(ev) == len(s.labels["words"]) and np.all(np.diff(ev) >= face.GAP_MIN_S)
        assert ev[0] >= face.LEAD_MIN_S - 1e-6 and ev[-1] < preset.duration_s - face.TAIL_MIN_S
        for key in ("words", "voice", "rate", "pitch", "face_color", "lip_color", "background"):
            assert key in s.labels
        assert s.labels["voice"] in face.VOICES and set(s.labels["words"]) <= set(face.VOCABULARY)
        # the picture shows the drawn colours
        assert np.any(np.all(s.frames[0] == COLORS[s.labels["face_color"]], axis=-1))
        assert np.any(np.all(s.frames[0] == BACKGROUNDS[s.labels["background"]], axis=-1))


def test_the_mouth_drawn_follows_the_visual_trace_and_shuts_between_words():
    preset = get_preset("tiny")
    for seed in range(4):
        s = make_sample("face", seed, preset, "train")
        area = _mouth_area(s.frames, preset)
        assert np.corrcoef(area, s.visual)[0, 1] > 0.9
        for a, b in zip(s.events, s.events[1:]):
            between = area[int(np.ceil(a * preset.fps)) : int(np.floor(b * preset.fps)) + 1]
            assert between.max() > 0 and between.min() == 0, "the mouth must open for a word and shut before the next"
        assert area[0] == 0 and area[-1] == 0


def test_mouth_targets_follow_the_phoneme_classes():
    closed = [face.mouth_target(p)[0] for p in ("m", "b", "p", "_", "_:")]
    assert closed == [0.0] * 5
    assert face.mouth_target("'a")[0] > face.mouth_target("E")[0] > face.mouth_target("i:")[0] > 0.3
    assert face.mouth_target("f")[0] < face.mouth_target("t")[0] < face.mouth_target("'E")[0]
    assert face.mouth_target("u:")[1] == 1.0 and face.mouth_target("i:")[1] == 0.0


def test_too_short_a_clip_is_a_clear_error():
    labels = sample_labels("face", 0, "train")
    labels = {**labels, "words": list(face.VOCABULARY[:3]), "rate": "slow"}
    with pytest.raises(SeedanceError, match="needs at least"):
        face.render(labels, get_preset("tiny").with_duration(0.8), np.random.default_rng(0))


# ----------------------------------------------------------------------------- split and captions


def test_test_voices_never_appear_in_train_and_the_test_split_holds_them():
    train = [sample_labels("face", seed, "train") for seed in range(300)]
    test = [sample_labels("face", seed, "test") for seed in range(300)]
    assert not {lab["voice"] for lab in train} & face.TEST_VOICES
    assert {lab["voice"] for lab in train} == set(face.TRAIN_VOICES)
    assert face.TEST_VOICES <= {lab["voice"] for lab in test}
    assert all(face.is_test(lab) for lab in test) and not any(face.is_test(lab) for lab in train)
    # held-out combinations of train voices with face colours are new combinations, not new factors
    combos_train = {(lab["voice"], lab["face_color"]) for lab in train}
    combos_test = {(lab["voice"], lab["face_color"]) for lab in test if lab["voice"] not in face.TEST_VOICES}
    assert len(combos_test) >= 5 and not combos_train & combos_test
    assert {c for _, c in combos_test} <= {lab["face_color"] for lab in train}


def test_captions_name_the_factors_in_varied_wording():
    seen = set()
    for seed in range(40):
        cap, lab = sample_caption("face", seed, "train")
        assert f"'{lab['text']}'" in cap
        assert lab["face_color"] in cap and lab["lip_color"] in cap and lab["background"] in cap
        gender_words = ("male", "man's") if lab["gender"] == "male" else ("female", "woman's")
        assert any(w in cap for w in gender_words)
        assert lab["voice"] not in cap  # the raw voice id stays in the labels
        seen.add(cap.split(" ")[0])
    assert len(seen) >= 4


# ----------------------------------------------------------------------------- sync: audio and pixels


def test_audio_onsets_match_word_onsets_within_one_frame():
    preset = get_preset("tiny")
    counts = []
    for seed in range(N_SYNC_CLIPS):
        s = make_sample("face", seed, preset, "test")
        counts.append(_match(_audio_onsets(s.audio, preset), s.events, 1.0 / preset.fps))
    precision, recall = _precision_recall(counts)
    print(f"face audio onsets vs word onsets: precision {precision:.3f} recall {recall:.3f}")
    assert sum(c[2] for c in counts) >= 2 * N_SYNC_CLIPS * 0.75  # enough events to judge
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


@pytest.mark.parametrize("preset_name", ["tiny", "base"])
def test_mouth_openings_from_pixels_match_word_onsets_within_one_frame(preset_name):
    preset = get_preset(preset_name)
    counts = []
    for seed in range(N_SYNC_CLIPS if preset_name == "tiny" else 6):
        s = make_sample("face", seed, preset, "test")
        openings = [f / preset.fps for f in _mouth_openings(s.frames, preset)]
        counts.append(_match(openings, s.events, 1.0 / preset.fps))
    precision, recall = _precision_recall(counts)
    print(f"face mouth openings ({preset_name}) vs word onsets: precision {precision:.3f} recall {recall:.3f}")
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)

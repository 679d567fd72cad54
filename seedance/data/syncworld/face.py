"""SyncWorld talking face: a cartoon face speaks short phrases with real espeak-ng speech.

Each word is synthesized on its own (cached, see `speech.py`), trimmed to its
audible part and placed in the clip after a pause, so every word starts with a
clean energy onset after silence and the mouth is shut between words. The mouth
opening follows the word's phoneme timings from espeak: open vowels open it
wide, close vowels less, m/b/p shut it, f/v and w nearly shut it, other
consonants leave it half open; the step curve is smoothed like a jaw with some
inertia and each video frame shows its average over the frame's time span.

Ground truth:
    events  word onsets in seconds (the first audible sample of each word)
    visual  mouth opening per frame in [0, 1] (0 = lips together)

Factors: the words (1-3 from a small vocabulary of one-syllable words chosen so
each has a single clear onset), the voice (espeak language + variant; some
voices only in the test split), speaking rate, pitch, face / lip / background
colours. Held-out voice x face-colour combinations also go to the test split.
"""

from __future__ import annotations

import functools

import numpy as np

from seedance.config import ClipPreset
from seedance.data.syncworld.common import (
    BACKGROUNDS,
    COLORS,
    Rendered,
    draw_for_split,
    held_out,
    peak_normalise,
    pick,
)
from seedance.data.syncworld.speech import synthesize
from seedance.errors import SeedanceError

# One-syllable words that end open (no final stop burst, which would be a second onset), start without a
# voiced lip closure (the lips stay shut through b's audible voicing), and in which librosa's onset
# detector (peak picking with delta 0.2, wait 100 ms) finds one onset, at the start, in >= 94% of the
# voice x rate x pitch settings below (measured on isolated words when the list was chosen).
VOCABULARY = (
    "go", "day", "tea", "toy", "key", "two", "car", "oh", "cow", "ten", "all", "owl", "pie", "shoe",
    "guy", "see", "sun", "girl", "zoo", "tie", "pay", "new", "pool", "pin", "tree", "hey", "tall", "cool",
)  # fmt: skip

# espeak voice id -> (gender, accent). Variants m*/f* are espeak's male/female voice variants.
VOICES: dict[str, tuple[str, str]] = {
    "en-us": ("male", "American"),
    "en-us+m3": ("male", "American"),
    "en-us+f2": ("female", "American"),
    "en-us+f4": ("female", "American"),
    "en+m1": ("male", "British"),
    "en+m4": ("male", "British"),
    "en+f1": ("female", "British"),
    "en+f3": ("female", "British"),
    "en-029+m6": ("male", "Caribbean"),
    # held out: only in the test split
    "en-us+m7": ("male", "American"),
    "en-us+m8": ("male", "American"),
    "en+f5": ("female", "British"),
}
TEST_VOICES = frozenset({"en-us+m7", "en-us+m8", "en+f5"})
TRAIN_VOICES = tuple(v for v in VOICES if v not in TEST_VOICES)

RATES = {"slow": 130, "normal": 170, "fast": 210}  # words per minute
PITCHES = {"low": 30, "medium": 50, "high": 70}  # espeak pitch 0..100
# espeak's en-us+m8 speaks one pitch class below the other male voices at every setting (median F0 of
# 8 words at rate 170 with pyin: 62 / 75 / 93 Hz at 30 / 50 / 70, the other male voices 63-75 / 81-94 /
# 102-117), so its "medium" sounded like their "low" and its labels contradicted its sound. Its
# settings are raised so that low, medium and high name the same F0 bands for every male voice
# (70 / 87 / 109 Hz, the training male voices' means 70 / 88 / 111). It is a test-split voice only.
PITCH_OFFSETS = {"en-us+m8": 14}

# Longest audible word (s) per rate over VOCABULARY x VOICES x PITCHES (measured), and the layout
# constants: how many words fit in REFERENCE_S, the shortest clip a face sample must fit into.
MAX_WORD_S = {130: 0.68, 170: 0.51, 210: 0.4}
REFERENCE_S = 2.0
LEAD_MIN_S = 0.12  # silence before the first word
GAP_MIN_S = 0.2  # silence between words: the onset detector and the mouth both need it
TAIL_MIN_S = 0.06  # silence after the last word

MOUTH_INTERIOR = (45, 8, 22)  # colour of the open mouth's inside (the tests measure the mouth by it)
_EYE_WHITE = (245, 245, 240)
# Geometry, as fractions of the frame: the face centre moves by up to _JITTER per clip; the mouth sits
# _MOUTH_DY below the face centre, _MOUTH_HALF_W wide each side, inside open up to _MOUTH_MAX_OPEN each way.
_JITTER = 0.02
_JAW_SMOOTH_S = 0.012  # std of the Gaussian that smooths the mouth targets (jaw inertia)
_MOUTH_DY, _MOUTH_HALF_W, _MOUTH_MAX_OPEN = 0.2, 0.16, 0.095
_PUPIL = (20, 20, 30)

# ----------------------------------------------------------------------------- phonemes -> mouth

_OPEN_VOWELS = ("a", "A", "O", "0", "V", "aI", "aU")
_CLOSE_VOWELS = ("i", "I", "u", "U", "y")


def mouth_target(phoneme: str) -> tuple[float, float]:
    """(opening in [0,1], rounding in [0,1]) for an espeak phoneme mnemonic."""
    p = phoneme.lstrip("',%=").rstrip(":;")
    if not p or p.startswith("_"):
        return 0.0, 0.0  # pause
    if p[0] in "pbm":
        return 0.0, 0.0  # lips together
    if p[0] in "fv":
        return 0.12, 0.0
    if p[0] == "w":
        return 0.2, 1.0
    if p[0] in "aAeEiIoOuUV03@y":
        rounded = 1.0 if p[0] in "uUoO0w" or p.startswith("aU") else 0.0
        if p.startswith(_OPEN_VOWELS):
            return 1.0, rounded
        if p.startswith(_CLOSE_VOWELS):
            return 0.5, rounded
        return 0.75, rounded
    if p[0] == "h":
        return 0.45, 0.0
    return 0.3, 0.0


def mouth_track(words: list[tuple[float, float, tuple[tuple[float, str], ...]]], preset: ClipPreset):
    """Per-frame (opening, rounding) from placed words [(start_s, end_s, phonemes relative to start)].

    A 1 ms step curve of phoneme targets, smoothed (jaw inertia, _JAW_SMOOTH_S), then averaged over the
    time each frame is on screen, [i / fps, (i + 1) / fps).
    """
    step = 0.001
    n = int(round(preset.duration_s / step)) + 1
    opening, rounding = np.zeros(n), np.zeros(n)
    for start, end, phonemes in words:
        for i, (t, name) in enumerate(phonemes):
            t_next = start + phonemes[i + 1][0] if i + 1 < len(phonemes) else end
            i0, i1 = int(round((start + max(t, 0.0)) / step)), int(round(min(t_next, end) / step))
            if i1 > i0:
                opening[i0:i1], rounding[i0:i1] = mouth_target(name)
    sigma = _JAW_SMOOTH_S / step
    k = np.exp(-0.5 * (np.arange(-3 * sigma, 3 * sigma + 1) / sigma) ** 2)
    k /= k.sum()
    opening, rounding = np.convolve(opening, k, "same"), np.convolve(rounding, k, "same")
    # Frame i is on screen while the audio of [i/fps, (i+1)/fps) plays: it shows the mouth averaged over that span.
    csum_o, csum_r = np.concatenate([[0.0], np.cumsum(opening)]), np.concatenate([[0.0], np.cumsum(rounding)])
    edges = np.clip(np.round(np.arange(preset.num_frames + 1) / preset.fps / step).astype(int), 0, n)
    lo, hi = edges[:-1], edges[1:]
    width = np.maximum(hi - lo, 1)
    return (csum_o[hi] - csum_o[lo]) / width, (csum_r[hi] - csum_r[lo]) / width


# ----------------------------------------------------------------------------- labels and caption


def max_words(rate_wpm: int, duration_s: float = REFERENCE_S) -> int:
    """How many words at this rate surely fit into a clip of duration_s."""
    per_word = MAX_WORD_S[rate_wpm] + GAP_MIN_S
    return max(1, int((duration_s - LEAD_MIN_S - TAIL_MIN_S + GAP_MIN_S) // per_word))


def pitch_setting(voice: str, pitch: str) -> int:
    """The espeak pitch setting (0..100) that speaks `pitch` ("low", "medium", "high") in `voice`."""
    return PITCHES[pitch] + PITCH_OFFSETS.get(voice, 0)


def is_test(labels: dict) -> bool:
    return labels["voice"] in TEST_VOICES or held_out("face", labels["voice"], labels["face_color"])


def _draw(rng: np.random.Generator, split: str) -> dict:
    voice = pick(rng, sorted(TEST_VOICES) if split == "test" and rng.random() < 0.5 else VOICES)
    rate_name, pitch_name = pick(rng, RATES), pick(rng, PITCHES)
    counts = np.arange(1, max_words(RATES[rate_name]) + 1)
    n = int(rng.choice(counts, p=counts / counts.sum()))  # more words, more events to learn sync from
    words = [str(w) for w in rng.choice(VOCABULARY, size=n, replace=False)]
    face_color = pick(rng, COLORS)
    lip_color = pick(rng, [c for c in COLORS if c != face_color])
    return {
        "words": words,
        "text": " ".join(words),
        "voice": voice,
        "gender": VOICES[voice][0],
        "accent": VOICES[voice][1],
        "rate": rate_name,
        "rate_wpm": RATES[rate_name],
        "pitch": pitch_name,
        "pitch_value": pitch_setting(voice, pitch_name),
        "face_color": face_color,
        "lip_color": lip_color,
        "background": pick(rng, BACKGROUNDS),
    }


def sample_labels(rng: np.random.Generator, split: str) -> dict:
    return draw_for_split(rng, split, lambda r: _draw(r, split), is_test)


_PITCH_WORDS = {"low": ("deep", "low"), "medium": ("",), "high": ("high", "high-pitched")}
_RATE_WORDS = {
    "slow": ("slowly", "at a slow pace", "unhurriedly"),
    "normal": ("", "at a normal pace", "at an even pace"),
    "fast": ("quickly", "at a brisk pace", "fast"),
}


def voice_description(labels: dict, rng: np.random.Generator) -> str:
    """E.g. 'a deep British male voice', 'a high-pitched female voice'."""
    parts = [pick(rng, _PITCH_WORDS[labels["pitch"]])]
    if rng.random() < 0.6:
        parts.append(labels["accent"])
    parts.append(pick(rng, (labels["gender"], "man's" if labels["gender"] == "male" else "woman's")))
    parts.append("voice")
    text = " ".join(p for p in parts if p)
    return ("an " if text[0] in "aeiouAEIOU" else "a ") + text


def caption(labels: dict, rng: np.random.Generator) -> str:
    words = f"'{labels['text']}'"
    voice = voice_description(labels, rng)
    rate = pick(rng, _RATE_WORDS[labels["rate"]])
    rate = f" {rate}" if rate else ""
    face, lips, bg = labels["face_color"], labels["lip_color"], labels["background"]
    templates = (
        f"a {face} cartoon face with {lips} lips on a {bg} background says {words}{rate} in {voice}",
        f"talking face: {face} skin, {lips} lips, {bg} backdrop, saying {words}{rate} in {voice}",
        f"{words}, spoken{rate} in {voice} by a {face} face with {lips} lips against {bg}",
        f"a cartoon head, {face} with {lips} lips, says {words}{rate}; {voice}; {bg} background",
        f"on a {bg} background a {face} face with {lips} lips speaks the words {words} in {voice}{rate}",
        f"lip sync: a {face} face says {words} in {voice}, {lips} lips, {bg} background",
    )
    return str(pick(rng, templates))


# ----------------------------------------------------------------------------- audio


def _audible(audio: np.ndarray, sample_rate: int, floor_db: float = -35.0) -> tuple[int, int]:
    """First and last sample of the word's audible part (5 ms RMS above floor_db re its peak)."""
    win = max(1, sample_rate // 200)
    env = np.sqrt(np.convolve(audio.astype(np.float64) ** 2, np.ones(win) / win, mode="same"))
    loud = np.flatnonzero(env > env.max() * 10 ** (floor_db / 20))
    return int(loud[0]), int(loud[-1]) + 1


@functools.lru_cache(maxsize=4096)
def _word_segment(word: str, voice: str, rate_wpm: int, pitch: int, sample_rate: int):
    """The audible part of one spoken word (a read-only view) and its phonemes, timed from its first sample."""
    speech = synthesize(word, voice, rate_wpm, pitch, sample_rate)
    a, b = _audible(speech.audio, sample_rate)
    phonemes = tuple((t - a / sample_rate, name) for t, name in speech.phonemes if t < b / sample_rate)
    return speech.audio[a:b], phonemes


def speak_words(labels: dict, preset: ClipPreset, rng: np.random.Generator):
    """Audio [S] and the placed words [(start_s, end_s, phonemes relative to start)]."""
    sr = preset.sample_rate
    rate, pitch = RATES[labels["rate"]], pitch_setting(labels["voice"], labels["pitch"])
    segments = [_word_segment(word, labels["voice"], rate, pitch, sr) for word in labels["words"]]
    speech_s = sum(len(seg) for seg, _ in segments) / sr
    fixed = LEAD_MIN_S + GAP_MIN_S * (len(segments) - 1) + TAIL_MIN_S
    slack = preset.duration_s - speech_s - fixed
    if slack < 0:
        raise SeedanceError(
            f"a talking-face clip of {len(segments)} words needs at least {speech_s + fixed:.2f} s; "
            f"use a duration of {REFERENCE_S:g} s or more"
        )
    # Spread the spare time over the lead-in, the gaps and the tail (whatever is left after the last word).
    lead, *gaps = slack * rng.dirichlet(np.full(len(segments) + 1, 2.0))[:-1]
    audio = np.zeros(preset.num_samples, np.float32)  # true silence: a noise floor would read as an onset at 0 s
    placed = []
    t = LEAD_MIN_S + lead
    for k, (seg, phonemes) in enumerate(segments):
        start = int(round(t * sr))
        audio[start : start + len(seg)] = seg[: preset.num_samples - start]
        placed.append((start / sr, (start + len(seg)) / sr, phonemes))
        if k < len(gaps):
            t = (start + len(seg)) / sr + GAP_MIN_S + gaps[k]
    return peak_normalise(audio), placed


# ----------------------------------------------------------------------------- drawing


def _ellipse_coverage(xs: np.ndarray, ys: np.ndarray, cx, cy, rx, ry) -> np.ndarray:
    """Anti-aliased coverage of ellipses: exact per column in y, four sub-columns per pixel in x.

    xs [W], ys [H] pixel centres; cx, cy, rx, ry scalars or arrays broadcasting against [F,1,1].
    Returns [..., H, W] in [0, 1]. An ellipse of zero height covers nothing.
    """
    cover = 0.0
    for sub in (-0.375, -0.125, 0.125, 0.375):
        u = (xs[None, :] + sub - cx) / np.maximum(rx, 1e-6)  # [.., 1, W]
        half = ry * np.sqrt(np.clip(1.0 - u * u, 0.0, None))  # vertical half extent of this sub-column
        y = ys[:, None]
        cover = cover + np.clip(np.minimum(y + 0.5, cy + half) - np.maximum(y - 0.5, cy - half), 0.0, 1.0)
    return cover * 0.25


def _blend(canvas: np.ndarray, coverage: np.ndarray, color) -> None:
    c = coverage[..., None]
    canvas *= 1.0 - c
    canvas += c * np.asarray(color, dtype=np.float32)


def mouth_box(preset: ClipPreset) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the region the mouth can occupy (always inside the face)."""
    w, h = preset.width, preset.height
    return int(0.3 * w), int(0.53 * h), int(np.ceil(0.7 * w)), int(np.ceil(0.84 * h))


def render(labels: dict, preset: ClipPreset, rng: np.random.Generator) -> Rendered:
    audio, placed = speak_words(labels, preset, rng)
    opening, rounding = mouth_track(placed, preset)
    opening = np.clip(opening, 0.0, 1.0)

    H, W, F = preset.height, preset.width, preset.num_frames
    xs, ys = np.arange(W, dtype=np.float32) + 0.5, np.arange(H, dtype=np.float32) + 0.5
    face_rgb = np.asarray(COLORS[labels["face_color"]], dtype=np.float32)

    # 1. the still picture: background, face, eyes, nose (a small random offset per clip)
    dx, dy = rng.uniform(-_JITTER, _JITTER, size=2)
    cx, cy = (0.5 + dx) * W, (0.5 + dy) * H
    still = np.empty((H, W, 3), np.float32)
    still[:] = BACKGROUNDS[labels["background"]]
    _blend(still, _ellipse_coverage(xs, ys, cx, cy, 0.4 * W, 0.47 * H), face_rgb)
    for side in (-1, 1):
        ex, ey = cx + side * 0.15 * W, cy - 0.12 * H
        _blend(still, _ellipse_coverage(xs, ys, ex, ey, 0.085 * W, 0.075 * H), _EYE_WHITE)
        _blend(still, _ellipse_coverage(xs, ys, ex + 0.015 * W, ey + 0.01 * H, 0.04 * W, 0.045 * H), _PUPIL)
    _blend(still, _ellipse_coverage(xs, ys, cx, cy + 0.04 * H, 0.04 * W, 0.035 * H), face_rgb * 0.75)

    # 2. the mouth, drawn for all frames at once inside its box only
    x0, y0, x1, y1 = mouth_box(preset)
    bx, by = xs[x0:x1], ys[y0:y1]
    mcx, mcy = cx, cy + _MOUTH_DY * H
    o = opening.astype(np.float32)[:, None, None]  # [F,1,1]
    r = rounding.astype(np.float32)[:, None, None]
    half_w = _MOUTH_HALF_W * W * (1.0 - 0.3 * r)
    lip = max(1.0, 0.03 * H)
    inner_h = o * _MOUTH_MAX_OPEN * H
    box = np.broadcast_to(still[y0:y1, x0:x1], (F, y1 - y0, x1 - x0, 3)).copy()
    _blend(box, _ellipse_coverage(bx, by, mcx, mcy, half_w + 0.4 * lip, inner_h + lip), COLORS[labels["lip_color"]])
    _blend(box, _ellipse_coverage(bx, by, mcx, mcy, half_w, inner_h), MOUTH_INTERIOR)

    frames = np.broadcast_to(still, (F, H, W, 3)).copy()
    frames[:, y0:y1, x0:x1] = box
    frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    return Rendered(
        frames=frames, audio=audio, events=[start for start, _, _ in placed], visual=opening.astype(np.float32)
    )

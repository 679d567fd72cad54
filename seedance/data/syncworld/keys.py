"""SyncWorld scene: a row of keys or a grid of drum pads that light up with the notes they play.

A short phrase (MIDI pitches with durations in beats) loops at a tempo. Each
note lights its key for most of its duration and plays an instrument timbre
starting at the exact note-on sample. Pitch maps to position: keys and pads are
ordered by pitch from left (low) to right (high); a pad grid fills each column
bottom-up before moving right, so a higher pitch is never further left.

The phrase is part of the labels (preset-independent); the render places it in
time: first note-on after ~0.25 s, loops until the clip ends, no note-on in the
last 0.1 s, any two note-ons at least 3 video frames apart (guaranteed by the
tempo range and the eighth-note grid at the shipped presets; enforced by
dropping a too-close note at slower frame rates).

Instruments: piano (inharmonic decaying partials and a hammer thump), marimba
and glockenspiel (modal bars), harp (Karplus-Strong plucked string), synth (a
decaying sawtooth), drums (membrane modes with a pitch drop and a noise burst;
pads only).
"""

from __future__ import annotations

import math

import numpy as np

from seedance.config import ClipPreset
from seedance.data.syncworld.common import BACKGROUNDS, COLORS, Rendered, draw_for_split, held_out, pick
from seedance.data.syncworld.synth import (
    attack_ramp,
    fade_out,
    finish,
    karplus_strong,
    midi_to_hz,
    mix_at,
    modal,
    noise_burst,
)

LAYOUTS = ("keys", "pads")
INSTRUMENTS = ("piano", "marimba", "harp", "glockenspiel", "synth", "drums")
KEY_INSTRUMENTS = ("piano", "marimba", "harp", "glockenspiel", "synth")  # drums only on pads
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10), "pentatonic": (0, 2, 4, 7, 9)}
CONTOURS = ("rising", "falling", "arch", "valley", "wander", "repeat")
KEY_COUNTS = (5, 6, 7, 8, 10)
PAD_GRIDS = ((2, 2), (2, 3), (2, 4), (3, 3), (3, 4))  # (rows, cols)
ROOTS = {  # lowest key's MIDI pitch range per instrument
    "piano": (48, 60),
    "marimba": (48, 60),
    "harp": (50, 62),
    "glockenspiel": (72, 79),
    "synth": (45, 57),
    "drums": (38, 45),
}
TEMPO_RANGE = (72, 150)  # bpm; an eighth note at 150 bpm lasts 0.2 s = 3.2 frames at 16 fps
BEAT_CHOICES = (0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0)  # note lengths in beats (0.5 = an eighth note)
MIN_LIGHT_CONTRAST = 150  # L1 distance between key colour and light colour

FIRST_NOTE_S = 0.25
END_MARGIN_S = 0.1
MIN_GAP_FRAMES = 3.0
LIGHT_GATE = 0.9  # a key stays lit for 90% of its note
RELEASE_S = {"piano": 0.08, "synth": 0.05, "harp": 0.25, "marimba": 1.0, "glockenspiel": 1.0, "drums": 1.0}
RING_S = {"piano": 0.6, "synth": 0.3, "harp": 0.8, "marimba": 0.7, "glockenspiel": 1.2, "drums": 0.6}


# ----------------------------------------------------------------------------- labels


def _contour(rng: np.random.Generator, kind: str, n: int, k: int) -> list[int]:
    """Key indices (0 = lowest) of an n-note phrase over k keys with the given shape."""
    if kind == "repeat":
        return [int(rng.integers(k))] * n
    if kind in ("rising", "falling"):
        idx = np.sort(rng.choice(k, size=n, replace=n > k))
        if idx[0] == idx[-1]:  # make sure it actually moves
            idx = np.linspace(0, k - 1, n).round().astype(int)
        return [int(i) for i in (idx if kind == "rising" else idx[::-1])]
    if kind in ("arch", "valley"):
        up = max(2, (n + 1) // 2)
        a = np.sort(rng.choice(k, size=up, replace=up > k))
        if a[0] == a[-1]:
            a = np.linspace(0, k - 1, up).round().astype(int)
        b = np.sort(rng.choice(a[-1] + 1, size=n - up, replace=True))[::-1]
        idx = np.concatenate([a, b]).astype(int)
        return [int(i) for i in (idx if kind == "arch" else (k - 1) - idx)]
    # wander: a random walk with steps of 1-2 keys, reflected at the ends
    i = int(rng.integers(k))
    out = [i]
    for _ in range(n - 1):
        i = i + int(rng.choice([-2, -1, 1, 2]))
        i = -i if i < 0 else (2 * (k - 1) - i if i > k - 1 else i)
        out.append(int(np.clip(i, 0, k - 1)))
    return out


def _draw(rng: np.random.Generator) -> dict:
    layout = pick(rng, LAYOUTS)
    instrument = pick(rng, INSTRUMENTS if layout == "pads" else KEY_INSTRUMENTS)
    if layout == "keys":
        rows, cols = 1, int(pick(rng, KEY_COUNTS))
    else:
        rows, cols = (int(v) for v in pick(rng, PAD_GRIDS))
    k = rows * cols
    scale = pick(rng, SCALES)
    steps = SCALES[scale]
    root = int(rng.integers(ROOTS[instrument][0], ROOTS[instrument][1] + 1))
    key_pitches = [root + 12 * (i // len(steps)) + steps[i % len(steps)] for i in range(k)]
    contour = pick(rng, CONTOURS)
    n = int(rng.integers(4, 9))
    index = _contour(rng, contour, n, k)
    beats = [float(pick(rng, BEAT_CHOICES)) for _ in range(n)]
    key_color = pick(rng, COLORS)
    light_choices = [c for c in COLORS if np.abs(np.subtract(COLORS[c], COLORS[key_color])).sum() >= MIN_LIGHT_CONTRAST]
    return {
        "layout": layout,
        "instrument": instrument,
        "tempo": int(rng.integers(TEMPO_RANGE[0], TEMPO_RANGE[1] + 1)),
        "notes": [key_pitches[i] for i in index],
        "beats": beats,
        "contour": contour,
        "scale": scale,
        "key_pitches": key_pitches,
        "rows": rows,
        "cols": cols,
        "key_color": key_color,
        "light_color": pick(rng, light_choices),
        "background": pick(rng, BACKGROUNDS),
    }


def is_test(labels: dict) -> bool:
    """Held-out (instrument, light colour) combinations make the test split."""
    return held_out("keys", labels["instrument"], labels["light_color"])


def sample_labels(rng: np.random.Generator, split: str) -> dict:
    return draw_for_split(rng, split, _draw, is_test)


# ----------------------------------------------------------------------------- geometry and timing


def key_boxes(labels: dict, preset: ClipPreset) -> np.ndarray:
    """Integer pixel boxes [K, 4] = (x0, y0, x1, y1), x1/y1 exclusive, one per key in pitch order."""
    H, W = preset.height, preset.width
    rows, cols = labels["rows"], labels["cols"]
    gap = max(1, round(W / 64))
    if labels["layout"] == "keys":
        margin = max(2, round(0.06 * W))
        edges = np.linspace(margin, W - margin, cols + 1).round().astype(int)
        y0, y1 = round(0.32 * H), round(0.86 * H)
        return np.array([(edges[i], y0, edges[i + 1] - gap, y1) for i in range(cols)], dtype=np.int64)
    # pads: a centred square grid, column by column left to right, each column bottom-up
    cell = min((0.86 * W) / cols, (0.72 * H) / rows)
    x_start = (W - cell * cols) / 2.0
    y_start = 0.16 * H + (0.72 * H - cell * rows) / 2.0
    boxes = []
    for i in range(rows * cols):
        c, r = i // rows, rows - 1 - (i % rows)
        x0, y0 = round(x_start + c * cell), round(y_start + r * cell)
        x1, y1 = round(x_start + (c + 1) * cell) - gap, round(y_start + (r + 1) * cell) - gap
        boxes.append((x0, y0, x1, y1))
    return np.array(boxes, dtype=np.int64)


def schedule(labels: dict, preset: ClipPreset, rng: np.random.Generator) -> list[tuple[float, float, int, float]]:
    """Loop the phrase over the clip: (onset s, duration s, key index, velocity) per played note."""
    beat_s = 60.0 / labels["tempo"]
    key_of = {p: i for i, p in enumerate(labels["key_pitches"])}
    gap = MIN_GAP_FRAMES / preset.fps
    t = FIRST_NOTE_S + float(rng.uniform(0.0, 0.15))
    notes: list[tuple[float, float, int, float]] = []
    last = -math.inf
    while True:
        for j, (pitch, beats) in enumerate(zip(labels["notes"], labels["beats"])):
            if t >= preset.duration_s - END_MARGIN_S:
                return notes
            if t - last >= gap:
                accent = 1.0 if j == 0 else 0.8
                notes.append((t, beats * beat_s, key_of[pitch], accent * float(rng.uniform(0.9, 1.0))))
                last = t
            t += beats * beat_s


def light_levels(notes, num_keys: int, preset: ClipPreset) -> np.ndarray:
    """Per-frame light level of every key, float32 [F, K] in [0, 1].

    A note lights its key from the frame nearest its onset, at full brightness fading to 70%,
    for LIGHT_GATE of its length, and always goes dark at least one frame before the next note,
    so a repeated key flashes again.
    """
    F, fps = preset.num_frames, preset.fps
    levels = np.zeros((F, num_keys), dtype=np.float32)
    on_frames = [int(round(t * fps)) for (t, _, _, _) in notes]
    for j, (t, dur, key, _) in enumerate(notes):
        f_on = on_frames[j]
        f_off = int(round((t + LIGHT_GATE * dur) * fps))
        if j + 1 < len(notes):
            f_off = min(f_off, on_frames[j + 1] - 1)
        f_off = min(max(f_off, f_on + 1), F)
        age = (np.arange(f_on, f_off) - f_on) / fps
        levels[f_on:f_off, key] = 0.7 + 0.3 * np.exp(-age / 0.15)
    return levels


# ----------------------------------------------------------------------------- sound


def _note_sound(instrument: str, pitch: int, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One note of the instrument, n samples, peak 1, with a sharp onset at sample 0."""
    f = midi_to_hz(pitch)
    if instrument == "piano":
        k = np.arange(1, 13)
        partials = k * f * np.sqrt(1.0 + 4e-4 * k * k)  # stiff-string inharmonicity
        d1 = float(np.clip(1.2 * math.sqrt(261.6 / f), 0.3, 2.0))
        sound = modal(partials, d1 / (1.0 + 0.5 * (k - 1)), np.exp(-k / 5.0) / k, n, sr, rng.uniform(0, 6.3, k.size))
        sound = sound / (np.max(np.abs(sound)) + 1e-9) + 0.15 * noise_burst(rng, n, sr, 0.004, 3)
    elif instrument == "marimba":
        d1 = float(np.clip(0.45 * math.sqrt(261.6 / f), 0.12, 0.8))
        sound = modal(f * np.array([1.0, 3.93, 9.2]), [d1, d1 / 4, d1 / 10], [1.0, 0.35, 0.1], n, sr)
        sound = sound / (np.max(np.abs(sound)) + 1e-9) + 0.2 * noise_burst(rng, n, sr, 0.003, 4)
    elif instrument == "glockenspiel":
        sound = modal(f * np.array([1.0, 2.76, 5.40, 8.93]), [1.0, 0.5, 0.25, 0.15], [1.0, 0.4, 0.2, 0.1], n, sr)
        sound = sound / (np.max(np.abs(sound)) + 1e-9) + 0.1 * noise_burst(rng, n, sr, 0.002, 1)
    elif instrument == "harp":
        damping = 0.5 ** (1.0 / (f * 0.35))  # loses half its amplitude every 0.35 s
        sound = karplus_strong(rng, f, n, sr, damping=damping, brightness=0.6)
    elif instrument == "synth":
        k = np.arange(1, 16)
        sound = modal(k * f, 0.35 / (1.0 + 0.15 * k), 1.0 / k, n, sr)  # a sawtooth whose highs die first
    elif instrument == "drums":
        ratios = np.array([1.0, 1.59, 2.14, 2.30, 2.65, 2.92])  # circular membrane modes
        d1 = float(np.clip(0.25 * math.sqrt(100.0 / f), 0.08, 0.4))
        t = np.arange(n, dtype=np.float64) / sr
        glide = t + 0.4 * 0.03 * (1.0 - np.exp(-t / 0.03))  # the pitch drops ~40% in the first 30 ms
        modes = np.sin(2.0 * np.pi * f * ratios[:, None] * glide[None, :])
        modes *= np.exp(-t[None, :] * (1.0 + 0.6 * np.arange(6))[:, None] / d1)
        sound = (np.array([1.0, 0.5, 0.35, 0.3, 0.2, 0.15]) @ modes).astype(np.float32)
        sound = sound / (np.max(np.abs(sound)) + 1e-9) + 0.5 * noise_burst(rng, n, sr, 0.04, 2)
    else:
        raise ValueError(f"unknown instrument {instrument!r}")
    sound = sound * attack_ramp(n, sr)
    return (sound / (np.max(np.abs(sound)) + 1e-9)).astype(np.float32)


# ----------------------------------------------------------------------------- rendering


def render(labels: dict, preset: ClipPreset, rng: np.random.Generator) -> Rendered:
    F, H, W, sr = preset.num_frames, preset.height, preset.width, preset.sample_rate
    notes = schedule(labels, preset, rng)
    boxes = key_boxes(labels, preset)
    K = len(boxes)

    # 1. light levels per frame and key; the visual trace is the newly switched-on light
    levels = light_levels(notes, K, preset)  # [F,K]
    rise = np.diff(levels, axis=0, prepend=0.0)
    visual = np.maximum(rise, 0.0).sum(axis=1).astype(np.float32)  # [F]

    # 2. frames: a still image (background, panel, keys), then each lit (frame, key) painted over
    bg = np.asarray(BACKGROUNDS[labels["background"]], dtype=np.float32)
    key_rgb = np.asarray(COLORS[labels["key_color"]], dtype=np.float32)
    light_rgb = np.asarray(COLORS[labels["light_color"]], dtype=np.float32)
    still = np.empty((H, W, 3), dtype=np.float32)
    still[:] = bg
    x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
    x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
    pad = max(1, round(W / 64))
    still[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad] = 0.75 * bg  # a darker panel
    for a, b, c, d in boxes:
        still[b:d, a:c] = key_rgb
    frames = np.repeat(np.clip(still + 0.5, 0, 255).astype(np.uint8)[None], F, axis=0)  # [F,H,W,3]
    for f, k in np.argwhere(levels > 0):
        a, b, c, d = boxes[k]
        frames[f, b:d, a:c] = np.clip(key_rgb + levels[f, k] * (light_rgb - key_rgb) + 0.5, 0, 255).astype(np.uint8)

    # 3. audio: each note at its exact onset sample, cut by its release, one synthesis per pitch
    audio = np.zeros(preset.num_samples, dtype=np.float32)
    instrument = labels["instrument"]
    release = RELEASE_S[instrument]
    cache: dict[int, np.ndarray] = {}
    for t, dur, key, velocity in notes:
        pitch = labels["key_pitches"][key]
        n = int(min(dur + 5.0 * release, dur + RING_S[instrument], preset.duration_s - t + 0.01) * sr) + 1
        if pitch not in cache or cache[pitch].shape[0] < n:
            cache[pitch] = _note_sound(instrument, pitch, max(n, int(RING_S[instrument] * sr)), sr, rng)
        sound = cache[pitch][:n]
        tt = np.arange(n, dtype=np.float32) / sr
        env = np.exp(-np.maximum(tt - dur, 0.0) / release) * fade_out(n, sr, 0.05)  # note-off, no end click
        mix_at(audio, sound * env, int(round(t * sr)), gain=velocity)
    audio = finish(audio)

    return Rendered(frames=frames, audio=audio, events=[n[0] for n in notes], visual=visual)


# ----------------------------------------------------------------------------- captions

_NUMBERS = {4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten", 12: "twelve"}
_INSTRUMENT_WORDS = {
    "piano": ("piano", "grand piano"),
    "marimba": ("marimba", "wooden marimba"),
    "harp": ("harp", "plucked harp", "plucked string"),
    "glockenspiel": ("glockenspiel", "bell-like glockenspiel", "chime"),
    "synth": ("synth", "synthesizer", "analog synth"),
    "drums": ("drums", "hand drums", "tom drums"),
}
_LAYOUT_WORDS = {
    "keys": (("key", "keys"), ("piano key", "piano keys")),
    "pads": (("pad", "pads"), ("drum pad", "drum pads")),
}
_TEMPO_WORDS = (("slow", "gentle", "leisurely"), ("steady", "moderate", "medium-tempo"), ("fast", "quick", "lively"))
_CONTOUR_WORDS = {
    "rising": ("rising", "ascending", "climbing"),
    "falling": ("falling", "descending"),
    "arch": ("rising and falling", "arching"),
    "valley": ("falling and rising", "dipping"),
    "wander": ("wandering", "meandering", "playful"),
    "repeat": ("one-note", "repeated-note", "repeating"),
}


def _tempo_word(bpm: int, rng: np.random.Generator) -> str:
    return pick(rng, _TEMPO_WORDS[0 if bpm < 95 else (1 if bpm <= 125 else 2)])


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def caption(labels: dict, rng: np.random.Generator) -> str:
    instrument = pick(rng, _INSTRUMENT_WORDS[labels["instrument"]])
    layout_one, layout_many = pick(rng, _LAYOUT_WORDS[labels["layout"]])
    tempo = _tempo_word(labels["tempo"], rng)
    bpm = f"{labels['tempo']} bpm"
    contour = pick(rng, _CONTOUR_WORDS[labels["contour"]])
    tune = pick(rng, ("rhythm", "beat", "pattern") if labels["instrument"] == "drums" else ("melody", "tune", "phrase"))
    key, light, bg = labels["key_color"], labels["light_color"], labels["background"]
    count = _NUMBERS[labels["rows"] * labels["cols"]]
    grid = f"a row of {count}" if labels["layout"] == "keys" else f"a {labels['rows']}x{labels['cols']} grid of"
    style = int(rng.integers(5))
    if style == 0:
        return f"{_a(instrument)} plays {_a(tempo)} {contour} {tune}; the {key} {layout_many} flash {light} on {bg}"
    if style == 1:
        played = f"{_a(instrument)} plays {_a(contour)} {tune} at {bpm}"
        return f"{grid} {key} {layout_many} light up {light} as {played}, {bg} background"
    if style == 2:
        return f"{bg} background: {key} {layout_many} glowing {light}, {_a(tempo)} {contour} {tune} on {instrument}"
    if style == 3:
        return (
            f"{_a(contour)} {tune} at {bpm} on {_a(instrument)}, each note lighting {_a(key)} {layout_one} {light} "
            f"against {bg}"
        )
    return f"{instrument} {tune}, {tempo}, {contour}: {light} lights on {key} {layout_many} over {bg}"

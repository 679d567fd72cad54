"""What every SyncWorld scene shares: the sample record, colours, seeding, the split.

A scene family is a module with three functions:

    sample_labels(rng, split) -> dict      # the factors, drawn for one split
    render(labels, preset, rng) -> Rendered # frames, audio, events, visual trace
    caption(labels, rng) -> str            # varied wording naming the factors

`seedance.data.syncworld.make_sample` ties them together; captions can be drawn
without rendering (the text encoder's corpus uses that).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "test")

# Named colours, some with multi-word names (the text encoder's Engram memory is
# meant to pick those up as one unit). Far enough apart to tell at 64x64.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "cornflower blue": (100, 149, 237),
    "forest green": (34, 139, 34),
    "golden yellow": (250, 200, 30),
    "hot pink": (255, 80, 170),
    "burnt orange": (220, 110, 20),
    "deep purple": (110, 40, 160),
    "sky blue": (120, 210, 250),
    "white": (240, 240, 240),
    "teal": (0, 128, 128),
    "lime green": (150, 230, 60),
    "chocolate brown": (120, 70, 30),
}

# Dark backgrounds keep every foreground colour visible.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 16),
    "navy": (20, 24, 70),
    "charcoal": (55, 55, 60),
    "dark green": (15, 55, 30),
    "maroon": (70, 15, 25),
}

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


@dataclass
class Rendered:
    frames: np.ndarray  # uint8 [F,H,W,3]
    audio: np.ndarray  # float32 [S], in [-1, 1]
    events: list[float]  # ground-truth event times, seconds
    visual: np.ndarray  # float32 [F]: the visual event trace (mouth opening, contact, key light)


@dataclass
class Sample:
    scene: str
    seed: int
    split: str
    frames: np.ndarray  # uint8 [F,H,W,3]
    audio: np.ndarray  # float32 [S]
    fps: int
    sample_rate: int
    caption: str
    labels: dict
    events: list[float]  # seconds
    visual: np.ndarray  # float32 [F]
    extra: dict = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.frames.shape[0] / self.fps

    def manifest_row(self) -> dict:
        """A JSON-serialisable record (no arrays) for a dataset manifest."""
        return {
            "scene": self.scene,
            "seed": self.seed,
            "split": self.split,
            "caption": self.caption,
            "labels": self.labels,
            "events": [round(float(t), 5) for t in self.events],
            "fps": self.fps,
            "sample_rate": self.sample_rate,
            "num_frames": int(self.frames.shape[0]),
            "num_samples": int(self.audio.shape[0]),
        }


def scene_rng(scene: str, seed: int, split: str, purpose: str = "") -> np.random.Generator:
    """A generator that depends only on (scene, seed, split, purpose): same seed, same clip."""
    digest = hashlib.sha256(f"{scene}|{seed}|{split}|{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def stable_hash(*parts: object) -> int:
    """A process-independent hash (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def held_out(*factors: object, fraction: float = 0.2) -> bool:
    """True for the factor combinations reserved for the test split (about `fraction` of them)."""
    return (stable_hash("heldout", *factors) % 1000) < int(fraction * 1000)


def draw_for_split(rng: np.random.Generator, split: str, draw, is_test, max_tries: int = 1000) -> dict:
    """Draw labels with `draw(rng)` until `is_test(labels)` agrees with the split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    want_test = split == "test"
    for _ in range(max_tries):
        labels = draw(rng)
        if bool(is_test(labels)) == want_test:
            return labels
    raise RuntimeError("could not draw labels for the split; the held-out rule is too strict")


def pick(rng: np.random.Generator, options):
    """One element of a sequence (or dict keys), drawn by `rng`."""
    options = list(options)
    return options[int(rng.integers(len(options)))]


def peak_normalise(audio: np.ndarray, peak: float = 0.9) -> np.ndarray:
    m = float(np.max(np.abs(audio))) if audio.size else 0.0
    if m > 0:
        audio = audio * (peak / m)
    return audio.astype(np.float32)

"""Clip presets: one dataclass fixes every size and rate a part of Seedance relies on.

Nothing else in the code base hard-codes 64 pixels or 16 fps: modules take a
`ClipPreset` (or read one saved beside their weights) and derive what they need.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

from seedance.errors import SeedanceError


@dataclass(frozen=True)
class ClipPreset:
    name: str = "tiny"
    height: int = 64
    width: int = 64
    fps: int = 16
    duration_s: float = 2.0  # default clip length
    max_duration_s: float = 8.0  # longest clip the models are asked for
    sample_rate: int = 16_000
    n_mels: int = 64
    hop_length: int = 160  # 100 mel frames per second at 16 kHz
    n_fft: int = 1024
    win_length: int = 640

    @property
    def num_frames(self) -> int:
        return frames_for(self.duration_s, self.fps)

    @property
    def num_samples(self) -> int:
        return int(round(self.duration_s * self.sample_rate))

    @property
    def mel_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length

    @property
    def samples_per_frame(self) -> int:
        """Audio samples per video frame (whole for every preset)."""
        return self.sample_rate // self.fps

    def with_duration(self, duration_s: float) -> ClipPreset:
        check_duration(duration_s, self)
        return ClipPreset(**{**asdict(self), "duration_s": float(duration_s)})

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> ClipPreset:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS: dict[str, ClipPreset] = {
    "tiny": ClipPreset(),
    "base": ClipPreset(name="base", height=128, width=128, fps=24, duration_s=4.0, max_duration_s=16.0),
}


def get_preset(name: str | ClipPreset) -> ClipPreset:
    if isinstance(name, ClipPreset):
        return name
    if name not in PRESETS:
        raise SeedanceError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def frames_for(duration_s: float, fps: float) -> int:
    return int(round(duration_s * fps))


def check_duration(duration_s: float, preset: ClipPreset) -> None:
    if not isinstance(duration_s, (int, float)) or not math.isfinite(duration_s):
        raise SeedanceError(f"duration must be a finite number of seconds, got {duration_s!r}")
    if duration_s <= 0 or duration_s > preset.max_duration_s:
        raise SeedanceError(
            f"duration {duration_s:g} s is out of range for preset {preset.name!r}: "
            f"use 0 < duration <= {preset.max_duration_s:g} s"
        )

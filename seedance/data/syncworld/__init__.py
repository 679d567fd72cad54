"""SyncWorld: procedural audio-visual clips with exact ground-truth sync.

    >>> from seedance.data.syncworld import make_sample
    >>> s = make_sample("bounce", seed=3, preset="tiny", split="test")
    >>> s.frames.shape, s.audio.shape, s.events[:2]
"""

from __future__ import annotations

import importlib

from seedance.config import ClipPreset, get_preset
from seedance.data.syncworld.common import SPLITS, Sample, scene_rng
from seedance.errors import SeedanceError

SCENES = ("face", "bounce", "keys")


def scene_module(scene: str):
    if scene not in SCENES:
        raise SeedanceError(f"unknown scene {scene!r}; choose one of: {', '.join(SCENES)}")
    return importlib.import_module(f"seedance.data.syncworld.{scene}")


def sample_labels(scene: str, seed: int, split: str = "train") -> dict:
    return scene_module(scene).sample_labels(scene_rng(scene, seed, split, "labels"), split)


def sample_caption(scene: str, seed: int, split: str = "train") -> tuple[str, dict]:
    """A caption and its labels without rendering anything (cheap: for text corpora)."""
    labels = sample_labels(scene, seed, split)
    return scene_module(scene).caption(labels, scene_rng(scene, seed, split, "caption")), labels


def make_sample(scene: str, seed: int, preset: str | ClipPreset = "tiny", split: str = "train") -> Sample:
    """Render one clip, deterministically from (scene, seed, split, preset)."""
    if split not in SPLITS:
        raise SeedanceError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    preset = get_preset(preset)
    module = scene_module(scene)
    labels = module.sample_labels(scene_rng(scene, seed, split, "labels"), split)
    rendered = module.render(labels, preset, scene_rng(scene, seed, split, "render"))
    caption = module.caption(labels, scene_rng(scene, seed, split, "caption"))
    return Sample(
        scene=scene,
        seed=int(seed),
        split=split,
        frames=rendered.frames,
        audio=rendered.audio,
        fps=preset.fps,
        sample_rate=preset.sample_rate,
        caption=caption,
        labels={"scene": scene, **labels},
        events=[float(t) for t in rendered.events],
        visual=rendered.visual,
    )


__all__ = ["SCENES", "SPLITS", "Sample", "make_sample", "sample_caption", "sample_labels", "scene_module"]

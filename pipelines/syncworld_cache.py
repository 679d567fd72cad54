"""Render SyncWorld clips once and keep them on disk for the evaluation models' recipes.

One safetensors file per (preset, split, scene, n) with frames uint8 [N,F,H,W,3]
and audio float32 [N,S], plus a JSON sidecar with each clip's caption, labels
and event times. Files are written atomically, so an interrupted render leaves
nothing half-written behind. The sidecar also records a fingerprint of SyncWorld's
source: a cache rendered by an older SyncWorld (another voice setting, another
layout) is rendered again rather than read, since its clips no longer match
what make_sample gives.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seedance.config import ClipPreset


@dataclass
class ClipSet:
    frames: np.ndarray  # uint8 [N,F,H,W,3]
    audio: np.ndarray  # float32 [N,S]
    scenes: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    events: list[list[float]] = field(default_factory=list)  # seconds

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @staticmethod
    def concat(sets: list[ClipSet]) -> ClipSet:
        return ClipSet(
            frames=np.concatenate([s.frames for s in sets]),
            audio=np.concatenate([s.audio for s in sets]),
            scenes=sum((s.scenes for s in sets), []),
            captions=sum((s.captions for s in sets), []),
            labels=sum((s.labels for s in sets), []),
            events=sum((s.events for s in sets), []),
        )


@functools.cache  # once per process: the source does not change under a running recipe
def syncworld_fingerprint() -> str:
    """A short hash of SyncWorld's source files: it changes whenever the code that renders a clip does."""
    import seedance.data.syncworld as syncworld

    digest = hashlib.sha256()
    for path in sorted(Path(syncworld.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cache_file(cache: Path, preset: ClipPreset, scene: str, split: str, n: int, first_seed: int = 0) -> Path:
    return cache / f"eval_{preset.name}_{split}_{scene}_{first_seed}_{n}.safetensors"


def render(preset: ClipPreset, scene: str, split: str, n: int, first_seed: int = 0) -> ClipSet:
    from seedance.data.syncworld import make_sample

    frames, audio, captions, labels, events = [], [], [], [], []
    for seed in range(first_seed, first_seed + n):
        s = make_sample(scene, seed, preset, split)
        frames.append(s.frames[: preset.num_frames])
        a = s.audio[: preset.num_samples]
        audio.append(np.pad(a, (0, preset.num_samples - a.shape[0])))
        captions.append(s.caption)
        labels.append(s.labels)
        events.append([float(t) for t in s.events])
    return ClipSet(np.stack(frames), np.stack(audio).astype(np.float32), [scene] * n, captions, labels, events)


def load_or_render(
    cache: Path, preset: ClipPreset, scene: str, split: str, n: int, first_seed: int = 0, verbose: bool = True
) -> ClipSet:
    from safetensors.numpy import load_file, save_file

    path = cache_file(cache, preset, scene, split, n, first_seed)
    meta = path.with_suffix(".json")
    fingerprint = syncworld_fingerprint()
    if path.is_file() and meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("syncworld") == fingerprint:
            t = load_file(str(path))
            return ClipSet(t["frames"], t["audio"], [scene] * n, info["captions"], info["labels"], info["events"])
        if verbose:
            print(f"{path.name} was rendered by another version of SyncWorld; rendering it again", flush=True)
    t0 = time.time()
    clips = render(preset, scene, split, n, first_seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"frames": clips.frames, "audio": clips.audio}, str(tmp))
    os.replace(tmp, path)
    tmp_meta = meta.with_name(f".{meta.name}.{os.getpid()}.tmp")
    sidecar = {"syncworld": fingerprint, "captions": clips.captions, "labels": clips.labels, "events": clips.events}
    tmp_meta.write_text(json.dumps(sidecar))
    os.replace(tmp_meta, meta)
    if verbose:
        print(f"rendered {n} {split} {scene} clips in {time.time() - t0:.0f} s -> {path}", flush=True)
    return clips


def voice_gender(voice: str) -> str:
    """espeak voice id -> "male" / "female": from an m<N>/f<N> variant ("en-gb-scotland+m2"), else from the
    gender line of a named variant's file in espeak's data ("en+Hugo")."""
    variant = voice.rpartition("+")[2]
    if variant and variant[0] in "mf" and variant[1:].isdigit():
        return "male" if variant[0] == "m" else "female"
    gender = ""
    if variant:
        import espeakng_loader

        path = Path(espeakng_loader.get_data_path()) / "voices" / "!v" / variant
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] == "gender":
                    gender = words[1].lower()
                    break
    if gender not in ("male", "female"):
        raise ValueError(f"voice {voice!r} has no m<N>/f<N> variant, nor a variant file naming its gender")
    return gender


def render_faces_with_voices(preset: ClipPreset, voices: tuple[str, ...], n: int, first_seed: int) -> ClipSet:
    """n training-split talking faces, each spoken by one of `voices` (cycled) instead of its drawn voice:
    more speakers for the probes' audio heads than SyncWorld's nine training voices."""
    from seedance.data.syncworld import face, sample_labels
    from seedance.data.syncworld.common import scene_rng

    frames, audio, labels = [], [], []
    for i, seed in enumerate(range(first_seed, first_seed + n)):
        lab = sample_labels("face", seed, "train")
        voice = voices[i % len(voices)]
        lab.update(voice=voice, gender=voice_gender(voice), accent="")
        r = face.render(lab, preset, scene_rng("face", seed, "train", "render"))
        frames.append(r.frames[: preset.num_frames])
        a = r.audio[: preset.num_samples]
        audio.append(np.pad(a, (0, preset.num_samples - a.shape[0])))
        labels.append({"scene": "face", **lab})
    return ClipSet(np.stack(frames), np.stack(audio).astype(np.float32), ["face"] * n, [""] * n, labels, [[]] * n)


def load_scenes(
    cache: Path, preset: ClipPreset, scenes: tuple[str, ...], split: str, n: int, first_seed: int = 0
) -> ClipSet:
    return ClipSet.concat([load_or_render(cache, preset, s, split, n, first_seed) for s in scenes])

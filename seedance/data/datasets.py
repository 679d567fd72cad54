"""Datasets: procedural SyncWorld clips, a folder of real media, and a latent cache.

All three yield dicts with the same keys where they overlap, so a training
recipe can switch sources with one flag:

    video   float32 [3,F,H,W] in [-1, 1]
    audio   float32 [S] in [-1, 1]
    caption str
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from seedance.config import ClipPreset, get_preset
from seedance.errors import MediaError, SeedanceError

log = logging.getLogger(__name__)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 [F,H,W,3] -> float32 [3,F,H,W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """float [3,F,H,W] in [-1, 1] -> uint8 [F,H,W,3]."""
    return video.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 3, 0).cpu().numpy()


class ProceduralDataset(IterableDataset):
    """Endless SyncWorld clips rendered on the fly.

    Each (process, worker) pair draws its own disjoint seed sequence, so several
    dataloader workers and several accelerate processes never repeat a clip.
    """

    def __init__(
        self,
        scenes: tuple[str, ...] = ("face", "bounce", "keys"),
        split: str = "train",
        preset: str | ClipPreset = "tiny",
        base_seed: int = 0,
        process_index: int = 0,
        num_processes: int = 1,
        limit: int | None = None,
    ):
        from seedance.data.syncworld import SCENES

        unknown = [s for s in scenes if s not in SCENES]
        if unknown or not scenes:
            raise SeedanceError(f"unknown scenes {unknown}; choose from: {', '.join(SCENES)}")
        self.scenes = tuple(scenes)
        self.split = split
        self.preset = get_preset(preset)
        self.base_seed = int(base_seed)
        self.process_index = int(process_index)
        self.num_processes = int(num_processes)
        self.limit = limit

    def seeds(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        stride = workers * self.num_processes
        offset = self.process_index * workers + worker
        index = offset
        while self.limit is None or index < self.limit:
            yield index
            index += stride

    def __iter__(self):
        from seedance.data.syncworld import make_sample

        for index in self.seeds():
            scene = self.scenes[index % len(self.scenes)]
            sample = make_sample(scene, self.base_seed + index // len(self.scenes), self.preset, self.split)
            yield {
                "video": frames_to_tensor(sample.frames),
                "audio": torch.from_numpy(sample.audio),
                "caption": sample.caption,
                "scene": scene,
                "seed": sample.seed,
            }


def read_captions(folder: Path) -> dict[str, str]:
    """Captions from manifest.jsonl rows ({"file", "caption"}) and sidecar .txt files (sidecars win)."""
    captions: dict[str, str] = {}
    manifest = folder / "manifest.jsonl"
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                log.warning("skipping a malformed line in %s", manifest)
                continue
            if isinstance(row, dict) and "file" in row:
                captions[str(row["file"])] = str(row.get("caption", ""))
    for txt in folder.glob("*.txt"):
        captions[txt.stem] = txt.read_text(encoding="utf-8", errors="replace").strip()
    return captions


class MediaFolderDataset(Dataset):
    """A folder of real media files with captions, read at the preset's size and rates.

    Files that cannot be read (corrupt, truncated, without audio) are skipped with
    a warning and counted in `self.skipped`; they never stop a run.
    """

    def __init__(self, folder: str | Path, preset: str | ClipPreset = "tiny", suffixes=None):
        from seedance.data.cli import MEDIA_SUFFIXES

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SeedanceError(f"media folder not found: {self.folder}")
        self.preset = get_preset(preset)
        suffixes = tuple(suffixes or MEDIA_SUFFIXES)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in suffixes)
        self.captions = read_captions(self.folder)
        self.skipped: list[str] = []
        self.files = [f for f in self.files if self._probe(f)]
        if not self.files:
            raise SeedanceError(f"no readable media with audio in {self.folder} ({len(self.skipped)} skipped)")

    def _probe(self, path: Path) -> bool:
        import av

        try:
            with av.open(str(path)) as container:
                if not container.streams.video or not container.streams.audio:
                    raise MediaError("no audio or no video stream")
                next(container.decode(video=0))
            return True
        except Exception as exc:
            self._skip(path, exc)
            return False

    def _skip(self, path: Path, exc: Exception) -> None:
        self.skipped.append(path.name)
        log.warning("skipping %s: %s", path.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    def __len__(self) -> int:
        return len(self.files)

    def caption_for(self, path: Path) -> str:
        return self.captions.get(path.name) or self.captions.get(path.stem) or ""

    def __getitem__(self, index: int) -> dict:
        from seedance.data.media import read_clip

        # A file can still fail on a full read; fall through to the next one, counted.
        for attempt in range(len(self.files)):
            path = self.files[(index + attempt) % len(self.files)]
            try:
                clip = read_clip(
                    path,
                    fps=self.preset.fps,
                    size=(self.preset.height, self.preset.width),
                    sample_rate=self.preset.sample_rate,
                )
            except MediaError as exc:
                self._skip(path, exc)
                continue
            frames, audio = fit_length(clip.frames, clip.audio, self.preset)
            return {
                "video": frames_to_tensor(frames),
                "audio": torch.from_numpy(audio),
                "caption": self.caption_for(path),
                "file": path.name,
            }
        raise SeedanceError(f"no file in {self.folder} could be read")


def fit_length(frames: np.ndarray, audio: np.ndarray, preset: ClipPreset) -> tuple[np.ndarray, np.ndarray]:
    """Crop from the start, or pad (last frame repeated, audio with silence), to the preset's clip length."""
    n_frames, n_samples = preset.num_frames, preset.num_samples
    if frames.shape[0] >= n_frames:
        frames = frames[:n_frames]
    else:
        pad = np.repeat(frames[-1:], n_frames - frames.shape[0], axis=0)
        frames = np.concatenate([frames, pad], axis=0)
    audio = audio[:n_samples]
    if audio.shape[0] < n_samples:
        audio = np.pad(audio, (0, n_samples - audio.shape[0]))
    return frames, audio.astype(np.float32)


class LatentCacheDataset(Dataset):
    """Latents encoded once by the VAEs (and text states by the text encoder), kept in safetensors shards.

    Layout of a cache folder:
        index.json                    {"shards": [...], "count": N, "meta": {...}}
        shard_00000.safetensors       tensors with a leading sample axis, e.g.
                                      latents [n,Cv,Tv,h,w], audio_latents [n,Ca,Ta],
                                      text_states [n,L,D], text_mask [n,L], text_pooled [n,D]
        shard_00000.json              {"captions": [...], "labels": [...]} for the same n samples
    """

    def __init__(self, folder: str | Path, keys: tuple[str, ...] | None = None):
        from safetensors.torch import load_file

        from seedance.models.io import check_safetensors

        self.folder = Path(folder)
        index_file = self.folder / "index.json"
        if not index_file.is_file():
            raise SeedanceError(f"no latent cache at {self.folder} (index.json missing): build the cache first")
        index = json.loads(index_file.read_text())
        self.meta = index.get("meta", {})
        tensors: dict[str, list[torch.Tensor]] = {}
        self.captions: list[str] = []
        self.labels: list[dict] = []
        for shard in index["shards"]:
            check_safetensors(self.folder / f"{shard}.safetensors")
            data = load_file(str(self.folder / f"{shard}.safetensors"))
            for key, value in data.items():
                if keys is None or key in keys:
                    tensors.setdefault(key, []).append(value)
            side = json.loads((self.folder / f"{shard}.json").read_text())
            self.captions += side.get("captions", [])
            self.labels += side.get("labels", [{}] * len(side.get("captions", [])))
        self.tensors = {k: torch.cat(v) for k, v in tensors.items()}
        counts = {k: v.shape[0] for k, v in self.tensors.items()}
        if len(set(counts.values())) > 1:
            raise SeedanceError(f"latent cache {self.folder} is inconsistent: {counts}; rebuild it")
        self.count = next(iter(counts.values()), 0)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        item = {k: v[index] for k, v in self.tensors.items()}
        item["caption"] = self.captions[index] if index < len(self.captions) else ""
        return item


def write_latent_shard(folder: str | Path, name: str, tensors: dict[str, torch.Tensor], captions: list[str],
                       labels: list[dict] | None = None) -> None:
    """Write one shard atomically and register it in index.json (append-only, so a cache build can resume)."""
    from safetensors.torch import save_file

    from seedance.models.io import atomic_write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(folder / f"{name}.safetensors")
    atomic_write_bytes(folder / f"{name}.json", json.dumps({"captions": captions, "labels": labels or []}).encode())
    index_file = folder / "index.json"
    index = json.loads(index_file.read_text()) if index_file.is_file() else {"shards": [], "count": 0, "meta": {}}
    if name not in index["shards"]:
        index["shards"].append(name)
        index["count"] += len(captions)
    atomic_write_bytes(index_file, json.dumps(index, indent=1).encode())


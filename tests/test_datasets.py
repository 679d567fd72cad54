"""Datasets: disjoint seeds per process/worker, media folders that skip bad files, latent cache round trip."""

import itertools

import numpy as np
import pytest
import torch

from seedance.config import get_preset
from seedance.data.datasets import (
    LatentCacheDataset,
    MediaFolderDataset,
    ProceduralDataset,
    fit_length,
    frames_to_tensor,
    tensor_to_frames,
    write_latent_shard,
)
from seedance.errors import SeedanceError


def test_processes_draw_disjoint_seeds():
    streams = [list(ProceduralDataset(process_index=i, num_processes=3, limit=30).seeds()) for i in range(3)]
    flat = list(itertools.chain(*streams))
    assert sorted(flat) == list(range(30))


def test_unknown_scene_rejected():
    with pytest.raises(SeedanceError, match="volcano"):
        ProceduralDataset(scenes=("volcano",))


def test_procedural_items_have_preset_shapes():
    preset = get_preset("tiny")
    items = list(ProceduralDataset(scenes=("bounce", "keys"), limit=2))
    assert [i["scene"] for i in items] == ["bounce", "keys"]
    for item in items:
        assert item["video"].shape == (3, preset.num_frames, preset.height, preset.width)
        assert item["audio"].shape == (preset.num_samples,)
        assert -1.0 <= float(item["video"].min()) and float(item["video"].max()) <= 1.0
        assert item["caption"]


def test_frame_tensor_round_trip_is_exact():
    frames = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    assert np.array_equal(tensor_to_frames(frames_to_tensor(frames)), frames)


def test_fit_length_pads_and_crops():
    preset = get_preset("tiny")
    frames = np.zeros((5, 64, 64, 3), np.uint8)
    frames[-1] = 7
    f, a = fit_length(frames, np.ones(100, np.float32), preset)
    assert f.shape[0] == preset.num_frames and (f[-1] == 7).all()
    assert a.shape == (preset.num_samples,) and a[99] == 1 and a[100] == 0
    f, a = fit_length(np.zeros((99, 64, 64, 3), np.uint8), np.ones(10**6, np.float32), preset)
    assert f.shape[0] == preset.num_frames and a.shape == (preset.num_samples,)


def test_media_folder_skips_bad_files_and_counts_them(tmp_path):
    from seedance.data.media import write_clip
    from seedance.data.syncworld import make_sample

    preset = get_preset("tiny")
    good = make_sample("bounce", 1, preset, "train")
    write_clip(tmp_path / "good.mp4", good.frames, good.audio, good.fps, good.sample_rate)
    (tmp_path / "good.txt").write_text("a ball bounces")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00" * 300)
    silent = tmp_path / "silent.mp4"
    _write_video_only(silent, good.frames, good.fps)
    dataset = MediaFolderDataset(tmp_path, preset)
    assert len(dataset) == 1
    assert sorted(dataset.skipped) == ["corrupt.mp4", "silent.mp4"]
    item = dataset[0]
    assert item["caption"] == "a ball bounces"
    assert item["video"].shape == (3, preset.num_frames, preset.height, preset.width)
    assert item["audio"].shape == (preset.num_samples,)


def _write_video_only(path, frames, fps):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_latent_cache_round_trip(tmp_path):
    shards = []
    for i in range(2):
        tensors = {"latents": torch.randn(3, 4, 2, 2, 2), "audio_latents": torch.randn(3, 8, 10)}
        write_latent_shard(tmp_path, f"shard_{i:05d}", tensors, [f"cap{i}{j}" for j in range(3)])
        shards.append(tensors)
    dataset = LatentCacheDataset(tmp_path)
    assert len(dataset) == 6
    assert torch.equal(dataset[4]["latents"], shards[1]["latents"][1])
    assert dataset[4]["caption"] == "cap11"


def test_latent_cache_missing_is_clear(tmp_path):
    with pytest.raises(SeedanceError, match="build the cache"):
        LatentCacheDataset(tmp_path)

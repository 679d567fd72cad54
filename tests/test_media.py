"""Media I/O: real encoders through PyAV, one clock for sound and picture, one-line errors."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from seedance.data.media import read_clip, write_clip
from seedance.errors import MediaError
from seedance.eval.offset import av_offset, shift_audio

FPS, SR = 16, 16_000
EVENT_FRAMES = (5, 13, 22)


def flash_clip(F=32, H=64, W=64, fps=FPS, sr=SR, channels=1, events=EVENT_FRAMES):
    """A SyncWorld-like clip: a square lights up and fades at each event frame, a ping starts on the same sample."""
    video = np.full((F, H, W, 3), 20.0, np.float32)
    n = int(round(F / fps * sr))
    audio = np.zeros(n, np.float32)
    t = np.arange(int(0.05 * sr)) / sr
    ping = 0.6 * np.sin(2 * np.pi * 660 * t) * np.exp(-t / 0.01)
    for k in events:
        for j in range(k, F):
            video[j, H // 4 : 3 * H // 4, W // 4 : 3 * W // 4] += np.array([200, 40, 40]) * 0.5 ** (j - k)
        s = int(round(k * sr / fps))
        audio[s : s + ping.size] += ping[: n - s]
    frames = np.clip(video, 0, 255).astype(np.uint8)
    if channels > 1:
        audio = np.stack([audio * (0.5 + 0.5 * c / channels) for c in range(channels)])
    return frames, audio.astype(np.float32)


def first_loud_sample(audio, threshold=0.2):
    idx = np.flatnonzero(np.abs(audio) > threshold)
    assert idx.size, "no loud sample found"
    return int(idx[0])


def bright_frames(frames):
    level = frames.astype(np.float32).mean(axis=(1, 2, 3))
    return [int(k) for k in np.flatnonzero(np.diff(level, prepend=level[0]) > 10)]


@pytest.mark.parametrize(("name", "codec"), [("clip.mp4", None), ("clip.mkv", None), ("clip.mkv", "flac")])
def test_round_trip_keeps_sync(tmp_path, name, codec):
    frames, audio = flash_clip()
    ref = av_offset(frames, audio, FPS, SR)
    assert ref.offset_frames == 0
    path = write_clip(tmp_path / name, frames, audio, FPS, SR, audio_codec=codec)
    clip = read_clip(path, fps=FPS, size=(64, 64), sample_rate=SR)
    assert clip.frames.shape == frames.shape and clip.frames.dtype == np.uint8
    assert clip.audio.shape == audio.shape and clip.audio.dtype == np.float32
    assert (clip.fps, clip.sample_rate, clip.duration_s) == (FPS, SR, 2.0)
    assert av_offset(clip.frames, clip.audio, FPS, SR).offset_frames == ref.offset_frames == 0
    # Sample-accurate: the first ping starts within 1 ms of where it was written (AAC priming removed).
    assert abs(first_loud_sample(clip.audio) - first_loud_sample(audio)) <= SR // 1000
    assert bright_frames(clip.frames) == list(EVENT_FRAMES)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def _lag_samples(a: np.ndarray, b: np.ndarray, max_lag: int = 2000) -> int:
    """Lag (samples) of b against a by cross-correlation over +-max_lag."""
    from scipy.signal import correlate

    c = correlate(b, a, mode="full", method="fft")
    mid = a.shape[0] - 1
    window = c[mid - max_lag : mid + max_lag + 1]
    return int(np.argmax(window)) - max_lag


@pytest.mark.parametrize("scene", ["bounce", "face"])
@pytest.mark.parametrize(("name", "codec"), [("clip.mp4", None), ("clip.mkv", None)])
def test_syncworld_round_trip_is_sample_aligned(tmp_path, scene, name, codec):
    from seedance.data.syncworld import make_sample

    s = make_sample(scene, 2, "tiny", "test")
    clip = read_clip(write_clip(tmp_path / name, s.frames, s.audio, s.fps, s.sample_rate, audio_codec=codec))
    assert clip.frames.shape == s.frames.shape and clip.audio.shape == s.audio.shape
    assert _lag_samples(s.audio, clip.audio) == 0  # not one sample of encoder delay left
    mse = np.mean((clip.frames.astype(np.float64) - s.frames) ** 2)
    # H.264 keeps the picture; 4:2:0 chroma costs the saturated face edges about 1 dB (measured 29.5 dB)
    assert 10 * np.log10(255.0**2 / mse) > 28
    expected = av_offset(s.frames, s.audio, s.fps, s.sample_rate).offset_frames
    assert abs(av_offset(clip.frames, clip.audio, clip.fps, clip.sample_rate).offset_frames - expected) <= 1


def test_round_trip_shift_is_measured(tmp_path):
    frames, audio = flash_clip()
    late = shift_audio(audio, 3, FPS, SR)
    clip = read_clip(write_clip(tmp_path / "late.mp4", frames, late, FPS, SR))
    assert av_offset(clip.frames, clip.audio, FPS, SR).offset_frames == 3
    early = shift_audio(audio, -2, FPS, SR)
    clip = read_clip(write_clip(tmp_path / "early.mkv", frames, early, FPS, SR))
    assert av_offset(clip.frames, clip.audio, FPS, SR).offset_frames == -2


@pytest.mark.parametrize("channels", [1, 2, 6])
@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_channels_and_rates_downmix_and_resample(tmp_path, channels, rate):
    frames, audio = flash_clip(sr=rate, channels=channels)
    path = write_clip(tmp_path / "multi.mp4", frames, audio, FPS, rate)
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        assert (stream.codec_context.name, stream.channels, stream.rate) == ("aac", channels, rate)
    clip = read_clip(path, sample_rate=SR)
    assert clip.audio.ndim == 1 and clip.sample_rate == SR and clip.audio.shape[0] == 2 * SR
    expected = int(round(EVENT_FRAMES[0] / FPS * SR))
    assert abs(first_loud_sample(clip.audio, 0.1) - expected) <= SR // 1000
    assert av_offset(clip.frames, clip.audio, FPS, SR).offset_frames == 0


@pytest.mark.parametrize(
    ("name", "codec", "expect"),
    [
        ("clip.webm", None, ("vp9", "opus")),
        ("clip.mov", None, ("h264", "pcm_s16le")),
        ("clip.mkv", "mp3", ("h264", "mp3")),
    ],
)
def test_other_containers_and_codecs(tmp_path, name, codec, expect):
    frames, audio = flash_clip()
    path = write_clip(tmp_path / name, frames, audio, FPS, SR, audio_codec=codec)
    with av.open(str(path)) as c:
        names = (c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name)
        assert all(name.startswith(want) for name, want in zip(names, expect)), names  # decoder "mp3float" is mp3
    clip = read_clip(path, fps=FPS, sample_rate=SR)
    assert abs(first_loud_sample(clip.audio) - first_loud_sample(audio)) <= SR // 1000
    assert bright_frames(clip.frames) == list(EVENT_FRAMES)
    assert av_offset(clip.frames, clip.audio, FPS, SR).offset_frames == 0


def test_frame_rate_conversion_keeps_time(tmp_path):
    # 30 fps source, read at 16 fps: each output frame shows the source frame on screen at i/16 s.
    frames, audio = flash_clip(F=60, fps=30, events=(5, 13, 22, 40))
    clip = read_clip(write_clip(tmp_path / "30.mkv", frames, audio, 30, SR), fps=16)
    assert clip.frames.shape[0] == 32 and clip.fps == 16
    # Event at source frame k (k/30 s) first shows at output frame ceil(k * 16 / 30).
    assert bright_frames(clip.frames) == [int(np.ceil(k * 16 / 30)) for k in (5, 13, 22, 40)]


def test_variable_frame_rate(tmp_path):
    """Frames at irregular times are resampled by presentation time, audio stays on the same clock."""
    times = [0.0, 0.03, 0.1, 0.11, 0.2, 0.35, 0.36, 0.5, 0.52, 0.7, 0.9, 1.0]
    path = tmp_path / "vfr.mkv"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt, v.time_base = 32, 32, "yuv420p", Fraction(1, 1000)
        v.codec_context.time_base = Fraction(1, 1000)  # millisecond timestamps reach the encoder unrounded
        a = c.add_stream("pcm_s16le", rate=SR, layout="mono")
        for i, t in enumerate(times):  # frame i has grey level 20 * i
            f = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            f.pts, f.time_base = int(round(t * 1000)), Fraction(1, 1000)
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        x = np.zeros(int(1.1 * SR), np.int16)
        x[SR // 2 : SR // 2 + 50] = 20000  # click at 0.5 s, with the frame shown at 0.5 s
        af = av.AudioFrame.from_ndarray(x[None], format="s16", layout="mono")
        af.sample_rate, af.pts, af.time_base = SR, 0, Fraction(1, SR)
        c.mux(a.encode(af))
        c.mux(a.encode(None))
    clip = read_clip(path, fps=10)
    shown = np.round(clip.frames.astype(np.float32).mean(axis=(1, 2, 3)) / 20).astype(int)
    on_screen = [max(i for i, t in enumerate(times) if t <= k / 10 + 1e-6) for k in range(11)]
    assert shown.tolist() == on_screen
    assert first_loud_sample(clip.audio) == SR // 2


def test_audio_starting_late_or_early_is_placed_on_the_video_clock(tmp_path):
    """An audio stream that starts 0.25 s after the first frame reads 0.25 s late, not at 0."""
    path = tmp_path / "late_start.mkv"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=SR, layout="mono")
        for i in range(32):
            f = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, FPS)
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        x = np.zeros(SR, np.int16)
        x[:40] = 20000  # a click on the stream's first sample
        af = av.AudioFrame.from_ndarray(x[None], format="s16", layout="mono")
        af.sample_rate, af.pts, af.time_base = SR, SR // 4, Fraction(1, SR)
        c.mux(a.encode(af))
        c.mux(a.encode(None))
    clip = read_clip(path)
    assert abs(first_loud_sample(clip.audio) - SR // 4) <= SR // 1000
    assert clip.audio.shape[0] == 2 * SR  # padded to the video's length


def test_resize_crops_to_aspect_then_scales(tmp_path):
    # 16:9 source with a centred square marker: after crop+scale to 64x64 it stays centred and square.
    frames = np.zeros((8, 180, 320, 3), np.uint8)
    frames[:, 60:120, 130:190] = 255
    clip = read_clip(write_clip(tmp_path / "wide.mp4", frames, None, FPS, SR), size=(64, 64), require_audio=False)
    assert clip.frames.shape == (8, 64, 64, 3)
    mask = clip.frames[0].mean(axis=-1) > 128
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert abs(rows.mean() - 31.5) <= 1 and abs(cols.mean() - 31.5) <= 1
    assert abs(len(rows) - len(cols)) <= 1 and 19 <= len(rows) <= 23  # 60 px of 180 -> ~21 of 64
    stretched = read_clip(tmp_path / "wide.mp4", size=(32, 48), require_audio=False, fit="stretch")
    assert stretched.frames.shape == (8, 32, 48, 3)


def test_odd_sizes_and_torch_inputs(tmp_path):
    torch = pytest.importorskip("torch")
    frames, audio = flash_clip(H=33, W=47)
    path = write_clip(tmp_path / "odd.mp4", torch.from_numpy(frames), torch.from_numpy(audio), FPS, SR)
    clip = read_clip(path, size=(33, 47))
    assert clip.frames.shape == (32, 33, 47, 3)


def test_no_audio_stream(tmp_path):
    frames, _ = flash_clip()
    path = write_clip(tmp_path / "silent.mp4", frames, None, FPS, SR)
    with pytest.raises(MediaError, match="no audio stream"):
        read_clip(path)
    clip = read_clip(path, sample_rate=SR, require_audio=False)
    assert not clip.has_audio and clip.audio.shape == (2 * SR,) and not clip.audio.any()


def _assert_one_line(err: pytest.ExceptionInfo, path) -> None:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm"])
def test_truncated_file(tmp_path, ext):
    frames, audio = flash_clip()
    data = write_clip(tmp_path / f"full{ext}", frames, audio, FPS, SR).read_bytes()
    cut = tmp_path / f"cut{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(MediaError, match="truncated") as err:
        read_clip(cut)
    _assert_one_line(err, cut)


def test_bad_files(tmp_path):
    junk = tmp_path / "notes.mp4"
    junk.write_text("this is not a video\n" * 50)
    with pytest.raises(MediaError, match="not a readable media file") as err:
        read_clip(junk)
    _assert_one_line(err, junk)
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        read_clip(empty)
    with pytest.raises(MediaError, match="no such file"):
        read_clip(tmp_path / "missing.mp4")
    # A container with a video stream but no frames (and a little audio).
    zero = tmp_path / "zero.mkv"
    with av.open(str(zero), "w") as c:
        v = c.add_stream("libx264", rate=FPS)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=SR, layout="mono")
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        af.sample_rate, af.pts = SR, 0
        c.mux(a.encode(af))
        c.mux(a.encode(None))
        c.mux(v.encode(None))
    with pytest.raises(MediaError, match="no frames") as err:
        read_clip(zero)
    _assert_one_line(err, zero)
    # Audio only: no pictures.
    wav = tmp_path / "sound.wav"
    with av.open(str(wav), "w") as c:
        a = c.add_stream("pcm_s16le", rate=SR, layout="mono")
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        af.sample_rate, af.pts = SR, 0
        c.mux(a.encode(af))
        c.mux(a.encode(None))
    with pytest.raises(MediaError, match="no video stream"):
        read_clip(wav)


def test_write_validates_inputs(tmp_path):
    frames, audio = flash_clip()
    cases = [
        (tmp_path / "a.avi", frames, audio, {}, "unknown extension"),
        (tmp_path / "a.mp4", frames.astype(np.float32), audio, {}, "uint8"),
        (tmp_path / "a.mp4", frames[..., 0], audio, {}, r"\[F,H,W,3\]"),
        (tmp_path / "a.mp4", frames, audio.T[:, None].repeat(2, 1), {}, r"\[C,S\]"),
        (tmp_path / "a.mp4", frames, audio * np.nan, {}, "NaN"),
        (tmp_path / "a.webm", frames, audio, {"audio_codec": "aac"}, "not supported"),
        (tmp_path / "no" / "such" / "a.mp4", frames, audio, {}, "does not exist"),
    ]
    for path, f, a, kw, pattern in cases:
        with pytest.raises(MediaError, match=pattern):
            write_clip(path, f, a, FPS, SR, **kw)
    assert not list(tmp_path.iterdir()), "a failed write left a file"


def test_overwrite_is_atomic_and_replaces(tmp_path):
    frames, audio = flash_clip()
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"old")
    write_clip(path, frames, audio, FPS, SR)
    assert read_clip(path).frames.shape == frames.shape
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]


def test_damaged_header_without_a_codec_is_a_clean_error():
    """A 447-byte mp4 head with flipped bits (found by bench/reliability.py): its stream has no codec context."""
    from pathlib import Path

    from seedance.data.media import probe_clip

    damaged = Path(__file__).parent / "data" / "damaged_header.mp4"
    for read in (probe_clip, read_clip):
        with pytest.raises(MediaError, match="damaged|not a readable|no video") as info:
            read(damaged)
        assert "\n" not in str(info.value)


def test_clip_cut_to_one_decodable_frame_does_not_crash_the_reader():
    """A bit-flipped mp4 (found by bench/reliability.py) of which one frame decodes: the frame rate was then read
    from the closed container's stream, which crashed the interpreter with a segmentation fault."""
    from pathlib import Path

    damaged = Path(__file__).parent / "data" / "one_frame_left.mp4"
    with pytest.raises(MediaError, match="truncated") as info:
        read_clip(damaged)
    assert "\n" not in str(info.value)

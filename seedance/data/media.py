"""Media I/O: clips to and from real container files, on one clock.

    write_clip("a.mp4", frames, audio, fps=16, sample_rate=16000)   # H.264 + AAC
    clip = read_clip("a.mp4", fps=16, size=(64, 64), sample_rate=16000)

Containers and codecs written (PyAV, i.e. FFmpeg's own encoders):

    .mp4  H.264 (yuv420p) + AAC        (audio_codec="mp3" also allowed)
    .mkv  H.264 + PCM s16              (audio_codec="flac" | "aac" | "opus" | "mp3")
    .mov  H.264 + PCM s16              (audio_codec="aac")
    .webm VP9 + Opus

Reading takes any file FFmpeg decodes (mp4, mov, mkv, webm, ...; AAC, Opus, MP3,
PCM, FLAC, ...), any channel count (downmixed to mono, LFE left out), any sample
rate (resampled), any resolution (centre-cropped to the target aspect, then
scaled) and any frame rate, variable included: output frame i shows the source
frame on screen at time i/fps.

One clock. Time 0 is the presentation time of the first video frame. Audio
samples are placed by their decoded presentation time, and FFmpeg's decoders
drop the encoder delay (AAC's ~1024 priming samples, Opus pre-skip, MP3 padding)
through the container's edit list / skip-samples data, so a clip written in
sync reads back in sync whatever its codec. Audio before time 0 is dropped, a
late audio start is filled with silence, and the track is cut or padded to the
video's duration: `audio` always holds round(F / fps * sample_rate) samples.

Errors are `MediaError`s with one line naming the file and what to do.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

from seedance.errors import MediaError

# extension -> (FFmpeg muxer, video codec family, default audio codec, allowed audio codecs)
CONTAINERS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    ".mp4": ("mp4", "h264", "aac", ("aac", "mp3")),
    ".mkv": ("matroska", "h264", "pcm", ("pcm", "flac", "aac", "opus", "mp3")),
    ".mov": ("mov", "h264", "pcm", ("pcm", "aac")),
    ".webm": ("webm", "vp9", "opus", ("opus",)),
}
# audio codec name -> FFmpeg encoders to try, best first
AUDIO_ENCODERS: dict[str, tuple[str, ...]] = {
    "aac": ("aac",),
    "mp3": ("libmp3lame", "mp3"),
    "opus": ("libopus", "opus"),
    "flac": ("flac",),
    "pcm": ("pcm_s16le",),
}
VIDEO_ENCODERS: dict[str, tuple[str, ...]] = {"h264": ("libx264", "h264"), "vp9": ("libvpx-vp9", "vp9")}
CHANNEL_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# Decoded timestamps jitter by the container's time base (1 ms in Matroska); only
# a larger jump between audio frames is a real gap (or overlap) to honour.
AUDIO_GAP_TOLERANCE_S = 0.005
# A video frame counts as on screen at time t if its timestamp is <= t + this
# (absorbs millisecond rounding of frame times in Matroska/WebM).
VIDEO_PTS_TOLERANCE_S = 0.002


@dataclass
class MediaClip:
    frames: np.ndarray  # uint8 [F,H,W,3]
    audio: np.ndarray  # float32 [S], mono, S = round(F / fps * sample_rate)
    fps: float
    sample_rate: int
    duration_s: float  # F / fps
    path: str
    has_audio: bool = True  # False: the file had no audio stream and `audio` is silence

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


# --------------------------------------------------------------------------- writing


def write_clip(
    path: str | os.PathLike,
    frames: np.ndarray,
    audio: np.ndarray | None,
    fps: float,
    sample_rate: int,
    audio_codec: str | None = None,
    crf: int = 18,
) -> Path:
    """Encode `frames` (uint8 [F,H,W,3]) and `audio` (float [S] or [C,S], or None) into `path`.

    The container follows the extension (see module doc); `audio_codec` picks
    another allowed codec. Odd widths/heights are padded by one edge pixel
    (4:2:0 needs even sizes). The file appears atomically: it is written next to
    its destination and renamed into place.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in CONTAINERS:
        raise MediaError(f"cannot write {path}: unknown extension {ext!r}; use one of {', '.join(CONTAINERS)}")
    muxer, video_family, default_audio, allowed_audio = CONTAINERS[ext]
    audio_codec = (audio_codec or default_audio).lower()
    if audio_codec not in allowed_audio:
        raise MediaError(
            f"cannot write {path}: audio codec {audio_codec!r} is not supported in {ext}; "
            f"use one of {', '.join(allowed_audio)}"
        )
    frames = _check_frames(frames, path)
    fps_q = _check_fps(fps, path)
    channels = None
    if audio is not None:
        audio = _check_audio(audio, path)  # float32 [C,S]
        channels = audio.shape[0]
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise MediaError(f"cannot write {path}: sample_rate must be a positive integer, got {sample_rate!r}")
        if channels not in CHANNEL_LAYOUTS:
            raise MediaError(f"cannot write {path}: {channels} audio channels; give 1 to 8 channels as [C,S]")
        if audio_codec == "mp3" and channels > 2:
            raise MediaError(f"cannot write {path}: MP3 holds at most 2 channels; downmix first or use .mkv/.mp4 AAC")

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise MediaError(f"cannot write {path}: folder {parent} does not exist; create it first")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
    except OSError as e:
        raise MediaError(f"cannot write {path}: {e.strerror or e}; choose a writable folder") from None
    try:
        _encode(tmp, muxer, video_family, audio_codec, frames, audio, fps_q, sample_rate, channels, crf)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished clip gets ordinary permissions
        os.replace(tmp, path)
    except MediaError:
        _unlink_quietly(tmp)
        raise
    except (av.FFmpegError, OSError, ValueError) as e:
        _unlink_quietly(tmp)
        raise MediaError(f"cannot write {path}: {_one_line(e)}; check the disk space and the clip's sizes") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _encode(tmp, muxer, video_family, audio_codec, frames, audio, fps_q, sample_rate, channels, crf) -> None:
    F, H, W, _ = frames.shape
    Hp, Wp = H + H % 2, W + W % 2
    options = {"movflags": "+faststart"} if muxer in ("mp4", "mov") else {}
    with av.open(tmp, mode="w", format=muxer, options=options) as container:
        # 1. video stream
        vname = _first_encoder(VIDEO_ENCODERS[video_family])
        vstream = container.add_stream(vname, rate=fps_q)
        vstream.width, vstream.height, vstream.pix_fmt = Wp, Hp, "yuv420p"
        video_tb = Fraction(1, 1) / fps_q  # kept apart: the muxer may change stream.time_base
        vstream.time_base = video_tb
        if vname == "libx264":
            # mbtree off: with it on, x264 gave different bytes for the same frames in different processes
            # (3 distinct files in 5 runs of one seed, measured here); off, 5 of 5 were identical
            vstream.options = {"crf": str(crf), "preset": "medium", "x264-params": "mbtree=0"}
        elif vname == "libvpx-vp9":
            vstream.options = {"crf": str(min(63, crf + 14)), "b:v": "0", "deadline": "good", "cpu-used": "4"}
        # one encoder thread: the same frames give the same bytes on any machine (a thread count that follows the
        # core count changes x264's frame partitioning); clips are small, so nothing is lost in speed
        vstream.codec_context.thread_count = 1

        # 2. audio stream, at a rate the encoder supports
        astream = None
        if audio is not None:
            aname = _first_encoder(AUDIO_ENCODERS[audio_codec])
            codec = av.codec.Codec(aname, "w")
            rate = int(sample_rate)
            if codec.audio_rates and rate not in codec.audio_rates:
                new_rate = 48_000 if 48_000 in codec.audio_rates else max(codec.audio_rates)
                audio = _resample(audio, rate, new_rate)
                rate = new_rate
            layout = CHANNEL_LAYOUTS[channels]
            astream = container.add_stream(aname, rate=rate, layout=layout)
            fmt = codec.audio_formats[0].name
            if audio_codec == "mp3" and "fltp" in [f.name for f in codec.audio_formats]:
                fmt = "fltp"
            astream.format = fmt
            astream.time_base = Fraction(1, rate)
            if audio_codec in ("aac", "mp3", "opus"):
                per_channel = 64_000 if rate <= 24_000 else 96_000
                cap = 160_000 if audio_codec == "mp3" and rate < 32_000 else 512_000
                astream.bit_rate = min(per_channel * channels, cap)

        # 3. frames, then audio; the muxer interleaves by time
        for i in range(F):
            image = frames[i]
            if (Hp, Wp) != (H, W):
                image = np.pad(image, ((0, Hp - H), (0, Wp - W), (0, 0)), mode="edge")
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            vf.pts = i
            vf.time_base = video_tb
            container.mux(vstream.encode(vf))
        container.mux(vstream.encode(None))

        if astream is not None:
            frame_size = astream.codec_context.frame_size or 1024
            fmt = astream.format.name
            n_total = audio.shape[1]
            for start in range(0, n_total, frame_size):
                chunk = audio[:, start : start + frame_size]
                if chunk.shape[1] < frame_size and astream.codec_context.frame_size:
                    # Fixed-frame encoders want whole frames; the reader cuts the tail to the video length.
                    chunk = np.pad(chunk, ((0, 0), (0, frame_size - chunk.shape[1])))
                af = av.AudioFrame.from_ndarray(_to_sample_format(chunk, fmt), format=fmt, layout=layout)
                af.sample_rate = rate
                af.pts = start
                af.time_base = Fraction(1, rate)
                container.mux(astream.encode(af))
            container.mux(astream.encode(None))


# --------------------------------------------------------------------------- reading


def read_clip(
    path: str | os.PathLike,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    sample_rate: int | None = None,
    require_audio: bool = True,
    fit: str = "crop",
) -> MediaClip:
    """Decode `path` into frames at `fps` and `size=(H, W)` and mono audio at `sample_rate`.

    None keeps the source's frame rate (its average rate), size and sample rate.
    `fit="crop"` centre-crops to the target aspect before scaling; "stretch" scales
    directly. A file without an audio stream raises unless `require_audio=False`,
    which returns silence with `has_audio=False` (sample rate: `sample_rate`, else
    16 kHz). Truncated, empty and non-media files raise a one-line MediaError.
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"cannot read {path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise MediaError(f"cannot read {path}: the file is empty (0 bytes); re-export or re-download it")
    if size is not None:
        if len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
            raise MediaError(f"cannot read {path}: size must be (height, width) in pixels, got {size!r}")
        size = (int(size[0]), int(size[1]))
    if fps is not None and not (fps > 0 and np.isfinite(fps)):
        raise MediaError(f"cannot read {path}: fps must be a positive number, got {fps!r}")
    if sample_rate is not None and (int(sample_rate) != sample_rate or sample_rate <= 0):
        raise MediaError(f"cannot read {path}: sample_rate must be a positive integer, got {sample_rate!r}")
    if fit not in ("crop", "stretch"):
        raise MediaError(f"cannot read {path}: fit must be 'crop' or 'stretch', got {fit!r}")

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise MediaError(
            f"cannot read {path}: not a readable media file ({_one_line(e)}); give an mp4, mov, mkv or webm clip "
            "(a truncated mp4 also ends up here: re-export it)"
        ) from None
    with container:
        if not container.streams.video:
            raise MediaError(f"cannot read {path}: it has no video stream; give a clip with pictures")
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        astream = container.streams.audio[0] if container.streams.audio else None
        if astream is None and require_audio:
            raise MediaError(
                f"cannot read {path}: it has no audio stream; give a clip with sound "
                "(from Python, read_clip(..., require_audio=False) reads it with silence)"
            )
        video = _VideoResampler(vstream, fps, size, fit)
        audio = _AudioCollector() if astream is not None else None
        streams = [vstream] + ([astream] if astream is not None else [])
        try:
            for packet in container.demux(*streams):
                if packet.stream is vstream:
                    for frame in packet.decode():
                        video.add(frame)
                else:
                    for frame in packet.decode():
                        audio.add(frame)
        except (av.FFmpegError, ValueError) as e:
            raise MediaError(
                f"cannot read {path}: decoding failed after {video.decoded_s():.2f} s ({_one_line(e)}); "
                "the file is truncated or corrupt: re-export or re-download it"
            ) from None
        if video.count == 0:
            raise MediaError(f"cannot read {path}: its video stream holds no frames; give a clip with frames")
        expected_s = container.duration / 1e6 if container.duration else None

    frames, out_fps = video.finish()
    decoded_s = max(video.decoded_s(), audio.end_s(video.t0) if audio is not None and audio.count else 0.0)
    if expected_s is not None and decoded_s < expected_s - max(0.25, 0.05 * expected_s):
        raise MediaError(
            f"cannot read {path}: only {decoded_s:.2f} s of its {expected_s:.2f} s decode; "
            "the file is truncated: re-export or re-download it"
        )
    duration_s = frames.shape[0] / out_fps
    if audio is not None and audio.count:
        sr_out = int(sample_rate or audio.sample_rate)
        wave = audio.finish(video.t0, sr_out, duration_s)
        has_audio = True
    else:
        if require_audio:
            raise MediaError(f"cannot read {path}: its audio stream holds no samples; give a clip with sound")
        sr_out = int(sample_rate or 16_000)
        wave = np.zeros(int(round(duration_s * sr_out)), np.float32)
        has_audio = False
    return MediaClip(
        frames=frames,
        audio=wave,
        fps=out_fps,
        sample_rate=sr_out,
        duration_s=duration_s,
        path=str(path),
        has_audio=has_audio,
    )


def read_audio(
    path: str | os.PathLike, sample_rate: int | None = None, max_seconds: float | None = None
) -> np.ndarray:
    """Decode the first audio stream of any file (wav, mp3, ogg, flac, m4a, or a video) to mono float32 [S].

    Time 0 is the audio stream's own start, with encoder delay (AAC priming) honoured.
    `max_seconds` stops decoding early and raises if the file is longer (a cap for uploads).
    """
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"cannot read {path}: no such file; check the path")
    if path.stat().st_size == 0:
        raise MediaError(f"cannot read {path}: the file is empty (0 bytes); re-export or re-download it")
    if sample_rate is not None and (int(sample_rate) != sample_rate or sample_rate <= 0):
        raise MediaError(f"cannot read {path}: sample_rate must be a positive integer, got {sample_rate!r}")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        reason = _one_line(e)
        raise MediaError(f"cannot read {path}: not a readable audio file ({reason}); give wav, mp3 or ogg") from None
    with container:
        if not container.streams.audio:
            raise MediaError(f"cannot read {path}: it has no audio stream; give a file with sound")
        astream = container.streams.audio[0]
        audio = _AudioCollector()
        try:
            for packet in container.demux(astream):
                for frame in packet.decode():
                    audio.add(frame)
                if max_seconds is not None and audio.count and audio.n / audio.sample_rate > max_seconds:
                    raise MediaError(
                        f"cannot use {path}: it is longer than {max_seconds:g} s; trim it to at most {max_seconds:g} s"
                    )
        except (av.FFmpegError, ValueError) as e:
            raise MediaError(f"cannot read {path}: decoding failed ({_one_line(e)}); re-export the file") from None
    if not audio.count:
        raise MediaError(f"cannot read {path}: its audio stream holds no samples; give a file with sound")
    sr_out = int(sample_rate or audio.sample_rate)
    return audio.finish(audio.a0, sr_out, audio.n / audio.sample_rate)


@dataclass
class MediaInfo:
    path: str
    width: int
    height: int
    fps: float  # average frame rate of the video stream
    duration_s: float | None
    has_audio: bool
    audio_channels: int
    audio_sample_rate: int
    video_codec: str
    audio_codec: str | None


def probe_clip(path: str | os.PathLike) -> MediaInfo:
    """Stream facts of a media file without decoding it (dimensions, rates, codecs)."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"cannot read {path}: no such file; check the path")
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise MediaError(
            f"cannot read {path}: not a readable media file ({_one_line(e)}); give an mp4, mov, mkv or webm clip"
        ) from None
    with container:
        if not container.streams.video:
            raise MediaError(f"cannot read {path}: it has no video stream; give a clip with pictures")
        v = container.streams.video[0]
        a = container.streams.audio[0] if container.streams.audio else None
        # a damaged header can leave a stream without a decoder context (found by bench/reliability.py fuzzing)
        if v.codec_context is None or (a is not None and a.codec_context is None):
            raise MediaError(f"cannot read {path}: a stream's codec is unreadable (damaged file); "
                             "give an intact mp4, mov, mkv or webm clip")
        rate = v.average_rate or v.guessed_rate or v.base_rate
        return MediaInfo(
            path=str(path),
            width=int(v.codec_context.width),
            height=int(v.codec_context.height),
            fps=float(rate) if rate else 0.0,
            duration_s=container.duration / 1e6 if container.duration else None,
            has_audio=a is not None,
            audio_channels=int(a.codec_context.channels) if a is not None else 0,
            audio_sample_rate=int(a.codec_context.sample_rate) if a is not None else 0,
            video_codec=v.codec_context.name,
            audio_codec=a.codec_context.name if a is not None else None,
        )


class _VideoResampler:
    """Collects decoded frames and emits frames at a constant rate by presentation time."""

    def __init__(self, stream, fps: float | None, size: tuple[int, int] | None, fit: str):
        # the stream's rate is read now: finish() runs after the container is closed, and touching a closed
        # container's stream crashes the interpreter (a one-frame clip did, found by bench/reliability.py)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.stream_rate = float(rate) if rate else None
        self.fps = fps
        self.size = size
        self.fit = fit
        self.t0: float | None = None
        self.count = 0
        self.last_time = 0.0
        self.intervals: list[float] = []
        self.pending = None  # (time, av frame) waiting for the next frame's time
        self.out: list[np.ndarray] = []

    def _target_fps(self) -> float:
        if self.fps is not None:
            return float(self.fps)
        if self.stream_rate:
            return self.stream_rate
        return 1.0 / float(np.median(self.intervals)) if self.intervals else 25.0

    def add(self, frame) -> None:
        t = frame.time
        if t is None:  # no timestamps: assume a constant rate
            t = (self.last_time + 1.0 / self._target_fps()) if self.count else 0.0
        if self.count and t <= self.last_time:  # out-of-order or duplicate timestamp: skip it
            return
        if self.count == 0:
            self.t0 = t
        else:
            self.intervals.append(t - self.last_time)
        self.count += 1
        self.last_time = t
        if self.pending is not None:
            self._emit_until(t)
        self.pending = (t, frame)

    def _emit_until(self, t_next: float | None, n_total: int | None = None) -> None:
        """Emit the pending frame for every output time before the next source frame."""
        fps = self._target_fps()
        _, frame = self.pending
        image = None
        while True:
            i = len(self.out)
            if n_total is not None:
                if i >= n_total:
                    break
            elif self.t0 + i / fps + VIDEO_PTS_TOLERANCE_S >= t_next:
                break
            if image is None:
                image = self._convert(frame)
            self.out.append(image)

    def frame_duration(self) -> float:
        if self.intervals:
            return float(np.median(self.intervals))
        return 1.0 / self._target_fps()

    def decoded_s(self) -> float:
        if not self.count:
            return 0.0
        return self.last_time - self.t0 + self.frame_duration()

    def finish(self) -> tuple[np.ndarray, float]:
        fps = self._target_fps()
        n_total = max(1, int(round(self.decoded_s() * fps)))
        if self.pending is not None:
            self._emit_until(None, n_total=n_total)
        self.out = self.out[:n_total]
        return np.stack(self.out), fps

    def _convert(self, frame) -> np.ndarray:
        if self.size is None:
            return frame.to_ndarray(format="rgb24")
        H, W = self.size
        if self.fit == "stretch":
            return frame.reformat(width=W, height=H, format="rgb24", interpolation="AREA").to_ndarray()
        # Scale so the frame covers H x W (display aspect), then centre-crop.
        sar = frame.sample_aspect_ratio if hasattr(frame, "sample_aspect_ratio") else None
        disp_w = frame.width * (float(sar) if sar else 1.0)
        scale = max(H / frame.height, W / disp_w)
        sh, sw = max(H, int(round(frame.height * scale))), max(W, int(round(disp_w * scale)))
        up = scale > 1.0
        image = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="BICUBIC" if up else "AREA")
        image = image.to_ndarray()
        y, x = (sh - H) // 2, (sw - W) // 2
        return np.ascontiguousarray(image[y : y + H, x : x + W])


class _AudioCollector:
    """Collects decoded audio as mono float32, each frame placed by its presentation time."""

    def __init__(self):
        self.chunks: list[np.ndarray] = []
        self.a0: float | None = None
        self.n = 0  # samples placed so far
        self.count = 0
        self.sample_rate: int | None = None

    def add(self, frame) -> None:
        if frame.samples == 0:
            return
        if self.sample_rate is None:
            self.sample_rate = int(frame.sample_rate)
        mono = _frame_to_mono(frame)
        if frame.sample_rate != self.sample_rate:  # a mid-stream rate change: bring it to the first rate
            mono = _resample(mono[None], int(frame.sample_rate), self.sample_rate)[0]
        t = frame.time
        if self.a0 is None:
            self.a0 = float(t) if t is not None else 0.0
        elif t is not None:
            # Honour a real gap (fill with silence) or overlap (drop the repeated samples).
            drift = (float(t) - self.a0) - self.n / self.sample_rate
            if drift > AUDIO_GAP_TOLERANCE_S:
                gap = int(round(drift * self.sample_rate))
                self.chunks.append(np.zeros(gap, np.float32))
                self.n += gap
            elif drift < -AUDIO_GAP_TOLERANCE_S:
                mono = mono[int(round(-drift * self.sample_rate)) :]
        self.chunks.append(mono)
        self.n += mono.shape[0]
        self.count += 1

    def end_s(self, t0: float) -> float:
        return self.a0 + self.n / self.sample_rate - t0

    def finish(self, t0: float, sample_rate: int, duration_s: float) -> np.ndarray:
        wave = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        # Put audio on the video's clock: sample 0 at the first video frame's time.
        lead = int(round((self.a0 - t0) * self.sample_rate))
        if lead > 0:
            wave = np.concatenate([np.zeros(lead, np.float32), wave])
        elif lead < 0:
            wave = wave[-lead:]
        # Cut to the video's span (plus a little margin for the resampling filter), then resample.
        margin = self.sample_rate // 10
        wave = wave[: int(round(duration_s * self.sample_rate)) + margin]
        if sample_rate != self.sample_rate:
            wave = _resample(wave[None], self.sample_rate, sample_rate)[0]
        n_out = int(round(duration_s * sample_rate))
        wave = wave[:n_out]
        if wave.shape[0] < n_out:
            wave = np.pad(wave, (0, n_out - wave.shape[0]))
        return np.ascontiguousarray(wave, dtype=np.float32)


# --------------------------------------------------------------------------- helpers


def _frame_to_mono(frame) -> np.ndarray:
    """One decoded audio frame -> float32 mono [n] (LFE left out of the mix)."""
    x = frame.to_ndarray()
    C = len(frame.layout.channels)
    if not frame.format.is_planar:
        x = x.reshape(-1, C).T  # packed [1, n*C] -> [C, n]
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif x.dtype == np.int32:
        x = x.astype(np.float32) / 2147483648.0
    elif x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) / 128.0
    else:
        x = x.astype(np.float32)
    if C == 1:
        return x[0]
    names = [ch.name for ch in frame.layout.channels]
    keep = [i for i, name in enumerate(names) if name != "LFE"] or list(range(C))
    return x[keep].mean(axis=0)


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """[C,S] float -> [C,S'] by polyphase filtering (zero-phase: no delay added)."""
    if sr_in == sr_out:
        return x
    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g, axis=-1).astype(np.float32)


def _to_sample_format(x: np.ndarray, fmt: str) -> np.ndarray:
    """float [C,n] in [-1,1] -> the array PyAV expects for `fmt` (planar [C,n], packed [1,n*C])."""
    x = np.clip(x, -1.0, 1.0)
    base = fmt.rstrip("p")
    if base == "s16":
        x = np.round(x * 32767.0).astype(np.int16)
    elif base == "s32":
        x = np.round(x * 2147483520.0).astype(np.int32)
    elif base == "flt":
        x = x.astype(np.float32)
    elif base == "dbl":
        x = x.astype(np.float64)
    else:
        raise MediaError(f"internal: unsupported sample format {fmt}")
    if not fmt.endswith("p"):
        x = x.T.reshape(1, -1)
    return np.ascontiguousarray(x)


def _check_frames(frames, path) -> np.ndarray:
    if hasattr(frames, "detach"):  # a torch tensor
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"cannot write {path}: frames must be uint8 [F,H,W,3], got shape {tuple(frames.shape)}")
    if frames.dtype != np.uint8:
        raise MediaError(
            f"cannot write {path}: frames must be uint8 [F,H,W,3], got {frames.dtype}; "
            "convert with (x.clip(0, 1) * 255).round().astype(np.uint8)"
        )
    if frames.shape[0] == 0 or frames.shape[1] < 2 or frames.shape[2] < 2:
        raise MediaError(f"cannot write {path}: need at least one frame of 2x2 pixels, got {tuple(frames.shape)}")
    return frames


def _check_audio(audio, path) -> np.ndarray:
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().numpy()
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise MediaError(f"cannot write {path}: audio must be float [S] or [C,S], got shape {tuple(audio.shape)}")
    if audio.shape[0] > 8 and audio.shape[1] <= 8:
        raise MediaError(
            f"cannot write {path}: audio looks like [S,C] {tuple(audio.shape)}; pass it as [C,S] (audio.T)"
        )
    if not np.issubdtype(audio.dtype, np.floating):
        raise MediaError(f"cannot write {path}: audio must be float in [-1, 1], got {audio.dtype}")
    audio = audio.astype(np.float32)
    if not np.all(np.isfinite(audio)):
        raise MediaError(f"cannot write {path}: audio holds NaN or infinite samples; fix the generator output")
    return audio


def _check_fps(fps, path) -> Fraction:
    try:
        ok = float(fps) > 0 and np.isfinite(float(fps))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise MediaError(f"cannot write {path}: fps must be a positive number, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def _first_encoder(names: tuple[str, ...]) -> str:
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    raise MediaError(f"this FFmpeg build has none of the encoders {', '.join(names)}; install PyAV wheels from PyPI")


def _one_line(e: BaseException) -> str:
    text = getattr(e, "strerror", None) if isinstance(e, av.FFmpegError) else None
    return " ".join(str(text or e).split()) or type(e).__name__


def _unlink_quietly(p) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


__all__ = ["CONTAINERS", "MediaClip", "MediaInfo", "probe_clip", "read_clip", "write_clip"]

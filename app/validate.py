"""Input checks for the web app: every bad input becomes one `SeedanceError` line the UI shows.

The app is reachable by anyone who can open its port, so nothing from a request
is trusted: prompts are length-checked, numbers range-checked, and an uploaded
file is opened with PyAV (never by its extension) and refused when it is too big,
is not media, lacks the stream the action needs, or plays longer than the cap.
Probing reads only the container header and packet timestamps, so a ten-minute
file is refused without being decoded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from seedance.errors import MediaError, SeedanceError
from seedance.generate_cli import MAX_PROMPT_CHARS

MAX_UPLOAD_MB = 50  # per file; Gradio refuses bigger uploads before they reach a handler
MAX_MEDIA_SECONDS = 60.0  # an upload may play at most this long (the models use the first few seconds)
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
MIN_SHIFT, MAX_SHIFT = 0.25, 10.0  # timestep shift of the sampling schedule (1: unshifted)
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; one object so tests can tighten it."""

    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_upload_bytes: int = MAX_UPLOAD_MB * 1024 * 1024
    max_media_seconds: float = MAX_MEDIA_SECONDS
    max_steps: int = MAX_STEPS

    @property
    def max_upload_mb(self) -> float:
        return self.max_upload_bytes / (1024 * 1024)


def check_prompt(prompt: str | None, limits: Limits, required: bool = True, what: str = "prompt") -> str:
    """The prompt, stripped; '' allowed only when not required."""
    if prompt is None:
        prompt = ""
    if not isinstance(prompt, str):
        raise SeedanceError(f"the {what} must be text, got {type(prompt).__name__}")
    if len(prompt) > limits.max_prompt_chars:
        raise SeedanceError(
            f"the {what} has {len(prompt):,} characters; keep it under {limits.max_prompt_chars:,} (a sentence or two)"
        )
    if required and not prompt.strip():
        raise SeedanceError(f"the {what} is empty: describe the clip, e.g. \"a red ball bounces on a wooden floor\"")
    return prompt.strip()


def check_number(name: str, value, low: float, high: float, whole: bool = False) -> float | int:
    """A finite number in [low, high] (a whole number if `whole`)."""
    if value is None or isinstance(value, bool):
        raise SeedanceError(f"{name} is missing: give a number between {low:g} and {high:g}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SeedanceError(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise SeedanceError(f"{name} must be a finite number, got {value}")
    if whole and number != int(number):
        raise SeedanceError(f"{name} must be a whole number, got {value}")
    if not low <= number <= high:
        raise SeedanceError(f"{name} must be between {low:g} and {high:g}, got {number:g}")
    return int(number) if whole else number


@dataclass
class MediaInfo:
    path: Path
    size_bytes: int
    duration_s: float
    has_video: bool
    has_audio: bool


def check_upload(path: str | Path | None, limits: Limits, need: str, label: str = "file") -> MediaInfo:
    """Probe an uploaded file; `need` is "video" (a video stream), "audio" (an audio stream) or "clip" (both).

    Raises a one-line SeedanceError naming the upload (not its temp path) and what to give instead.
    """
    if need not in ("video", "audio", "clip"):
        raise ValueError(f"need must be 'video', 'audio' or 'clip', got {need!r}")
    wanted = {"video": "a video (mp4, mov, mkv, webm)", "audio": "an audio file (wav, mp3, ogg, flac, m4a) or a video",
              "clip": "a clip with picture and sound (mp4, mov, mkv, webm)"}[need]
    if path is None or str(path) == "":
        raise SeedanceError(f"no {label} given: upload {wanted}")
    path = Path(path)
    if not path.is_file():
        raise SeedanceError(f"the uploaded {label} is gone from the server; upload it again")
    size = path.stat().st_size
    if size == 0:
        raise SeedanceError(f"the uploaded {label} is empty (0 bytes): upload {wanted}")
    if size > limits.max_upload_bytes:
        raise SeedanceError(
            f"the uploaded {label} is {size / 2**20:.1f} MB; the limit is {limits.max_upload_mb:g} MB: "
            "upload a shorter or smaller file"
        )
    info = probe_media(path, limits.max_media_seconds, label, wanted)
    if need in ("video", "clip") and not info.has_video:
        raise SeedanceError(f"the uploaded {label} has no picture (no video stream): upload {wanted}")
    if need in ("audio", "clip") and not info.has_audio:
        raise SeedanceError(f"the uploaded {label} has no sound (no audio stream): upload {wanted}")
    if info.duration_s > limits.max_media_seconds:
        raise SeedanceError(
            f"the uploaded {label} plays {info.duration_s / 60:.1f} min; the limit is {limits.max_media_seconds:g} s: "
            "trim it to the part you need"
        )
    return info


def probe_media(path: Path, cap_s: float, label: str, wanted: str) -> MediaInfo:
    """Streams and duration from the header, else from packet timestamps (stopping once past the cap)."""
    import av

    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        raise MediaError(f"the uploaded {label} is not a media file FFmpeg can read: upload {wanted}") from None
    with container:
        streams = [s for s in container.streams if s.type in ("video", "audio")]
        has_video = any(s.type == "video" for s in streams)
        has_audio = any(s.type == "audio" for s in streams)
        if not streams:
            raise MediaError(f"the uploaded {label} holds no picture or sound: upload {wanted}")
        duration = header_duration_s(container, streams)
        if duration is None:
            duration = packet_duration_s(container, streams, cap_s, label)
    return MediaInfo(path, path.stat().st_size, duration, has_video, has_audio)


def header_duration_s(container, streams) -> float | None:
    """The longest stream duration the header states (None when it states none)."""
    best = None
    for s in streams:
        if s.duration is not None and s.time_base is not None:
            best = max(best or 0.0, float(s.duration * s.time_base))
    if best is None and container.duration is not None:
        best = container.duration / 1e6
    return best


def packet_duration_s(container, streams, cap_s: float, label: str) -> float:
    """Last packet end time, read without decoding; stops as soon as the cap is passed."""
    import av

    end = 0.0
    try:
        for packet in container.demux(*streams):
            if packet.pts is None or packet.time_base is None:
                continue
            t = float((packet.pts + (packet.duration or 0)) * packet.time_base)
            end = max(end, t)
            if end > cap_s:
                break
    except (av.FFmpegError, ValueError):
        raise MediaError(f"the uploaded {label} is corrupt or truncated: re-export it and upload again") from None
    return end

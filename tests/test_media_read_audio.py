"""read_audio: audio-only files of several codecs, on the stream's own clock, with a length cap."""

import numpy as np
import pytest

from seedance.data.media import read_audio, write_clip
from seedance.errors import MediaError


def write_wav(path, wave, sr):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=sr)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16)[None], format="s16", layout="mono")
        frame.sample_rate = sr
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def click_track(sr, seconds=1.0, at=(0.25, 0.6)):
    wave = np.zeros(int(sr * seconds), np.float32)
    for t in at:
        i = int(t * sr)
        wave[i : i + 80] = 0.8
    return wave


def test_wav_resampled_keeps_click_times(tmp_path):
    path = tmp_path / "clicks.wav"
    write_wav(path, click_track(44_100), 44_100)
    wave = read_audio(path, sample_rate=16_000)
    assert abs(wave.shape[0] - 16_000) <= 2
    first = np.argmax(np.abs(wave) > 0.3) / 16_000
    assert abs(first - 0.25) < 0.002


def test_audio_of_an_mp4_starts_in_time(tmp_path):
    sr, fps = 16_000, 16
    frames = np.zeros((16, 32, 32, 3), np.uint8)
    path = write_clip(tmp_path / "c.mp4", frames, click_track(sr), fps, sr)
    wave = read_audio(path, sample_rate=sr)
    first = np.argmax(np.abs(wave) > 0.3) / sr
    assert abs(first - 0.25) < 0.01  # AAC priming honoured: not ~64 ms late


def test_length_cap_and_bad_files(tmp_path):
    path = tmp_path / "long.wav"
    write_wav(path, np.zeros(16_000 * 3, np.float32), 16_000)
    with pytest.raises(MediaError, match="longer than 1 s"):
        read_audio(path, max_seconds=1)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(MediaError, match="junk.wav"):
        read_audio(junk)
    with pytest.raises(MediaError, match="no such file"):
        read_audio(tmp_path / "missing.wav")

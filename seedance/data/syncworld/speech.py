"""Real speech from espeak-ng, with phoneme and word timings.

espeak-ng ships as a shared library inside the `espeakng-loader` wheel; we drive
it through ctypes in AUDIO_OUTPUT_SYNCHRONOUS mode with phoneme events switched
on, so one `espeak_Synth` call returns (through our callback) the 22.05 kHz
int16 waveform together with a time-stamped list of phoneme and word events.

    >>> s = synthesize("big red dog", voice="en-us", rate_wpm=175, pitch=50)
    >>> s.audio.shape, s.phonemes[:2], s.words
    ((13616,), ((0.012, 'b'), (0.044, "'I")), ((0.0, 'big'), (0.236, 'red'), (0.466, 'dog')))

espeak keeps global state (current voice, parameters, callback), so every call
goes through one process-wide lock. Some of that state also leaks from one
utterance into the next (the pitch-flutter phase, the roughness cycle parity,
the breath-noise filter), so the same word would come out slightly different
depending on what was spoken before. We therefore speak through our own voice
variants with those three effects off (`flutter 0`, `roughness 8`, `breath 0`,
on top of the named variant), kept in a private espeak-ng-data folder made of
links to the wheel's data: the same call then gives the same samples in any
order and any process. Synthesis is the costly part of a SyncWorld
face clip, so results are cached per (text, voice, rate, pitch, sample rate);
the cached arrays are read-only.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from seedance.errors import SeedanceError

# speak_lib.h constants (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3

RATE_MIN_WPM, RATE_MAX_WPM = 80, 450  # espeakRATE_MINIMUM / espeakRATE_MAXIMUM
PITCH_MIN, PITCH_MAX = 0, 100


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character index of the word
        ("length", ctypes.c_int),  # word length in characters
        ("audio_position", ctypes.c_int),  # milliseconds into the generated audio
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Speech:
    """One synthesized utterance. Times are seconds from the first sample of `audio`."""

    audio: np.ndarray  # float32 [S] in [-1, 1], read-only
    sample_rate: int
    phonemes: tuple[tuple[float, str], ...]  # (start, espeak mnemonic incl. stress marks ' and ,); "_" = pause
    words: tuple[tuple[float, str], ...]  # (start, word as written in the text)

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.sample_rate


class _Espeak:
    """The loaded library plus the buffers its callback fills (used only under `_LOCK`)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader

            lib_path, wheel_data = espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
            lib = ctypes.CDLL(lib_path)
            data_path = _private_data_dir(wheel_data)
        except (ImportError, OSError, RuntimeError) as exc:
            raise SeedanceError(
                f"cannot load espeak-ng ({exc}); reinstall it with: pip install --force-reinstall espeakng-loader"
            ) from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        # espeak-ng >= 1.50 accepts the espeak-ng-data folder itself; older builds want its parent.
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            parent = os.path.dirname(data_path)
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, parent.encode(), _INITIALIZE_PHONEME_EVENTS)
        if rate <= 0:
            raise SeedanceError(
                f"espeak-ng failed to initialise with data at {data_path}; "
                "reinstall it with: pip install --force-reinstall espeakng-loader"
            )
        self.variants = set(os.listdir(os.path.join(wheel_data, "voices", "!v")))
        self.lib = lib
        self.native_rate = int(rate)  # 22050 for espeak-ng's own voices
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._callback = _SynthCallback(self._on_audio)  # kept alive: espeak holds a raw pointer to it
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, num_samples: int, events) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type in (_EVENT_PHONEME, _EVENT_WORD):
                name = ev.id.string if ev.type == _EVENT_PHONEME else b""
                self._events.append((ev.type, ev.audio_position, ev.text_position, ev.length, name))
            i += 1
        return 0  # continue synthesis

    def synth(self, text: str, voice: str, rate_wpm: int, pitch: int):
        """int16 audio at the native rate and raw events; caller holds `_LOCK`."""
        language, _, variant = voice.partition("+")
        if variant and variant not in self.variants:
            raise SeedanceError(f"espeak-ng has no voice variant {variant!r}; use e.g. 'en-us+f2', 'en+m3'")
        steady = f"{language}+{_STEADY_PREFIX}{variant}" if variant else f"{language}+{_STEADY_PREFIX.rstrip('_')}"
        if self.lib.espeak_SetVoiceByName(steady.encode()) != 0:
            raise SeedanceError(f"espeak-ng has no voice {voice!r}; use e.g. 'en-us', 'en', 'en-us+f2', 'en+m3'")
        # Setting a voice resets rate and pitch, so set them after it on every call.
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if err != 0:
            raise SeedanceError(
                f"espeak-ng could not synthesize {text!r} (error {err}); try a shorter plain-text phrase"
            )
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        events, self._chunks, self._events = self._events, [], []
        return audio, events


# Our variants switch off the effects whose state carries over between utterances (see the module doc).
_STEADY_PREFIX = "sd_"
_STEADY_SETTINGS = "\nflutter 0\nroughness 8\nbreath 0\n"


def _private_data_dir(wheel_data: str) -> str:
    """An espeak-ng-data folder of links to the wheel's data, with steady copies of its voice variants (made once)."""
    wheel_data = os.path.realpath(wheel_data)
    variants_dir = os.path.join(wheel_data, "voices", "!v")
    stamp = f"v2|{wheel_data}|{os.path.getmtime(variants_dir)}|{_STEADY_SETTINGS}"
    key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    user = os.getuid() if hasattr(os, "getuid") else 0
    root = os.path.join(tempfile.gettempdir(), f"seedance-espeak-{user}-{key}")
    final = os.path.join(root, "espeak-ng-data")
    if os.path.isdir(final):
        return final
    os.makedirs(root, exist_ok=True)
    build = tempfile.mkdtemp(dir=root, prefix="building-")
    try:
        for name in os.listdir(wheel_data):
            if name != "voices":
                os.symlink(os.path.join(wheel_data, name), os.path.join(build, name))
        os.makedirs(os.path.join(build, "voices", "!v"))
        for name in os.listdir(os.path.join(wheel_data, "voices")):
            if name != "!v":
                os.symlink(os.path.join(wheel_data, "voices", name), os.path.join(build, "voices", name))
        steady = {_STEADY_PREFIX.rstrip("_"): "name seedance steady\n"}
        for name in os.listdir(variants_dir):  # only steady copies: espeak lists at most 349 voices
            with open(os.path.join(variants_dir, name), encoding="utf-8", errors="replace") as f:
                steady[_STEADY_PREFIX + name] = f.read()
        for name, text in steady.items():
            with open(os.path.join(build, "voices", "!v", name), "w", encoding="utf-8") as f:
                f.write(text + _STEADY_SETTINGS)
        os.rename(build, final)  # atomic; another process may have won the race
    except OSError:
        if not os.path.isdir(final):
            raise
    finally:
        if os.path.isdir(build):
            shutil.rmtree(build, ignore_errors=True)
    return final


_LOCK = threading.Lock()
_ENGINE: _Espeak | None = None


def _reset_lock_after_fork() -> None:
    # A data-loader worker forked while another thread held the lock would otherwise deadlock.
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_after_fork)


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def resample(audio: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling (float32 out)."""
    if orig_rate == new_rate:
        return audio.astype(np.float32)
    g = gcd(int(orig_rate), int(new_rate))
    return resample_poly(audio.astype(np.float64), new_rate // g, orig_rate // g).astype(np.float32)


def synthesize(
    text: str, voice: str = "en-us", rate_wpm: int = 175, pitch: int = 50, sample_rate: int = 16_000
) -> Speech:
    """Speak `text` with an espeak-ng voice; audio at `sample_rate`, phoneme and word start times in seconds.

    `voice` is an espeak-ng voice name, optionally with a variant (`en-us`, `en`, `en-us+f2`, `en+m3`),
    `rate_wpm` in words per minute (80..450), `pitch` 0..100 (50 = the voice's normal pitch).
    Results are cached; the returned arrays are read-only.
    """
    if not isinstance(text, str) or not text.strip():
        raise SeedanceError("text to speak must be a non-empty string")
    if not isinstance(voice, str) or not voice.strip():
        raise SeedanceError("voice must be an espeak-ng voice name such as 'en-us'")
    if not RATE_MIN_WPM <= int(rate_wpm) <= RATE_MAX_WPM:
        raise SeedanceError(f"speaking rate {rate_wpm} wpm is out of range; use {RATE_MIN_WPM}..{RATE_MAX_WPM}")
    if not PITCH_MIN <= int(pitch) <= PITCH_MAX:
        raise SeedanceError(f"pitch {pitch} is out of range; use {PITCH_MIN}..{PITCH_MAX}")
    if int(sample_rate) <= 0:
        raise SeedanceError(f"sample rate must be positive, got {sample_rate}")
    return _synthesize_cached(" ".join(text.split()), voice.strip(), int(rate_wpm), int(pitch), int(sample_rate))


@functools.lru_cache(maxsize=4096)
def _synthesize_cached(text: str, voice: str, rate_wpm: int, pitch: int, sample_rate: int) -> Speech:
    with _LOCK:
        engine = _engine()
        raw, events = engine.synth(text, voice, rate_wpm, pitch)
        native_rate = engine.native_rate
    audio = resample(raw.astype(np.float32) / 32768.0, native_rate, sample_rate)
    audio.setflags(write=False)
    phonemes, words = [], []
    for kind, ms, text_pos, length, name in events:
        t = ms / 1000.0
        if kind == _EVENT_PHONEME:
            phonemes.append((t, name.decode("utf-8", "replace")))
        else:
            words.append((t, text[text_pos - 1 : text_pos - 1 + length]))
    return Speech(audio=audio, sample_rate=sample_rate, phonemes=tuple(phonemes), words=tuple(words))


def cache_info():
    """Hit/miss counts of the synthesis cache (for benchmarks)."""
    return _synthesize_cached.cache_info()


def clear_cache() -> None:
    _synthesize_cached.cache_clear()

"""Prompt-adherence probes: small classifiers that read SyncWorld attributes back from a clip.

One network, `AttributeProbe`, with a clip-level video encoder (a per-frame CNN
over 4 frames, pooled over space and time) and an audio encoder (1-D CNN over
the log-mel), and one head per attribute:

    scene   face | bounce | keys                       (every clip)
    colors  which of the 12 SyncWorld colours appear   (multi-label, every clip)
    count   objects (bounce) or keys/pads (keys)       (1..12)
    voice   male | female                              (face)
    pitch   low | medium | high voice                  (face)
    words   which vocabulary words are spoken          (multi-label, face)

With `word_spotter_width` (`pitch_spotter_width`) > 0 the words (the pitch)
come from a `MelSpotter` instead of the linear head: pooled features cannot
tell which words a clip holds. With `pitch_spotter_f0` the pitch spotter also
reads the measured F0 track (`pitch_track`) beside the log-mel, since 64 mel
bands barely resolve a voice's harmonics. The shipped one was trained so, with
the track blanked on half the clips; it reads held-out voices better than the
mel-only spotter did, though blanking the track changes its readings little
(weights/README.md, probes). With `object_cue_width` > 0 the colours and the
count come from heads that also see `object_cues` (object_cues.py), measured
over every frame of the clip: four frames miss a key lit for a moment and an
object hidden behind another.

`check_caption` parses a SyncWorld-style caption into the attributes it names
(colour names, number words, "female voice", quoted words, ...), runs the probes
and reports each named attribute as matched or not. The encoders' pooled
features double as the "own encoders" of the Frechet distances (frechet.py).
Trained by pipelines/train_probes.py; shipped in weights/probes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from seedance.data.syncworld.common import COLORS, NUMBER_WORDS
from seedance.errors import SeedanceError
from seedance.eval.object_cues import object_cue_dim, object_cues
from seedance.models.mel import LogMel, preset_from_mel_config

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "probes"

SCENES = ("face", "bounce", "keys")
COLOR_NAMES = tuple(COLORS)
COUNTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12)
VOICES = ("male", "female")
PITCHES = ("low", "medium", "high")
MULTI_LABEL = ("colors", "words")
OBJECT_HEADS = ("colors", "count")  # the heads that see object cues when object_cue_width > 0


def default_classes() -> dict[str, list]:
    """Each head's classes, from the SyncWorld definitions of today (stored in the probe's config, so a
    trained probe keeps its meaning if SyncWorld's vocabulary changes later)."""
    from seedance.data.syncworld.face import VOCABULARY

    return {
        "scene": list(SCENES),
        "colors": list(COLOR_NAMES),
        "count": list(COUNTS),
        "voice": list(VOICES),
        "pitch": list(PITCHES),
        "words": list(VOCABULARY),
    }


def targets_from_labels(labels: dict, classes: dict[str, list]) -> dict:
    """SyncWorld labels -> per-head targets (class index, or a 0/1 vector for multi-label; None = not defined)."""
    scene = labels["scene"]
    out = {name: None for name in classes}
    out["scene"] = classes["scene"].index(scene)
    if scene == "bounce":
        present = set(labels["colors"])
        out["count"] = classes["count"].index(int(labels["count"]))
    elif scene == "face":
        present = {labels["face_color"], labels["lip_color"]}
        out["voice"] = classes["voice"].index(labels["gender"])
        out["pitch"] = classes["pitch"].index(labels["pitch"])
        out["words"] = np.array([w in labels["words"] for w in classes["words"]], np.float32)
    else:
        present = {labels["key_color"], labels["light_color"]}
        out["count"] = classes["count"].index(int(labels["rows"]) * int(labels["cols"]))
    out["colors"] = np.array([c in present for c in classes["colors"]], np.float32)
    return out


def _conv2d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(8, cout), nn.SiLU())


def _conv1d(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class MelSpotter(nn.Module):
    """Per-class scores from where each class is heard: log-mel [B,n_mels,M] (normalised) -> logits [B,V].

    A 1-D CNN keeps time (stride 2 once, then dilated convs for ~0.3 s of context); each class has its own
    attention over time, so a word is scored where it is said and a voice's pitch where it speaks. Mean
    and max pooling of one shared embedding (the probe's audio side) mixed the words of a clip and read
    1% of word sets right, and the voice's pitch 52%.
    """

    def __init__(self, n_mels: int, width: int, num_words: int):
        super().__init__()

        def block(cin: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
            conv = nn.Conv1d(cin, width, 5, stride, 2 * dilation, dilation=dilation)
            return [conv, nn.GroupNorm(8, width), nn.SiLU()]

        self.net = nn.Sequential(*block(n_mels), *block(width, stride=2), *block(width, dilation=2),
                                 *block(width, dilation=4))  # fmt: skip
        self.attention = nn.Conv1d(width, num_words, 1)
        self.score = nn.Conv1d(width, num_words, 1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.net(mel)  # [B,W,M/2]
        weights = self.attention(h).softmax(dim=-1)  # [B,V,M/2]: where each word would be
        return (self.score(h) * weights).sum(dim=-1)  # [B,V]


class AttributeProbe(ModelMixin, ConfigMixin):
    """frames [B,T,3,H,W] in [0,1] + log-mel [B,n_mels,M] -> {head: logits}."""

    @register_to_config
    def __init__(
        self,
        fps: float = 16.0,
        height: int = 64,
        width: int = 64,
        num_frames: int = 4,
        sample_rate: int = 16_000,
        n_fft: int = 1024,
        win_length: int = 640,
        hop_length: int = 160,
        n_mels: int = 64,
        video_widths: tuple[int, ...] = (32, 64, 96),
        audio_widths: tuple[int, ...] = (64, 96, 96, 96),
        embed_dim: int = 128,
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
        classes: dict | None = None,
        palette: list | None = None,
        color_sigma: float = 30.0,
        word_spotter_width: int = 0,
        pitch_spotter_width: int = 0,
        pitch_spotter_f0: bool = False,
        object_cue_width: int = 0,
    ):
        super().__init__()
        classes = classes or default_classes()
        palette = palette or [list(COLORS[c]) for c in classes["colors"]]
        # 1. video: per-frame CNN (a 4x4 patchify, then strided convs), then mean and max over space and time
        layers = [nn.Conv2d(3, video_widths[0], 4, 4), nn.GroupNorm(8, video_widths[0]), nn.SiLU()]
        c = video_widths[0]
        for w in video_widths[1:]:
            layers.append(_conv2d(c, w))
            c = w
        self.frame_cnn = nn.Sequential(*layers)
        self.video_proj = nn.Linear(4 * c, embed_dim)
        # 2. audio: 1-D CNN over mel frames, then mean and max over time
        layers, c = [], n_mels
        for i, w in enumerate(audio_widths):
            layers.append(_conv1d(c, w, stride=1 if i == 0 else 2))
            c = w
        self.audio_cnn = nn.Sequential(*layers)
        self.audio_proj = nn.Linear(2 * c, embed_dim)
        # 3. measured cues: how much of each named colour is on screen, and the voice's pitch
        self.register_buffer("palette_rgb", torch.tensor(palette, dtype=torch.float32) / 255.0, persistent=False)
        self.cue_proj = nn.Sequential(nn.Linear(len(palette) + 3, 64), nn.SiLU())
        # 4. one linear head per attribute on the joint embedding
        joint = 2 * embed_dim + 64
        self.heads = nn.ModuleDict({name: nn.Linear(joint, len(c)) for name, c in classes.items()})
        self.classes = {name: list(c) for name, c in classes.items()}
        # 5. optional: spotters whose logits replace the linear "words" and "pitch" heads' (see MelSpotter)
        self.word_spotter = (
            MelSpotter(n_mels, word_spotter_width, len(classes["words"])) if word_spotter_width > 0 else None
        )
        self.pitch_spotter = (
            MelSpotter(n_mels + (2 if pitch_spotter_f0 else 0), pitch_spotter_width, len(classes["pitch"]))
            if pitch_spotter_width > 0
            else None
        )
        # 6. optional: colour and count heads that also see the whole clip's measured object cues
        self.object_proj = self.object_heads = None
        if object_cue_width > 0:
            self.object_proj = nn.Sequential(nn.Linear(object_cue_dim(len(palette)), object_cue_width), nn.SiLU())
            self.object_heads = nn.ModuleDict(
                {name: nn.Linear(joint + object_cue_width, len(classes[name])) for name in OBJECT_HEADS}
            )

    def logmel(self) -> LogMel:
        return LogMel(preset_from_mel_config(self.config))

    def embed_video(self, frames: torch.Tensor) -> torch.Tensor:
        """[B,T,3,H,W] in [0,1] -> [B,embed_dim] (before the heads: also the FVD-analog feature)."""
        B, T = frames.shape[:2]
        h = self.frame_cnn(frames.flatten(0, 1) * 2.0 - 1.0)  # [B*T,C,h,w]
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1).view(B, T, -1)
        h = torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=1)
        return F.silu(self.video_proj(h))

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """[B,n_mels,M] log-mel -> [B,embed_dim] (also the FAD-analog feature)."""
        h = self.audio_cnn((mel - self.config.mel_mean) / self.config.mel_std)
        return F.silu(self.audio_proj(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)))

    def color_cues(self, frames: torch.Tensor) -> torch.Tensor:
        """[B,T,3,H,W] -> [B,K]: log share of pixels near each palette colour, the largest over the frames."""
        with torch.no_grad():  # a fixed measurement, nothing to learn
            B, T = frames.shape[:2]
            small = F.avg_pool2d(frames.flatten(0, 1), 2).unflatten(0, (B, T))  # half size: plenty for shares
            pix = small.permute(0, 1, 3, 4, 2).flatten(2, 3)  # [B,T,HW/4,3]
            c = self.palette_rgb  # [K,3]
            d2 = (pix * pix).sum(-1, keepdim=True) - 2.0 * pix @ c.T + (c * c).sum(-1)  # [B,T,HW,K]
            sigma = self.config.color_sigma / 255.0
            share = torch.exp(-d2.clamp(min=0) / (2 * sigma * sigma)).mean(dim=2)  # [B,T,K]
            return torch.log(share.amax(dim=1) + 1e-4)

    def object_cues(self, frames: torch.Tensor) -> torch.Tensor:
        """[B,F,3,H,W] in [0,1], every frame of the clip -> [B, D] (see object_cues.py)."""
        return object_cues(frames, self.palette_rgb)

    def f0_frames(self, audio: torch.Tensor, centered: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """[B,S] waveform -> (log2 F0 - 7 [B,N], voiced [B,N] bool) over 40 ms frames every 10 ms; `centered`
        pads 20 ms each side and steps by the log-mel's hop, so that frame i is centred where its frame i is.

        F0 by autocorrelation over 50-400 Hz, taking the shortest lag within 85% of the best peak (the
        longer ones are sub-harmonics: octave errors)."""
        sr = self.config.sample_rate
        win, hop = int(0.04 * sr), int(0.01 * sr)
        if centered:
            audio, hop = F.pad(audio, (win // 2, win // 2)), self.config.hop_length
        frames = audio.unfold(-1, win, hop)  # [B,N,win]
        frames = frames - frames.mean(dim=-1, keepdim=True)
        spec = torch.fft.rfft(frames, n=2 * win)
        ac = torch.fft.irfft(spec.abs() ** 2, n=2 * win)[..., :win]  # [B,N,win]
        energy = ac[..., 0]
        ac = ac / energy.clamp(min=1e-8)[..., None]
        lo, hi = int(sr / 400), min(win - 1, int(sr / 50))
        band = ac[..., lo:hi]
        peak = band.max(dim=-1).values
        near_best = band >= 0.85 * peak[..., None]
        # the first run of lags close to the best, and its own peak: the first lag of the run sits on the rising
        # slope (a biased autocorrelation decays with lag), which would read the pitch sharp
        idx = torch.arange(band.shape[-1], device=band.device)
        first = torch.argmax(near_best.int(), dim=-1, keepdim=True)
        after = idx >= first
        in_run = after & ((~near_best & after).int().cumsum(dim=-1) == 0)
        lag = torch.argmax(torch.where(in_run, band, torch.full_like(band, -2.0)), dim=-1) + lo
        loud = energy > energy.amax(dim=-1, keepdim=True) * 1e-3
        voiced = (peak > 0.5) & loud
        return torch.log2(sr / lag.float()) - 7.0, voiced

    def pitch_cues(self, audio: torch.Tensor) -> torch.Tensor:
        """[B,S] waveform -> [B,3]: median and spread of log2 F0 over voiced 40 ms frames, and the voiced share."""
        logf, voiced = self.f0_frames(audio)
        masked = torch.where(voiced, logf, torch.full_like(logf, float("nan")))
        median = torch.nan_to_num(masked.nanmedian(dim=-1).values, nan=0.0)
        n = voiced.float().sum(dim=-1).clamp(min=1.0)
        spread = torch.sqrt((((logf - median[:, None]) ** 2) * voiced.float()).sum(dim=-1) / n + 1e-6)
        return torch.stack([median, spread, voiced.float().mean(dim=-1)], dim=-1)

    def pitch_track(self, audio: torch.Tensor) -> torch.Tensor:
        """[B,S] waveform -> [B,2,S//hop], one column per log-mel frame: log2 F0 - 7 where voiced (else 0),
        and the voiced flag. What the pitch spotter reads beside the log-mel when `pitch_spotter_f0`."""
        logf, voiced = self.f0_frames(audio, centered=True)
        m = audio.shape[-1] // self.config.hop_length  # LogMel keeps S//hop frames
        logf, voiced = logf[:, :m], voiced[:, :m]
        return torch.stack([torch.where(voiced, logf, torch.zeros_like(logf)), voiced.float()], dim=1)

    def forward(
        self,
        frames: torch.Tensor,
        mel: torch.Tensor,
        audio: torch.Tensor | None = None,
        pitch: torch.Tensor | None = None,
        objects: torch.Tensor | None = None,
        pitch_track: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """frames [B,T,3,H,W] in [0,1], mel [B,n_mels,M] (this probe's LogMel of `audio`), audio [B,S];
        `pitch` = pitch_cues(audio) when already known (training caches it: it ignores gain);
        `objects` = object_cues(all frames of the clip) for the object heads (`predict` passes it; without it
        they measure the T frames given); `pitch_track` = pitch_track(audio) when already known."""
        if pitch is None:
            if audio is None:
                raise SeedanceError("AttributeProbe needs the waveform (or its pitch cues)")
            pitch = self.pitch_cues(audio)
        cues = self.cue_proj(torch.cat([self.color_cues(frames), pitch], dim=-1))
        joint = torch.cat([self.embed_video(frames), self.embed_audio(mel), cues], dim=1)
        out = {name: head(joint) for name, head in self.heads.items()}
        normalised = (mel - self.config.mel_mean) / self.config.mel_std
        if self.word_spotter is not None:
            out["words"] = self.word_spotter(normalised)
        if self.pitch_spotter is not None:
            heard = normalised
            if self.config.pitch_spotter_f0:
                if pitch_track is None:
                    if audio is None:
                        raise SeedanceError("AttributeProbe's pitch spotter needs the waveform (or its pitch track)")
                    pitch_track = self.pitch_track(audio)
                if pitch_track.shape[-1] != mel.shape[-1]:
                    raise SeedanceError(
                        f"pitch track has {pitch_track.shape[-1]} frames, the log-mel {mel.shape[-1]}; "
                        "compute both from the same waveform"
                    )
                heard = torch.cat([normalised, pitch_track], dim=1)
            out["pitch"] = self.pitch_spotter(heard)
        if self.object_heads is not None:
            seen = torch.cat([joint, self.object_proj(self.object_cues(frames) if objects is None else objects)], 1)
            out.update({name: head(seen) for name, head in self.object_heads.items()})
        return out


# --------------------------------------------------------------------------- inputs


def sample_frame_indices(num_available: int, num_frames: int) -> np.ndarray:
    """Evenly spread frame indices (the middle of each of num_frames equal spans)."""
    return np.clip(((np.arange(num_frames) + 0.5) * num_available / num_frames).astype(int), 0, num_available - 1)


def prepare_inputs(model: AttributeProbe, frames: np.ndarray, audio: np.ndarray):
    """A clip already at the probe's fps/size/rate (uint8 [F,H,W,3], mono [S]) -> batch-of-one
    (frames [1,T,3,H,W], log-mel [1,n_mels,M], waveform [1,S])."""
    cfg = model.config
    if frames.shape[1:3] != (cfg.height, cfg.width):
        raise SeedanceError(
            f"probe input must be {cfg.height}x{cfg.width}, got {frames.shape[1]}x{frames.shape[2]}; "
            "read the clip with read_clip(..., size=(H, W))"
        )
    idx = sample_frame_indices(frames.shape[0], cfg.num_frames)
    x = torch.from_numpy(np.ascontiguousarray(frames[idx])).permute(0, 3, 1, 2).float().div(255.0)[None]
    y = np.asarray(audio, np.float32)
    need = int(round(frames.shape[0] / cfg.fps * cfg.sample_rate))
    y = torch.from_numpy(np.pad(y[:need], (0, max(0, need - y.shape[0]))))[None]
    return x, model.logmel()(y), y


MAX_OBJECT_CUE_FRAMES = 64  # twice the clips the object heads learned on; a longer clip is sampled evenly


def clip_object_cues(model: AttributeProbe, frames: np.ndarray) -> torch.Tensor | None:
    """uint8 [F,H,W,3] at the probe's size -> the whole clip's object cues [1,D] (None: the probe has no
    object heads). Clips longer than MAX_OBJECT_CUE_FRAMES frames are read at that many evenly spread frames."""
    if model.object_heads is None:
        return None
    if frames.shape[0] > MAX_OBJECT_CUE_FRAMES:
        frames = frames[sample_frame_indices(frames.shape[0], MAX_OBJECT_CUE_FRAMES)]
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255.0)[None]
    return model.object_cues(x)


@torch.no_grad()
def predict(model: AttributeProbe, frames: np.ndarray, audio: np.ndarray) -> dict[str, dict]:
    """Per head: the top class and its probability, plus every class's probability."""
    logits = model(*prepare_inputs(model, frames, audio), objects=clip_object_cues(model, frames))
    out = {}
    for name, classes in model.classes.items():
        z = logits[name][0].float()
        probs = torch.sigmoid(z) if name in MULTI_LABEL else torch.softmax(z, dim=-1)
        top = int(torch.argmax(probs))
        out[name] = {
            "top": classes[top],
            "probability": float(probs[top]),
            "probs": {str(c): round(float(p), 4) for c, p in zip(classes, probs)},
        }
    return out


# --------------------------------------------------------------------------- captions

_NUMBER_VALUES = {**{w: n for n, w in NUMBER_WORDS.items()}, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12}
# Whole words (a trailing "s" allowed) that point to a scene; keys cues outnumber the ambiguous "falling".
_SCENE_CUES = {
    "face": ("face", "says", "saying", "speaks", "spoken", "voice", "lips", "talking", "head", "skin"),
    "bounce": (
        "bounce", "bounces", "bouncing", "bouncy", "falling", "dropped", "drop", "drops", "fall", "falls", "ball",
        "circle", "disc", "square", "block", "cube", "triangle", "wedge", "pyramid", "objects", "hop", "hops",
        "spring", "springs", "thud", "floor", "ground", "hit", "hits",
    ),
    "keys": (
        "key", "pad", "melody", "tune", "rhythm", "beat", "pattern", "phrase", "piano", "marimba", "harp", "string",
        "glockenspiel", "chime", "synth", "synthesizer", "drum", "drums", "bpm", "note", "lights", "lighting",
        "glowing", "flash", "grid", "row",
    ),
}  # fmt: skip


def _has(word: str, text: str) -> bool:
    """`word` as a whole word (not part of a hyphenated one like "one-note")."""
    return re.search(rf"(?<![\w-]){re.escape(word)}s?(?![\w-])", text) is not None


def parse_caption(caption: str, vocabulary: list[str] | None = None) -> dict:
    """The attributes a SyncWorld-style caption names: {head: expected value (or list for multi-label)}."""
    text = " " + caption.lower() + " "
    found: dict = {}
    quoted = re.findall(r"'([^']+)'|\"([^\"]+)\"", caption)
    spoken = " ".join(a or b for a, b in quoted).lower().split()
    outside = re.sub(r"'[^']*'|\"[^\"]*\"", " ", text)  # colours and numbers are not in the spoken words
    colors = [c for c in COLOR_NAMES if re.search(rf"\b{re.escape(c)}\b", outside)]
    rest = outside  # the caption without its colour names ("deep purple" is not a deep voice)
    for c in sorted(colors, key=len, reverse=True):
        rest = re.sub(rf"\b{re.escape(c)}\b", " ", rest)
    scores = {scene: sum(_has(cue, rest) for cue in cues) for scene, cues in _SCENE_CUES.items()}
    if max(scores.values()) > 0:
        found["scene"] = max(scores, key=scores.get)
    if colors:
        found["colors"] = colors
    grid = re.search(r"\b(\d+)\s*x\s*(\d+)\b", rest)
    if grid:
        found["count"] = int(grid.group(1)) * int(grid.group(2))
    elif found.get("scene") in ("bounce", "keys"):
        numbers = [n for word, n in _NUMBER_VALUES.items() if _has(word, rest) and n in COUNTS]
        if numbers:
            found["count"] = numbers[0]
        elif found.get("scene") == "bounce":
            # "a red, a teal and a white ball": one object per "a <colour>"; else "a ... ball" is one
            listed = re.findall(rf"\b(?:a|an) ({'|'.join(map(re.escape, COLOR_NAMES))})\b", outside)
            if len(listed) >= 2:
                found["count"] = len(listed)
            elif re.search(r"\b(a|an)\b", rest):
                found["count"] = 1
    if found.get("scene") == "face":
        if re.search(r"\b(female|woman's|woman)\b", rest):
            found["voice"] = "female"
        elif re.search(r"\b(male|man's|man)\b", rest):
            found["voice"] = "male"
        if re.search(r"\b(deep|low)\b", rest):
            found["pitch"] = "low"
        elif re.search(r"\bhigh\b", rest):
            found["pitch"] = "high"
        elif "voice" in rest:
            found["pitch"] = "medium"
        vocabulary = vocabulary if vocabulary is not None else default_classes()["words"]
        words = [w.strip(".,;:!?") for w in spoken]
        words = [w for w in words if w in vocabulary]
        if words:
            found["words"] = words
    return found


@dataclass
class AttributeCheck:
    attribute: str
    expected: object
    predicted: object
    probability: float
    matched: bool

    def to_dict(self) -> dict:
        return {
            "attribute": self.attribute,
            "expected": self.expected,
            "predicted": self.predicted,
            "probability": round(float(self.probability), 4),
            "matched": bool(self.matched),
        }


def check_caption(
    model: AttributeProbe, frames: np.ndarray, audio: np.ndarray, caption: str, predictions: dict | None = None
) -> list[AttributeCheck]:
    """Compare what the caption names with what the probes read from the clip (`predictions`: predict()'s
    output for this clip when the caller has it already)."""
    expected = parse_caption(caption, model.classes.get("words"))
    pred = predictions if predictions is not None else predict(model, frames, audio)
    checks = []
    for name, want in expected.items():
        probs = pred[name]["probs"]
        if name in MULTI_LABEL:  # multi-label: the named set should be the top-|set| classes
            ranked = sorted(probs, key=probs.get, reverse=True)[: len(set(want))]
            got = sorted(ranked)
            ok = set(got) == set(want)
            p = float(min(probs[w] for w in want))
            checks.append(AttributeCheck(name, sorted(set(want)), got, p, ok))
        else:
            got = pred[name]["top"]
            checks.append(AttributeCheck(name, want, got, probs[str(want)], str(got) == str(want)))
    return checks


def load_probes(path: str | Path | None = None) -> AttributeProbe:
    from seedance.models.io import load_component

    return load_component(AttributeProbe, path or DEFAULT_WEIGHTS).float().eval()


__all__ = [
    "MULTI_LABEL",
    "AttributeCheck",
    "AttributeProbe",
    "check_caption",
    "default_classes",
    "load_probes",
    "parse_caption",
    "predict",
    "targets_from_labels",
]

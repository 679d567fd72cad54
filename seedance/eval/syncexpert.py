"""SyncExpert: an own contrastive audio-visual sync model, scored with the SyncNet protocol.

A video tower embeds a 5-frame window (RGB frames plus their grey differences,
stacked as channels); an audio tower embeds the 0.2 s of log-mel centred on the
window's middle frame. Both embeddings are L2-normalised, so matching pairs are
close and shifted or foreign audio is far. Trained on SyncWorld by
`pipelines/train_syncexpert.py`; shipped in `weights/syncexpert`.

Scoring one clip (the SyncNet protocol, Chung & Zisserman 2016, as used for
LSE-D/LSE-C in Wav2Lip): for every video window t and every shift d in
-15..+15 frames take the distance between the video embedding at t and the
audio embedding at t + d (silence beyond the clip's ends), average over t:

    dist[d]  = mean_t || v_t - a_{t+d} ||
    LSE-D    = min_d dist[d]               (lower: closer match)
    LSE-C    = median_d dist[d] - LSE-D    (higher: a clearer sync peak)
    offset   = argmin_d dist[d]            (positive: audio late)

The distance scale is our own (embeddings on the unit sphere, distances in
[0, 2]); numbers are not comparable with SyncNet's. This model is only an
evaluator: never use it (or these weights) as a training loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from scipy.signal import resample_poly
from torch import nn

from seedance.errors import SeedanceError
from seedance.eval.offset import as_mono
from seedance.models.mel import LOG_FLOOR, LogMel, preset_from_mel_config

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "weights" / "syncexpert"
SILENCE = math.log(LOG_FLOOR)


def _block2d(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


def _block1d(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class SyncExpert(ModelMixin, ConfigMixin):
    """Video window [B,T,3,S,S] and mel window [B,n_mels,W] -> unit embeddings [B,D] each."""

    @register_to_config
    def __init__(
        self,
        fps: float = 16.0,
        sample_rate: int = 16_000,
        n_fft: int = 1024,
        win_length: int = 640,
        hop_length: int = 160,
        n_mels: int = 64,
        image_size: int = 48,
        window_frames: int = 5,
        audio_window_s: float = 0.2,
        embed_dim: int = 64,
        video_widths: tuple[int, ...] = (32, 64, 128, 128),
        audio_widths: tuple[int, ...] = (96, 128, 128),
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
    ):
        super().__init__()
        if window_frames % 2 != 1:
            raise SeedanceError(f"SyncExpert window_frames must be odd, got {window_frames}")
        # 1. video tower: T RGB frames + (T-1) grey differences, stacked as channels
        cin = 3 * window_frames + (window_frames - 1)
        layers, c = [], cin
        for i, w in enumerate(video_widths):
            layers.append(_block2d(c, w, stride=2 if i < len(video_widths) - 1 else 1))
            c = w
        self.video_tower = nn.Sequential(*layers)
        self.video_head = nn.Linear(c, embed_dim)
        # 2. audio tower: log-mel and its time difference (onsets), as channels of a 1-D conv over time
        layers, c = [], 2 * n_mels
        for i, w in enumerate(audio_widths):
            layers.append(_block1d(c, w, stride=1 if i == 0 else 2))
            c = w
        self.audio_tower = nn.Sequential(*layers)
        self.audio_head = nn.Linear(c, embed_dim)
        # 3. contrastive temperature (CLIP-style learnable log scale)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    # ---- geometry ---------------------------------------------------------------------------------------------

    @property
    def mel_rate(self) -> float:
        return self.config.sample_rate / self.config.hop_length

    @property
    def audio_window(self) -> int:
        """Mel frames per audio window (0.2 s -> 20 at 100 frames/s)."""
        return int(round(self.config.audio_window_s * self.mel_rate))

    def logmel(self) -> LogMel:
        return LogMel(preset_from_mel_config(self.config))

    # ---- towers -----------------------------------------------------------------------------------------------

    def embed_video(self, windows: torch.Tensor) -> torch.Tensor:
        """windows float [B,T,3,S,S] in [0,1] -> [B,D] unit vectors."""
        B, T = windows.shape[:2]
        grey = windows.mean(dim=2)  # [B,T,S,S]
        diffs = (grey[:, 1:] - grey[:, :-1]) * 4.0  # motion, amplified
        x = torch.cat([windows.flatten(1, 2) * 2.0 - 1.0, diffs], dim=1)  # [B, 3T + T-1, S, S]
        h = self.video_tower(x).mean(dim=(2, 3))
        return F.normalize(self.video_head(h), dim=-1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B,n_mels,W] (log-mel, LogMel units) -> [B,D] unit vectors."""
        x = (mel - self.config.mel_mean) / self.config.mel_std
        onset = F.pad(x.diff(dim=-1), (1, 0))
        h = self.audio_tower(torch.cat([x, onset], dim=1)).mean(dim=-1)
        return F.normalize(self.audio_head(h), dim=-1)

    def forward(
        self, video_windows: torch.Tensor, mel_windows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both towers and the contrastive scale in one call (so DDP sees every parameter used)."""
        scale = self.logit_scale.exp().clamp(max=100.0)
        return self.embed_video(video_windows), self.embed_audio(mel_windows), scale


# --------------------------------------------------------------------------- windows


def prepare_frames(frames, image_size: int, crop: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """uint8 [F,H,W,3] -> float [F,3,S,S] in [0,1]: optional crop box, centre square, antialiased resize."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if x.dim() != 4 or x.shape[-1] != 3:
        raise SeedanceError(f"frames must be [F,H,W,3], got shape {tuple(x.shape)}")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    if crop is not None:
        top, left, bottom, right = (int(c) for c in crop)
        H, W = x.shape[1:3]
        if not (0 <= top < bottom <= H and 0 <= left < right <= W):
            raise SeedanceError(f"crop {crop} is outside the {H}x{W} frame; give (top, left, bottom, right) inside it")
        x = x[:, top:bottom, left:right]
    H, W = x.shape[1:3]
    side = min(H, W)
    y0, x0 = (H - side) // 2, (W - side) // 2
    x = x[:, y0 : y0 + side, x0 : x0 + side].permute(0, 3, 1, 2)
    if side != image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def video_windows(frames: torch.Tensor, centres: torch.Tensor, window_frames: int) -> torch.Tensor:
    """frames [F,3,S,S], centre indices [N] -> [N,T,3,S,S] (edges repeat the first/last frame)."""
    half = window_frames // 2
    idx = (centres[:, None] + torch.arange(-half, half + 1)[None]).clamp(0, frames.shape[0] - 1)
    return frames[idx]


def mel_windows(mel: torch.Tensor, centres_s: torch.Tensor, mel_rate: float, width: int) -> torch.Tensor:
    """mel [n_mels,M], window centres in seconds [N] -> [N,n_mels,width], silence outside the clip."""
    starts = torch.round(centres_s * mel_rate).long() - width // 2
    pad = int(max(0, -int(starts.min()))) + width
    pad_end = int(max(0, int(starts.max()) + width - mel.shape[1])) + width
    padded = F.pad(mel, (pad, pad_end), value=SILENCE)
    idx = starts[:, None] + pad + torch.arange(width)[None]  # [N,W]
    return padded[:, idx].permute(1, 0, 2)


def resample_frames(frames: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Constant-rate frames to another rate by presentation time (frame on screen at i / fps_out)."""
    if abs(fps_in - fps_out) < 1e-6:
        return frames
    n_out = max(1, int(round(frames.shape[0] / fps_in * fps_out)))
    idx = np.floor(np.arange(n_out) / fps_out * fps_in + 1e-6).astype(int).clip(0, frames.shape[0] - 1)
    return frames[idx]


# --------------------------------------------------------------------------- scoring


@dataclass
class SyncScore:
    lse_d: float
    lse_c: float
    offset_frames: int  # in the clip's own frames; positive: audio late
    offset_ms: float
    shifts_ms: np.ndarray  # [K] shift of each distance, ms
    distances: np.ndarray  # [K] mean distance per shift

    def to_dict(self) -> dict:
        return {
            "lse_d": float(self.lse_d),
            "lse_c": float(self.lse_c),
            "offset_frames": int(self.offset_frames),
            "offset_ms": float(self.offset_ms),
            "shifts_ms": [round(float(s), 3) for s in self.shifts_ms],
            "distances": [float(d) for d in self.distances],
        }


@torch.no_grad()
def score_sync(
    model: SyncExpert,
    frames,
    audio,
    fps: float,
    sample_rate: int,
    crop: tuple[int, int, int, int] | None = None,
    max_shift: int = 15,
) -> SyncScore:
    """SyncNet-protocol score of one clip (frames uint8 [F,H,W,3], audio float [S] or [C,S])."""
    cfg = model.config
    frames = np.asarray(frames.detach().cpu().numpy() if hasattr(frames, "detach") else frames)
    y = as_mono(audio)
    # 1. bring the clip to the expert's rates
    frames = resample_frames(frames, fps, cfg.fps)
    if int(sample_rate) != int(cfg.sample_rate):
        g = math.gcd(int(sample_rate), int(cfg.sample_rate))
        y = resample_poly(y, int(cfg.sample_rate) // g, int(sample_rate) // g).astype(np.float32)
    min_len = cfg.n_fft // 2 + 1
    if y.shape[0] < min_len:
        y = np.pad(y, (0, min_len - y.shape[0]))
    half = cfg.window_frames // 2
    F_ = frames.shape[0]
    if F_ < cfg.window_frames:
        raise SeedanceError(f"clip too short for the SyncExpert: {F_} frames, need at least {cfg.window_frames}")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    x = prepare_frames(frames, cfg.image_size, crop)  # [F,3,S,S]
    mel = model.logmel().to(device)(torch.from_numpy(y).to(device)[None])[0]  # [n_mels,M]
    # 2. embed every video window and every audio window it is compared with
    centres = torch.arange(half, F_ - half)
    v = torch.cat(
        [
            model.embed_video(video_windows(x, centres[i : i + 64], cfg.window_frames).to(device, dtype))
            for i in range(0, len(centres), 64)
        ]
    ).float()  # [N,D]
    positions = torch.arange(half - max_shift, F_ - half + max_shift)  # every audio window any shift needs
    mw = mel_windows(mel, positions.float() / cfg.fps, model.mel_rate, model.audio_window)
    a = torch.cat([model.embed_audio(mw[i : i + 256].to(dtype)) for i in range(0, len(mw), 256)]).float()
    # 3. mean distance per shift
    shifts = torch.arange(-max_shift, max_shift + 1)
    rows = centres[:, None] + shifts[None] - positions[0]  # [N,K] index into a
    dist = (v[:, None, :] - a[rows]).norm(dim=-1).mean(dim=0).cpu().numpy()  # [K]
    best = int(np.argmin(dist))
    shift_ms = shifts.numpy() * 1000.0 / cfg.fps
    offset_ms = float(shift_ms[best])
    return SyncScore(
        lse_d=float(dist[best]),
        lse_c=float(np.median(dist) - dist[best]),
        offset_frames=int(round(offset_ms * fps / 1000.0)),
        offset_ms=offset_ms,
        shifts_ms=shift_ms,
        distances=dist,
    )


def load_syncexpert(path: str | Path | None = None) -> SyncExpert:
    """The shipped SyncExpert (weights/syncexpert) or one at `path`, in eval mode, float32."""
    from seedance.models.io import load_component

    model = load_component(SyncExpert, path or DEFAULT_WEIGHTS)
    return model.float().eval()


__all__ = ["SyncExpert", "SyncScore", "load_syncexpert", "mel_windows", "prepare_frames", "score_sync", "video_windows"]

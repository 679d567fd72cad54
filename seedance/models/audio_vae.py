"""AudioVAE: a 1-D convolutional KL autoencoder over log-mel spectrograms.

    log-mel [B,n_mels,M] --encode--> latents [B,Ca,M/tc] --decode--> log-mel [B,n_mels,M]

At the tiny preset (100 mel frames/s) tc=5 gives 20 audio latents per second,
exactly 5 per video latent frame (4/s): the two latent clocks tick in a
whole-number ratio, so a video latent and its audio latents cover the same
0.25 s.

The mel comes from `seedance.models.mel.LogMel`; the config stores the mel
fields it was trained on and `logmel()` rebuilds that exact transform. Inputs
are standardised by two scalars (mel_mean, mel_std) measured on the training
set. Norms are per position (RMS over channels) so nothing depends on the clip
length; convolutions see both sides (the audio branch needs no causality).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from seedance.config import ClipPreset, get_preset
from seedance.errors import SeedanceError
from seedance.models.mel import LogMel, preset_from_mel_config
from seedance.models.video_vae import ChannelRMSNorm, LatentDistribution


class ResBlock1d(nn.Module):
    def __init__(self, channels: int, kernel: int = 5, dilation: int = 1):
        super().__init__()
        pad = dilation * (kernel // 2)
        self.norm1 = ChannelRMSNorm(channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation)
        self.norm2 = ChannelRMSNorm(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return x + h


class AudioEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c1, c2 = cfg.hidden_channels, cfg.latent_hidden_channels
        tc = cfg.temporal_compression
        self.conv_in = nn.Conv1d(cfg.n_mels, c1, 5, padding=2)
        self.blocks1 = nn.Sequential(*[ResBlock1d(c1, dilation=d) for d in (1, 2)][: cfg.blocks])
        # One strided conv does the whole time compression: latent j summarises mel frames [j*tc, (j+1)*tc).
        # Kernel about 2*tc with symmetric padding: output length is exactly M / tc.
        kernel = 2 * tc + tc % 2
        self.down = nn.Conv1d(c1, c2, kernel, stride=tc, padding=(kernel - tc) // 2)
        self.blocks2 = nn.Sequential(*[ResBlock1d(c2, kernel=3) for _ in range(cfg.blocks)])
        self.norm_out = ChannelRMSNorm(c2)
        self.conv_out = nn.Conv1d(c2, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.shape[-1] // self.down.stride[0]
        x = self.blocks1(self.conv_in(x))
        x = self.blocks2(self.down(x)[..., :m])
        return self.conv_out(F.silu(self.norm_out(x)))  # [B, 2*Ca, M/tc]


class AudioDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c1, c2 = cfg.hidden_channels, cfg.latent_hidden_channels
        self.tc = cfg.temporal_compression
        self.conv_in = nn.Conv1d(cfg.latent_channels, c2, 3, padding=1)
        self.blocks2 = nn.Sequential(*[ResBlock1d(c2, kernel=3) for _ in range(cfg.blocks)])
        self.up = nn.Conv1d(c2, c1, 5, padding=2)  # applied after nearest-neighbour repeat by tc
        self.blocks1 = nn.Sequential(*[ResBlock1d(c1, dilation=d) for d in (1, 2, 4)][: cfg.blocks + 1])
        self.norm_out = ChannelRMSNorm(c1)
        self.conv_out = nn.Conv1d(c1, cfg.n_mels, 5, padding=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.blocks2(self.conv_in(z))
        x = self.up(x.repeat_interleave(self.tc, dim=-1))
        x = self.blocks1(x)
        return self.conv_out(F.silu(self.norm_out(x)))  # [B, n_mels, Ta*tc] (standardised mel)


class AudioVAE(ModelMixin, ConfigMixin):
    """Mel-spectrogram KL autoencoder (diffusers-style; see the module docstring)."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        n_mels: int = 64,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int = 640,
        hop_length: int = 160,
        latent_channels: int = 16,
        hidden_channels: int = 128,
        latent_hidden_channels: int = 256,
        blocks: int = 2,
        temporal_compression: int = 5,
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ):
        super().__init__()
        if temporal_compression < 1:
            raise ValueError("temporal_compression must be >= 1")
        self.encoder = AudioEncoder(self.config)
        self.decoder = AudioDecoder(self.config)
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
                nn.init.zeros_(m.bias)
            if isinstance(m, ResBlock1d):
                m.conv2.weight.data.mul_(0.1)
        self._set_latent_stats(latents_mean, latents_std)

    def _set_latent_stats(self, mean: list[float] | None, std: list[float] | None) -> None:
        c = self.config.latent_channels
        mean_t = torch.tensor(mean if mean is not None else [0.0] * c, dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else [1.0] * c, dtype=torch.float32)
        if mean_t.numel() != c or std_t.numel() != c:
            raise ValueError(f"latents_mean/latents_std need {c} values each")
        self.register_buffer("latents_mean_t", mean_t.view(1, c, 1), persistent=False)
        self.register_buffer("latents_std_t", std_t.view(1, c, 1), persistent=False)

    def set_latent_stats(self, mean: list[float], std: list[float]) -> None:
        mean = [float(v) for v in mean]
        std = [float(v) for v in std]
        self.register_to_config(latents_mean=mean, latents_std=std)
        self._set_latent_stats(mean, std)
        self.latents_mean_t = self.latents_mean_t.to(self.device)
        self.latents_std_t = self.latents_std_t.to(self.device)

    def set_mel_stats(self, mean: float, std: float) -> None:
        self.register_to_config(mel_mean=float(mean), mel_std=float(std))

    # ---- rates and the mel definition --------------------------------------------------------------------------
    def logmel(self) -> LogMel:
        """The exact LogMel this model was trained on."""
        return LogMel(preset_from_mel_config(self.config))

    def latent_rate(self, preset: ClipPreset | str | None = None) -> float:
        """Audio latents per second (preset only checked for a matching mel definition)."""
        if preset is not None:
            p = get_preset(preset)
            if (p.sample_rate, p.hop_length, p.n_mels) != (
                self.config.sample_rate,
                self.config.hop_length,
                self.config.n_mels,
            ):
                raise SeedanceError(f"preset {p.name!r} has a different mel definition than this AudioVAE")
        return self.config.sample_rate / self.config.hop_length / self.config.temporal_compression

    def num_latents(self, num_mel_frames: int) -> int:
        tc = self.config.temporal_compression
        return -(-num_mel_frames // tc)

    # ---- diffusers API -----------------------------------------------------------------------------------------
    def _check_mel(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise SeedanceError(f"AudioVAE expects log-mel shaped [B,{self.config.n_mels},M], got {tuple(mel.shape)}")
        pad = (-mel.shape[-1]) % self.config.temporal_compression
        if pad:  # repeat the last frame up to a whole latent
            mel = torch.cat([mel, mel[..., -1:].expand(-1, -1, pad)], dim=-1)
        return mel

    def encode(self, mel: torch.Tensor, return_dict: bool = True):
        """log-mel [B,n_mels,M] -> distribution over latents [B,Ca,ceil(M/tc)]."""
        mel = self._check_mel(mel)
        x = (mel - self.config.mel_mean) / self.config.mel_std
        dist = LatentDistribution(self.encoder(x))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """latents [B,Ca,Ta] -> log-mel [B,n_mels,Ta*tc]."""
        if z.dim() != 3 or z.shape[1] != self.config.latent_channels:
            raise SeedanceError(
                f"AudioVAE.decode expects latents shaped [B,{self.config.latent_channels},T], got {tuple(z.shape)}"
            )
        mel = self.decoder(z) * self.config.mel_std + self.config.mel_mean
        return DecoderOutput(sample=mel) if return_dict else (mel,)

    def forward(
        self,
        mel: torch.Tensor,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
        return_kl: bool = False,
    ):
        """Reconstruct a log-mel (the training path); with return_kl also the posterior's KL to N(0, I)."""
        dist = self.encode(mel).latent_dist
        z = dist.sample(generator) if sample_posterior else dist.mode()
        y = self.decode(z).sample[..., : mel.shape[-1]]
        return (y, dist.kl()) if return_kl else y

    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latents_mean_t.to(z.dtype)) / self.latents_std_t.to(z.dtype)

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latents_std_t.to(z.dtype) + self.latents_mean_t.to(z.dtype)

    def encode_latents(
        self, mel: torch.Tensor, normalize: bool = True, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        dist = self.encode(mel).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return self.normalize_latents(z) if normalize else z

    def decode_latents(self, z: torch.Tensor, denormalize: bool = True, num_frames: int | None = None) -> torch.Tensor:
        """Latents -> log-mel [B,n_mels,M]; `num_frames` trims the end padding."""
        if denormalize:
            z = self.denormalize_latents(z)
        mel = self.decode(z).sample
        return mel[..., :num_frames] if num_frames is not None else mel

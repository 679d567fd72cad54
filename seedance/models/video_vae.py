"""VideoVAE: a causal 3-D convolutional KL autoencoder for short clips.

    frames [B,3,F,H,W] in [-1,1] --encode--> latents [B,Cv,F/tc,H/sc,W/sc] --decode--> frames

At the tiny preset (64x64, 16 fps, 32 frames) with tc=4 and sc=8 a 2 s clip
becomes 16 x 8 x 8 x 8 latents: 4 latent frames per second.

Causal in time: every convolution pads only on the past side, and the norms
are per position (RMS over channels), so latent frame j depends on frames
< tc*(j+1) only and decoded frame f on latents <= f // tc. A clip can therefore
be extended without changing what was already encoded, and a frame count that
is not a multiple of tc is padded at the end (repeating the last frame)
without disturbing the earlier latents.

Layout (sc = patch * 2**downsamples):
    patchify (space-to-depth by `patch_size`) -> conv_in
    per level: res blocks, then a strided causal conv (space /2, time /s)
    mid res block -> RMS norm -> conv_out -> mean, logvar
The decoder mirrors it (depth-to-time and nearest-neighbour upsampling, then convs).
The first `spatial_only_levels` levels (full resolution) use 1x3x3 kernels: time is
mixed at the lower levels, where it is cheap, which keeps a training step affordable
on a CPU.

Audio timing cue (optional, `audio_cue_channels` > 0): a latent frame holds tc
frames, and where inside that group an event falls (a key lighting up, a ball
landing, a mouth opening) is what the latent keeps worst; decoded, the event
smears over its group and the clip's measured audio-visual lag moves. The
decoder can read the clip's log-mel (the audio VAE's decoded mel, the same
seconds as the frames): a small conv turns it into per-frame scale and shift
for the full-frame-rate features (FiLM, zero-initialised, so a decoder without
it is where training starts). The latents still say what and where; the audio
says when within the group. Decoded frame f then also depends on about +-2
frames of audio around it (not causal in the audio). `audio_cue_group` adds a
second cue (GroupTimingCue) on the input of the last temporal Upsample; it was
tried and not shipped (README, "Where sync was lost").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from seedance.config import ClipPreset, get_preset
from seedance.errors import SeedanceError


class LatentDistribution:
    """Diagonal Gaussian over latents; `parameters` holds mean and log-variance along dim 1."""

    def __init__(self, parameters: torch.Tensor):
        self.mean, logvar = parameters.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device)
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL to N(0, I), averaged over every latent element (a scalar)."""
        mean, logvar = self.mean.float(), self.logvar.float()
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at each (t, h, w) position: no statistics leak across time."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.float().pow(2).mean(dim=1, keepdim=True) + self.eps).to(x.dtype)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale * self.weight.view(shape)


class CausalConv3d(nn.Module):
    """3-D conv padded on the past side in time (by kt - st, repeating the first frame) and 'same' in space."""

    def __init__(
        self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3), stride: tuple[int, int, int] = (1, 1, 1)
    ):
        super().__init__()
        kt, kh, kw = kernel
        st = stride[0]
        if kt < st:
            raise ValueError(f"temporal kernel {kt} must be >= temporal stride {st}")
        self.time_pad = kt - st
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=(0, kh // 2, kw // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            first = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
            x = torch.cat([first, x], dim=2)
        if use_onednn_conv3d(x, self.conv):
            c = self.conv
            return torch.ops.aten.mkldnn_convolution(
                x.contiguous(), c.weight, c.bias, list(c.padding), list(c.stride), list(c.dilation), c.groups
            )
        return self.conv(x)


ONEDNN_CONV3D = True  # bench/vae_decode.py turns it off to time PyTorch's own choice


def use_onednn_conv3d(x: torch.Tensor, conv: nn.Conv3d) -> bool:
    """Whether to call oneDNN's convolution directly: fp32 inference on a CPU.

    For one clip PyTorch's backend heuristic (tuned on 2-D convs: batch 1, kernels up to 3 and
    batch*channels*frames*height <= 20480 go to the "native" kernel) sends the decoder's low-resolution
    3-D convs to slow_conv3d, an im2col loop that took 78% of a decode. oneDNN gives the same frames
    (to 6e-6) and decoded a 2 s clip about 1.7x faster on 2 AVX2 cores (`python bench/vae_decode.py`).
    Training (grad on), autocast (which casts the inputs of conv3d) and other devices keep nn.Conv3d.
    """
    return (
        ONEDNN_CONV3D
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and conv.padding_mode == "zeros"
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def channel_shortcut(x: torch.Tensor, cout: int) -> torch.Tensor | float:
    """Parameter-free channel change: repeat channels (cout a multiple of cin) or average groups (cin a multiple).

    Where neither divides the other there is no shortcut (0.0): small test widths still build.
    """
    cin = x.shape[1]
    if cout == cin:
        return x
    if cout % cin == 0:
        return x.repeat_interleave(cout // cin, dim=1)
    if cin % cout == 0:
        return x.unflatten(1, (cout, cin // cout)).mean(dim=2)
    return 0.0


def space_to_depth(x: torch.Tensor, st: int, s: int) -> torch.Tensor:
    """[B,C,T,H,W] -> [B, C*st*s*s, T/st, H/s, W/s]: frames j*st .. j*st+st-1 fold into latent frame j."""
    b, c, t, h, w = x.shape
    x = x.view(b, c, t // st, st, h // s, s, w // s, s).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, c * st * s * s, t // st, h // s, w // s)


def depth_to_space(x: torch.Tensor, st: int, s: int) -> torch.Tensor:
    """Inverse of space_to_depth."""
    b, c, t, h, w = x.shape
    c_out = c // (st * s * s)
    x = x.view(b, c_out, st, s, s, t, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c_out, t * st, h * s, w * s)


class ResBlock(nn.Module):
    """Two norm-SiLU-conv layers with a residual; `temporal=False` uses 1x3x3 kernels (no mixing across frames)."""

    def __init__(self, cin: int, cout: int, temporal: bool = True):
        super().__init__()
        kernel = (3, 3, 3) if temporal else (1, 3, 3)
        self.norm1 = ChannelRMSNorm(cin)
        self.conv1 = CausalConv3d(cin, cout, kernel)
        self.norm2 = ChannelRMSNorm(cout)
        self.conv2 = CausalConv3d(cout, cout, kernel)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Space /2 and time /st: a strided causal conv plus a parameter-free residual shortcut.

    The shortcut folds each 2x2 (x st frames) block into channels and averages channel groups down to
    cout (the residual autoencoding of DC-AE, Chen et al. 2024): information has a straight path
    through the bottleneck from the first step, and the convs learn what to add. This is what lets
    an 8x-compressing autoencoder get sharp on a CPU budget instead of staying blurry for thousands of steps.
    """

    def __init__(self, cin: int, cout: int, time_stride: int):
        super().__init__()
        self.time_stride = time_stride
        self.cout = cout
        self.conv = CausalConv3d(cin, cout, kernel=(max(3, time_stride), 3, 3), stride=(time_stride, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + channel_shortcut(space_to_depth(x, self.time_stride, 2), self.cout)


class Upsample(nn.Module):
    """Time x st and space x2, static by default.

    Each latent frame becomes st frames as one base picture repeated (so a still scene decodes to
    still frames: no frame-to-frame shimmer for a motion detector to mistake for motion) plus
    per-sub-frame deviations from a causal conv whose weights start at zero (the motion within the
    group is learned, not the default). Space by a nearest-neighbour repeat and a 1x3x3 conv. The
    parameter-free shortcut repeats channels and moves them to the 2x2 sub-pixels (depth-to-space),
    the same for every sub-frame.
    """

    def __init__(self, cin: int, cout: int, time_stride: int):
        super().__init__()
        self.time_stride = time_stride
        self.cout = cout
        self.base = CausalConv3d(cin, cout)
        self.deviation = CausalConv3d(cin, cout * time_stride) if time_stride > 1 else None
        self.conv = CausalConv3d(cout, cout, (1, 3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        s = self.time_stride
        shortcut = channel_shortcut(x, self.cout * 4)
        if torch.is_tensor(shortcut):
            shortcut = depth_to_space(shortcut, 1, 2).repeat_interleave(s, dim=2)
        y = self.base(x).repeat_interleave(s, dim=2)  # latent frame j -> frames j*s .. j*s+s-1
        if self.deviation is not None:
            y = y + self.deviation(x).view(b, self.cout, s, t, h, w).transpose(2, 3).reshape(b, self.cout, t * s, h, w)
        y = y.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)
        return self.conv(y) + shortcut


def temporal_strides(temporal_compression: int, num_downsamples: int) -> list[int]:
    """Split tc into one stride per downsample (primes, smallest first, extra factors folded into the last)."""
    if temporal_compression < 1:
        raise ValueError("temporal_compression must be >= 1")
    primes, n, p = [], temporal_compression, 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    strides = [1] * num_downsamples
    # Compress time late (at low spatial resolution, where it is cheap): fill from the last level backwards.
    for i, q in enumerate(sorted(primes)):
        slot = num_downsamples - 1 - (i % num_downsamples) if num_downsamples else None
        if slot is None:
            raise ValueError("temporal compression needs at least one downsample")
        strides[slot] *= q
    return strides


class VideoEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.patch = cfg.patch_size
        chans = [cfg.base_channels * m for m in cfg.channel_multipliers]
        strides = temporal_strides(cfg.temporal_compression, len(chans) - 1)
        first = (3, 3, 3) if cfg.spatial_only_levels < 1 else (1, 3, 3)
        self.latent_channels = cfg.latent_channels
        self.conv_in = CausalConv3d(cfg.in_channels * self.patch**2, chans[0], first)
        self.levels = nn.ModuleList()
        for i, c in enumerate(chans):
            temporal = i >= cfg.spatial_only_levels
            blocks = nn.ModuleList([ResBlock(c, c, temporal) for _ in range(cfg.encoder_blocks)])
            down = Downsample(c, chans[i + 1], strides[i]) if i + 1 < len(chans) else nn.Identity()
            self.levels.append(nn.ModuleDict({"blocks": blocks, "down": down}))
        self.mid = ResBlock(chans[-1], chans[-1])
        self.norm_out = ChannelRMSNorm(chans[-1])
        self.conv_out = CausalConv3d(chans[-1], 2 * cfg.latent_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x [B,3,F,H,W] -> space-to-depth [B,3*p*p,F,H/p,W/p]
        b, c, f, h, w = x.shape
        p = self.patch
        x = x.view(b, c, f, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5).reshape(b, c * p * p, f, h // p, w // p)
        x = self.conv_in(x) + channel_shortcut(x, self.conv_in.conv.out_channels)
        for level in self.levels:
            for block in level["blocks"]:
                x = block(x)
            x = level["down"](x)
        x = self.mid(x)
        out = self.conv_out(F.silu(self.norm_out(x)))  # [B, 2*Cv, F/tc, H/sc, W/sc]
        # Shortcut into the mean only; the log-variance is the conv's alone.
        mean, logvar = out.chunk(2, dim=1)
        return torch.cat([mean + channel_shortcut(x, self.latent_channels), logvar], dim=1)


class AudioTimingCue(nn.Module):
    """log-mel [B,n_mels,M] spanning the decoded frames' seconds -> per-frame (scale, shift) [B,C,F] each.

    The mel is centred per clip (a gain adds a constant to a log-mel, and generated audio comes at any level),
    convolved at the mel rate (onsets are sharper there than at 16 fps), averaged into the F frames' spans
    (adaptive pooling: frame f takes the mel columns of its own 1/fps seconds), then mixed over +-1 frame.
    """

    def __init__(self, n_mels: int, width: int, out_channels: int):
        super().__init__()
        self.n_mels = n_mels
        self.mel_conv = nn.Sequential(
            nn.Conv1d(n_mels, width, 5, padding=2), nn.SiLU(), nn.Conv1d(width, width, 5, padding=2), nn.SiLU()
        )
        self.frame_conv = nn.Conv1d(width, 2 * out_channels, 3, padding=1)

    def frame_features(self, mel: torch.Tensor, num_frames: int) -> torch.Tensor:
        """log-mel [B,n_mels,M] -> [B,W,num_frames]: the conv's features averaged over each frame's columns."""
        if mel.dim() != 3 or mel.shape[1] != self.n_mels:
            raise SeedanceError(f"audio_mel must be a log-mel [B,{self.n_mels},M], got {tuple(mel.shape)}")
        if mel.shape[-1] < num_frames:
            raise SeedanceError(f"audio_mel has {mel.shape[-1]} columns for {num_frames} frames; pass the clip's mel")
        x = mel.float()
        x = (x - x.mean(dim=(1, 2), keepdim=True)) / 4.0  # log-mels span about -11.5..2: bring them near unit scale
        return F.adaptive_avg_pool1d(self.mel_conv(x.to(self.frame_conv.weight.dtype)), num_frames)

    def forward(self, mel: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self.frame_conv(self.frame_features(mel, num_frames)).chunk(2, dim=1)
        return scale, shift


class GroupTimingCue(AudioTimingCue):
    """log-mel [B,n_mels,M] -> per-latent-frame (scale, shift) [B,C,T] each, for the features that the temporal
    Upsample turns into a group of `group` frames.

    The full-rate cue can only scale and shift a whole frame's features; this one tells the Upsample, whose
    per-sub-frame deviation conv also sees where things are, what the audio does in each of the group's frames
    (the group's frame features side by side in channels), so it can place a change at the right sub-frame
    and the right place in the picture.
    """

    def __init__(self, n_mels: int, width: int, out_channels: int, group: int):
        super().__init__(n_mels, width, out_channels)
        self.group = group
        self.frame_conv = nn.Conv1d(width * group, 2 * out_channels, 3, padding=1)

    def forward(self, mel: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.frame_features(mel, num_groups * self.group)  # [B,W,T*g]
        b, w, _ = h.shape
        h = h.view(b, w, num_groups, self.group).permute(0, 1, 3, 2).reshape(b, w * self.group, num_groups)
        scale, shift = self.frame_conv(h).chunk(2, dim=1)  # [B,C,T] each
        return scale, shift


def film_frames(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x [B,C,F,H,W] modulated per frame by scale, shift [B,C,F] (the same over the picture)."""
    return x * (1 + scale[..., None, None].to(x.dtype)) + shift[..., None, None].to(x.dtype)


class VideoDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.patch = cfg.patch_size
        self.out_channels = cfg.in_channels
        chans = [cfg.base_channels * m for m in cfg.channel_multipliers]
        strides = temporal_strides(cfg.temporal_compression, len(chans) - 1)
        self.conv_in = CausalConv3d(cfg.latent_channels, chans[-1])
        self.mid = ResBlock(chans[-1], chans[-1])
        self.levels = nn.ModuleList()
        for i in reversed(range(len(chans))):
            temporal = i >= cfg.spatial_only_levels
            blocks = nn.ModuleList([ResBlock(chans[i], chans[i], temporal) for _ in range(cfg.decoder_blocks)])
            up = Upsample(chans[i], chans[i - 1], strides[i - 1]) if i > 0 else nn.Identity()
            self.levels.append(nn.ModuleDict({"blocks": blocks, "up": up}))
        self.norm_out = ChannelRMSNorm(chans[0])
        last = (3, 3, 3) if cfg.spatial_only_levels < 1 else (1, 3, 3)
        self.conv_out = CausalConv3d(chans[0], cfg.in_channels * self.patch**2, last)
        # The cue modulates the input of the last level: the first features at the full frame rate.
        self.audio_cue = (
            AudioTimingCue(cfg.audio_cue_mels, cfg.audio_cue_channels, chans[0]) if cfg.audio_cue_channels else None
        )
        # Optionally also the input of the last temporal Upsample (see GroupTimingCue).
        self.audio_cue_group = None
        if cfg.audio_cue_channels and cfg.audio_cue_group and len(chans) > 1 and strides[0] > 1:
            self.audio_cue_group = GroupTimingCue(cfg.audio_cue_mels, cfg.audio_cue_channels, chans[1], strides[0])

    def forward(self, z: torch.Tensor, audio_mel: torch.Tensor | None = None) -> torch.Tensor:
        x = self.mid(self.conv_in(z) + channel_shortcut(z, self.conv_in.conv.out_channels))
        last = len(self.levels) - 1
        for i, level in enumerate(self.levels):
            if i == last and audio_mel is not None and self.audio_cue is not None:
                x = film_frames(x, *self.audio_cue(audio_mel, x.shape[2]))
            for block in level["blocks"]:
                x = block(x)
            if i == last - 1 and audio_mel is not None and self.audio_cue_group is not None:
                x = film_frames(x, *self.audio_cue_group(audio_mel, x.shape[2]))
            x = level["up"](x)
        x = self.conv_out(F.silu(self.norm_out(x))) + channel_shortcut(x, self.conv_out.conv.out_channels)
        # x: [B, 3*p*p, F, H/p, W/p]
        b, _, f, h, w = x.shape
        p, c = self.patch, self.out_channels
        x = x.view(b, c, p, p, f, h, w).permute(0, 1, 4, 5, 2, 6, 3).reshape(b, c, f, h * p, w * p)
        return x


class VideoVAE(ModelMixin, ConfigMixin):
    """Causal 3-D conv KL video autoencoder (diffusers-style; see the module docstring)."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 16,
        base_channels: int = 24,
        channel_multipliers: tuple[int, ...] = (1, 2, 4),
        patch_size: int = 2,
        temporal_compression: int = 4,
        spatial_compression: int = 8,
        encoder_blocks: int = 1,
        decoder_blocks: int = 1,
        spatial_only_levels: int = 1,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
        audio_cue_channels: int = 0,
        audio_cue_mels: int = 64,
        audio_cue_group: bool = False,
    ):
        super().__init__()
        if patch_size * 2 ** (len(channel_multipliers) - 1) != spatial_compression:
            raise ValueError(
                f"spatial_compression {spatial_compression} must equal patch_size * 2**(levels-1) = "
                f"{patch_size * 2 ** (len(channel_multipliers) - 1)}"
            )
        self.encoder = VideoEncoder(self.config)
        self.decoder = VideoDecoder(self.config)
        self._init_weights()
        self._set_latent_stats(latents_mean, latents_std)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # Residual branches start near identity: scale each block's last conv down.
        for m in self.modules():
            if isinstance(m, ResBlock):
                m.conv2.conv.weight.data.mul_(0.1)
            if isinstance(m, Upsample) and m.deviation is not None:
                nn.init.zeros_(m.deviation.conv.weight)
        if self.decoder.audio_cue is not None:  # no modulation until the decoder has learned to use the audio
            nn.init.zeros_(self.decoder.audio_cue.frame_conv.weight)
            nn.init.zeros_(self.decoder.audio_cue.frame_conv.bias)
        if self.decoder.audio_cue_group is not None:
            nn.init.zeros_(self.decoder.audio_cue_group.frame_conv.weight)
            nn.init.zeros_(self.decoder.audio_cue_group.frame_conv.bias)

    def _set_latent_stats(self, mean: list[float] | None, std: list[float] | None) -> None:
        c = self.config.latent_channels
        mean_t = torch.tensor(mean if mean is not None else [0.0] * c, dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else [1.0] * c, dtype=torch.float32)
        if mean_t.numel() != c or std_t.numel() != c:
            raise ValueError(f"latents_mean/latents_std need {c} values each")
        # Non-persistent: the numbers live in config.json, the buffers only follow .to(device).
        self.register_buffer("latents_mean_t", mean_t.view(1, c, 1, 1, 1), persistent=False)
        self.register_buffer("latents_std_t", std_t.view(1, c, 1, 1, 1), persistent=False)

    def set_latent_stats(self, mean: list[float], std: list[float]) -> None:
        """Store per-channel latent statistics (computed on training latents) in the config and buffers."""
        mean = [float(v) for v in mean]
        std = [float(v) for v in std]
        self.register_to_config(latents_mean=mean, latents_std=std)
        self._set_latent_stats(mean, std)
        self.latents_mean_t = self.latents_mean_t.to(self.device)
        self.latents_std_t = self.latents_std_t.to(self.device)

    # ---- rates and shapes --------------------------------------------------------------------------------------
    def latent_rate(self, preset: ClipPreset | str) -> float:
        """Latent frames per second at this preset's frame rate."""
        return get_preset(preset).fps / self.config.temporal_compression

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        tc, sc = self.config.temporal_compression, self.config.spatial_compression
        return (self.config.latent_channels, math.ceil(num_frames / tc), height // sc, width // sc)

    def _check_frames(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise SeedanceError(
                f"VideoVAE expects frames shaped [B,{self.config.in_channels},F,H,W], got {tuple(x.shape)}"
            )
        sc = self.config.spatial_compression
        if x.shape[3] % sc or x.shape[4] % sc:
            raise SeedanceError(f"video height and width must be multiples of {sc}, got {x.shape[3]}x{x.shape[4]}")
        tc = self.config.temporal_compression
        pad = (-x.shape[2]) % tc
        if pad:  # repeat the last frame; causality keeps earlier latents unchanged
            x = torch.cat([x, x[:, :, -1:].expand(-1, -1, pad, -1, -1)], dim=2)
        return x

    # ---- diffusers API -----------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, return_dict: bool = True):
        """frames [B,3,F,H,W] in [-1,1] -> distribution over latents [B,Cv,ceil(F/tc),H/sc,W/sc]."""
        x = self._check_frames(x)
        dist = LatentDistribution(self.encoder(x))
        return AutoencoderKLOutput(latent_dist=dist) if return_dict else (dist,)

    @property
    def uses_audio_cue(self) -> bool:
        return self.decoder.audio_cue is not None

    def decode(self, z: torch.Tensor, return_dict: bool = True, audio_mel: torch.Tensor | None = None):
        """latents [B,Cv,Tv,h,w] (+ optional log-mel [B,n_mels,M] spanning the Tv*tc frames' seconds)
        -> frames [B,3,Tv*tc,h*sc,w*sc] (unclamped). A decoder without an audio cue ignores audio_mel."""
        if z.dim() != 5 or z.shape[1] != self.config.latent_channels:
            raise SeedanceError(
                f"VideoVAE.decode expects latents shaped [B,{self.config.latent_channels},T,h,w], got {tuple(z.shape)}"
            )
        if audio_mel is not None and audio_mel.shape[0] != z.shape[0]:
            raise SeedanceError(f"audio_mel holds {audio_mel.shape[0]} clips for {z.shape[0]} latents")
        x = self.decoder(z, audio_mel if self.uses_audio_cue else None)
        return DecoderOutput(sample=x) if return_dict else (x,)

    def forward(
        self,
        x: torch.Tensor,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
        return_kl: bool = False,
        audio_mel: torch.Tensor | None = None,
        latent_noise: torch.Tensor | None = None,
    ):
        """Reconstruct frames (the training path); with return_kl also the posterior's KL to N(0, I).
        audio_mel spans the frames' seconds; x's frame count must then be a multiple of tc. latent_noise [B]:
        Gaussian noise of this std, in units of the stored latent std, is added to each clip's latents before
        decoding (a decoder trained so learns latents that are not exactly the encoder's, as a generator's are)."""
        dist = self.encode(x).latent_dist
        z = dist.sample(generator) if sample_posterior else dist.mode()
        if latent_noise is not None:
            eps = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            z = z + latent_noise.to(z).view(-1, 1, 1, 1, 1) * self.latents_std_t.to(z.dtype) * eps
        y = self.decode(z, audio_mel=audio_mel).sample[:, :, : x.shape[2]]
        return (y, dist.kl()) if return_kl else y

    # ---- helpers for the pipeline and the latent cache ---------------------------------------------------------
    def normalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.latents_mean_t.to(z.dtype)) / self.latents_std_t.to(z.dtype)

    def denormalize_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.latents_std_t.to(z.dtype) + self.latents_mean_t.to(z.dtype)

    def encode_latents(
        self, x: torch.Tensor, normalize: bool = True, sample: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        dist = self.encode(x).latent_dist
        z = dist.sample(generator) if sample else dist.mode()
        return self.normalize_latents(z) if normalize else z

    def decode_latents(
        self,
        z: torch.Tensor,
        denormalize: bool = True,
        num_frames: int | None = None,
        audio_mel: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Latents -> frames [B,3,F,H,W] clamped to [-1,1]; `num_frames` trims the end padding.

        audio_mel: the clip's log-mel [B,n_mels,M] over the seconds of its `num_frames` frames (all decoded
        frames if None); it is stretched by repeating its last column over the end padding.
        """
        if denormalize:
            z = self.denormalize_latents(z)
        decoded = z.shape[2] * self.config.temporal_compression
        if audio_mel is not None and num_frames is not None and num_frames < decoded:
            extra = round(audio_mel.shape[-1] * (decoded / num_frames - 1))
            audio_mel = torch.cat([audio_mel, audio_mel[..., -1:].expand(-1, -1, extra)], dim=-1)
        x = self.decode(z, audio_mel=audio_mel).sample.clamp(-1.0, 1.0)
        return x[:, :, :num_frames] if num_frames is not None else x

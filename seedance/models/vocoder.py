"""Vocoder: log-mel -> waveform with an inverse-STFT head (in the manner of Vocos).

    log-mel [B,n_mels,M] -> ConvNeXt-1D trunk at the mel frame rate -> per frame
    log-magnitude and phase of an STFT (n_fft = 4*hop) -> inverse STFT (+ consistency steps) -> waveform [B,1,M*hop]

Everything runs at the frame rate (100/s at tiny) and the only sample-rate
operations are (inverse) FFTs, which is why it is fast on a CPU: no transposed
convolutions upsampling to 16 kHz.

Two optional config fields, both trained in the loop (not bolted on afterwards):
- `refine_steps`: consistency steps after the head. Each re-analyses the
  waveform and keeps the predicted magnitude with the re-analysed phase (one
  Griffin-Lim projection, started from the net's phase instead of from zero).
  A predicted phase is never quite consistent between overlapping frames, and
  the STFT of its waveform smears; one step removes most of that (measured:
  multi-resolution STFT distance 1.24 -> 1.05 with the net trained without it).
- `compute_dtype="bfloat16"`: the trunk runs under bf16 autocast (the head's
  magnitude, phase and the FFTs stay fp32) where the device runs bf16 natively
  (seedance/hardware.py); elsewhere it runs in fp32, which is then faster.

The mel definition is the project's `LogMel`; its fields are stored in the
config and `logmel()` rebuilds it.

Also here: `multi_resolution_stft_distance`, the metric (and training loss)
that compares two waveforms by their STFT magnitudes at three resolutions, and
`griffin_lim`, the torchaudio baseline the vocoder is measured against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from seedance.errors import SeedanceError
from seedance.hardware import native_bf16
from seedance.models.mel import LogMel, preset_from_mel_config


class ConvNeXtBlock1d(nn.Module):
    """Depthwise conv (kernel 7, dilated) -> LayerNorm -> pointwise MLP x mult -> layer-scaled residual."""

    def __init__(self, dim: int, mult: int = 3, layer_scale: float = 0.1, dilation: int = 1):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3 * dilation, dilation=dilation, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, dim * mult)
        self.pw2 = nn.Linear(dim * mult, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x [B, D, T]
        h = self.dwconv(x).transpose(1, 2)  # [B, T, D]
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class Vocoder(ModelMixin, ConfigMixin):
    """Mel-to-waveform model with an iSTFT head (see the module docstring)."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        n_mels: int = 64,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        win_length: int = 640,
        hop_length: int = 160,
        dim: int = 96,
        num_blocks: int = 4,
        mlp_mult: int = 2,
        head_n_fft: int | None = None,
        dilations: tuple[int, ...] | None = None,
        mel_prior: bool = True,
        mel_mean: float = -6.0,
        mel_std: float = 3.0,
        refine_steps: int = 0,
        compute_dtype: str = "float32",
    ):
        super().__init__()
        if refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
        if compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be 'float32' or 'bfloat16', got {compute_dtype!r}")
        self.head_n_fft = head_n_fft or n_fft
        self.embed = nn.Conv1d(n_mels, dim, 7, padding=3)
        self.norm_in = nn.LayerNorm(dim)
        # Optional dilations widen the context (measured: no gain at tiny, so none by default).
        dilations = list(dilations or [1] * num_blocks)
        if len(dilations) != num_blocks:
            raise ValueError(f"dilations needs {num_blocks} entries, got {len(dilations)}")
        self.blocks = nn.ModuleList([ConvNeXtBlock1d(dim, mlp_mult, dilation=d) for d in dilations])
        self.norm_out = nn.LayerNorm(dim)
        self.n_bins = self.head_n_fft // 2 + 1
        self.head = nn.Linear(dim, 2 * self.n_bins)  # log-magnitude and phase per bin
        # The head's window is the mel's (win_length, zero-padded to head_n_fft): the mel pseudo-inverse
        # then describes exactly the spectrum the head makes.
        self.head_win = min(win_length, self.head_n_fft)
        self.register_buffer("window", torch.hann_window(self.head_win), persistent=False)
        if mel_prior:
            self.register_buffer("mel_inverse", mel_pseudo_inverse(self.config, self.head_n_fft), persistent=False)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        if not mel_prior:  # start quiet (magnitude e^-4 per bin), not at full scale: the first steps stay sane
            nn.init.constant_(self.head.bias[: self.n_bins], -4.0)

    def logmel(self) -> LogMel:
        """The exact LogMel this vocoder inverts."""
        return LogMel(preset_from_mel_config(self.config))

    def set_mel_stats(self, mean: float, std: float) -> None:
        self.register_to_config(mel_mean=float(mean), mel_std=float(std))

    def carrier(self, num_frames: int) -> torch.Tensor:
        """Phase that a bin-centred steady tone advances by, frame t, bin k: 2*pi*k*t*hop/n_fft (mod 2*pi).

        Cached per device and grown on demand: rebuilding it costs a twentieth of a forward pass.
        """
        device = self.window.device
        cached = getattr(self, "_carrier_cache", None)
        if cached is not None and cached.device == device and cached.shape[1] >= num_frames:
            return cached[:, :num_frames]
        k = torch.arange(self.n_bins, device=device)[:, None]
        t = torch.arange(max(num_frames, 256), device=device)[None, :]
        cached = (k * t * self.config.hop_length % self.head_n_fft).float() * (2 * math.pi / self.head_n_fft)
        self._carrier_cache = cached
        return cached[:, :num_frames]

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """torch.istft(center=True) of [B,bins,T] -> [B,length]. When hop divides n_fft the overlap-add is
        done as n_fft/hop shifted slice additions: torch's own overlap-add (unfold_backward) took a sixth of
        the forward pass on a CPU. Equal to torch.istft to float precision (tested)."""
        n_fft, hop = self.head_n_fft, self.config.hop_length
        if n_fft % hop:
            return torch.istft(spec, n_fft, hop, self.head_win, self.window, center=True, length=length)
        b, _, t = spec.shape
        r = n_fft // hop
        window = self._full_window()
        frames = torch.fft.irfft(spec, n=n_fft, dim=1) * window[:, None]  # [B, n_fft, T]
        frames = frames.transpose(1, 2).reshape(b, t, r, hop)
        out = frames.new_zeros(b, t + r - 1, hop)
        for j in range(r):
            out[:, j : j + t] += frames[:, :, j]
        out = out.reshape(b, -1) / self._window_envelope(t)
        start = n_fft // 2  # center=True padded n_fft/2 on each side
        return out[:, start : start + length]

    def _full_window(self) -> torch.Tensor:
        """The analysis window zero-padded (centred) to n_fft, as torch.stft/istft use it."""
        pad = self.head_n_fft - self.head_win
        return F.pad(self.window, (pad // 2, pad - pad // 2))

    def _window_envelope(self, num_frames: int) -> torch.Tensor:
        """Overlap-added squared window for num_frames frames (cached): what overlap-add divides by."""
        cached = getattr(self, "_envelope_cache", None)
        if cached is not None and cached[0] == num_frames and cached[1].device == self.window.device:
            return cached[1]
        hop, r = self.config.hop_length, self.head_n_fft // self.config.hop_length
        w2 = self._full_window().square().reshape(r, hop)
        env = w2.new_zeros(num_frames + r - 1, hop)
        for j in range(r):
            env[j : j + num_frames] += w2[j]
        env = env.reshape(-1).clamp(min=1e-11)
        self._envelope_cache = (num_frames, env)
        return env

    def refine(self, spec: torch.Tensor, length: int, steps: int, mag: torch.Tensor | None = None) -> torch.Tensor:
        """`steps` consistency projections of a complex STFT [B,bins,T]: keep its magnitude (`mag`, if
        already at hand), take the phase of the re-analysed waveform. Returns the waveform [B,length]."""
        if steps and mag is None:
            mag = spec.abs()
        for _ in range(steps):
            rebuilt = self.target_spectrum(self._istft(spec, length))
            # rebuilt * mag / |rebuilt| with a real scale: a complex abs and divide cost several times more
            power = rebuilt.real.square() + rebuilt.imag.square()
            spec = rebuilt * (mag * torch.rsqrt(power.clamp(min=1e-16)))
        return self._istft(spec, length)

    def forward(self, mel: torch.Tensor, return_spectrum: bool = False):
        """log-mel [B,n_mels,M] -> waveform [B,1,M*hop] (and, for training, the complex STFT [B,bins,M+1])."""
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise SeedanceError(f"Vocoder expects log-mel shaped [B,{self.config.n_mels},M], got {tuple(mel.shape)}")
        b, _, m = mel.shape
        hop = self.config.hop_length
        # 1. M mel frames sit at samples 0, hop, ..., (M-1)*hop; a centred iSTFT of M+1 frames
        #    spans exactly M*hop samples, so repeat the last frame once.
        x = torch.cat([mel, mel[..., -1:]], dim=-1)
        x = (x - self.config.mel_mean) / self.config.mel_std
        # 2. ConvNeXt trunk at the frame rate (bf16 autocast when configured: the matmuls 3x faster with AMX)
        bf16 = self.config.compute_dtype == "bfloat16" and native_bf16(mel.device)
        with torch.autocast(mel.device.type, dtype=torch.bfloat16, enabled=bf16):
            x = self.norm_in(self.embed(x).transpose(1, 2)).transpose(1, 2)
            for block in self.blocks:
                x = block(x)
            x = self.head(self.norm_out(x.transpose(1, 2)))  # [B, M+1, 2*bins]
        # 3. STFT head: magnitude = exp(log-mag) (clamped to stay finite); phase relative to the carrier:
        #    a bin-centred steady tone then needs a constant output, which a convolution can produce,
        #    where the raw STFT phase is a ramp in t that no shift-equivariant net can draw.
        #    With mel_prior the net predicts a correction to the least-squares inverse of the mel filterbank
        #    (what Griffin-Lim starts from), so it begins at that magnitude and only learns what it adds.
        log_mag, phase = x.float().transpose(1, 2).chunk(2, dim=1)  # [B, bins, M+1] each
        if self.config.mel_prior:
            mel_lin = torch.cat([mel, mel[..., -1:]], dim=-1).float().exp()
            log_mag = log_mag + torch.matmul(self.mel_inverse, mel_lin).clamp(min=1e-5).log()
        # floor -100 dB (the metric's floor too): below it the consistency step's squares turn denormal and slow
        mag = torch.exp(log_mag.clamp(min=-11.5, max=6.0))
        phase = phase + self.carrier(m + 1)
        spec = torch.complex(mag * torch.cos(phase), mag * torch.sin(phase))  # = torch.polar, faster on CPU
        # 4. waveform, after `refine_steps` consistency projections (see the module docstring)
        wave = self.refine(spec, m * hop, self.config.refine_steps, mag).unsqueeze(1)
        return (wave, spec) if return_spectrum else wave

    def target_spectrum(self, wave: torch.Tensor) -> torch.Tensor:
        """The complex STFT the head should produce for a waveform [B,S] (S a multiple of hop): [B,bins,S/hop+1]."""
        return torch.stft(
            wave.float(),
            n_fft=self.head_n_fft,
            hop_length=self.config.hop_length,
            win_length=self.head_win,
            window=self.window,
            center=True,
            return_complex=True,
        )


def mel_pseudo_inverse(cfg, head_n_fft: int) -> torch.Tensor:
    """[head_n_fft//2+1, n_mels]: least-squares map from mel to linear STFT magnitudes at the head's bins.

    The mel is defined on cfg.n_fft bins; its pseudo-inverse gives magnitudes there, which are then
    linearly interpolated in frequency to the head's bins (the same spectrum sampled more or less densely).
    """
    fb = torchaudio.functional.melscale_fbanks(
        cfg.n_fft // 2 + 1, 0.0, cfg.sample_rate / 2, cfg.n_mels, cfg.sample_rate, None, "htk"
    )  # [F, n_mels]
    pinv = torch.linalg.pinv(fb.T.double()).float()  # [F, n_mels]
    if head_n_fft == cfg.n_fft:
        return pinv
    pos = torch.arange(head_n_fft // 2 + 1, dtype=torch.float64) * cfg.n_fft / head_n_fft
    lo = pos.floor().long().clamp(max=cfg.n_fft // 2)
    hi = (lo + 1).clamp(max=cfg.n_fft // 2)
    frac = (pos - lo).float()[:, None]
    return pinv[lo] * (1 - frac) + pinv[hi] * frac


def _anti_wrap(x: torch.Tensor) -> torch.Tensor:
    """|x| folded into [0, pi]: a phase error of 2*pi is no error."""
    return torch.abs(x - 2 * math.pi * torch.round(x / (2 * math.pi)))


def phase_losses(
    pred: torch.Tensor, target: torch.Tensor, terms: tuple[str, ...] = ("ip", "gd", "iaf")
) -> dict[str, torch.Tensor]:
    """Anti-wrapped phase losses between complex spectra [B,F,T] (APNet, Ai & Ling 2023), weighted by loudness.

    ip: instantaneous phase; gd: group delay (difference along frequency); iaf: instantaneous angular
    frequency (difference along time). Bins are weighted by the target magnitude, so the random phase of
    silence does not pull on the model.
    """
    p, t = pred.angle(), target.angle()
    w = target.abs()
    w = w / w.sum().clamp(min=1e-8)
    out = {}
    if "ip" in terms:
        out["ip"] = (_anti_wrap(p - t) * w).sum()
    if "gd" in terms:
        out["gd"] = (_anti_wrap(p.diff(dim=1) - t.diff(dim=1)) * w[:, 1:]).sum()
    if "iaf" in terms:
        out["iaf"] = (_anti_wrap(p.diff(dim=2) - t.diff(dim=2)) * w[..., 1:]).sum()
    return out


# ---- metric / loss -------------------------------------------------------------------------------------------------

STFT_RESOLUTIONS = ((256, 64), (512, 128), (1024, 256))  # (n_fft = window, hop) at 16 kHz


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(x.float(), n_fft, hop, n_fft, window, center=True, return_complex=True)
    # Floor at 1e-5 (about -100 dB for a full-scale sine): digital silence must not dominate the log term.
    return spec.abs().clamp(min=1e-5)


def multi_resolution_stft_distance(pred: torch.Tensor, target: torch.Tensor, reduce: bool = True) -> torch.Tensor:
    """Mean over three resolutions of spectral convergence + L1 of log magnitudes.

    pred, target: waveforms [B,S] or [B,1,S]. Lower is better; 0 only for equal magnitudes.
    reduce=True gives one number for the batch (spectral convergence over the whole batch, so a
    silent crop cannot blow it up); reduce=False gives one value per batch item.
    """
    if pred.dim() == 3:
        pred = pred[:, 0]
    if target.dim() == 3:
        target = target[:, 0]
    n = min(pred.shape[-1], target.shape[-1])
    pred, target = pred[..., :n], target[..., :n]
    dims = (-3, -2, -1) if reduce else (-2, -1)
    total = 0.0
    for n_fft, hop in STFT_RESOLUTIONS:
        p, t = _stft_mag(pred, n_fft, hop), _stft_mag(target, n_fft, hop)
        sc = torch.linalg.vector_norm(t - p, dim=dims) / torch.linalg.vector_norm(t, dim=dims)
        log_l1 = (t.log() - p.log()).abs().mean(dim=dims)
        total = total + sc + log_l1
    return total / len(STFT_RESOLUTIONS)


# ---- baseline ------------------------------------------------------------------------------------------------------


class GriffinLimVocoder(nn.Module):
    """The baseline: log-mel -> least-squares inverse mel filterbank -> torchaudio Griffin-Lim (n_iter iterations)."""

    def __init__(self, logmel: LogMel, n_iter: int = 32):
        super().__init__()
        self.hop = logmel.hop_length
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=logmel.n_fft // 2 + 1,
            n_mels=logmel.n_mels,
            sample_rate=logmel.sample_rate,
            f_min=0.0,
            f_max=logmel.f_max,
            norm=None,
            mel_scale="htk",
        )
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=logmel.n_fft,
            n_iter=n_iter,
            win_length=logmel.win_length,
            hop_length=logmel.hop_length,
            power=1.0,
            rand_init=False,  # deterministic
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        m = mel.shape[-1]
        mel = torch.cat([mel, mel[..., -1:]], dim=-1)  # same framing as the vocoder: M+1 centred frames
        mag = self.inverse_mel(mel.exp())
        self.griffin_lim.length = m * self.hop
        return self.griffin_lim(mag).unsqueeze(1)

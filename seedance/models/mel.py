"""LogMel: the one log-mel spectrogram definition of the whole project.

The audio VAE encodes it, the vocoder inverts it, the evaluation measures on it.
Everything is derived from a `ClipPreset` (sample rate, n_fft, window, hop, bins),
so a tiny and a base model can never disagree about what a "mel frame" is.

Conventions (fixed; changing them invalidates every shipped audio weight):
- magnitude (power 1) STFT, Hann window of `win_length`, zero-padded to `n_fft`
- centred frames (reflect padding), the final frame dropped, so a waveform of
  S samples gives exactly M = S // hop frames and frame m sits at m * hop samples
- HTK mel scale from 0 Hz to Nyquist, no area normalisation
- natural log with a floor of 1e-5 (about -11.5): silence is -11.5, not -inf

    >>> logmel = LogMel(get_preset("tiny"))
    >>> logmel(torch.zeros(2, 32000)).shape
    torch.Size([2, 64, 200])
"""

from __future__ import annotations

import torch
import torchaudio.functional as AF
from torch import nn

from seedance.config import ClipPreset, get_preset
from seedance.errors import SeedanceError

LOG_FLOOR = 1e-5


class LogMel(nn.Module):
    """waveform [B,S] (or [S], or [B,1,S]) -> log-mel [B, n_mels, S // hop]."""

    def __init__(self, preset: ClipPreset | str = "tiny"):
        super().__init__()
        preset = get_preset(preset)
        self.sample_rate = preset.sample_rate
        self.n_fft = preset.n_fft
        self.win_length = preset.win_length
        self.hop_length = preset.hop_length
        self.n_mels = preset.n_mels
        self.f_max = preset.sample_rate / 2
        # Buffers, not parameters: they follow .to(device) but are never trained or saved.
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        fbank = AF.melscale_fbanks(
            n_freqs=self.n_fft // 2 + 1,
            f_min=0.0,
            f_max=self.f_max,
            n_mels=self.n_mels,
            sample_rate=self.sample_rate,
            norm=None,
            mel_scale="htk",
        )  # [n_freqs, n_mels]
        self.register_buffer("fbank", fbank, persistent=False)

    @property
    def frame_rate(self) -> float:
        """Mel frames per second."""
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self.hop_length

    def magnitude(self, waveform: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude [B, n_fft//2+1, S//hop] with this definition's framing."""
        waveform = self._as_batch(waveform)
        spec = torch.stft(
            waveform.float(),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        m = self.num_frames(waveform.shape[-1])
        return spec.abs()[..., :m]

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mag = self.magnitude(waveform)  # [B, F, M]
        mel = torch.matmul(self.fbank.T, mag)  # [B, n_mels, M]
        return torch.log(torch.clamp(mel, min=LOG_FLOOR))

    def _as_batch(self, waveform: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(waveform):
            raise SeedanceError(f"LogMel expects a torch tensor waveform, got {type(waveform).__name__}")
        if waveform.dim() == 3 and waveform.shape[1] == 1:
            waveform = waveform[:, 0]
        elif waveform.dim() == 1:
            waveform = waveform[None]
        if waveform.dim() != 2:
            raise SeedanceError(
                f"LogMel expects a mono waveform shaped [S], [B,S] or [B,1,S], got {tuple(waveform.shape)}"
            )
        if waveform.shape[-1] < self.n_fft // 2 + 1:
            raise SeedanceError(
                f"audio too short for a mel spectrogram: {waveform.shape[-1]} samples, "
                f"need at least {self.n_fft // 2 + 1} ({(self.n_fft // 2 + 1) / self.sample_rate * 1000:.0f} ms)"
            )
        return waveform


def mel_span(mel: torch.Tensor, start_frame: int, num_frames: int, fps: float, sample_rate: int, hop: int):
    """The log-mel columns [..., M'] over video frames [start_frame, start_frame + num_frames).

    Column m is centred at m * hop samples, so frame f (f/fps .. (f+1)/fps s) takes columns from
    round(f * sr / hop / fps). A mel that ends early is extended by repeating its last column.
    """
    per_frame = sample_rate / hop / fps
    a, b = round(start_frame * per_frame), round((start_frame + num_frames) * per_frame)
    out = mel[..., a:b]
    if out.shape[-1] < b - a:
        if out.shape[-1] == 0:
            raise SeedanceError(f"the log-mel ({mel.shape[-1]} columns) does not reach video frame {start_frame}")
        out = torch.cat([out, out[..., -1:].expand(*out.shape[:-1], b - a - out.shape[-1])], dim=-1)
    return out


def mel_config(preset: ClipPreset | str) -> dict:
    """The preset fields a mel-consuming model stores in its config (to rebuild its LogMel)."""
    p = get_preset(preset)
    return {
        "sample_rate": p.sample_rate,
        "n_fft": p.n_fft,
        "win_length": p.win_length,
        "hop_length": p.hop_length,
        "n_mels": p.n_mels,
    }


def preset_from_mel_config(cfg) -> ClipPreset:
    """A ClipPreset carrying the mel fields of a model config (other fields at their defaults)."""
    return ClipPreset(
        name="from-config",
        sample_rate=int(cfg["sample_rate"]),
        n_fft=int(cfg["n_fft"]),
        win_length=int(cfg["win_length"]),
        hop_length=int(cfg["hop_length"]),
        n_mels=int(cfg["n_mels"]),
    )

"""SeedancePipeline: text (and optionally one modality) -> a short clip with synchronized sound.

    pipe = SeedancePipeline.from_pretrained("weights/seedance-tiny")
    out = pipe("a red ball bounces on a wooden floor", generator=torch.Generator().manual_seed(0))
    out.frames[0]  # [F,H,W,3] float in [0,1]      out.audio[0]  # [S] float      out.sample_rate

A list of prompts is sampled as one batch; a list of generators (one per prompt) gives each clip the noise it
would get alone, so it differs from its single-prompt run only by the rounding of the batched matmuls.

Three modes from one set of weights:
  - text -> audio + video (both latents start from noise and share every timestep)
  - video -> audio ("dubbing", `video=`): the video latents are held clean (their timestep is 0) and given
  - audio -> video ("lip sync", `audio=`): the audio latents are held clean

Guidance, each per modality where it applies:
  - guidance_scale / audio_guidance_scale: classifier-free guidance on the text for the video / audio velocity
  - sync_guidance_scale: one more pass with cross-modal attention switched off; the output is pushed away from
    that uncoupled prediction, i.e. towards what only the coupled model predicts (synchrony)
All passes of one step run as one batch.

Video-led joint sampling (`video_led=True`, text -> audio + video only): one more pass per step in which the
video is the clean estimate of the previous step (x0 = x_t - sigma * v, timestep 0) and the audio is noised;
the text-conditional audio velocity is taken from that pass. The audio branch then denoises the way it was
trained in video-to-audio steps, against a video whose events are already placed, instead of both branches
having to agree on event times while both are still noise.

`timestep_shift` bends the sampling schedule (sigma -> shift*sigma / (1 + (shift-1)*sigma)): above 1 more of
the steps are spent at high noise, where the layout and the event times are decided. With few steps this
matters: the few-step sampler (`seedance generate --fast`) is 12 steps at shift 2, within 5 points of 25
unshifted steps on sync and the probes on two held-out prompt sets; 8 steps at shift 3 was not (README).

`guidance_stop` (0-1) is the share of the steps, from the first, that run the guidance passes; the rest run
the conditional pass alone (one transformer row instead of three). Guidance on the last, low-noise steps
harmed sync, mostly through the video's guidance: the shipped 0.8 raised offset accuracy, event F1 and LSE-C on
two held-out prompt sets (README, "Guidance stop").

`transformer_precision="bf16"` runs the transformer's forward passes under bf16 autocast (the latents, the
scheduler and the decoders stay in fp32); on CPUs with AMX / AVX-512 bf16 its matmuls run several times
faster. On a CPU without them bf16 is emulated and several times slower than fp32 (seedance/hardware.py), so
the shipped default is "auto": bf16 where the device runs it natively, fp32 elsewhere. Both options default to
the model's sampling_defaults.json.
"""

from __future__ import annotations

import collections
import copy
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from seedance.config import ClipPreset, check_duration, frames_for, get_preset
from seedance.errors import SeedanceError, WeightsError
from seedance.hardware import PRECISIONS, resolve_precision
from seedance.models.mel import mel_span
from seedance.models.transformer_av import TextCache

SAMPLING_DEFAULTS_FILE = "sampling_defaults.json"
DEFAULT_SAMPLING = {
    "num_inference_steps": 25,
    "guidance_scale": 3.0,
    "audio_guidance_scale": 3.0,
    "sync_guidance_scale": 1.0,
    "video_led": False,
    "transformer_precision": "auto",
    "guidance_stop": 1.0,
}
MAX_INFERENCE_STEPS = 1000
MAX_TIMESTEP_SHIFT = 20.0  # beyond it nearly every step sits at sigma ~1
VAE_DECODE_CHUNK = 2  # clips per video-decoder call on a CPU (see step 7 of __call__)
TEXT_CACHE_SIZE = 64  # prompt batches whose embeddings are kept
MAX_VIDEO_TOKENS = 4096  # per clip: attention memory grows with its square (4096 tokens ~ 1 GB at batch 3)


@dataclass
class SeedancePipelineOutput(BaseOutput):
    """frames: np [B,F,H,W,3] in [0,1] ("np") or torch [B,F,3,H,W] in [0,1] ("pt") or video latents ("latent");
    audio: np [B,S] / torch [B,1,S] waveform, or audio latents ("latent"); sample_rate in Hz."""

    frames: np.ndarray | torch.Tensor
    audio: np.ndarray | torch.Tensor
    sample_rate: int


def _finite(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SeedanceError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise SeedanceError(f"{name} must be a finite number, got {value}")
    return value


class SeedancePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae->audio_vae->vocoder"
    _callback_tensor_inputs = ["latents", "audio_latents", "prompt_embeds"]

    def __init__(self, tokenizer, text_encoder, transformer, vae, audio_vae, vocoder, scheduler):
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae,
                              audio_vae=audio_vae, vocoder=vocoder, scheduler=scheduler)
        self.sampling_defaults = dict(DEFAULT_SAMPLING)
        self._text_cache: collections.OrderedDict = collections.OrderedDict()  # repeated prompts (the app, batches)

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> SeedancePipeline:
        """Load every component from `<dir>/<component>/` (safetensors only); errors are one line."""
        from seedance.models.audio_vae import AudioVAE
        from seedance.models.io import load_component
        from seedance.models.text_encoder import EngramMoETextEncoder
        from seedance.models.tokenizer import SeedanceTokenizer
        from seedance.models.transformer_av import SeedanceTransformer
        from seedance.models.video_vae import VideoVAE
        from seedance.models.vocoder import Vocoder

        folder = Path(pretrained_model_name_or_path)
        if not (folder / "model_index.json").is_file():
            raise WeightsError(f"no pipeline at {folder} (model_index.json missing): train one or pass another folder")
        try:
            tokenizer = SeedanceTokenizer.from_pretrained(folder / "tokenizer")
        except SeedanceError:
            raise
        except Exception as exc:
            raise WeightsError(f"cannot load the tokenizer from {folder / 'tokenizer'}: {exc}") from None
        # weights may be stored in bf16/fp16 to stay small; compute in float32 unless asked otherwise
        dtype = kwargs.get("torch_dtype") or torch.float32
        parts = {
            "text_encoder": load_component(EngramMoETextEncoder, folder / "text_encoder", torch_dtype=dtype),
            "transformer": load_component(SeedanceTransformer, folder / "transformer", torch_dtype=dtype),
            "vae": load_component(VideoVAE, folder / "vae", torch_dtype=dtype),
            "audio_vae": load_component(AudioVAE, folder / "audio_vae", torch_dtype=dtype),
            "vocoder": load_component(Vocoder, folder / "vocoder", torch_dtype=dtype),
        }
        sched_dir = folder / "scheduler"
        if not (sched_dir / "scheduler_config.json").is_file():
            raise WeightsError(f"missing {sched_dir / 'scheduler_config.json'}: the pipeline folder is incomplete")
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(sched_dir))
        pipe = cls(tokenizer=tokenizer, scheduler=scheduler, **parts)
        defaults = folder / SAMPLING_DEFAULTS_FILE
        if defaults.is_file():
            pipe.sampling_defaults.update(json.loads(defaults.read_text()))
        for module in parts.values():
            module.eval()
        return pipe

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs) -> None:
        """Every component into `<dir>/<component>/` (each swapped in atomically) plus model_index.json."""
        from seedance.models.io import atomic_save_pretrained, atomic_write_bytes

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("text_encoder", "transformer", "vae", "audio_vae", "vocoder", "scheduler"):
            atomic_save_pretrained(getattr(self, name), folder / name)
        self.tokenizer.save_pretrained(folder / "tokenizer")
        atomic_write_bytes(folder / SAMPLING_DEFAULTS_FILE, json.dumps(self.sampling_defaults, indent=2).encode())
        index = {"_class_name": type(self).__name__, "_diffusers_version": self.config.get("_diffusers_version")}
        for name in ("tokenizer", "text_encoder", "transformer", "vae", "audio_vae", "vocoder", "scheduler"):
            module = getattr(self, name)
            index[name] = [type(module).__module__, type(module).__name__]
        atomic_write_bytes(folder / "model_index.json", (json.dumps(index, indent=2) + "\n").encode())

    # ------------------------------------------------------------------ properties
    @property
    def preset(self) -> ClipPreset:
        saved = getattr(self.transformer.config, "preset", None)
        return ClipPreset.from_dict(saved) if saved else get_preset("tiny")

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.config.sample_rate)

    @property
    def vae_temporal_compression(self) -> int:
        return int(self.vae.config.temporal_compression)

    @property
    def vae_spatial_compression(self) -> int:
        return int(self.vae.config.spatial_compression)

    # ------------------------------------------------------------------ text
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], negative_prompts: list[str] | None = None):
        """-> (states [N,L,D], mask [N,L], pooled [N,D]) for prompts followed by negative prompts (same padding).

        The last TEXT_CACHE_SIZE results are kept, keyed by the exact texts and device, so a repeated prompt is
        not encoded again; call `clear_text_cache()` after changing the text encoder's weights in place."""
        texts = list(prompts) + list(negative_prompts or [])
        device = self._execution_device
        key = (tuple(texts), str(device), id(self.text_encoder))
        if key in self._text_cache:
            self._text_cache.move_to_end(key)
            return self._text_cache[key]
        batch = self.tokenizer(texts, max_length=self.text_encoder.config.max_position)
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        out = self.text_encoder(input_ids=ids, attention_mask=mask)
        result = (out.last_hidden_state, mask, out.pooler_output)
        self._text_cache[key] = result
        while len(self._text_cache) > TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return result

    def clear_text_cache(self) -> None:
        self._text_cache.clear()

    # ------------------------------------------------------------------ compiled transformer
    def compile_transformer(self, backend: str | Callable = "inductor", **compile_kwargs) -> float:
        """Regional torch.compile of the transformer's repeated blocks, compiled now by one warm-up clip.

        The six blocks share one compiled graph (diffusers' `compile_repeated_blocks`), and the text length is
        dynamic, so any prompt runs without compiling again; a new duration or batch size compiles once more. On
        a 2-core CPU without native bf16 a 2 s clip took 2.46 s instead of 3.72 s, with the same quality figures
        on 66 prompts; the compile itself took 46 s with an empty torch cache and about 9 s once its on-disk cache held
        it (README, "Compiled transformer"). It pays for a server or a batch of clips, not for one clip. Outputs
        differ from eager by float rounding only, so a seed gives the same clip on every compiled run, but not
        bit for bit the eager clip.

        Where compiling fails (no C++ compiler, an unsupported torch) the blocks go back to eager with a warning
        and nothing else changes. Returns the seconds spent (0.0 when it fell back).
        """
        import logging
        import time
        import warnings

        blocks = [m for m in self.transformer.modules() if type(m).__name__ in self.transformer._repeated_blocks]
        # torch's C++ builder logs a CUDA_HOME notice on CPU-only machines: not news for a CPU compile
        cpp_log = logging.getLogger("torch.utils.cpp_extension")
        cpp_log_level = cpp_log.level
        cpp_log.setLevel(logging.ERROR)
        t0 = time.perf_counter()
        try:
            self.transformer.compile_repeated_blocks(backend=backend, **compile_kwargs)
            # the compile happens at the first call: do it now, at the default clip's shapes, not in a user's clip
            bar = dict(getattr(self, "_progress_bar_config", {}))
            self.set_progress_bar_config(**{**bar, "disable": True})
            try:
                self("warm-up", num_inference_steps=1, generator=torch.Generator().manual_seed(0),
                     output_type="latent")
            finally:
                self._progress_bar_config = bar
        except Exception as exc:  # any failure inside torch's compiler stack leaves the eager model usable
            for block in blocks:
                block._compiled_call_impl = None  # what nn.Module.compile set: back to the plain forward
            while (inner := getattr(exc, "inner_exception", None) or exc.__cause__) is not None and inner is not exc:
                exc = inner  # torch wraps the compiler's own error (BackendCompilerFailed, InductorError)
            reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"[:200]
            warnings.warn(f"torch.compile is not available here ({reason}); generating without it", stacklevel=2)
            return 0.0
        finally:
            cpp_log.setLevel(cpp_log_level)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ given modalities
    def _video_to_tensor(self, video, num_frames: int, height: int, width: int) -> torch.Tensor:
        """uint8 [F,H,W,3] / [B,F,H,W,3] (numpy or torch) or float [B,3,F,H,W] in [-1,1] -> float [B,3,F,H,W]."""
        if isinstance(video, np.ndarray):
            video = torch.from_numpy(np.ascontiguousarray(video))
        if not torch.is_tensor(video):
            raise SeedanceError(f"video= must be frames as an array, got {type(video).__name__}")
        if video.dtype == torch.uint8:
            if video.dim() == 4:
                video = video[None]
            if video.dim() != 5 or video.shape[-1] != 3:
                raise SeedanceError(f"video= frames must be uint8 [F,H,W,3], got shape {tuple(video.shape)}")
            video = video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        else:
            if video.dim() == 4:
                video = video[None]
            if video.dim() != 5 or video.shape[1] != 3:
                raise SeedanceError(f"video= tensor must be float [B,3,F,H,W] in [-1,1], got {tuple(video.shape)}")
            video = video.float()
        if tuple(video.shape[-2:]) != (height, width):
            raise SeedanceError(f"video= frames are {video.shape[-2]}x{video.shape[-1]}, this clip is "
                                f"{height}x{width}: resize the video (seedance dub does it for you)")
        if video.shape[2] < num_frames:
            raise SeedanceError(f"video= has {video.shape[2]} frames, the clip needs {num_frames}: "
                                "give a shorter duration or a longer video")
        return video[:, :, :num_frames]

    def _audio_to_tensor(self, audio, num_samples: int) -> torch.Tensor:
        """float [S] / [B,S] / [B,1,S] (numpy or torch) -> float [B,S]."""
        if isinstance(audio, np.ndarray):
            audio = torch.from_numpy(np.ascontiguousarray(audio))
        if not torch.is_tensor(audio):
            raise SeedanceError(f"audio= must be a waveform array, got {type(audio).__name__}")
        audio = audio.float()
        if audio.dim() == 1:
            audio = audio[None]
        if audio.dim() == 3 and audio.shape[1] == 1:
            audio = audio[:, 0]
        if audio.dim() != 2:
            raise SeedanceError(f"audio= must be mono [S] or [B,S], got shape {tuple(audio.shape)}")
        if not torch.isfinite(audio).all():
            raise SeedanceError("audio= contains NaN or infinite samples")
        if audio.shape[1] < num_samples:
            audio = torch.nn.functional.pad(audio, (0, num_samples - audio.shape[1]))  # silence at the end
        return audio[:, :num_samples]

    # ------------------------------------------------------------------ checks
    def check_inputs(self, prompt, negative_prompt, num_inference_steps, guidance_scale, audio_guidance_scale,
                     sync_guidance_scale, height, width, frame_rate, video, audio, output_type,
                     callback_on_step_end_tensor_inputs, timestep_shift=1.0, guidance_stop=1.0):
        if not isinstance(prompt, (str, list)) or (isinstance(prompt, list) and
                                                  (not prompt or not all(isinstance(p, str) for p in prompt))):
            raise SeedanceError("prompt must be a string or a non-empty list of strings")
        if negative_prompt is not None and not isinstance(negative_prompt, (str, list)):
            raise SeedanceError("negative_prompt must be a string or a list of strings")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, (int, np.integer)) or \
                not 0 < num_inference_steps <= MAX_INFERENCE_STEPS:
            raise SeedanceError(f"num_inference_steps must be a whole number from 1 to {MAX_INFERENCE_STEPS}, "
                                f"got {num_inference_steps!r}")
        for name, value in (("guidance_scale", guidance_scale), ("audio_guidance_scale", audio_guidance_scale),
                            ("sync_guidance_scale", sync_guidance_scale)):
            _finite(name, value)
        if not 0 < _finite("timestep_shift", timestep_shift) <= MAX_TIMESTEP_SHIFT:
            raise SeedanceError(f"timestep_shift must be above 0 and at most {MAX_TIMESTEP_SHIFT} (1: the plain "
                                f"schedule), got {timestep_shift!r}")
        if not 0 <= _finite("guidance_stop", guidance_stop) <= 1:
            raise SeedanceError(f"guidance_stop must be from 0 to 1 (the share of the steps that run the guidance "
                                f"passes; 1: every step), got {guidance_stop!r}")
        step = self.vae_spatial_compression * self.transformer.config.patch_size
        for name, value in (("height", height), ("width", width)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0 or value % step:
                raise SeedanceError(f"{name} must be a positive multiple of {step} (the VAE and patch size), "
                                    f"got {value!r}")
        if frame_rate != self.preset.fps:
            raise SeedanceError(f"this model makes {self.preset.fps} fps clips; frame_rate={frame_rate!r} "
                                "is not supported (resample the video instead)")
        if video is not None and audio is not None:
            raise SeedanceError("give video= (to add sound) or audio= (to add a picture), not both")
        if output_type not in ("np", "pt", "latent"):
            raise SeedanceError(f"output_type must be 'np', 'pt' or 'latent', got {output_type!r}")
        bad = [k for k in callback_on_step_end_tensor_inputs or [] if k not in self._callback_tensor_inputs]
        if bad:
            raise SeedanceError(f"callback tensors {bad} are unknown; choose from {self._callback_tensor_inputs}")

    def _resolve_length(self, num_frames, duration, video, audio) -> tuple[float, int, int]:
        """-> (duration s, frames, audio samples), checked against the preset's maximum."""
        preset = self.preset
        if num_frames is not None and duration is not None:
            if frames_for(duration, preset.fps) != num_frames:
                raise SeedanceError(f"num_frames={num_frames} and duration={duration} disagree at {preset.fps} fps; "
                                    "give one of them")
        if duration is None and num_frames is not None:
            if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames <= 0:
                raise SeedanceError(f"num_frames must be a positive whole number, got {num_frames!r}")
            duration = num_frames / preset.fps
        if duration is None and video is not None:
            n = video.shape[0] if isinstance(video, np.ndarray) and video.ndim == 4 else None
            duration = min(n / preset.fps, preset.max_duration_s) if n else None
        if duration is None and audio is not None and hasattr(audio, "shape"):
            duration = min(audio.shape[-1] / preset.sample_rate, preset.max_duration_s)
        duration = preset.duration_s if duration is None else duration
        check_duration(duration, preset)
        n_frames = frames_for(duration, preset.fps)
        n_samples = int(round(duration * preset.sample_rate))
        min_samples = preset.n_fft // 2 + 1
        if n_frames < 1 or n_samples < min_samples:
            shortest = min_samples / preset.sample_rate
            raise SeedanceError(f"duration {duration:g} s is too short: use at least {shortest:.3f} s")
        return float(duration), n_frames, n_samples

    def latent_shapes(self, batch: int, num_frames: int, num_samples: int, height: int, width: int):
        """Video latents [B,Cv,Tv,h,w] and audio latents [B,Ca,Ta] for a clip, rounded up to whole patches."""
        tc, sc = self.vae_temporal_compression, self.vae_spatial_compression
        cfg = self.transformer.config
        t_v = -(-num_frames // tc)
        t_v = -(-t_v // cfg.patch_size_t) * cfg.patch_size_t
        mel_frames = num_samples // self.audio_vae.config.hop_length
        t_a = -(-mel_frames // self.audio_vae.config.temporal_compression)
        t_a = -(-t_a // cfg.audio_patch_size) * cfg.audio_patch_size
        return (batch, cfg.in_channels, t_v, height // sc, width // sc), (batch, cfg.audio_in_channels, t_a)

    # ------------------------------------------------------------------ the call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] = "",
        negative_prompt: str | list[str] | None = None,
        num_frames: int | None = None,
        duration: float | None = None,
        height: int | None = None,
        width: int | None = None,
        frame_rate: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        audio_guidance_scale: float | None = None,
        sync_guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        audio_latents: torch.Tensor | None = None,
        video=None,
        audio=None,
        cross_modal: bool = True,
        video_led: bool | None = None,
        transformer_precision: str | None = None,
        timestep_shift: float | None = None,
        guidance_stop: float | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
    ) -> SeedancePipelineOutput | tuple:
        preset = self.preset
        d = self.sampling_defaults
        num_inference_steps = d["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        guidance_scale = d["guidance_scale"] if guidance_scale is None else guidance_scale
        audio_guidance_scale = d["audio_guidance_scale"] if audio_guidance_scale is None else audio_guidance_scale
        sync_guidance_scale = d["sync_guidance_scale"] if sync_guidance_scale is None else sync_guidance_scale
        video_led = bool(d.get("video_led", False) if video_led is None else video_led)
        if timestep_shift is None:
            timestep_shift = d.get("timestep_shift", self.scheduler.config.get("shift", 1.0))
        guidance_stop = d.get("guidance_stop", 1.0) if guidance_stop is None else guidance_stop
        precision = d.get("transformer_precision", "auto") if transformer_precision is None else transformer_precision
        if precision not in PRECISIONS:
            raise SeedanceError(f"transformer_precision must be one of {', '.join(map(repr, PRECISIONS))}, "
                                f"got {precision!r}")
        height = preset.height if height is None else height
        width = preset.width if width is None else width
        frame_rate = preset.fps if frame_rate is None else frame_rate
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]

        # 1. check inputs
        self.check_inputs(prompt, negative_prompt, num_inference_steps, guidance_scale, audio_guidance_scale,
                          sync_guidance_scale, height, width, frame_rate, video, audio, output_type,
                          callback_on_step_end_tensor_inputs, timestep_shift, guidance_stop)
        duration, n_frames, n_samples = self._resolve_length(num_frames, duration, video, audio)
        guidance_stop = float(guidance_stop)
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        batch = len(prompts)
        negatives = [""] * batch if negative_prompt is None else (
            [negative_prompt] * batch if isinstance(negative_prompt, str) else list(negative_prompt))
        if len(negatives) != batch:
            raise SeedanceError(f"{len(negatives)} negative prompts for {batch} prompts: give one per prompt")
        if isinstance(generator, list) and len(generator) != batch:
            raise SeedanceError(f"{len(generator)} generators for {batch} prompts: give one generator, "
                                "or one per prompt")
        device = self._execution_device
        precision = resolve_precision(precision, device)  # "auto": bf16 only where the device runs it natively
        video_shape, audio_shape = self.latent_shapes(batch, n_frames, n_samples, height, width)
        patch = self.transformer.config.patch_size
        video_tokens = video_shape[2] * (video_shape[3] // patch) * (video_shape[4] // patch)
        if video_tokens > MAX_VIDEO_TOKENS:
            raise SeedanceError(f"{width}x{height} for {n_frames} frames is {video_tokens} video tokens, more than "
                                f"{MAX_VIDEO_TOKENS}: use a smaller size or a shorter clip "
                                f"(this model makes {self.preset.width}x{self.preset.height})")
        given_video = given_audio = None
        cross_modal = bool(cross_modal) and self.transformer.config.cross_modal_attention

        # 2. the given modality, encoded once and held clean
        if video is not None:
            given_video = self._video_to_tensor(video, n_frames, height, width).to(device)
            if given_video.shape[0] == 1 and batch > 1:
                given_video = given_video.expand(batch, -1, -1, -1, -1)
            if given_video.shape[0] != batch:
                raise SeedanceError(f"video= holds {given_video.shape[0]} clips for {batch} prompts")
            latents = self.vae.encode_latents(given_video.to(self.vae.dtype)).float()
            pad_t = video_shape[2] - latents.shape[2]
            if pad_t > 0:
                latents = torch.cat([latents, latents[:, :, -1:].expand(-1, -1, pad_t, -1, -1)], dim=2)
        if audio is not None:
            given_audio = self._audio_to_tensor(audio, n_samples).to(device)
            if given_audio.shape[0] == 1 and batch > 1:
                given_audio = given_audio.expand(batch, -1)
            if given_audio.shape[0] != batch:
                raise SeedanceError(f"audio= holds {given_audio.shape[0]} clips for {batch} prompts")
            mel = self.audio_vae.logmel().to(device)(given_audio)
            audio_latents = self.audio_vae.encode_latents(mel.to(self.audio_vae.dtype)).float()
            pad_t = audio_shape[2] - audio_latents.shape[2]
            if pad_t > 0:
                audio_latents = torch.cat([audio_latents, audio_latents[:, :, -1:].expand(-1, -1, pad_t)], dim=2)

        # 3. noise (video first, then audio: the same generator state gives the same clip)
        if latents is None:
            latents = randn_tensor(video_shape, generator=generator, device=device, dtype=torch.float32)
        if audio_latents is None:
            audio_latents = randn_tensor(audio_shape, generator=generator, device=device, dtype=torch.float32)
        if tuple(latents.shape) != video_shape or tuple(audio_latents.shape) != audio_shape:
            raise SeedanceError(f"latents must be {list(video_shape)} and audio_latents {list(audio_shape)}, got "
                                f"{list(latents.shape)} and {list(audio_latents.shape)}")
        latents, audio_latents = latents.to(device).float(), audio_latents.to(device).float()

        # 4. text: conditional, unconditional (if any guidance on text), no-cross-modal (if sync guidance)
        use_cfg_v = given_video is None and guidance_scale != 1.0
        use_cfg_a = given_audio is None and audio_guidance_scale != 1.0
        use_cfg = use_cfg_v or use_cfg_a
        use_sync = cross_modal and sync_guidance_scale != 0.0
        states, mask, pooled = self.encode_prompt(prompts, negatives if use_cfg else None)
        prompt_embeds = states[:batch]
        passes = [("cond", slice(0, batch))]
        if use_cfg:
            passes.append(("uncond", slice(batch, 2 * batch)))
        if use_sync:
            passes.append(("nocm", slice(0, batch)))
        text = torch.cat([states[s] for _, s in passes])
        text_mask = torch.cat([mask[s] for _, s in passes])
        text_pooled = torch.cat([pooled[s] for _, s in passes])
        cm_scale = torch.tensor([0.0 if name == "nocm" else float(cross_modal) for name, _ in passes],
                                device=device).repeat_interleave(batch)

        # 5. timesteps, on copies of the scheduler (the shift is this call's; a second copy steps the audio)
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_shift(float(timestep_shift))
        scheduler.set_timesteps(num_inference_steps, device=device)
        audio_scheduler = copy.deepcopy(scheduler)
        timesteps = scheduler.timesteps
        self._num_timesteps = len(timesteps)

        # 6. denoise
        video_led = video_led and cross_modal and given_video is None and given_audio is None
        video_estimate = None  # [B,C,F,h,w] clean-video estimate of the previous step (video-led sampling)
        # guidance passes run on the first `guided_steps` steps only; after them the conditional pass alone
        guided_steps = round(guidance_stop * num_inference_steps)
        device_type = torch.device(device).type
        bf16 = precision == "bf16"
        # looked up once: ModelMixin.dtype walks every module (0.6 ms each time on a 2-core CPU, four times a step)
        transformer_dtype = self.transformer.dtype
        text_caches = {}  # (rows, video-led row) -> TextCache
        # One autocast context around the whole loop keeps autocast's cache of the bf16-cast weights alive from
        # step to step: a context per forward cast all ~370 linear weights and biases again each step (10% of a
        # forward on a 2-core CPU). The per-forward context below does the casting; this one only holds the cache.
        with self.progress_bar(total=num_inference_steps) as progress_bar, \
                torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            for i, t in enumerate(timesteps):
                t_v = torch.zeros(batch, device=device) if given_video is not None else t.expand(batch).float()
                t_a = torch.zeros(batch, device=device) if given_audio is not None else t.expand(batch).float()
                led = video_led and video_estimate is not None
                step_passes = passes if i < guided_steps else passes[:1]  # passes[0] is "cond"
                rows = len(step_passes) * batch  # the passes' rows come first in text, text_mask, ...
                step_text, step_mask = text[:rows], text_mask[:rows]
                step_pooled, step_cm = text_pooled[:rows], cm_scale[:rows]
                rows_v, rows_tv = [latents] * len(step_passes), [t_v] * len(step_passes)
                if led:  # one more row: text-conditional, video clean (its estimate), audio noised
                    rows_v, rows_tv = rows_v + [video_estimate], rows_tv + [torch.zeros_like(t_v)]
                    step_text = torch.cat([step_text, text[:batch]])
                    step_mask = torch.cat([step_mask, text_mask[:batch]])
                    step_pooled = torch.cat([step_pooled, text_pooled[:batch]])
                    step_cm = torch.cat([step_cm, cm_scale[:batch]])
                n_rows = len(rows_v)
                with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                    out = self.transformer(
                        hidden_states=torch.cat(rows_v).to(transformer_dtype),
                        audio_hidden_states=audio_latents.repeat(n_rows, 1, 1).to(transformer_dtype),
                        encoder_hidden_states=step_text.to(transformer_dtype),
                        pooled_projections=step_pooled.to(transformer_dtype),
                        timestep=torch.cat(rows_tv),
                        audio_timestep=t_a.repeat(n_rows),
                        encoder_attention_mask=step_mask,
                        cross_modal=step_cm if cross_modal else False,
                        # the text's keys and values, made by the first forward of each set of rows (guided,
                        # unguided, led) and reused by the later ones
                        text_cache=text_caches.setdefault((n_rows, led), TextCache()),
                    )
                v_all, va_all = out.sample.float().chunk(n_rows), out.audio_sample.float().chunk(n_rows)
                parts = {name: (v_all[k], va_all[k]) for k, (name, _) in enumerate(step_passes)}
                if led:  # the audio reads the placed video: its conditional velocity comes from the led row
                    parts["cond"] = (parts["cond"][0], va_all[len(step_passes)])
                v, va = parts["cond"]
                if use_cfg and "uncond" in parts:
                    vu, vau = parts["uncond"]
                    v = vu + guidance_scale * (v - vu) if use_cfg_v else v
                    va = vau + audio_guidance_scale * (va - vau) if use_cfg_a else va
                if use_sync and "nocm" in parts:
                    vc, vac = parts["cond"]
                    vn, van = parts["nocm"]
                    v = v + sync_guidance_scale * (vc - vn)
                    va = va + sync_guidance_scale * (vac - van)
                if video_led:
                    video_estimate = latents - scheduler.sigmas[i].to(latents.device) * v
                if given_video is None:
                    latents = scheduler.step(v, t, latents, return_dict=False)[0]
                if given_audio is None:
                    audio_latents = audio_scheduler.step(va, t, audio_latents, return_dict=False)[0]

                if callback_on_step_end is not None:
                    local = {"latents": latents, "audio_latents": audio_latents, "prompt_embeds": prompt_embeds}
                    kwargs = {k: local[k] for k in callback_on_step_end_tensor_inputs}
                    with torch.autocast(device_type, enabled=False):  # the callback runs at full precision
                        result = callback_on_step_end(self, i, t, kwargs) or {}
                    latents = result.get("latents", latents)
                    audio_latents = result.get("audio_latents", audio_latents)
                progress_bar.update()

        # 7. decode (a given modality is returned exactly as given)
        if output_type == "latent":
            frames_out, audio_out = latents, audio_latents
        else:
            # audio first: a video decoder with an audio timing cue reads the clip's log-mel
            if given_audio is not None:
                wave = given_audio[:, None]
            else:
                mel_frames = n_samples // self.audio_vae.config.hop_length
                mel = self.audio_vae.decode_latents(audio_latents.to(self.audio_vae.dtype), num_frames=mel_frames)
                wave = self.vocoder(mel.to(self.vocoder.dtype)).float()
                wave = torch.nn.functional.pad(wave, (0, max(0, n_samples - wave.shape[-1])))[..., :n_samples]
            if given_video is not None:
                video_px = given_video
            else:
                cue = None
                if self.vae.uses_audio_cue:
                    p = self.preset
                    cue = mel_span(mel.float(), 0, n_frames, p.fps, p.sample_rate, p.hop_length).to(self.vae.dtype)
                # on a CPU a few clips at a time: 16 clips decoded at once took 1.8x the time of 8 chunks of 2 on a
                # 2-core CPU (the 3-D conv activations of a large batch fall out of cache); the frames are the same.
                # A GPU takes the whole batch in one call.
                chunk = VAE_DECODE_CHUNK if device_type == "cpu" else latents.shape[0]
                video_px = torch.cat([
                    self.vae.decode_latents(latents[i : i + chunk].to(self.vae.dtype), num_frames=n_frames,
                                            audio_mel=None if cue is None else cue[i : i + chunk]).float()
                    for i in range(0, latents.shape[0], chunk)
                ])
            video_px = ((video_px.clamp(-1, 1) + 1) / 2).permute(0, 2, 1, 3, 4)  # [B,F,3,H,W] in [0,1]
            if output_type == "pt":
                frames_out, audio_out = video_px, wave
            else:
                frames_out = video_px.permute(0, 1, 3, 4, 2).cpu().numpy()
                audio_out = wave[:, 0].cpu().numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return frames_out, audio_out, self.sample_rate
        return SeedancePipelineOutput(frames=frames_out, audio=audio_out, sample_rate=self.sample_rate)

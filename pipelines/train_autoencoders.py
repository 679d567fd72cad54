#!/usr/bin/env python
"""Train Seedance's latent autoencoders: the video VAE, the audio VAE and the vocoder.

One recipe, three models (`--model video_vae | audio_vae | vocoder`):

    python pipelines/train_autoencoders.py --build-cache --preset tiny          # render the clips once
    accelerate launch pipelines/train_autoencoders.py --model video_vae --preset tiny \\
        --out runs/video_vae --export weights/seedance-tiny/vae
    accelerate launch --cpu --num_processes 2 pipelines/train_autoencoders.py --model vocoder ...

Data: a fixed set of SyncWorld training clips (`--clips-per-scene` per scene),
rendered once into safetensors files under `--cache` and held in memory; the
model sees random crops of them. Each file records a fingerprint of SyncWorld's
source, and one rendered by another version is rendered again. Batches are
drawn from a generator seeded by (seed, step, process), so a run is
deterministic and a resumed run continues exactly where it stopped, with no
data-loader state to save.

Video decoder with an audio timing cue (`--audio-cue N`, usually with
`--init-from` and `--freeze-encoder`): each crop also gets the log-mel of its
seconds, the true one or the audio VAE's round trip of it (half each), and
`--audio-cue-dropout` of the steps get none. `--latent-noise S` adds Gaussian
noise to the latents the decoder reads (std drawn per clip from [0, S] latent
stds), so the decoder also learns latents that are not exactly an encoder's,
as a generator's are. `--timing-jitter J` has the encoder read the crop moved
by up to J frames while the target and its mel stay unmoved, so the decoder
learns to take event times from the mel. Both were tried on the shipped decoder
and not kept (README, "What the remaining misses are made of").

Decoder-only rounds keep a generator valid: `--init-from` a trained model with
`--freeze-encoder` (video or audio VAE) trains the decoder alone and keeps the
latents and their stored statistics. `--audio-cue-group` adds a second cue on
the input of the video decoder's last temporal Upsample. `--roundtrip-share P`
feeds the vocoder the audio VAE's round trip of the mel on a share P of the
crops (the target stays the true waveform).

Resuming: every `--save-every` steps (and at the end) the accelerate state goes
to <out>/checkpoints/.tmp_step_N, then is renamed to step_N; a new run with the
same --out picks up the newest complete step_N. The step count and the training
seconds so far travel in step_N/train_state.json (JSON, never a pickle).
`--max-minutes` stops a run early at a checkpoint; run it again to go on.

Logs: tqdm on the main process, tensorboard scalars in <out>/logs
(`tensorboard --logdir runs`). With `--export DIR` the finished model is saved
in fp16 with diffusers' save_pretrained layout (latent statistics measured on
the training clips), plus DIR/train_info.json with the recipe and its minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipelines.recipe_common import lr_at as cosine_lr  # noqa: E402
from pipelines.recipe_common import resume, run_steps, start_run, write_train_info  # noqa: E402
from seedance.config import ClipPreset, get_preset  # noqa: E402
from seedance.errors import SeedanceError  # noqa: E402
from seedance.hardware import auto_mixed_precision  # noqa: E402
from seedance.models.io import atomic_save_pretrained, atomic_write_bytes, load_component  # noqa: E402

MODELS = ("video_vae", "audio_vae", "vocoder")
SCENES = ("face", "bounce", "keys")

# Per-model recipe defaults; every one can be overridden on the command line.
RECIPES = {
    "video_vae": dict(
        steps=6000, batch_size=16, lr=3e-4, crop=8, spatial_crop=32, kl_weight=1e-5, delta_weight=0.5, head_weight=0.0
    ),
    "audio_vae": dict(
        steps=3000, batch_size=16, lr=1e-3, crop=100, spatial_crop=0, kl_weight=1e-5, delta_weight=0.5, head_weight=0.0
    ),
    "vocoder": dict(
        steps=4000, batch_size=16, lr=1e-3, crop=8000, spatial_crop=0, kl_weight=0.0, delta_weight=0.0, head_weight=1.0
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=MODELS, help="which autoencoder to train")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", type=Path, help="run folder: checkpoints/, logs/, train_summary.json")
    p.add_argument("--export", type=Path, default=None, help="save the finished model here (save_pretrained, fp16)")
    p.add_argument("--steps", type=int, default=None, help="total optimiser steps (recipe default per model)")
    p.add_argument("--batch-size", type=int, default=None, help="clips (or crops) per process per step")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--crop", type=int, default=None, help="frames (video), mel frames (audio VAE) or samples (vocoder)")
    p.add_argument("--spatial-crop", type=int, default=None, help="video: train on square crops of this size")
    p.add_argument("--kl-weight", type=float, default=None)
    p.add_argument("--delta-weight", type=float, default=None, help="weight of the temporal-difference loss")
    p.add_argument("--trace-weight", type=float, default=0.0,
                   help="video VAE: weight of the motion-trace loss (each frame's mean |change| against the "
                        "original's: what the offset estimator reads)")
    p.add_argument("--colour-weight", type=float, default=0.0,
                   help="video VAE: weight of the colour-distribution loss (per frame and channel, L1 between the "
                        "sorted pixel values of output and original: blind to where a colour is, it penalises "
                        "colours mixed by blur)")
    p.add_argument(
        "--head-weight",
        type=float,
        default=None,
        help="vocoder: weight of the direct STFT-head losses (magnitude; phase x this)",
    )
    p.add_argument("--phase-terms", default="ip,gd,iaf", help="vocoder: which phase losses (ip, gd, iaf)")
    p.add_argument("--model-config", default="{}", help="JSON overrides of the model's config (e.g. smaller widths)")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from this saved model (a save_pretrained folder; its config is used, with "
                        "--model-config overriding fields such as the vocoder's refine_steps)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="video or audio VAE: train the decoder only (needs --init-from). The encoder, its latents "
                        "and their stored mean/std stay exactly as loaded, so a generator trained on those latents "
                        "stays valid")
    p.add_argument("--audio-cue", type=int, default=0,
                   help="video VAE: width of the decoder's audio timing cue (0: none). The decoder then also reads "
                        "the clip's log-mel to place events inside a latent group (see seedance/models/video_vae.py)")
    p.add_argument("--audio-cue-group", action="store_true",
                   help="video VAE with --audio-cue: also condition the temporal Upsample's input on the audio of "
                        "each latent group's frames (see GroupTimingCue)")
    p.add_argument("--audio-vae", "--audio-cue-vae", dest="audio_cue_vae", type=Path,
                   default=Path("weights/seedance-tiny/audio_vae"),
                   help="video VAE with --audio-cue, vocoder with --roundtrip-share: the audio VAE whose decoded "
                        "mels (what a generated clip has) are trained on, beside the true mels")
    p.add_argument("--roundtrip-share", type=float, default=0.0,
                   help="vocoder: share of the crops whose input mel is the --audio-vae round trip of the true one "
                        "(the target stays the true waveform), so the vocoder learns the mels it gets in generation")
    p.add_argument("--audio-cue-dropout", type=float, default=0.2,
                   help="video VAE with --audio-cue: share of steps decoded without audio (a video-only decode "
                        "must stay good)")
    p.add_argument("--latent-noise", type=float, default=0.0,
                   help="video VAE with --freeze-encoder: the decoder reads latents with Gaussian noise added, its "
                        "std (in units of the stored latent std) drawn per clip from [0, this], so that it also "
                        "learns latents that are not exactly an encoder's, as a generator's are")
    p.add_argument("--timing-jitter", type=int, default=0,
                   help="video VAE with --freeze-encoder and --audio-cue: the encoder reads the crop moved by up to "
                        "this many frames (per clip), the decoder must give back the unmoved crop with its mel, so "
                        "it learns to take event times from the audio cue rather than from the latents")
    p.add_argument("--scenes", default=",".join(SCENES),
                   help="comma-separated SyncWorld scenes to train on; a scene named twice is drawn twice as often")
    p.add_argument("--clips-per-scene", type=int, default=200)
    p.add_argument("--eval-clips-per-scene", type=int, default=2)
    p.add_argument("--cache", type=Path, default=Path("runs/cache"))
    p.add_argument("--build-cache", action="store_true", help="only render the training and eval clips, then exit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this much training")
    p.add_argument("--mixed-precision", choices=("auto", "no", "bf16"), default="auto",
                   help="auto: bf16 autocast where the device runs bf16 natively (AMX, AVX-512 bf16, a recent GPU), "
                        "fp32 elsewhere (seedance/hardware.py)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU is present")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    args = p.parse_args(argv)
    if not args.build_cache and (args.model is None or args.out is None):
        p.error("--model and --out are required (or use --build-cache)")
    recipe = RECIPES.get(args.model, {})
    for key, value in recipe.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.scenes = tuple(s.strip() for s in args.scenes.split(",") if s.strip())
    args.phase_terms = tuple(t.strip() for t in args.phase_terms.split(",") if t.strip())
    if not set(args.phase_terms) <= {"ip", "gd", "iaf"}:
        p.error(f"--phase-terms takes ip, gd, iaf; got {','.join(args.phase_terms)}")
    try:
        args.model_config = json.loads(args.model_config)
    except json.JSONDecodeError as exc:
        p.error(f"--model-config is not valid JSON: {exc}")
    if args.audio_cue and args.model != "video_vae":
        p.error("--audio-cue is for --model video_vae")
    if args.audio_cue_group and not args.audio_cue:
        p.error("--audio-cue-group needs --audio-cue N")
    if not 0.0 <= args.audio_cue_dropout < 1.0:
        p.error("--audio-cue-dropout must be in [0, 1)")
    if args.latent_noise and (args.model != "video_vae" or not args.freeze_encoder):
        p.error("--latent-noise is for --model video_vae with --freeze-encoder (the latents must stay the encoder's)")
    if not 0.0 <= args.latent_noise <= 4.0 or math.isnan(args.latent_noise):
        p.error("--latent-noise must be from 0 to 4 (a std in units of the latent std)")
    if args.timing_jitter and (args.model != "video_vae" or not args.freeze_encoder or not args.audio_cue):
        p.error("--timing-jitter is for --model video_vae with --freeze-encoder and --audio-cue")
    if args.colour_weight and args.model != "video_vae":
        p.error("--colour-weight is for --model video_vae")
    if not 0.0 <= args.colour_weight <= 100.0 or math.isnan(args.colour_weight):
        p.error("--colour-weight must be from 0 to 100")
    if not 0 <= args.timing_jitter <= 8:
        p.error("--timing-jitter must be from 0 to 8 frames")
    if args.freeze_encoder and (args.model == "vocoder" or args.init_from is None):
        p.error("--freeze-encoder is for --model video_vae or audio_vae with --init-from (a trained VAE whose "
                "encoder to keep)")
    if args.roundtrip_share and args.model != "vocoder":
        p.error("--roundtrip-share is for --model vocoder")
    if not 0.0 <= args.roundtrip_share <= 1.0:
        p.error("--roundtrip-share must be in [0, 1]")
    return args


# ---- data --------------------------------------------------------------------------------------------------------


@dataclass
class Clips:
    frames: torch.Tensor  # uint8 [N,F,H,W,3]
    audio: torch.Tensor  # float32 [N,S]
    scenes: list[str]  # scene of each clip


def cache_path(cache: Path, preset: ClipPreset, scene: str, split: str, n: int) -> Path:
    return cache / f"syncworld_{preset.name}_{split}_{scene}_{n}.safetensors"


def render_scene(preset: ClipPreset, scene: str, split: str, n: int, path: Path) -> None:
    """Render clips seed 0..n-1 of one scene and write them atomically as one safetensors file."""
    import numpy as np
    from safetensors.torch import save_file

    from pipelines.syncworld_cache import syncworld_fingerprint
    from seedance.data.syncworld import make_sample

    frames, audio = [], []
    for seed in range(n):
        s = make_sample(scene, seed, preset, split)
        frames.append(s.frames)
        audio.append(s.audio[: preset.num_samples])
    tensors = {"frames": torch.from_numpy(np.stack(frames)), "audio": torch.from_numpy(np.stack(audio))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    meta = {"scene": scene, "split": split, "preset": preset.to_json(), "syncworld": syncworld_fingerprint()}
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def rendered_by_this_syncworld(path: Path) -> bool:
    """Whether a clip cache records the fingerprint of today's SyncWorld source (older caches record none)."""
    from safetensors import safe_open

    from pipelines.syncworld_cache import syncworld_fingerprint

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("syncworld") == syncworld_fingerprint()


def load_clips(cache: Path, preset: ClipPreset, scenes: tuple[str, ...], split: str, n: int, render: bool) -> Clips:
    from safetensors.torch import load_file

    frames, audio, names = [], [], []
    for scene in scenes:
        path = cache_path(cache, preset, scene, split, n)
        stale = path.is_file() and not rendered_by_this_syncworld(path)
        if not path.is_file() or stale:
            if not render:
                what = "was rendered by another SyncWorld" if stale else "is missing"
                raise SeedanceError(f"clip cache {path} {what}; run with --build-cache first")
            if stale:
                print(f"clip cache {path} was rendered by another SyncWorld version: rendering it again", flush=True)
            t0 = time.time()
            render_scene(preset, scene, split, n, path)
            print(f"rendered {n} {split} clips of {scene} in {time.time() - t0:.0f} s -> {path}", flush=True)
        t = load_file(str(path))
        frames.append(t["frames"])
        audio.append(t["audio"])
        names += [scene] * t["frames"].shape[0]
    return Clips(torch.cat(frames), torch.cat(audio), names)


def frames_to_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [B,F,H,W,3] -> float [B,3,F,H,W] in [-1, 1]."""
    return frames.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


# ---- the three tasks ---------------------------------------------------------------------------------------------


class Task:
    """What differs between the models: construction, a batch, the loss, evaluation and export statistics."""

    def __init__(self, args: argparse.Namespace, preset: ClipPreset, clips: Clips, eval_clips: Clips):
        self.args, self.preset, self.clips, self.eval_clips = args, preset, clips, eval_clips

    def build(self):
        raise NotImplementedError

    def batch(self, g: torch.Generator):
        raise NotImplementedError

    def loss(self, model, batch, g: torch.Generator) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        raise NotImplementedError

    def finalize(self, model) -> None:
        """Measure and store statistics the exported model needs (latent mean/std)."""


def accelerate_unwrap(model):
    """The bare model under a DDP wrapper (for helpers that need no gradient sync)."""
    return getattr(model, "module", model)


def delta_l1(pred: torch.Tensor, target: torch.Tensor, dim: int) -> torch.Tensor:
    """L1 between temporal differences: rewards getting the *changes* (mouth, impacts) right."""
    return (pred.diff(dim=dim) - target.diff(dim=dim)).abs().mean()


def colour_distribution_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """video [B,3,T,H,W]: per frame and channel, L1 between the sorted pixel values (the 1-D Wasserstein distance of
    the two value distributions). Where the decoder cannot tell where an object is, plain L1 favours a blur that
    mixes its colour with the backdrop; this term is unchanged by where a colour is and grows with such mixing."""
    b, c, t = pred.shape[:3]
    return (pred.reshape(b, c, t, -1).sort(-1).values - target.reshape(b, c, t, -1).sort(-1).values).abs().mean()


def motion_trace_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """video [B,3,T,H,W]: L1 between the per-frame mean |grey change| of both (the offset estimator's motion
    energy). delta_l1 bounds it from above but weighs every pixel's error alike; this one weighs exactly the
    per-frame total that the estimator reads, where small changes over a whole frame add up."""

    def trace(v: torch.Tensor) -> torch.Tensor:
        return v.mean(dim=1).diff(dim=1).abs().mean(dim=(2, 3))  # [B,T-1]

    return (trace(pred) - trace(target)).abs().mean()


class VideoTask(Task):
    def __init__(self, *a):
        super().__init__(*a)
        self.mels = self.eval_mels = None
        if self.args.audio_cue:
            self.mels, self.eval_mels = self._cue_mels(self.clips), self._cue_mels(self.eval_clips)

    @torch.no_grad()
    def _cue_mels(self, clips: Clips) -> torch.Tensor:
        """[N,2,n_mels,M]: each clip's true log-mel and the audio VAE's round trip of it (a generated clip's mel
        comes out of that decoder; a dubbed or lip-synced clip's is the true one)."""
        from seedance.models.audio_vae import AudioVAE
        from seedance.models.mel import LogMel

        logmel, audio_vae = LogMel(self.preset), load_component(AudioVAE, self.args.audio_cue_vae).eval()
        out = []
        for i in range(0, len(clips.audio), 32):
            mel = logmel(clips.audio[i : i + 32])
            rt = audio_vae.decode_latents(audio_vae.encode_latents(mel), num_frames=mel.shape[-1]).float()
            out.append(torch.stack([mel, rt], dim=1))
        return torch.cat(out)

    def _mel_for(self, mels: torch.Tensor, idx: torch.Tensor, start: torch.Tensor, frames: int, g) -> torch.Tensor:
        from seedance.models.mel import mel_span

        which = torch.randint(2, (len(idx),), generator=g)  # true or round-trip mel, per clip
        p = self.preset
        return torch.stack([
            mel_span(mels[i, w], int(s), frames, p.fps, p.sample_rate, p.hop_length)
            for i, w, s in zip(idx.tolist(), which.tolist(), start.tolist())
        ])

    def build(self):
        from seedance.models.video_vae import VideoVAE

        cue = {}
        if self.args.audio_cue:
            cue = {"audio_cue_channels": self.args.audio_cue, "audio_cue_mels": self.preset.n_mels,
                   **({"audio_cue_group": True} if self.args.audio_cue_group else {})}
        if self.args.init_from is None:
            return VideoVAE(**{**self.args.model_config, **cue})
        model = load_component(VideoVAE, self.args.init_from).float()
        width = model.config.audio_cue_channels
        if model.uses_audio_cue and width != self.args.audio_cue:  # training it without its mel would unlearn it
            raise SeedanceError(f"the VAE in {self.args.init_from} reads an audio timing cue of width {width}: "
                                f"pass --audio-cue {width}")
        if any(model.config.get(k) != v for k, v in cue.items()):
            # Add the cue(s) to a trained VAE: every loaded weight stays, a new cue starts at zero (no effect).
            grown = VideoVAE(**{**{k: v for k, v in model.config.items() if not k.startswith("_")}, **cue})
            missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
            if unexpected or any(not k.startswith(("decoder.audio_cue.", "decoder.audio_cue_group.")) for k in missing):
                raise SeedanceError(f"cannot add an audio cue to {self.args.init_from}: {missing or unexpected}")
            model = grown
        # the loaded config decides the crop grid (model_tc / model_sc read model_config)
        self.args.model_config = {**self.args.model_config,
                                  "temporal_compression": model.config.temporal_compression,
                                  "spatial_compression": model.config.spatial_compression}
        if self.args.freeze_encoder:
            model.encoder.requires_grad_(False)
        return model

    def batch(self, g):
        n, f = self.clips.frames.shape[:2]
        tc = self.model_tc
        crop = min(self.args.crop, f)
        idx = torch.randint(n, (self.args.batch_size,), generator=g)
        # Crops start on a latent boundary so the causal grid matches whole clips.
        starts = torch.randint((f - crop) // tc + 1, (self.args.batch_size,), generator=g) * tc
        t = starts[:, None] + torch.arange(crop)
        x = frames_to_video(self.clips.frames[idx[:, None], t])
        moved = None  # with --timing-jitter, what the encoder reads instead of x; the target and the mel stay x's
        if self.args.timing_jitter:
            shift = torch.randint(-self.args.timing_jitter, self.args.timing_jitter + 1, (len(idx),), generator=g)
            moved = frames_to_video(self.clips.frames[idx[:, None], (t + shift[:, None]).clamp(0, f - 1)])
        # Spatial crops (on the latent grid, so the convolutions see what they see on whole frames):
        # four 32x32 crops cost what one 64x64 frame does and show more varied content per step.
        size, sc = self.args.spatial_crop, self.model_sc
        if size and size < x.shape[-1]:
            h, w = x.shape[-2:]
            oy = torch.randint((h - size) // sc + 1, (1,), generator=g).item() * sc
            ox = torch.randint((w - size) // sc + 1, (1,), generator=g).item() * sc
            x = x[..., oy : oy + size, ox : ox + size]
            moved = None if moved is None else moved[..., oy : oy + size, ox : ox + size]
        flip = torch.rand(self.args.batch_size, generator=g) < 0.5  # horizontal flips double the layouts seen
        x[flip] = x[flip].flip(-1)
        if moved is not None:
            moved[flip] = moved[flip].flip(-1)
        x_in = x if moved is None else moved
        if self.mels is None:
            return x, None, x_in
        mel = self._mel_for(self.mels, idx, starts, crop, g)
        drop = torch.rand((), generator=g).item() < self.args.audio_cue_dropout
        return x, (None if drop else mel), (x if drop else x_in)  # no cue, no way to know the moved times

    def loss(self, model, batch, g):
        x, mel, x_in = batch
        noise = None
        if self.args.latent_noise > 0:  # the decoder also learns latents off the encoder's own (see --latent-noise)
            noise = torch.rand(x.shape[0], generator=g).to(x.device) * self.args.latent_noise
        y, kl = model(x_in, sample_posterior=True, generator=g, return_kl=True, audio_mel=mel, latent_noise=noise)
        y = y.float()
        l1, mse = (y - x).abs().mean(), (y - x).pow(2).mean()
        delta = delta_l1(y, x, dim=2)
        trace = motion_trace_l1(y, x)
        colour = colour_distribution_l1(y, x) if self.args.colour_weight else y.new_zeros(())
        loss = l1 + mse + self.args.delta_weight * delta + self.args.trace_weight * trace + self.args.kl_weight * kl
        loss = loss + self.args.colour_weight * colour
        psnr = 10 * math.log10(4.0 / max(mse.item(), 1e-10))
        logs = {"l1": l1.item(), "mse": mse.item(), "delta": delta.item(), "trace": trace.item(), "kl": kl.item(),
                "colour": colour.item()}
        return loss, {**logs, "psnr": psnr}

    @torch.no_grad()
    def evaluate(self, model):
        from seedance.models.mel import mel_span

        x = frames_to_video(self.eval_clips.frames)
        mel = None
        if self.eval_mels is not None:  # the round-trip mel, as a generated clip has
            p, f = self.preset, x.shape[2]
            mel = mel_span(self.eval_mels[:, 1], 0, f, p.fps, p.sample_rate, p.hop_length)
        y = torch.cat([
            model(x[i : i + 2], audio_mel=None if mel is None else mel[i : i + 2]) for i in range(0, len(x), 2)
        ]).float().clamp(-1, 1)
        mse = (y - x).pow(2).mean().item()
        return {"eval/psnr_db": 10 * math.log10(4.0 / max(mse, 1e-10))}

    @torch.no_grad()
    def finalize(self, model):
        if self.args.freeze_encoder:  # the latents did not change: keep the statistics the generator was trained on
            return
        x = frames_to_video(self.clips.frames[:: max(1, len(self.clips.frames) // 48)])
        z = torch.cat([model.encode(x[i : i + 4]).latent_dist.mode() for i in range(0, len(x), 4)]).float()
        model.set_latent_stats(z.mean(dim=(0, 2, 3, 4)).tolist(), z.std(dim=(0, 2, 3, 4)).clamp(min=1e-3).tolist())

    @property
    def model_tc(self) -> int:
        return int(self.args.model_config.get("temporal_compression", 4))

    @property
    def model_sc(self) -> int:
        return int(self.args.model_config.get("spatial_compression", 8))


class MelTask(Task):
    """Shared by the audio VAE and the vocoder: log-mels of the cached audio, and their global statistics."""

    def __init__(self, *a):
        super().__init__(*a)
        from seedance.models.mel import LogMel

        self.logmel = LogMel(self.preset)
        self.mels = torch.cat([self.logmel(self.clips.audio[i : i + 64]) for i in range(0, len(self.clips.audio), 64)])
        self.eval_mels = self.logmel(self.eval_clips.audio)
        self.mel_mean = float(self.mels.mean())
        self.mel_std = float(self.mels.std())


class AudioVAETask(MelTask):
    def build(self):
        from seedance.models.audio_vae import AudioVAE
        from seedance.models.mel import mel_config

        if self.args.init_from is not None:
            model = load_component(AudioVAE, self.args.init_from).float()
            if model.config.n_mels != self.logmel.n_mels or model.config.hop_length != self.logmel.hop_length:
                raise SeedanceError(f"{self.args.init_from} was trained on another mel definition than --preset's")
            # the loaded config decides the crop grid (batch reads model_config)
            self.args.model_config = {**self.args.model_config,
                                      "temporal_compression": model.config.temporal_compression}
            if self.args.freeze_encoder:
                model.encoder.requires_grad_(False)
            return model
        cfg = {**mel_config(self.preset), "mel_mean": self.mel_mean, "mel_std": self.mel_std}
        return AudioVAE(**{**cfg, **self.args.model_config})

    def batch(self, g):
        n, _, m = self.mels.shape
        tc = int(self.args.model_config.get("temporal_compression", 5))
        crop = min(self.args.crop, m) // tc * tc
        idx = torch.randint(n, (self.args.batch_size,), generator=g)
        starts = torch.randint((m - crop) // tc + 1, (self.args.batch_size,), generator=g) * tc
        x = self.mels[idx[:, None], :, starts[:, None] + torch.arange(crop)]  # [B, crop, n_mels]
        x = x.transpose(1, 2).contiguous()
        # Volume augmentation: a gain g adds log(g) to every non-silent bin of a magnitude log-mel.
        gain = torch.empty(self.args.batch_size, 1, 1).uniform_(-1.5, 0.5, generator=g)
        return torch.maximum(x + gain, torch.full_like(x, math.log(1e-5)))

    def loss(self, model, x, g):
        y, kl = model(x, sample_posterior=True, generator=g, return_kl=True)
        y = y.float()
        l1 = (y - x).abs().mean()
        delta = delta_l1(y, x, dim=2)
        loss = l1 + self.args.delta_weight * delta + self.args.kl_weight * kl
        return loss, {"mel_l1": l1.item(), "delta": delta.item(), "kl": kl.item()}

    @torch.no_grad()
    def evaluate(self, model):
        y = model(self.eval_mels).float()
        return {"eval/mel_l1": (y - self.eval_mels).abs().mean().item()}

    @torch.no_grad()
    def finalize(self, model):
        if self.args.freeze_encoder:  # the latents did not change: keep the statistics the generator was trained on
            return
        z = model.encode(self.mels[:: max(1, len(self.mels) // 96)]).latent_dist.mode().float()
        model.set_latent_stats(z.mean(dim=(0, 2)).tolist(), z.std(dim=(0, 2)).clamp(min=1e-3).tolist())


class VocoderTask(MelTask):
    audio_vae = None  # loaded on first use by `roundtrip`

    def build(self):
        from seedance.models.mel import mel_config
        from seedance.models.vocoder import Vocoder

        if self.args.init_from is not None:
            # The loaded config (mel definition, widths, mel statistics) stays; --model-config may change the
            # fields that leave the weights' shapes alone (refine_steps, compute_dtype).
            model = load_component(Vocoder, self.args.init_from, **self.args.model_config).float()
            if model.logmel().n_mels != self.logmel.n_mels or model.config.hop_length != self.logmel.hop_length:
                raise SeedanceError(f"{self.args.init_from} was trained on another mel definition than --preset's")
            return model
        cfg = {**mel_config(self.preset), "mel_mean": self.mel_mean, "mel_std": self.mel_std}
        return Vocoder(**{**cfg, **self.args.model_config})

    def batch(self, g):
        n, s = self.clips.audio.shape
        hop = self.preset.hop_length
        crop = min(self.args.crop, s) // hop * hop
        idx = torch.randint(n, (self.args.batch_size,), generator=g)
        starts = torch.randint((s - crop) // hop + 1, (self.args.batch_size,), generator=g) * hop
        wave = self.clips.audio[idx[:, None], starts[:, None] + torch.arange(crop)]
        gain = torch.empty(self.args.batch_size, 1).uniform_(0.2, 1.0, generator=g)
        return wave * gain

    @torch.no_grad()
    def roundtrip(self, mel: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Replace `--roundtrip-share` of the mels [B,n_mels,M] by the audio VAE's round trip of them."""
        if self.args.roundtrip_share <= 0:
            return mel
        if self.audio_vae is None:
            from seedance.models.audio_vae import AudioVAE

            self.audio_vae = load_component(AudioVAE, self.args.audio_cue_vae).eval()
            if self.audio_vae.config.hop_length != self.logmel.hop_length:
                raise SeedanceError(f"{self.args.audio_cue_vae} was trained on another mel definition than --preset's")
        pick = torch.rand(mel.shape[0], generator=g) < self.args.roundtrip_share
        if not pick.any():
            return mel
        rt = self.audio_vae.decode_latents(self.audio_vae.encode_latents(mel[pick]), num_frames=mel.shape[-1])
        out = mel.clone()
        out[pick] = rt.float()
        return out

    def loss(self, model, wave, g):
        from seedance.models.vocoder import multi_resolution_stft_distance, phase_losses

        mel = self.logmel(wave)  # the target's mel
        y, spec = model(self.roundtrip(mel, g), return_spectrum=True)
        y = y.float()[:, 0]
        stft = multi_resolution_stft_distance(y, wave)
        mel_l1 = (self.logmel(y) - mel).abs().mean()
        loss = stft + mel_l1
        logs = {"stft": stft.item(), "mel_l1": mel_l1.item()}
        if self.args.head_weight:
            # Supervise the head directly (as APNet does): its magnitude against the target STFT's, and
            # its phase by anti-wrapped phase, group-delay and instantaneous-frequency errors. Learning the
            # magnitude only through the waveform mixes it up with the phase errors.
            target = accelerate_unwrap(model).target_spectrum(wave)
            mag, mag_t = spec.abs().clamp(min=1e-5), target.abs().clamp(min=1e-5)
            head_mag = (mag.log() - mag_t.log()).abs().mean() + torch.linalg.vector_norm(
                mag_t - mag
            ) / torch.linalg.vector_norm(mag_t)
            phase = phase_losses(spec, target, self.args.phase_terms)
            loss = loss + head_mag + self.args.head_weight * sum(phase.values())
            logs.update({"head_mag": head_mag.item(), **{k: v.item() for k, v in phase.items()}})
        return loss, logs

    @torch.no_grad()
    def evaluate(self, model):
        from seedance.models.vocoder import multi_resolution_stft_distance

        y = model(self.eval_mels).float()
        return {"eval/stft_dist": multi_resolution_stft_distance(y, self.eval_clips.audio).item()}


TASKS = {"video_vae": VideoTask, "audio_vae": AudioVAETask, "vocoder": VocoderTask}


# ---- checkpoints -------------------------------------------------------------------------------------------------


# ---- main --------------------------------------------------------------------------------------------------------


def lr_at(step: int, args: argparse.Namespace) -> float:
    """The autoencoders decay to 10% of the peak (the evaluation models to 5%)."""
    return cosine_lr(step, args, floor=0.1)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)

    if args.build_cache:
        load_clips(args.cache, preset, args.scenes, "train", args.clips_per_scene, render=True)
        load_clips(args.cache, preset, args.scenes, "test", args.eval_clips_per_scene, render=True)
        return 0

    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out: Path = args.out
    # cpu=True where there is no GPU: then a torchrun-style launch (accelerate launch --multi_gpu) of N
    # processes on a CPU-only machine becomes N gloo processes instead of N unconnected copies.
    accelerator = Accelerator(
        cpu=args.cpu or not torch.cuda.is_available(),
        mixed_precision=auto_mixed_precision(args.mixed_precision),
        log_with="tensorboard",
        project_dir=str(out / "logs"),
    )
    set_seed(args.seed)
    with accelerator.main_process_first():  # one process renders a missing cache, the others then read it
        clips = load_clips(args.cache, preset, args.scenes, "train", args.clips_per_scene, render=True)
        eval_clips = load_clips(args.cache, preset, args.scenes, "test", args.eval_clips_per_scene, render=True)
    task = TASKS[args.model](args, preset, clips, eval_clips)

    model = task.build()
    n_params = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)

    step, seconds = resume(accelerator, out / "checkpoints")
    what = f"{n_params / 1e6:.2f} M parameters ({sum(p.numel() for p in trainable) / 1e6:.2f} M trained), " \
           f"{len(clips.frames)} training clips"
    bar = start_run(accelerator, args.model, args, what, step)
    def loss_fn(g: torch.Generator):
        return task.loss(model, task.batch(g), g)

    step, seconds, stopped_early = run_steps(
        accelerator, model, optimizer, args, out, (step, seconds), bar, loss_fn,
        lambda: task.evaluate(accelerator.unwrap_model(model)),
        lr_fn=lr_at
    )

    summary = {"model": args.model, "step": step, "steps": args.steps, "train_minutes": round(seconds / 60, 2)}
    if accelerator.is_main_process:
        model.eval()
        unwrapped = accelerator.unwrap_model(model).float()
        summary.update(task.evaluate(unwrapped))
        atomic_write_bytes(out / "train_summary.json", json.dumps(summary, indent=2).encode())
        if args.export is not None and not stopped_early:
            task.finalize(unwrapped)
            export = torch.nn.Module.to(unwrapped, torch.float16)  # fp16 on disk; loads back as float32
            atomic_save_pretrained(export, args.export)
            if args.init_from is not None:  # from_pretrained recorded where it loaded from: not the export's business
                config_file = args.export / "config.json"
                config = json.loads(config_file.read_text())
                config.pop("_name_or_path", None)
                atomic_write_bytes(config_file, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
            write_train_info(accelerator, args, summary, n_params)
            # Temporary folders and files are private (0700/0600); shipped weights are for everyone to read.
            os.chmod(args.export, 0o755)
            for file in args.export.iterdir():
                os.chmod(file, 0o644)
            accelerator.print(f"exported {args.model} to {args.export}")
        accelerator.print(json.dumps(summary))
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

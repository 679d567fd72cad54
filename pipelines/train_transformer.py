"""Train the dual-branch SeedanceTransformer on cached SyncWorld latents (rectified flow).

    accelerate launch pipelines/train_transformer.py --preset tiny --weights weights/seedance-tiny \
        --out runs/transformer --num-clips 4000 --steps 20000
    accelerate launch --multi_gpu --num_processes 2 pipelines/train_transformer.py ...  # 2 processes, also on a
        CPU-only machine (torchrun starts them; they join a gloo group). Note: `accelerate launch --cpu` starts
        one process whatever --num_processes says (accelerate 1.15 spawns several CPU processes only via mpirun).

1. Latent cache, built once: SyncWorld train clips -> video VAE / audio VAE latents (normalised), in
   safetensors shards (shards are split across processes; a rebuild skips finished ones). Text is encoded when
   training starts. The cache records a fingerprint of what it holds (SyncWorld's code, scenes, preset, the
   VAEs' weights): one built from other clips or VAEs is refused with the fix, never trained on.
2. Rectified flow: x_t = (1 - sigma) x0 + sigma eps, target v = eps - x0, sigma ~ logit-normal. The model
   predicts x0 and answers with v = (x_t - x0_hat) / sigma; the loss is taken on v with sigma floored at
   `--sigma-floor` (so tiny sigmas do not dominate).
3. Conditioning dropout that teaches the coupling on purpose (DESIGN "Learning the coupling"):
   - video-to-audio steps: video latents clean (t = 0), audio noised; the only way to lower the audio loss is
     to read the video through cross-modal attention (and vice versa for audio-to-video steps)
   - cross-modal-off samples: the same model without the coupling (keeps the sync-guidance pass meaningful)
   - text dropout (for classifier-free guidance): the caption is replaced by the empty prompt
4. EMA of the weights, checkpoints (accelerator.save_state + EMA safetensors, swapped in atomically; the newest
   complete one is resumed), tensorboard logs, and a validation every `--val-every` steps that measures sync:
   the loss gain from cross-modal attention on held-out conditional batches, and audio-visual offsets of
   generated clips (joint and video-to-audio) beside shuffled pairs.
Every random draw of a step comes from a generator seeded by (seed, step, process), so a resumed run continues
exactly as an uninterrupted one would.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `accelerate launch pipelines/train_transformer.py` from the repo root
    sys.path.insert(0, str(ROOT))

from seedance.config import get_preset  # noqa: E402
from seedance.errors import SeedanceError  # noqa: E402
from seedance.faults import kill_point, remove_partial_checkpoints  # noqa: E402
from seedance.hardware import auto_mixed_precision  # noqa: E402


# ---------------------------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--weights", default="weights/seedance-tiny", help="folder with vae/ audio_vae/ text_encoder/ ...")
    p.add_argument("--out", default="runs/transformer", help="run folder: checkpoints, logs, validation clips")
    p.add_argument("--cache", default=None, help="latent cache folder (default: <out>/../latent_cache_<preset>)")
    p.add_argument("--scenes", default="face,bounce,keys")
    p.add_argument("--num-clips", type=int, default=4000, help="SyncWorld train clips in the cache")
    p.add_argument("--shard-size", type=int, default=64)
    p.add_argument("--text-len", type=int, default=40, help="text tokens kept per caption in the cache")
    p.add_argument("--holdout", type=int, default=64, help="cached clips kept out of training for diagnostics")
    # model
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--video-dim", type=int, default=192)
    p.add_argument("--video-heads", type=int, default=4)
    p.add_argument("--audio-dim", type=int, default=128)
    p.add_argument("--audio-heads", type=int, default=4)
    p.add_argument("--cross-modal-dim", type=int, default=128)
    p.add_argument("--cross-modal-heads", type=int, default=4)
    p.add_argument("--patch-size", type=int, default=0, help="spatial patch on the video latents (0: a 4x4 grid)")
    p.add_argument("--ff-mult", type=float, default=3.0)
    p.add_argument("--locality", default="2,16", help="initial cross-modal locality slopes lo,hi per second; 'none'")
    p.add_argument("--independent", action="store_true", help="ablation: no cross-modal attention at all")
    p.add_argument("--cascaded", action="store_true",
                   help="ablation: half the samples text->video without coupling, half video->audio (sample with "
                        "cross_modal=False for the video, then video= for the audio)")
    p.add_argument("--prediction-type", default="x0", choices=("x0", "velocity"))
    p.add_argument("--init-from", default=None, help="start from these transformer weights (a save_pretrained dir)")
    # objective
    p.add_argument("--p-v2a", type=float, default=0.25, help="share of samples with clean video, noised audio")
    p.add_argument("--p-a2v", type=float, default=0.25, help="share of samples with clean audio, noised video")
    p.add_argument("--p-nocm", type=float, default=0.1, help="share of samples run without cross-modal attention")
    p.add_argument("--text-dropout", type=float, default=0.1)
    p.add_argument("--couple-steps", type=int, default=0,
                   help="first steps of a coupling phase: more conditional samples, more high-noise samples")
    p.add_argument("--couple-p-v2a", type=float, default=0.4)
    p.add_argument("--couple-p-a2v", type=float, default=0.4)
    p.add_argument("--couple-sigma-mean", type=float, default=0.5)
    p.add_argument("--sigma-mean", type=float, default=0.0, help="logit-normal mean")
    p.add_argument("--sigma-std", type=float, default=1.0, help="logit-normal std")
    p.add_argument("--sigma-floor", type=float, default=0.05, help="floor of sigma in the velocity loss weight")
    p.add_argument("--audio-loss-weight", type=float, default=1.0)
    # optimisation
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--batch-size", type=int, default=32, help="global batch (split over processes)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine decay floor, as a share of --lr")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "bf16", "fp16"),
                   help="auto: bf16 autocast where the device runs bf16 natively, fp32 elsewhere "
                        "(seedance/hardware.py)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                   help="torch.compile the transformer's blocks (regional; BACKEND defaults to inductor). On a 2-core "
                        "CPU without native bf16 a batch-32 fp32 step took 12-35%% less time; the first compile took "
                        "about 2 minutes (README, 'Compiled transformer')")
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: leave torch's default)")
    p.add_argument("--cpu", action="store_true", help="train on the CPU even where a GPU is present")
    p.add_argument("--seed", type=int, default=0)
    # bookkeeping
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--val-clips", type=int, default=6, help="generated clips per validation (joint and V2A each)")
    p.add_argument("--val-steps", type=int, default=12, help="sampling steps for validation clips")
    p.add_argument("--val-batches", type=int, default=2, help="held-out batches for the latent sync diagnostics")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--export", default=None, help="write the EMA transformer (+ scheduler, model_index) here")
    p.add_argument("--export-dtype", default="bf16", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--cache-only", action="store_true", help="build the latent cache and stop")
    p.add_argument("--render-only", action="store_true", help="render the cache's clips (no weights needed), stop")
    args = p.parse_args(argv)
    import torch._dynamo

    if args.compile is not None and args.compile not in torch._dynamo.list_backends(exclude_tags=()):
        p.error(f"--compile: unknown backend {args.compile!r}; use inductor (the default), aot_eager or eager")
    return args


# ---------------------------------------------------------------------------------------------- components
def load_frozen_components(weights: str | Path):
    """Tokenizer, text encoder, VAEs and vocoder from `weights/<component>/`, in eval mode, no gradients."""
    from seedance.models.audio_vae import AudioVAE
    from seedance.models.io import load_component
    from seedance.models.text_encoder import EngramMoETextEncoder
    from seedance.models.tokenizer import SeedanceTokenizer
    from seedance.models.video_vae import VideoVAE
    from seedance.models.vocoder import Vocoder

    weights = Path(weights)
    comps = {
        "tokenizer": SeedanceTokenizer.from_pretrained(weights / "tokenizer"),
        "text_encoder": load_component(EngramMoETextEncoder, weights / "text_encoder"),
        "vae": load_component(VideoVAE, weights / "vae"),
        "audio_vae": load_component(AudioVAE, weights / "audio_vae"),
        "vocoder": load_component(Vocoder, weights / "vocoder"),
    }
    for name, module in comps.items():
        if name != "tokenizer":
            module.float().eval().requires_grad_(False)
    return comps


@torch.no_grad()
def encode_text(comps: dict, captions: list[str], text_len: int) -> dict[str, torch.Tensor]:
    batch = comps["tokenizer"](captions, max_length=text_len, padding="max_length")
    out = comps["text_encoder"](input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return {
        "text_states": out.last_hidden_state.float(),  # [n,L,D]
        "text_mask": batch["attention_mask"].to(torch.uint8),  # [n,L]
        "text_pooled": out.pooler_output.float(),  # [n,D]
    }


@torch.no_grad()
def encode_clips(comps: dict, frames: list[np.ndarray], audios: list[np.ndarray]) -> dict[str, torch.Tensor]:
    from seedance.data.datasets import frames_to_tensor

    video = torch.stack([frames_to_tensor(f) for f in frames])  # [n,3,F,H,W]
    wave = torch.stack([torch.from_numpy(a) for a in audios])  # [n,S]
    latents = comps["vae"].encode_latents(video)
    mel = comps["audio_vae"].logmel()(wave)
    audio_latents = comps["audio_vae"].encode_latents(mel)
    return {"latents": latents.float(), "audio_latents": audio_latents.float()}


# ---------------------------------------------------------------------------------------------- latent cache
def clip_for_index(index: int, scenes: list[str]) -> tuple[str, int]:
    return scenes[index % len(scenes)], index // len(scenes)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's weights: which VAE encoded a cache's latents."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode() + b"\0" + tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_fingerprint(args, comps: dict) -> dict:
    """What the latent cache's contents depend on: the clips (SyncWorld's code, scenes, preset) and the VAEs.
    Text is encoded when training starts, so the text encoder is not part of it."""
    from pipelines.syncworld_cache import syncworld_fingerprint

    return {"syncworld": syncworld_fingerprint(), "scenes": [s for s in args.scenes.split(",") if s],
            "preset": args.preset, "vae": weights_fingerprint(comps["vae"]),
            "audio_vae": weights_fingerprint(comps["audio_vae"])}


def check_cache_fingerprint(cache: Path, index: dict, expected: dict, print_fn=print) -> None:
    """A cache built from other clips or VAE weights would train on latents the shipped VAEs do not produce: refuse
    it with the fix. A cache from before fingerprints were kept is used with a warning."""
    found = index.get("meta", {}).get("fingerprint")
    if found is None:
        print_fn(f"warning: latent cache {cache} records no fingerprint (built by an older recipe); using it as is")
        return
    changed = [key for key in expected if found.get(key) != expected[key]]
    if changed:
        raise SeedanceError(f"latent cache {cache} was built from other {', '.join(changed)} than these "
                            "(--weights, --scenes, --preset or SyncWorld's code changed): pass a new --cache folder "
                            "or delete that one to rebuild it")


def render_shard(cache: Path, k: int, args) -> dict:
    """Frames, audio and metadata of shard k's SyncWorld clips, rendered once into <cache>/renders/ (again when
    SyncWorld's code has changed since)."""
    from safetensors.torch import load_file, save_file

    from pipelines.syncworld_cache import syncworld_fingerprint
    from seedance.data.syncworld import make_sample
    from seedance.models.io import atomic_write_bytes

    scenes = [s for s in args.scenes.split(",") if s]
    folder = cache / "renders"
    name = f"render_{k:05d}"
    syncworld = syncworld_fingerprint()
    if (folder / f"{name}.json").is_file():
        side = json.loads((folder / f"{name}.json").read_text())
        if side.get("syncworld") == syncworld:
            tensors = load_file(str(folder / f"{name}.safetensors"))
            return {**side, "frames": tensors["frames"].numpy(), "audio": tensors["audio"].numpy()}
    indices = range(k * args.shard_size, min((k + 1) * args.shard_size, args.num_clips))
    samples = [make_sample(*clip_for_index(i, scenes), preset=args.preset, split="train") for i in indices]
    side = {"captions": [s.caption for s in samples], "labels": [{**s.labels, "seed": s.seed} for s in samples],
            "events": [s.events for s in samples], "syncworld": syncworld}
    frames = np.stack([s.frames for s in samples])
    audio = np.stack([s.audio for s in samples])
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.safetensors.tmp"
    save_file({"frames": torch.from_numpy(frames), "audio": torch.from_numpy(audio)}, str(tmp))
    os.replace(tmp, folder / f"{name}.safetensors")
    atomic_write_bytes(folder / f"{name}.json", json.dumps(side).encode())  # the json marks it complete
    return {**side, "frames": frames, "audio": audio}


def my_shards(accelerator, args) -> list[int]:
    n_shards = math.ceil(args.num_clips / args.shard_size)
    return [k for k in range(n_shards) if k % accelerator.num_processes == accelerator.process_index]


def render_clips(accelerator, args, cache: Path) -> None:
    """Render this process's shards (no model weights needed): the slow part of the cache, done ahead."""
    t0 = time.time()
    for done, k in enumerate(my_shards(accelerator, args)):
        render_shard(cache, k, args)
        rate = (done + 1) * args.shard_size / (time.time() - t0)
        print(f"[render p{accelerator.process_index}] shard {k + 1} ({rate:.1f} clips/s)", flush=True)
    accelerator.wait_for_everyone()


def build_latent_cache(accelerator, args, comps: dict, cache: Path, fingerprint: dict) -> None:
    """Encode `--num-clips` rendered train clips with the VAEs into shards; process p builds shards p, p+P, ...

    Resumable: finished shards are skipped. Text is not cached (it is encoded when training starts), so a new
    text encoder does not need a new cache."""
    from safetensors.torch import save_file

    from seedance.models.io import atomic_write_bytes

    cache.mkdir(parents=True, exist_ok=True)
    n_shards = math.ceil(args.num_clips / args.shard_size)

    def finished(k: int) -> bool:  # a finished shard of these clips and VAEs (an older one is encoded again)
        side = cache / f"shard_{k:05d}.json"
        return side.is_file() and json.loads(side.read_text()).get("fingerprint") == fingerprint

    todo = [k for k in my_shards(accelerator, args) if not finished(k)]
    t0 = time.time()
    for done, k in enumerate(todo):
        clips = render_shard(cache, k, args)
        tensors = encode_clips(comps, list(clips["frames"]), list(clips["audio"]))
        name = f"shard_{k:05d}"
        tmp = cache / f".{name}.safetensors.tmp.{accelerator.process_index}"
        save_file({key: v.contiguous() for key, v in tensors.items()}, str(tmp))
        os.replace(tmp, cache / f"{name}.safetensors")
        side = {**{key: clips[key] for key in ("captions", "labels", "events")}, "fingerprint": fingerprint}
        atomic_write_bytes(cache / f"{name}.json", json.dumps(side).encode())  # the json marks the shard complete
        rate = (done + 1) * args.shard_size / (time.time() - t0)
        print(f"[cache p{accelerator.process_index}] shard {k + 1}/{n_shards} ({rate:.1f} clips/s)", flush=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        missing = [k for k in range(n_shards) if not finished(k)]
        if missing:
            raise SeedanceError(f"latent cache {cache} is missing shards {missing[:5]}; run again to finish it")
        meta = {
            "preset": args.preset,
            "scenes": [s for s in args.scenes.split(",") if s],
            "num_clips": args.num_clips,
            "video_latent_rate": comps["vae"].latent_rate(args.preset),
            "audio_latent_rate": comps["audio_vae"].latent_rate(args.preset),
            "video_temporal_compression": comps["vae"].config.temporal_compression,
            "audio_temporal_compression": comps["audio_vae"].config.temporal_compression,
            "fingerprint": fingerprint,
        }
        index = {"shards": [f"shard_{k:05d}" for k in range(n_shards)], "count": args.num_clips, "meta": meta}
        atomic_write_bytes(cache / "index.json", json.dumps(index, indent=1).encode())
    accelerator.wait_for_everyone()


def load_cache(cache: Path, comps: dict, text_len: int) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """Cached latents plus the captions' text-encoder states (encoded now, in batches), and the empty prompt's."""
    from seedance.data.datasets import LatentCacheDataset

    ds = LatentCacheDataset(cache, keys=("latents", "audio_latents"))
    tensors = {k: v.float() for k, v in ds.tensors.items()}
    parts = [encode_text(comps, ds.captions[i : i + 256], text_len) for i in range(0, len(ds.captions), 256)]
    tensors.update({k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    null = encode_text(comps, [""], text_len)
    return tensors, null, ds.meta


# ---------------------------------------------------------------------------------------------- model
def build_model(args, comps: dict, meta: dict, latent_hw: tuple[int, int] = (8, 8)):
    from seedance.models.transformer_av import SeedanceTransformer

    if args.init_from:
        from seedance.models.io import load_component

        return load_component(SeedanceTransformer, args.init_from, torch_dtype=torch.float32)
    vae, avae, te = comps["vae"].config, comps["audio_vae"].config, comps["text_encoder"].config
    locality = None if args.locality == "none" else tuple(float(x) for x in args.locality.split(","))
    return SeedanceTransformer(
        in_channels=vae.latent_channels,
        audio_in_channels=avae.latent_channels,
        patch_size=args.patch_size or max(1, min(latent_hw) // 4),
        num_layers=args.layers,
        video_dim=args.video_dim,
        video_heads=args.video_heads,
        audio_dim=args.audio_dim,
        audio_heads=args.audio_heads,
        cross_modal_dim=args.cross_modal_dim,
        cross_modal_heads=args.cross_modal_heads,
        text_dim=te.hidden_size,
        pooled_text_dim=te.hidden_size,
        ff_mult=args.ff_mult,
        video_latent_rate=meta["video_latent_rate"],
        audio_latent_rate=meta["audio_latent_rate"],
        # a latent's centre within its period: frames/mel frames tc*j .. tc*j + tc-1
        video_latent_offset=(meta["video_temporal_compression"] - 1) / 2 / meta["video_temporal_compression"],
        audio_latent_offset=(meta["audio_temporal_compression"] - 1) / 2 / meta["audio_temporal_compression"],
        cross_modal_attention=not args.independent,
        cross_modal_locality=locality,
        prediction_type=args.prediction_type,
        preset=get_preset(args.preset).to_dict(),
    )


class EMA:
    """Exponential moving average of a model's floating-point parameters (fp32 shadow copies)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short memory early on
        for k, v in model.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1 - decay)

    def copy_to(self, model: torch.nn.Module) -> None:
        model.load_state_dict({**model.state_dict(), **self.shadow})


# ---------------------------------------------------------------------------------------------- objective
def step_generator(seed: int, step: int, rank: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729 + salt) % (2**63))


def phase_args(args, step: int):
    """The objective's settings at `step`: the coupling phase first (if any), then the main mix."""
    if step < args.couple_steps:
        return argparse.Namespace(**{**vars(args), "p_v2a": args.couple_p_v2a, "p_a2v": args.couple_p_a2v,
                                     "sigma_mean": args.couple_sigma_mean})
    return args


def draw_batch(tensors: dict, null: dict, args, n: int, gen: torch.Generator, indices: torch.Tensor | None = None):
    """A training batch with its noise levels and conditioning choices, all drawn from `gen`."""
    count = tensors["latents"].shape[0]
    idx = torch.randint(0, count, (n,), generator=gen) if indices is None else indices
    x0_v, x0_a = tensors["latents"][idx], tensors["audio_latents"][idx]
    states, mask, pooled = tensors["text_states"][idx], tensors["text_mask"][idx], tensors["text_pooled"][idx]
    drop = torch.rand(n, generator=gen) < args.text_dropout
    states = torch.where(drop[:, None, None], null["text_states"].expand_as(states), states)
    mask = torch.where(drop[:, None], null["text_mask"].expand_as(mask), mask)
    pooled = torch.where(drop[:, None], null["text_pooled"].expand_as(pooled), pooled)
    sigma = torch.sigmoid(args.sigma_mean + args.sigma_std * torch.randn(n, generator=gen))
    u = torch.rand(n, generator=gen)
    video_clean = u < args.p_v2a  # video given, audio generated
    audio_clean = (u >= args.p_v2a) & (u < args.p_v2a + args.p_a2v)  # audio given, video generated
    sigma_v = torch.where(video_clean, torch.zeros_like(sigma), sigma)
    sigma_a = torch.where(audio_clean, torch.zeros_like(sigma), sigma)
    cross_modal = (torch.rand(n, generator=gen) >= args.p_nocm).float()
    if getattr(args, "cascaded", False):  # text->video alone (audio neither read nor trained) or video->audio
        video_clean = u < 0.5
        audio_clean = ~video_clean
        sigma_v = torch.where(video_clean, torch.zeros_like(sigma), sigma)
        sigma_a = torch.where(audio_clean, torch.zeros_like(sigma), sigma)
        cross_modal = video_clean.float()
    eps_v = torch.randn(x0_v.shape, generator=gen)
    eps_a = torch.randn(x0_a.shape, generator=gen)
    return {
        "x0_v": x0_v, "x0_a": x0_a, "eps_v": eps_v, "eps_a": eps_a, "sigma_v": sigma_v, "sigma_a": sigma_a,
        "text_states": states, "text_mask": mask, "text_pooled": pooled, "cross_modal": cross_modal,
        "video_clean": video_clean, "audio_clean": audio_clean,
    }


def flow_loss(model, b: dict, args, cross_modal: torch.Tensor | bool | None = None) -> dict[str, torch.Tensor]:
    """Per-sample velocity losses for the noised modalities (a clean modality contributes nothing)."""
    sv, sa = b["sigma_v"], b["sigma_a"]
    xt_v = (1 - sv.view(-1, 1, 1, 1, 1)) * b["x0_v"] + sv.view(-1, 1, 1, 1, 1) * b["eps_v"]
    xt_a = (1 - sa.view(-1, 1, 1)) * b["x0_a"] + sa.view(-1, 1, 1) * b["eps_a"]
    out = model(
        hidden_states=xt_v, audio_hidden_states=xt_a, encoder_hidden_states=b["text_states"],
        pooled_projections=b["text_pooled"], timestep=sv * 1000, audio_timestep=sa * 1000,
        encoder_attention_mask=b["text_mask"], cross_modal=b["cross_modal"] if cross_modal is None else cross_modal,
    )
    v_target, va_target = b["eps_v"] - b["x0_v"], b["eps_a"] - b["x0_a"]
    # loss on v with sigma floored: |v - v*|^2 * sigma^2 / max(sigma, floor)^2
    wv = (sv / sv.clamp(min=args.sigma_floor)) ** 2
    wa = (sa / sa.clamp(min=args.sigma_floor)) ** 2
    lv = (out.sample.float() - v_target).pow(2).mean(dim=(1, 2, 3, 4)) * wv
    la = (out.audio_sample.float() - va_target).pow(2).mean(dim=(1, 2)) * wa
    return {"video": lv * (~b["video_clean"]).float(), "audio": la * (~b["audio_clean"]).float()}


def total_loss(per_sample: dict, b: dict, args) -> tuple[torch.Tensor, dict[str, float]]:
    nv = (~b["video_clean"]).float().sum().clamp(min=1)
    na = (~b["audio_clean"]).float().sum().clamp(min=1)
    loss_v = per_sample["video"].sum() / nv
    loss_a = per_sample["audio"].sum() / na
    logs = {"loss/video": loss_v.item(), "loss/audio": loss_a.item()}
    for name, sel, key in (("v2a_audio", b["video_clean"], "audio"), ("a2v_video", b["audio_clean"], "video")):
        if sel.any():
            logs[f"loss/{name}"] = per_sample[key][sel].mean().item()
    return loss_v + args.audio_loss_weight * loss_a, logs


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------------------------------------- checkpoints
def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (trainer_state.json written last), oldest first."""
    root = out / "checkpoints"
    found = []
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith("step_") and (d / "trainer_state.json").is_file():
                try:
                    found.append((int(d.name.split("_")[1]), d))
                except ValueError:
                    continue
    return sorted(found)


def save_checkpoint(accelerator, out: Path, step: int, ema: EMA, args) -> None:
    from safetensors.torch import save_file

    root = out / "checkpoints"
    final = root / f"step_{step}"
    tmp = root / f".tmp_step_{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model (safetensors), optimizer, RNG states
    kill_point("save", step)  # reliability checks: a crash between writing and publishing
    if accelerator.is_main_process:
        save_file({k: v.contiguous() for k, v in ema.shadow.items()}, str(tmp / "ema.safetensors"))
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "args": vars(args)}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in list_checkpoints(out)[: -args.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def resume(accelerator, out: Path, ema: EMA) -> int:
    from safetensors.torch import load_file

    if accelerator.is_main_process:
        for name in remove_partial_checkpoints(out / "checkpoints"):
            accelerator.print(f"removed {name}: an unfinished checkpoint save from an interrupted run")
    accelerator.wait_for_everyone()
    found = list_checkpoints(out)
    if not found:
        return 0
    step, folder = found[-1]
    accelerator.load_state(str(folder))
    ema.shadow = load_file(str(folder / "ema.safetensors"))
    accelerator.print(f"resumed from {folder} (step {step})")
    return step


# ---------------------------------------------------------------------------------------------- validation
@torch.no_grad()
def latent_sync_diagnostics(model, tensors, null, args, n_batches: int) -> dict[str, float]:
    """How much cross-modal attention lowers the conditional losses on fixed held-out draws.

    v2a_gain = (audio loss without coupling - audio loss with coupling) / loss without, on video-to-audio
    draws (clean video, noised audio); a2v_gain likewise for the video; at mid noise (sigma ~ 0.5) and high
    noise (sigma ~ 0.8, where the timing of events is still open). The *_shuffled variants give the model the
    clean partner of another clip: a model that reads its partner for timing loses there, one that ignores
    it gains the same."""
    logs: dict[str, list[float]] = {}
    n = min(32, tensors["latents"].shape[0])
    for level, (mean, std) in {"mid": (0.0, 0.5), "high": (1.5, 0.3)}.items():
        for k in range(n_batches):
            for mode in ("v2a", "a2v"):
                margs = argparse.Namespace(**{**vars(args), "text_dropout": 0.0, "p_nocm": 0.0,
                                              "p_v2a": float(mode == "v2a"), "p_a2v": float(mode == "a2v"),
                                              "sigma_mean": mean, "sigma_std": std})
                b = draw_batch(tensors, null, margs, n, step_generator(args.seed, 10**9 + k, 0, salt=1))
                key = "audio" if mode == "v2a" else "video"
                on = flow_loss(model, b, args, cross_modal=True)[key].mean().item()
                off = flow_loss(model, b, args, cross_modal=False)[key].mean().item()
                given = "x0_v" if mode == "v2a" else "x0_a"
                shuffled = {**b, given: b[given][torch.roll(torch.arange(n), 1)]}  # partner from another clip
                wrong = flow_loss(model, shuffled, args, cross_modal=True)[key].mean().item()
                logs.setdefault(f"sync/{mode}_gain_{level}", []).append((off - on) / off)
                logs.setdefault(f"sync/{mode}_gain_{level}_shuffled", []).append((off - wrong) / off)
                logs.setdefault(f"sync/{mode}_loss_{level}", []).append(on)
    return {k: float(np.mean(v)) for k, v in logs.items()}


def within_one_frame(frames_list, audio_list, fps: int, sr: int) -> tuple[float, list[int]]:
    from seedance.eval.offset import av_offset

    offsets = [av_offset(f, a, fps, sr).offset_frames for f, a in zip(frames_list, audio_list)]
    return float(np.mean([abs(o) <= 1 for o in offsets])), offsets


def mean_event_f1(frames_list, audio_list, fps: int, sr: int) -> float:
    """Audio onsets against visual motion peaks, matched within one frame (NaN clips skipped)."""
    from seedance.eval.events import event_f1

    scores = [event_f1(f, a, fps, sr).score for f, a in zip(frames_list, audio_list)]
    scores = [x for x in scores if not np.isnan(x)]
    return float(np.mean(scores)) if scores else float("nan")


def onset_f1_against_truth(audio_list, events_list, fps: int, sr: int) -> float:
    """Audio onsets against the scene's ground-truth event times (within one frame)."""
    from seedance.eval.events import audio_onset_times, match_events

    scores = []
    for audio, events in zip(audio_list, events_list):
        onsets = audio_onset_times(audio, sr)
        total = len(onsets) + len(events)
        if total:
            scores.append(2 * match_events(onsets, np.asarray(events), 1.0 / fps) / total)
    return float(np.mean(scores)) if scores else float("nan")


@torch.no_grad()
def generated_sync(pipe, args, step: int, out_dir: Path | None) -> dict[str, float]:
    """Joint and video-to-audio clips for held-out prompts/clips; offsets within +-1 frame, beside shuffled pairs."""
    from seedance.data.syncworld import make_sample

    preset = get_preset(args.preset)
    scenes = [s for s in args.scenes.split(",") if s]
    tests = [make_sample(scenes[i % len(scenes)], 10_000 + i // len(scenes), preset, "test")
             for i in range(args.val_clips)]
    gen = torch.Generator().manual_seed(args.seed)
    joint = pipe([s.caption for s in tests], num_inference_steps=args.val_steps, generator=gen, output_type="np")
    frames = [(f * 255).round().astype(np.uint8) for f in joint.frames]
    audio = list(joint.audio)
    v2a = [pipe(s.caption, video=s.frames, num_inference_steps=args.val_steps,
                generator=torch.Generator().manual_seed(args.seed + i), output_type="np").audio[0]
           for i, s in enumerate(tests)]
    fps, sr = preset.fps, preset.sample_rate
    logs = {}
    logs["val/joint_within1"], joint_off = within_one_frame(frames, audio, fps, sr)
    logs["val/joint_within1_shuffled"], _ = within_one_frame(frames, audio[1:] + audio[:1], fps, sr)
    logs["val/v2a_within1"], _ = within_one_frame([s.frames for s in tests], v2a, fps, sr)
    logs["val/real_within1"], _ = within_one_frame([s.frames for s in tests], [s.audio for s in tests], fps, sr)
    logs["val/joint_event_f1"] = mean_event_f1(frames, audio, fps, sr)
    logs["val/joint_event_f1_shuffled"] = mean_event_f1(frames, audio[1:] + audio[:1], fps, sr)
    logs["val/v2a_truth_f1"] = onset_f1_against_truth(v2a, [s.events for s in tests], fps, sr)
    logs["val/v2a_truth_f1_shuffled"] = onset_f1_against_truth(v2a[1:] + v2a[:1], [s.events for s in tests], fps, sr)
    logs["val/real_truth_f1"] = onset_f1_against_truth([s.audio for s in tests], [s.events for s in tests], fps, sr)
    if out_dir is not None:
        from seedance.data.media import write_clip

        out_dir.mkdir(parents=True, exist_ok=True)
        rows = []
        for i, s in enumerate(tests[:3]):
            write_clip(out_dir / f"joint_{i}.mp4", frames[i], audio[i], fps, sr)
            write_clip(out_dir / f"v2a_{i}.mp4", s.frames, v2a[i], fps, sr)
            rows.append({"caption": s.caption, "joint_offset": joint_off[i]})
        (out_dir / "clips.json").write_text(json.dumps(rows, indent=1))
    return logs


def make_pipeline(comps: dict, transformer):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from pipelines.pipeline_seedance import SeedancePipeline

    pipe = SeedancePipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), **comps)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ---------------------------------------------------------------------------------------------- export
def export_transformer(model, ema: EMA, comps: dict, folder: Path, dtype: str) -> None:
    """EMA weights -> folder/transformer (stored in `dtype`), plus scheduler and model_index.json."""
    import copy

    from diffusers import FlowMatchEulerDiscreteScheduler

    from pipelines.pipeline_seedance import DEFAULT_SAMPLING, SAMPLING_DEFAULTS_FILE, SeedancePipeline
    from seedance.models.io import atomic_save_pretrained, atomic_write_bytes

    export = copy.deepcopy(model)
    ema.copy_to(export)
    export = export.to({"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype])
    atomic_save_pretrained(export, folder / "transformer")
    atomic_save_pretrained(FlowMatchEulerDiscreteScheduler(shift=1.0), folder / "scheduler")
    index = {"_class_name": SeedancePipeline.__name__}
    names = {"tokenizer": comps["tokenizer"], "text_encoder": comps["text_encoder"], "transformer": export,
             "vae": comps["vae"], "audio_vae": comps["audio_vae"], "vocoder": comps["vocoder"],
             "scheduler": FlowMatchEulerDiscreteScheduler}
    for name, obj in names.items():
        cls = obj if isinstance(obj, type) else type(obj)
        index[name] = [cls.__module__, cls.__name__]
    atomic_write_bytes(folder / "model_index.json", (json.dumps(index, indent=2) + "\n").encode())
    if not (folder / SAMPLING_DEFAULTS_FILE).is_file():
        atomic_write_bytes(folder / SAMPLING_DEFAULTS_FILE, json.dumps(DEFAULT_SAMPLING, indent=2).encode())


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from tqdm.auto import tqdm

    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    cache = Path(args.cache) if args.cache else out.parent / f"latent_cache_{args.preset}"
    accelerator = Accelerator(
        # cpu=True is what makes torchrun-launched processes (accelerate launch --multi_gpu) form a gloo group
        cpu=args.cpu or not torch.cuda.is_available(),
        mixed_precision=auto_mixed_precision(args.mixed_precision),
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    if args.batch_size % accelerator.num_processes:
        raise SeedanceError(f"--batch-size {args.batch_size} must divide over {accelerator.num_processes} processes")
    local_batch = args.batch_size // accelerator.num_processes
    if args.render_only:
        render_clips(accelerator, args, cache)
        return 0
    comps = load_frozen_components(args.weights)

    # 1. latent cache (once)
    index_file = cache / "index.json"
    fingerprint = cache_fingerprint(args, comps)
    if index_file.is_file():  # before any rebuild: a cache of other clips or VAEs is refused, never mixed in
        check_cache_fingerprint(cache, json.loads(index_file.read_text()), fingerprint, accelerator.print)
    if not index_file.is_file() or json.loads(index_file.read_text())["count"] != args.num_clips:
        build_latent_cache(accelerator, args, comps, cache, fingerprint)
    if args.cache_only:
        return 0
    tensors, null, meta = load_cache(cache, comps, args.text_len)
    count = tensors["latents"].shape[0]
    holdout = min(args.holdout, count // 4)
    held = {k: v[count - holdout:] for k, v in tensors.items()} if holdout else tensors
    tensors = {k: v[: count - holdout] for k, v in tensors.items()}
    accelerator.print(f"cache: {tensors['latents'].shape[0]} clips, video latents {list(tensors['latents'].shape[1:])}"
                      f" std {tensors['latents'].std():.2f}, audio latents {list(tensors['audio_latents'].shape[1:])}"
                      f" std {tensors['audio_latents'].std():.2f}")

    # 2. model, optimiser, EMA, resume
    torch.manual_seed(args.seed)
    model = build_model(args, comps, meta, tuple(tensors["latents"].shape[-2:]))
    if args.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    if args.compile:  # in place: parameter names, checkpoints and exports stay those of the plain model
        model.compile_repeated_blocks(backend=args.compile)
    ema = EMA(model, args.ema_decay)
    decay, no_decay = [], []
    for name, prm in model.named_parameters():
        (no_decay if prm.dim() < 2 or "mod_table" in name or name.endswith(".raw") else decay).append(prm)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.99))
    model, optimizer = accelerator.prepare(model, optimizer)
    start = 0 if args.no_resume else resume(accelerator, out, ema)
    accelerator.init_trackers("train_transformer", config={k: v for k, v in vars(args).items()
                                                             if isinstance(v, (int, float, str, bool))})
    n_params = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
    accelerator.print(f"transformer: {n_params / 1e6:.2f}M parameters; {accelerator.num_processes} processes "
                      f"({accelerator.distributed_type.value}), batch {local_batch} each; "
                      f"steps {start} -> {args.steps}")

    # 3. train
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=not accelerator.is_main_process)
    t_last, logs_acc = time.time(), {}
    for step in bar:
        model.train()
        gen = step_generator(args.seed, step, accelerator.process_index)
        batch = draw_batch(tensors, null, phase_args(args, step), local_batch, gen)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        with accelerator.autocast():
            per_sample = flow_loss(model, batch, args)
        loss, logs = total_loss(per_sample, batch, args)
        accelerator.backward(loss)
        kill_point("step", step + 1)  # reliability checks: a crash inside a step
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), args.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(accelerator.unwrap_model(model), step)
        for k, v in {**logs, "loss/total": loss.item(), "grad_norm": float(grad_norm)}.items():
            logs_acc.setdefault(k, []).append(v)
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            now = time.time()
            row = {k: float(np.mean(v)) for k, v in logs_acc.items()}
            row["lr"] = lr_at(step, args)
            row["steps_per_s"] = len(logs_acc["loss/total"]) / (now - t_last)
            row.update(coupling_stats(accelerator.unwrap_model(model)))
            accelerator.log(row, step=done)
            bar.set_postfix(loss=f"{row['loss/total']:.3f}", v2a=f"{row.get('loss/v2a_audio', 0):.3f}")
            t_last, logs_acc = now, {}
        if done % args.checkpoint_every == 0 or done == args.steps:
            save_checkpoint(accelerator, out, done, ema, args)
        if args.val_every > 0 and (done % args.val_every == 0 or done == args.steps):
            if accelerator.is_main_process:
                val = validate(accelerator.unwrap_model(model), ema, comps, held, null, args, done, out)
                accelerator.log(val, step=done)
                accelerator.print(f"step {done} validation: " + json.dumps({k: round(v, 4) for k, v in val.items()}))
            accelerator.wait_for_everyone()

    # 4. export
    if args.export and accelerator.is_main_process:
        export_transformer(accelerator.unwrap_model(model), ema, comps, Path(args.export), args.export_dtype)
        accelerator.print(f"exported the EMA transformer to {args.export}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def coupling_stats(model) -> dict[str, float]:
    """How much the cross-modal path has grown: mean norm of its output projections, mean locality slope."""
    if not model.config.cross_modal_attention:
        return {}
    norms, slopes = [], []
    for block in model.blocks:
        norms.append(block.audio_to_video.to_out.weight.norm().item())
        norms.append(block.video_to_audio.to_out.weight.norm().item())
        for loc in (block.a2v_locality, block.v2a_locality):
            if loc.raw is not None:
                slopes.append(F.softplus(loc.raw).mean().item())
    row = {"coupling/out_proj_norm": float(np.mean(norms))}
    if slopes:
        row["coupling/locality_slope"] = float(np.mean(slopes))
    return row


def validate(model, ema: EMA, comps, tensors, null, args, step: int, out: Path) -> dict[str, float]:
    import copy

    ema_model = copy.deepcopy(model).float().eval()
    ema.copy_to(ema_model)
    t0 = time.time()
    logs = latent_sync_diagnostics(ema_model, tensors, null, args, args.val_batches)
    if args.val_clips > 0:
        try:
            clips_dir = out / "validation" / f"step_{step}"
            logs.update(generated_sync(make_pipeline(comps, ema_model), args, step, clips_dir))
        except SeedanceError as exc:  # e.g. a scene module not there yet: keep training
            print(f"validation clips skipped: {exc}", flush=True)
    logs["val/seconds"] = time.time() - t0
    return logs


if __name__ == "__main__":
    sys.exit(main())

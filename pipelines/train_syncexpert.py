#!/usr/bin/env python
"""Train the SyncExpert (the evaluation suite's own audio-visual sync model) on SyncWorld.

    accelerate launch pipelines/train_syncexpert.py --preset tiny --out runs/syncexpert --export weights/syncexpert
    accelerate launch --cpu --num_processes 2 pipelines/train_syncexpert.py --preset tiny --out runs/se2

Objective: for a 5-frame video window, pick its own 0.2 s of audio among the
same clip's audio at other shifts (-15..+15 frames, a random dozen per window,
the near ones always included) and among the other clips' audio in the batch;
cross-entropy on scaled cosine similarities. Windows are centred near a
ground-truth event 60% of the time (most of a clip is silence and stillness,
which says nothing about sync). Augmentation: random crops (the expert also
scores a given crop, e.g. a mouth), flips, colour jitter, pixel noise, audio
gain and a noise floor.

Data: `--clips-per-scene` SyncWorld training clips per scene, rendered once into
`--cache` (pipelines/syncworld_cache.py); validation on held-out test-split clips.
Batches come from a generator seeded by (seed, step, process), so a resumed run
continues exactly and no data-loader state is saved.

Resuming: every `--save-every` steps the accelerate state goes to
<out>/checkpoints/.tmp_step_N, renamed to step_N when complete; a new run with the
same --out continues from the newest complete one. Logs: tqdm, tensorboard in
<out>/logs. `--export DIR` writes the final model (save_pretrained, safetensors)
and DIR/train_info.json (the command, the recipe, minutes, validation numbers).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipelines.recipe_common import resume, run_steps, start_run, write_train_info  # noqa: E402
from pipelines.syncworld_cache import ClipSet, load_scenes  # noqa: E402
from seedance.config import ClipPreset, get_preset  # noqa: E402
from seedance.errors import SeedanceError  # noqa: E402
from seedance.eval.offset import shift_audio  # noqa: E402
from seedance.eval.syncexpert import (  # noqa: E402
    SILENCE,
    SyncExpert,
    mel_windows,
    score_sync,
    video_windows,
)
from seedance.models.io import atomic_save_pretrained, atomic_write_bytes  # noqa: E402
from seedance.models.mel import LogMel, mel_config  # noqa: E402

SCENES = ("face", "bounce", "keys")
NEAR_SHIFTS = (1, 2, 3)  # always among the negatives: they teach frame precision


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints/, logs/, train_summary.json")
    p.add_argument("--export", type=Path, default=None, help="save the finished model here (save_pretrained)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64, help="video windows per process per step")
    p.add_argument("--shifts-per-window", type=int, default=12, help="audio candidates per window (incl. the true one)")
    p.add_argument("--max-shift", type=int, default=15)
    p.add_argument("--event-bias", type=float, default=0.6, help="share of windows centred near an event")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--model-config", default="{}", help="JSON overrides of SyncExpert's config")
    p.add_argument("--scenes", default=",".join(SCENES))
    p.add_argument("--clips-per-scene", type=int, default=300)
    p.add_argument("--val-clips-per-scene", type=int, default=16)
    p.add_argument("--cache", type=Path, default=Path("runs/cache"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=None, help="stop (with a checkpoint) after this much training")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process (CPU shared with other jobs)")
    args = p.parse_args(argv)
    args.scenes = tuple(s.strip() for s in args.scenes.split(",") if s.strip())
    try:
        args.model_config = json.loads(args.model_config)
    except json.JSONDecodeError as exc:
        p.error(f"--model-config is not valid JSON: {exc}")
    return args


# ---- batches -----------------------------------------------------------------------------------------------------


class WindowSampler:
    """Draws (video window, candidate audio windows) training examples from cached clips."""

    def __init__(self, clips: ClipSet, preset: ClipPreset, model_cfg, args: argparse.Namespace):
        self.args, self.cfg = args, model_cfg
        self.frames = torch.from_numpy(clips.frames)  # uint8 [N,F,H,W,3]
        logmel = LogMel(preset)
        audio = torch.from_numpy(clips.audio)
        self.mels = torch.cat([logmel(audio[i : i + 64]) for i in range(0, len(audio), 64)])  # [N,n_mels,M]
        self.fps = preset.fps
        self.mel_rate = preset.mel_rate
        self.width = int(round(model_cfg.audio_window_s * self.mel_rate))
        self.half = model_cfg.window_frames // 2
        F_ = self.frames.shape[1]
        self.event_frames = [[int(round(t * self.fps)) for t in ev if 0 <= t * self.fps < F_] for ev in clips.events]

    def centres(self, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        F_ = self.frames.shape[1]
        out = torch.randint(self.half, F_ - self.half, (len(idx),), generator=g)
        near = torch.rand(len(idx), generator=g) < self.args.event_bias
        for j, i in enumerate(idx.tolist()):
            ev = self.event_frames[i]
            if near[j] and ev:
                e = ev[int(torch.randint(len(ev), (1,), generator=g))]
                out[j] = e + int(torch.randint(-2, 3, (1,), generator=g))
        return out.clamp(self.half, F_ - 1 - self.half)

    def shifts(self, g: torch.Generator) -> torch.Tensor:
        """[K] shifts: 0 first, the near ones, then random far ones."""
        m, k = self.args.max_shift, self.args.shifts_per_window
        near = [s for d in NEAR_SHIFTS for s in (d, -d)]
        far = [d for d in range(-m, m + 1) if abs(d) > max(NEAR_SHIFTS)]
        pick = torch.randperm(len(far), generator=g)[: max(0, k - 1 - len(near))]
        return torch.tensor([0] + near + [far[i] for i in pick.tolist()])

    def video(self, idx: torch.Tensor, centres: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """[B,T,3,S,S] float in [0,1], augmented."""
        S = self.cfg.image_size
        out = []
        for i, c in zip(idx.tolist(), centres.tolist()):
            clip = self.frames[i].permute(0, 3, 1, 2).float().div(255.0)  # [F,3,H,W]
            w = video_windows(clip, torch.tensor([c]), self.cfg.window_frames)[0]  # [T,3,H,W]
            H, W = w.shape[-2:]
            # random crop of 45-100% of the area, roughly square
            area = float(torch.empty(1).uniform_(0.45, 1.0, generator=g))
            aspect = float(torch.empty(1).uniform_(0.8, 1.25, generator=g))
            ch = min(H, max(8, int(round(math.sqrt(area * H * W / aspect)))))
            cw = min(W, max(8, int(round(math.sqrt(area * H * W * aspect)))))
            y0 = int(torch.randint(H - ch + 1, (1,), generator=g))
            x0 = int(torch.randint(W - cw + 1, (1,), generator=g))
            w = w[..., y0 : y0 + ch, x0 : x0 + cw]
            w = F.interpolate(w, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
            if torch.rand(1, generator=g) < 0.5:
                w = w.flip(-1)
            contrast = float(torch.empty(1).uniform_(0.7, 1.3, generator=g))
            bright = float(torch.empty(1).uniform_(-0.1, 0.1, generator=g))
            w = (w - w.mean()) * contrast + w.mean() + bright
            w = w + torch.randn(w.shape, generator=g) * float(torch.empty(1).uniform_(0, 0.03, generator=g))
            out.append(w.clamp(0, 1))
        return torch.stack(out)

    def audio(self, idx: torch.Tensor, centres: torch.Tensor, shifts: torch.Tensor, g: torch.Generator):
        """[B,K,n_mels,W] log-mel windows at each centre + shift, augmented per clip."""
        B, K = len(idx), len(shifts)
        out = torch.empty(B, K, self.mels.shape[1], self.width)
        for j, (i, c) in enumerate(zip(idx.tolist(), centres.tolist())):
            t = (c + shifts).float() / self.fps
            out[j] = mel_windows(self.mels[i], t, self.mel_rate, self.width)
        gain = torch.empty(B, 1, 1, 1).uniform_(-2.0, 1.0, generator=g)
        floor = torch.empty(B, 1, 1, 1).uniform_(SILENCE, -5.0, generator=g)
        noise = torch.rand(out.shape, generator=g) * floor.exp()
        return torch.log((out + gain).exp() + noise).clamp(min=SILENCE)

    def batch(self, g: torch.Generator):
        idx = torch.randint(len(self.frames), (self.args.batch_size,), generator=g)
        centres = self.centres(idx, g)
        shifts = self.shifts(g)
        return self.video(idx, centres, g), self.audio(idx, centres, shifts, g)


def contrastive_loss(model, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """video [B,T,3,S,S], audio [B,K,n_mels,W] with the true window at k=0."""
    B, K = audio.shape[:2]
    v, a, scale = model(video, audio.flatten(0, 1))  # [B,D], [B*K,D], scalar
    a = a.view(B, K, -1)
    zeros = torch.zeros(B, dtype=torch.long, device=v.device)
    # 1. which shift of its own clip's audio matches this video window?
    shift_logits = scale * torch.einsum("bd,bkd->bk", v, a)
    shift_loss = F.cross_entropy(shift_logits, zeros)
    # 2. which clip's audio (at the true time) matches, both ways?
    clip_logits = scale * v @ a[:, 0].T
    target = torch.arange(B, device=v.device)
    clip_loss = 0.5 * (F.cross_entropy(clip_logits, target) + F.cross_entropy(clip_logits.T, target))
    loss = shift_loss + 0.5 * clip_loss
    acc = (shift_logits.argmax(dim=1) == 0).float().mean().item()
    return loss, {"shift_loss": shift_loss.item(), "clip_loss": clip_loss.item(), "shift_acc": acc}


# ---- validation --------------------------------------------------------------------------------------------------


@torch.no_grad()
def validate(model: SyncExpert, clips: ClipSet, preset: ClipPreset, shifts=(-7, -3, 0, 4, 8)) -> dict:
    """Held-out clips: offset recovered within +-1 frame over a shift sweep, LSE-C matched vs mismatched."""
    model.eval()
    hits, matched, mismatched = [], [], []
    n = len(clips)
    for i in range(n):
        frames, audio = clips.frames[i], clips.audio[i]
        for d in shifts:
            s = score_sync(
                model, frames, shift_audio(audio, d, preset.fps, preset.sample_rate), preset.fps, preset.sample_rate
            )
            hits.append(abs(s.offset_frames - d) <= 1)
            if d == 0:
                matched.append(s.lse_c)
        other = clips.audio[(i + 1) % n]
        mismatched.append(score_sync(model, frames, other, preset.fps, preset.sample_rate).lse_c)
    model.train()
    return {
        "val/offset_acc": float(np.mean(hits)),
        "val/lsec_matched": float(np.median(matched)),
        "val/lsec_mismatched": float(np.median(mismatched)),
    }


# ---- main --------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    preset = get_preset(args.preset)

    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out: Path = args.out
    accelerator = Accelerator(log_with="tensorboard", project_dir=str(out / "logs"))
    set_seed(args.seed)
    with accelerator.main_process_first():  # one process renders a missing cache, the others read it
        train = load_scenes(args.cache, preset, args.scenes, "train", args.clips_per_scene)
        val = load_scenes(args.cache, preset, args.scenes, "test", args.val_clips_per_scene)

    config = {**mel_config(preset), "fps": float(preset.fps), **args.model_config}
    sampler = WindowSampler(train, preset, SyncExpert(**config).config, args)
    config.update(mel_mean=float(sampler.mels.mean()), mel_std=float(sampler.mels.std()))  # the towers' input scale
    torch.manual_seed(args.seed)
    model = SyncExpert(**config)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)

    step, seconds = resume(accelerator, out / "checkpoints")
    what = f"{n_params / 1e6:.2f} M parameters, {len(train)} training clips ({', '.join(args.scenes)})"
    bar = start_run(accelerator, "syncexpert", args, what, step)
    unwrapped = accelerator.unwrap_model(model)

    def loss_fn(g: torch.Generator):
        video, audio = sampler.batch(g)
        return contrastive_loss(model, video, audio)

    step, seconds, stopped_early = run_steps(
        accelerator, model, optimizer, args, out, (step, seconds), bar, loss_fn,
        lambda: validate(unwrapped, val, preset)
    )

    summary = {"model": "syncexpert", "step": step, "steps": args.steps, "train_minutes": round(seconds / 60, 2)}
    if accelerator.is_main_process:
        summary.update(validate(unwrapped, val, preset))
        unwrapped.eval()
        atomic_write_bytes(out / "train_summary.json", json.dumps(summary, indent=2).encode())
        if args.export is not None and not stopped_early:
            atomic_save_pretrained(unwrapped, args.export)
            write_train_info(accelerator, args, summary, n_params)
            accelerator.print(f"exported the SyncExpert to {args.export}")
        accelerator.print(json.dumps(summary))
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

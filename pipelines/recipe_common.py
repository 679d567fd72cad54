"""What the accelerate recipes share: resumable checkpoints, the LR schedule, seeded batches, the run's start.

Used by train_autoencoders, train_syncexpert and train_probes.

A checkpoint is written by accelerate to <folder>/.tmp_step_N and renamed to
step_N once complete (with train_state.json inside), so a crash never leaves a
half-written checkpoint that a resumed run would pick up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch


def latest_checkpoint(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("step_*") if p.is_dir() and (p / "train_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("_")[1]), default=None)


def save_checkpoint(accelerator, folder: Path, step: int, seconds: float, keep: int) -> None:
    final, tmp = folder / f"step_{step:07d}", folder / f".tmp_step_{step:07d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "train_state.json").write_text(json.dumps({"step": step, "train_seconds": seconds}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)  # complete or absent, never half
        done = sorted((p for p in folder.glob("step_*") if p.is_dir()), key=lambda p: int(p.name.split("_")[1]))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def lr_at(step: int, args: argparse.Namespace, floor: float = 0.05) -> float:
    """Linear warm-up, then cosine decay to `floor` x the peak."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 997 + rank)


def resume(accelerator, folder: Path) -> tuple[int, float]:
    """Load the newest complete checkpoint in `folder` (if any); returns (step, training seconds so far)."""
    ckpt = latest_checkpoint(folder)
    if ckpt is None:
        return 0, 0.0
    accelerator.load_state(str(ckpt))
    state = json.loads((ckpt / "train_state.json").read_text())
    step, seconds = int(state["step"]), float(state["train_seconds"])
    accelerator.print(f"resumed from {ckpt} (step {step}, {seconds / 60:.1f} min trained)")
    return step, seconds


def recipe_settings(args: argparse.Namespace) -> dict:
    """The recipe's arguments as plain values (for tensorboard and train_info.json)."""
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in vars(args).items()}


def start_run(accelerator, name: str, args: argparse.Namespace, what: str, step: int):
    """Tensorboard trackers with the recipe's settings, a one-line summary, and the progress bar (main process)."""
    from tqdm import tqdm

    accelerator.init_trackers(name, config=recipe_settings(args))
    accelerator.print(
        f"{name}: {what}, {accelerator.num_processes} process(es) x batch {args.batch_size}, "
        f"steps {step} -> {args.steps}"
    )
    return tqdm(
        total=args.steps,
        initial=step,
        desc=name,
        disable=not accelerator.is_main_process,
        mininterval=0.5 if sys.stderr.isatty() else 30,  # a log file gets a line every 30 s, not every step
    )

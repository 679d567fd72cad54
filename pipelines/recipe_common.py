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
import time
from collections.abc import Callable
from pathlib import Path

import torch

from seedance.faults import kill_point, remove_partial_checkpoints


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
    kill_point("save", step)  # reliability checks: a crash between writing and publishing
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
    if accelerator.is_main_process:
        for name in remove_partial_checkpoints(folder):
            accelerator.print(f"removed {name}: an unfinished checkpoint save from an interrupted run")
    accelerator.wait_for_everyone()
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


def run_steps(
    accelerator,
    model,
    optimizer,
    args: argparse.Namespace,
    out: Path,
    progress: tuple[int, float],
    bar,
    loss_fn: Callable[[torch.Generator], tuple[torch.Tensor, dict[str, float]]],
    evaluate: Callable[[], dict[str, float]],
    lr_fn: Callable[[int, argparse.Namespace], float] = lr_at,
) -> tuple[int, float, bool]:
    """The shared optimisation loop: seeded step, clipped AdamW update, logs, evaluation, checkpoints, time limit.

    `loss_fn(g)` draws its batch from the step's generator g and returns (loss, logs); `evaluate()` runs on the
    main process with the model in eval mode. Returns (step, training seconds, stopped early by --max-minutes)."""
    step, seconds = progress
    rank = accelerator.process_index
    model.train()
    while step < args.steps:
        t0 = time.time()
        g = step_generator(args.seed, step, rank)
        for group in optimizer.param_groups:
            group["lr"] = lr_fn(step, args)
        loss, logs = loss_fn(g)
        accelerator.backward(loss)
        kill_point("step", step + 1)  # reliability checks: a crash inside a step
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds += time.time() - t0
        bar.update(1)
        if step % args.log_every == 0 or step == args.steps:
            logs = {f"train/{k}": v for k, v in logs.items()}
            logs.update({"train/loss": loss.item(), "train/grad_norm": float(grad_norm), "train/lr": lr_fn(step, args)})
            accelerator.log(logs, step=step)
            bar.set_postfix({k.split("/")[1]: f"{v:.4g}" for k, v in logs.items() if k != "train/lr"}, refresh=False)
        if step % args.eval_every == 0 or step == args.steps:
            if accelerator.is_main_process:
                model.eval()
                metrics = evaluate()
                model.train()
                accelerator.log(metrics, step=step)
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            accelerator.wait_for_everyone()
        over_time = args.max_minutes is not None and seconds >= args.max_minutes * 60
        if step % args.save_every == 0 or step == args.steps or over_time:
            save_checkpoint(accelerator, out / "checkpoints", step, seconds, args.keep_checkpoints)
        if over_time and step < args.steps:
            bar.close()
            return step, seconds, True
    bar.close()
    return step, seconds, False


def write_train_info(accelerator, args: argparse.Namespace, summary: dict, n_params: int) -> None:
    """<export>/train_info.json: the figures, the exact command and the recipe's settings.

    A run that started from `--init-from` weights continues their training, so its `train_minutes` are
    those weights' own (from their train_info.json) plus this run's; both parts are kept beside the sum.
    """
    from seedance.models.io import atomic_write_bytes

    summary = dict(summary)
    init_from = getattr(args, "init_from", None)
    before = Path(init_from) / "train_info.json" if init_from is not None else None
    if before is not None and before.is_file() and "train_minutes" in summary:
        prior = json.loads(before.read_text()).get("train_minutes")
        if isinstance(prior, (int, float)):
            summary["train_minutes_this_run"] = summary["train_minutes"]
            summary["train_minutes_before"] = prior
            summary["train_minutes"] = round(prior + summary["train_minutes"], 2)
    info = {
        **summary,
        "parameters": n_params,
        "processes": accelerator.num_processes,
        "threads": torch.get_num_threads(),
        "command": "accelerate launch " + " ".join(sys.argv),
        "recipe": recipe_settings(args),
    }
    atomic_write_bytes(Path(args.export) / "train_info.json", json.dumps(info, indent=2).encode())

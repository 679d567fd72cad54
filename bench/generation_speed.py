"""End-to-end generation speed of the Seedance generator, as JSON (issues 6 and 8).

    python bench/generation_speed.py                 # 25 steps with guidance, 2 s clip, median of 5, + scaling
    python bench/generation_speed.py --steps 12 --shift 2  # the few-step sampler (--fast)
    python bench/generation_speed.py --quick         # median of 2, no scaling
    python bench/generation_speed.py --compile       # the transformer's blocks torch.compile'd first

One process: import + load of the weights (`startup_s`), one warm-up clip, then `--repeats` clips, each
timed from the prompt to the .mp4 written by the CLI's save path (seedance.generate_cli.save_output:
sampling, VAE decode, vocoder, H.264/AAC muxing). Every run gets a different held-out prompt, so a
text-embedding cache for repeated prompts does not flatter the figure. rtf = seconds per clip / clip seconds
(below 1 is faster than real time). `scaling`: seconds per clip for 2, 4 and 8 s clips (batch 1) and for
batches of 1, 4 and 16 (at --duration), each after its own warm-up; durations beyond the preset's
maximum are skipped and say so. peak_rss_mb is the process's peak resident memory after the main runs
(`scaling.peak_rss_mb` after scaling). Progress goes to stderr; the last stdout line is the JSON.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import add_sampler_args, apply_sampler_args, run_on_weights  # noqa: E402  (bench/ is on sys.path)

from seedance.errors import SeedanceError  # noqa: E402

DEFAULT_WEIGHTS = ROOT / "weights" / "seedance-tiny"
SCALING_DURATIONS = (2.0, 4.0, 8.0)
SCALING_BATCHES = (1, 4, 16)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def held_out_prompts(n: int) -> list[str]:
    """n distinct captions of test-split SyncWorld clips, scenes interleaved (captions only: no rendering)."""
    from seedance.data.syncworld import SCENES, sample_caption

    return [sample_caption(SCENES[i % len(SCENES)], 60_000 + i // len(SCENES), "test")[0] for i in range(n)]


class Runner:
    """Prompt(s) -> pipeline -> .mp4 files, timed; prompts are taken in turn so none repeats early."""

    def __init__(self, pipe, prompts: list[str], steps: int, out_dir: Path, seed: int):
        self.pipe, self.prompts, self.steps, self.out_dir, self.seed = pipe, prompts, steps, out_dir, seed
        self.next = 0

    def take(self, n: int) -> list[str]:
        out = [self.prompts[(self.next + i) % len(self.prompts)] for i in range(n)]
        self.next += n
        return out

    def clip(self, batch: int = 1, duration: float | None = None) -> float:
        """Seconds for one call of `batch` clips, files written."""
        import torch

        from seedance.generate_cli import generator_for, save_output

        prompts = self.take(batch)
        start = time.perf_counter()
        out = self.pipe(prompts, duration=duration, num_inference_steps=self.steps,
                        generator=generator_for(self.seed + self.next), output_type="np")
        for i in range(batch):
            save_output(out, self.out_dir / f"clip_{i}.mp4", self.pipe.preset.fps, i)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def median(self, repeats: int, batch: int = 1, duration: float | None = None) -> tuple[float, list[float]]:
        times = []
        for _ in range(repeats):
            times.append(self.clip(batch, duration))
            log(f"  batch {batch}, {duration or 'default'} s: {times[-1]:.3f} s")
        return statistics.median(times), times


def run(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    import torch

    from seedance.generate_cli import load_pipeline

    import_s = time.perf_counter() - t0
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.weights)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    startup_s = time.perf_counter() - t0
    log(f"startup {startup_s:.2f} s (import {import_s:.2f} s)")

    if args.steps is not None and args.steps <= 0:
        raise SeedanceError(f"--steps must be a positive whole number, got {args.steps}")
    if args.repeats < 1:
        raise SeedanceError(f"--repeats must be at least 1, got {args.repeats}")
    preset = pipe.preset
    duration = preset.duration_s if args.duration is None else float(args.duration)
    if not 0 < duration <= preset.max_duration_s:
        raise SeedanceError(f"--duration must be in (0, {preset.max_duration_s:g}] s for this model, got {duration}")
    steps = int(args.steps)
    prompts = held_out_prompts(64)
    sampler = apply_sampler_args(pipe, args)
    sampler["num_inference_steps"] = steps  # the steps run, not the model's default
    d = pipe.sampling_defaults

    with tempfile.TemporaryDirectory(prefix="seedance-speed-") as tmp:
        runner = Runner(pipe, prompts, steps, Path(tmp), args.seed)
        warmup_s = runner.clip(1, duration)
        log(f"warm-up {warmup_s:.3f} s")
        med, times = runner.median(args.repeats, 1, duration)
        result = {
            "model": str(args.weights),
            "device": device if device != "cuda" else f"cuda ({torch.cuda.get_device_name()})",
            "seconds_per_clip_median": med,
            "seconds_per_clip_runs": times,
            "clip_seconds": duration,
            "rtf": med / duration,
            "faster_than_real_time": bool(med < duration),
            "peak_rss_mb": peak_rss_mb(),
            "steps": steps,
            "guidance": {k: d[k] for k in ("guidance_scale", "audio_guidance_scale", "sync_guidance_scale")},
            "sampler": sampler,
            "startup_s": startup_s,
            "import_s": import_s,
            "warmup_s": warmup_s,
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(),
            "load_average_1m": os.getloadavg()[0],
        }
        if device.startswith("cuda"):
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        if not args.quick and not args.no_scaling:
            result["scaling"] = scaling(runner, preset, duration, args.scaling_repeats)
    return result


def scaling(runner: Runner, preset, duration: float, repeats: int) -> dict:
    """Seconds per clip against clip length (batch 1) and batch size (at `duration`)."""
    by_duration, by_batch, skipped = {}, {}, []
    for seconds in SCALING_DURATIONS:
        if seconds > preset.max_duration_s:
            skipped.append(f"{seconds:g} s is beyond the preset's maximum of {preset.max_duration_s:g} s")
            continue
        runner.clip(1, seconds)  # warm-up at this shape
        by_duration[f"{seconds:g}"] = runner.median(repeats, 1, seconds)[0]
    for batch in SCALING_BATCHES:
        runner.clip(batch, duration)
        by_batch[str(batch)] = runner.median(repeats, batch, duration)[0] / batch
    out = {
        "seconds_per_clip_by_duration_s": by_duration,
        "rtf_by_duration_s": {k: v / float(k) for k, v in by_duration.items()},
        "seconds_per_clip_by_batch": by_batch,
        "batch_clip_seconds": duration,
        "repeats": repeats,
        "peak_rss_mb": peak_rss_mb(),
    }
    if skipped:
        out["skipped"] = skipped
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="pipeline folder (model_index.json)")
    parser.add_argument("--steps", type=int, default=25, help="sampling steps (few-step: --steps 12 --shift 2)")
    parser.add_argument("--duration", type=float, default=None, help="clip seconds (default: the preset's, 2 s)")
    parser.add_argument("--repeats", type=int, default=None, help="timed clips after the warm-up (default 5)")
    parser.add_argument("--scaling-repeats", type=int, default=2, help="timed calls per scaling point")
    parser.add_argument("--no-scaling", action="store_true", help="skip the duration and batch scaling")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 timed clips, no scaling")
    add_sampler_args(parser)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    return run_on_weights(args, run)


if __name__ == "__main__":
    sys.exit(main())

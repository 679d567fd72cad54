"""What the generator benchmarks share: check the model folder first, run, print one JSON object."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from seedance.errors import SeedanceError


def run_on_weights(args, run: Callable[[object], dict]) -> int:
    """`run(args)` -> its result as one JSON line on stdout; a missing model or a SeedanceError is one line."""
    if not (Path(args.weights) / "model_index.json").is_file():  # before the imports that cost seconds
        print(f"error: no model at {args.weights} (model_index.json missing): train one or pass --weights",
              file=sys.stderr)
        return 1
    try:
        result = run(args)
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


SAMPLER_KEYS = ("num_inference_steps", "guidance_scale", "audio_guidance_scale", "sync_guidance_scale", "video_led",
                "transformer_precision", "timestep_shift", "guidance_stop")


def add_sampler_args(parser) -> None:
    """Overrides of the model's sampling_defaults.json, so one bench compares sampler settings on equal terms."""
    import argparse

    parser.add_argument("--guidance", type=float, default=None, help="override guidance_scale (video, text)")
    parser.add_argument("--audio-guidance", type=float, default=None, help="override audio_guidance_scale (text)")
    parser.add_argument("--sync-guidance", type=float, default=None, help="override sync_guidance_scale")
    parser.add_argument("--video-led", action=argparse.BooleanOptionalAction, default=None,
                        help="override video_led (text -> clip)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                        help="override transformer_precision")
    parser.add_argument("--shift", type=float, default=None, help="override timestep_shift (the sampling schedule)")
    parser.add_argument("--guidance-stop", type=float, default=None,
                        help="override guidance_stop (share of the steps that run the guidance passes)")
    parser.add_argument("--compile", action="store_true",
                        help="regional torch.compile of the transformer before the first clip (sampler.compile_s)")


def apply_sampler_args(pipe, args) -> dict:
    """Write the given overrides into the pipeline's defaults; returns the sampler settings now in force."""
    overrides = {"guidance_scale": args.guidance, "audio_guidance_scale": args.audio_guidance,
                 "sync_guidance_scale": args.sync_guidance, "video_led": args.video_led,
                 "transformer_precision": args.precision, "timestep_shift": args.shift,
                 "guidance_stop": args.guidance_stop}
    pipe.sampling_defaults.update({k: v for k, v in overrides.items() if v is not None})
    settings = {k: pipe.sampling_defaults.get(k) for k in SAMPLER_KEYS}
    if getattr(args, "compile", False):  # after the overrides: the warm-up compiles at their shapes and precision
        seconds = pipe.compile_transformer()
        settings.update(compiled=bool(seconds), compile_s=seconds)
    return settings


def time_it(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median seconds of `repeats` calls of `fn` after `warmup` untimed ones (first calls build kernels)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)

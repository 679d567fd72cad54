"""`seedance generate`, `seedance dub` and `seedance lipsync`: the pipeline from the command line.

    seedance generate "a red ball bounces" -o clip.mp4 --seed 0
    seedance generate --prompts prompts.txt --out-dir clips/        # split across `accelerate launch` processes
    seedance dub silent.mp4 -o dubbed.mp4                            # video -> audio
    seedance lipsync speech.wav --prompt "a talking face" -o face.mp4  # audio -> video
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

from seedance.errors import SeedanceError

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "seedance-tiny"
MAX_PROMPT_CHARS = 2000
# The few-step sampler (--fast): 12 Euler steps on a schedule shifted towards high noise (shift 2), at about
# half the default's time per clip. On two held-out prompt sets its sync and probe figures stay within 5 points
# of the 25-step default; 8 steps at shift 3 lost 8-9 points of colour, words or audio-to-video on one of them
# (README, "The few-step sampler").
FAST_SAMPLING = {"num_inference_steps": 12, "timestep_shift": 2.0}


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="model folder (save_pretrained layout)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same clip)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--shift", type=float, default=None,
                        help="timestep shift of the sampling schedule (above 1: more steps at high noise; "
                             "default: the model's)")
    parser.add_argument("--fast", action="store_true",
                        help=f"few-step sampler: {FAST_SAMPLING['num_inference_steps']} steps with shift "
                             f"{FAST_SAMPLING['timestep_shift']:g} (an explicit --steps or --shift wins)")
    parser.add_argument("--guidance", type=float, default=None, help="video classifier-free guidance scale")
    parser.add_argument("--audio-guidance", type=float, default=None, help="audio classifier-free guidance scale")
    parser.add_argument("--sync-guidance", type=float, default=None, help="push away from the uncoupled prediction")
    parser.add_argument("--guidance-stop", type=float, default=None,
                        help="share of the steps (0-1) that run the guidance passes; the rest run the conditional "
                             "pass alone (default: the model's)")
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument("--video-led", action=argparse.BooleanOptionalAction, default=None,
                        help="text -> clip: denoise the audio against the video's running clean estimate "
                             "(default: the model's sampling_defaults.json)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                        help="the transformer's precision (bf16: autocast; auto: bf16 where the hardware runs it "
                             "natively; default: the model's)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    gen = subparsers.add_parser("generate", help="text -> clip with sound (.mp4)")
    gen.add_argument("prompt", nargs="?", help="what the clip shows and sounds like")
    gen.add_argument("-o", "--output", default="clip.mp4", help="output .mp4 (default: clip.mp4)")
    gen.add_argument("--prompts", help="a text file with one prompt per line (batch mode)")
    gen.add_argument("--out-dir", help="output folder for --prompts")
    gen.add_argument("--batch-size", type=int, default=4,
                     help="--prompts: clips sampled together (default 4: about 1.75x the clips per second of one at "
                          "a time on 2 CPU cores; 1 makes each clip exactly as `generate PROMPT --seed` would)")
    gen.add_argument("--duration", type=float, default=None, help="clip length in seconds (default: the preset's)")
    gen.add_argument("--compile", action="store_true",
                     help="torch.compile the transformer first (seconds to a minute once; then each clip is "
                          "faster): pays for --prompts batches, not for one clip")
    add_sampling_args(gen)
    gen.set_defaults(func=run_generate)

    dub = subparsers.add_parser("dub", help="video -> audio: give a clip a soundtrack")
    dub.add_argument("video", help="input video file")
    dub.add_argument("-o", "--output", default="dubbed.mp4")
    dub.add_argument("--prompt", default="", help="optional text describing the sound")
    add_sampling_args(dub)
    dub.set_defaults(func=run_dub)

    lip = subparsers.add_parser("lipsync", help="audio -> video: a clip that moves with the given audio")
    lip.add_argument("audio", help="input audio (or video) file")
    lip.add_argument("-o", "--output", default="lipsync.mp4")
    lip.add_argument("--prompt", default="a cartoon face talking", help="text describing the picture")
    add_sampling_args(lip)
    lip.set_defaults(func=run_lipsync)


def check_prompt(prompt: str | None) -> str:
    if prompt is None or not prompt.strip():
        raise SeedanceError("the prompt is empty: describe the clip, e.g. seedance generate \"a red ball bounces\"")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise SeedanceError(f"the prompt has {len(prompt)} characters; keep it under {MAX_PROMPT_CHARS}")
    return prompt


def check_finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise SeedanceError(f"--{name} must be a finite number, got {value}")


def call_kwargs(args: argparse.Namespace) -> dict:
    """Only the settings the user gave; the pipeline's defaults fill the rest."""
    for name in ("guidance", "audio_guidance", "sync_guidance", "shift", "guidance_stop"):
        check_finite(name.replace("_", "-"), getattr(args, name, None))
    if args.steps is not None and args.steps <= 0:
        raise SeedanceError(f"--steps must be a positive whole number, got {args.steps}")
    mapping = {
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance,
        "audio_guidance_scale": args.audio_guidance,
        "sync_guidance_scale": args.sync_guidance,
        "negative_prompt": args.negative_prompt,
        "duration": getattr(args, "duration", None),
        "video_led": getattr(args, "video_led", None),
        "transformer_precision": getattr(args, "precision", None),
        "timestep_shift": getattr(args, "shift", None),
        "guidance_stop": getattr(args, "guidance_stop", None),
    }
    if getattr(args, "fast", False):
        mapping.update({k: v for k, v in FAST_SAMPLING.items() if mapping[k] is None})
    if mapping["duration"] is not None:
        check_finite("duration", mapping["duration"])
    return {k: v for k, v in mapping.items() if v is not None}


def load_pipeline(weights: str | Path):
    """Load the shipped pipeline once; every failure is one line naming what to fix."""
    from pipelines.pipeline_seedance import SeedancePipeline
    from seedance.errors import WeightsError

    folder = Path(weights)
    if not (folder / "model_index.json").is_file():
        raise WeightsError(f"no model at {folder} (model_index.json missing): train one or pass --weights")
    try:
        return SeedancePipeline.from_pretrained(str(folder))
    except SeedanceError:
        raise
    except Exception as exc:
        raise WeightsError(f"cannot load the model from {folder}: {str(exc).splitlines()[0][:160]}") from None


def generator_for(seed: int):
    import torch

    return torch.Generator("cpu").manual_seed(int(seed))


def output_arrays(output, index: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Frames uint8 [F,H,W,3] and mono audio float32 [S] of one clip of a pipeline output."""
    frames = np.asarray(output.frames[index])
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    audio = output.audio[index]
    audio = audio.detach().float().cpu().numpy() if hasattr(audio, "detach") else np.asarray(audio, np.float32)
    audio = audio.reshape(-1, audio.shape[-1]).mean(axis=0) if audio.ndim > 1 else audio
    return frames, audio.astype(np.float32), int(output.sample_rate)


def check_output_path(path: str | Path) -> Path:
    """Checked before any work is done, so a typo costs nothing."""
    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".mkv", ".mov", ".webm"):
        raise SeedanceError(f"unsupported output type {path.suffix!r}: use .mp4, .mkv, .mov or .webm")
    return path


def save_output(output, path: str | Path, fps: int, index: int = 0) -> Path:
    from seedance.data.media import write_clip

    frames, audio, sample_rate = output_arrays(output, index)
    path = check_output_path(path)
    write_clip(path, frames, audio, fps, sample_rate)
    return path


def compile_if_asked(pipe, args: argparse.Namespace) -> None:
    """--compile: compile now; where that fails, one warning line and the clip is made without it."""
    if not getattr(args, "compile", False):
        return
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seconds = pipe.compile_transformer()
    for w in caught:  # torch's own compile-time notices are dropped; the fallback is said in one line
        if str(w.message).startswith("torch.compile is not available"):
            print(f"warning: {w.message}", file=sys.stderr)
    if seconds:
        print(f"compiled the transformer in {seconds:.1f} s", file=sys.stderr)


def run_generate(args: argparse.Namespace) -> int:
    if args.prompts:
        return run_generate_batch(args)
    prompt = check_prompt(args.prompt)
    check_output_path(args.output)
    kwargs = call_kwargs(args)
    pipe = load_pipeline(args.weights)
    compile_if_asked(pipe, args)
    output = pipe(prompt, generator=generator_for(args.seed), output_type="np", **kwargs)
    path = save_output(output, args.output, pipe.preset.fps)
    print(f"wrote {path}")
    return 0


def slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "clip"


def run_generate_batch(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    prompts_file = Path(args.prompts)
    if not prompts_file.is_file():
        raise SeedanceError(f"prompts file not found: {prompts_file}")
    prompts = [line.strip() for line in prompts_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise SeedanceError(f"{prompts_file} has no prompts: write one prompt per line")
    for prompt in prompts:
        check_prompt(prompt)
    batch_size = getattr(args, "batch_size", 1)
    if batch_size < 1:
        raise SeedanceError(f"--batch-size must be a positive whole number, got {batch_size}")
    out_dir = Path(args.out_dir or "clips")
    out_dir.mkdir(parents=True, exist_ok=True)
    kwargs = call_kwargs(args)
    state = PartialState()
    pipe = load_pipeline(args.weights)
    compile_if_asked(pipe, args)
    jobs = list(enumerate(prompts))
    rows = []
    with state.split_between_processes(jobs) as mine:
        for start in range(0, len(mine), batch_size):
            chunk = mine[start : start + batch_size]
            # one generator per clip, seeded by its line number: a clip's noise does not depend on its batch, only
            # the float rounding of the batched matmuls does
            output = pipe([prompt for _, prompt in chunk], generator=[generator_for(args.seed + n) for n, _ in chunk],
                          output_type="np", **kwargs)
            for index, (number, prompt) in enumerate(chunk):
                path = save_output(output, out_dir / f"{number:04d}_{slug(prompt)}.mp4", pipe.preset.fps, index)
                rows.append({"file": path.name, "prompt": prompt, "seed": args.seed + number})
                print(f"[{state.process_index}] wrote {path}")
    part = out_dir / f"prompts.{state.process_index}.jsonl"
    part.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


def run_dub(args: argparse.Namespace) -> int:
    check_output_path(args.output)
    from seedance.data.media import read_clip

    kwargs = call_kwargs(args)
    pipe = load_pipeline(args.weights)
    preset = pipe.preset
    clip = read_clip(args.video, fps=preset.fps, size=(preset.height, preset.width), sample_rate=preset.sample_rate,
                     require_audio=False)
    duration = min(clip.frames.shape[0] / preset.fps, preset.max_duration_s)
    output = pipe(args.prompt or "", video=clip.frames[: int(round(duration * preset.fps))], duration=duration,
                  generator=generator_for(args.seed), output_type="np", **kwargs)
    path = save_output(output, args.output, preset.fps)
    print(f"wrote {path}")
    return 0


def run_lipsync(args: argparse.Namespace) -> int:
    check_output_path(args.output)
    from seedance.data.media import read_audio

    prompt = check_prompt(args.prompt)
    kwargs = call_kwargs(args)
    pipe = load_pipeline(args.weights)
    preset = pipe.preset
    audio = read_audio(args.audio, sample_rate=preset.sample_rate)
    duration = min(audio.shape[0] / preset.sample_rate, preset.max_duration_s)
    output = pipe(prompt, audio=audio[: int(round(duration * preset.sample_rate))], duration=duration,
                  generator=generator_for(args.seed), output_type="np", **kwargs)
    path = save_output(output, args.output, preset.fps)
    print(f"wrote {path}")
    return 0


def generate_demo_clips(weights: Path, out: Path, seed: int = 0) -> list[dict]:
    """`make demo` with a shipped generator: one clip per example prompt, listed in samples/README.md."""
    from seedance.data.cli import prepare_out_dir

    prompts_file = Path(__file__).resolve().parent.parent / "samples" / "prompts.txt"
    prompts = [p.strip() for p in prompts_file.read_text().splitlines() if p.strip()]
    prepare_out_dir(str(out))
    pipe = load_pipeline(weights)
    rows = []
    for number, prompt in enumerate(prompts):
        output = pipe(prompt, generator=generator_for(seed + number), output_type="np")
        path = save_output(output, out / f"{number:02d}_{slug(prompt)}.mp4", pipe.preset.fps)
        rows.append({"file": path.name, "prompt": prompt, "seed": seed + number})
        print(f"wrote {path}: {prompt}")
    return rows

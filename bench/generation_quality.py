"""Generation quality of the Seedance generator on held-out SyncWorld prompts, as JSON (issue 6).

    python bench/generation_quality.py                       # 66 prompts (22 per scene), the model's steps
    python bench/generation_quality.py --quick               # 6 prompts, at most 8 steps
    python bench/generation_quality.py --ablation independent=runs/abl_independent/export \
        --ablation cascaded=runs/abl_cascaded/export

Prompts are the captions of test-split SyncWorld clips (scenes interleaved, so every scene gets the same
share; indices from --first-index on, away from the recipe's validation clips at 10000+). For each prompt:

- joint: text -> audio + video. Sync measured per clip: cross-correlation offset (within +-1 frame),
  event F1 (audio onsets vs visual events), SyncExpert LSE-C. Beside it, `chance`: the same videos with the
  audio of another clip of the same scene (harder to beat than another scene's audio), and `real`: the
  real SyncWorld clips behind the captions (the ceiling).
- probe accuracy: the attribute probes read scene, colour, count, words, pitch (and voice) from each
  generated clip and compare them with what its caption names; the same on the real clips as the ceiling.
- v2a: the real video given (`video=`), audio generated, sync measured against that video; a2v likewise
  with the real audio given (`audio=`). Each with its own chance level.
- ablations (--ablation NAME=DIR, repeatable): the same prompts, seeds and sampling settings through another
  transformer (DIR holds a full pipeline, or only transformer/ + scheduler/ as the recipe's --export writes;
  the other components are then the main model's). A NAME containing "cascad" is sampled as a cascade:
  video first with cross-modal attention off, then audio from the decoded video (`video=`); its
  seconds_per_clip covers both stages.

Figures are per scene too (`per_scene`). `bars` compares the headline figures with issue 6's bars.
Progress goes to stderr; the last stdout line is the JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import add_sampler_args, apply_sampler_args  # noqa: E402  (bench/ is on sys.path when run as a script)

from seedance.errors import SeedanceError, WeightsError  # noqa: E402

DEFAULT_WEIGHTS = ROOT / "weights" / "seedance-tiny"
PROBE_NAMES = {"scene": "scene", "colors": "colour", "count": "count", "words": "words", "pitch": "pitch",
               "voice": "voice"}  # check_caption's attribute -> reported key


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def clean(value):
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, floats rounded."""
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return round(value, 4) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def mean(values) -> float | None:
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(values)) if values else None


# ------------------------------------------------------------------------------------------ scoring
def score_clip(frames: np.ndarray, audio: np.ndarray, fps: int, sample_rate: int, expert) -> dict:
    """Sync of one clip: frames uint8 [F,H,W,3], audio float32 [S]."""
    from seedance.eval.events import event_f1
    from seedance.eval.offset import av_offset
    from seedance.eval.syncexpert import score_sync

    offset = av_offset(frames, audio, fps, sample_rate).offset_frames
    f1 = event_f1(frames, audio, fps, sample_rate).score  # NaN when neither side has events
    s = score_sync(expert, frames, audio, fps, sample_rate)
    return {"offset_frames": int(offset), "event_f1": float(f1), "lse_c": float(s.lse_c), "lse_d": float(s.lse_d)}


def score_set(frames: list, audio: list, fps: int, sample_rate: int, expert, what: str) -> list[dict]:
    rows = []
    for i, (f, a) in enumerate(zip(frames, audio)):
        rows.append(score_clip(f, a, fps, sample_rate, expert))
        if (i + 1) % 8 == 0 or i + 1 == len(frames):
            log(f"  scored {what}: {i + 1}/{len(frames)}")
    return rows


def summarise(rows: list[dict]) -> dict:
    return {
        "n": len(rows),
        "offset_within_1_frame": mean([abs(r["offset_frames"]) <= 1 for r in rows]),
        "event_f1": mean([r["event_f1"] for r in rows]),
        "lsec": mean([r["lse_c"] for r in rows]),
    }


def partners(scenes: list[str]) -> list[int]:
    """For each clip, another clip of the same scene (cyclic); another scene only where a scene has one clip."""
    out = []
    for i, scene in enumerate(scenes):
        same = [j for j, s in enumerate(scenes) if s == scene]
        out.append(same[(same.index(i) + 1) % len(same)] if len(same) > 1 else (i + 1) % len(scenes))
    return out


def swapped_audio(audio: list[np.ndarray], partner: list[int], num_samples: int) -> list[np.ndarray]:
    """Clip i gets clip partner[i]'s audio, cut or padded to this clip's length."""
    out = []
    for i in range(len(audio)):
        a = audio[partner[i]][:num_samples]
        out.append(np.pad(a, (0, num_samples - a.shape[0])) if a.shape[0] < num_samples else a)
    return out


def probe_accuracy(probes, frames: list, audio: list, captions: list[str]) -> tuple[dict, list[dict]]:
    """Share of clips whose probes read each attribute their caption names; and per-clip matches."""
    from seedance.eval.probes import check_caption

    per_clip = []
    for f, a, c in zip(frames, audio, captions):
        per_clip.append({PROBE_NAMES.get(x.attribute, x.attribute): x.matched for x in check_caption(probes, f, a, c)})
    return accuracy_of(per_clip), per_clip


def accuracy_of(per_clip: list[dict]) -> dict:
    names = [n for n in PROBE_NAMES.values() if any(n in row for row in per_clip)]
    return {n: mean([row[n] for row in per_clip if n in row]) for n in names}


# ------------------------------------------------------------------------------------------ generation
def generate(pipe, captions: list[str], settings: dict, batch: int, seed: int, mode: str = "joint",
             given: list[np.ndarray] | None = None) -> tuple[list, list, float]:
    """Clips for `captions` in batches -> (frames uint8 list, audio float32 list, seconds).

    mode: "joint" (text -> both), "v2a" (given = real frames), "a2v" (given = real audio), "cascaded"
    (video without coupling, then audio from that decoded video). Batch k uses seed + k * batch.
    """
    import torch

    from seedance.config import frames_for
    from seedance.generate_cli import generator_for, output_arrays

    frames_out, audio_out = [], []
    start = time.perf_counter()
    for k in range(0, len(captions), batch):
        caps = captions[k:k + batch]
        gen = generator_for(seed + k)
        if mode == "joint":
            out = pipe(caps, generator=gen, output_type="np", **settings)
        elif mode == "v2a":
            out = pipe(caps, video=np.stack(given[k:k + batch]), generator=gen, output_type="np", **settings)
        elif mode == "a2v":
            out = pipe(caps, audio=np.stack(given[k:k + batch]), generator=gen, output_type="np", **settings)
        elif mode == "cascaded":
            # stage 1: video alone, cross-modal attention off. The pipeline has no video-only mode: the audio
            # branch still runs, but its latents are never decoded (output_type="latent", video decoded here).
            first = pipe(caps, generator=gen, cross_modal=False, output_type="latent", **settings)
            n_frames = frames_for(settings["duration"], pipe.preset.fps)
            video = pipe.vae.decode_latents(first.frames.to(pipe.vae.dtype), num_frames=n_frames)
            video = video.float().clamp(-1, 1)  # [B,3,F,H,W] in [-1,1], what video= takes
            out = pipe(caps, video=video, generator=gen, output_type="np", **settings)
        else:
            raise SeedanceError(f"unknown generation mode {mode!r}")
        for i in range(len(caps)):
            f, a, _ = output_arrays(out, i)
            frames_out.append(f)
            audio_out.append(a)
        log(f"  generated {mode}: {len(frames_out)}/{len(captions)} ({time.perf_counter() - start:.1f} s)")
        del out
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return frames_out, audio_out, time.perf_counter() - start


def warm_up(pipe, captions: list[str], settings: dict, batch: int) -> None:
    """One 1-step call at the timed batch size, so that timed calls do not pay first-call costs."""
    from seedance.generate_cli import generator_for

    pipe(captions[:batch], generator=generator_for(0), output_type="latent",
         **{**settings, "num_inference_steps": 1})


def load_ablation(pipe, folder: Path):
    """A pipeline whose transformer (and scheduler, if present) come from `folder`, the rest from `pipe`."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from pipelines.pipeline_seedance import SeedancePipeline
    from seedance.generate_cli import load_pipeline
    from seedance.models.io import load_component
    from seedance.models.transformer_av import SeedanceTransformer

    if not (folder / "model_index.json").is_file():
        raise WeightsError(f"no model at {folder} (model_index.json missing): export the ablation first")
    if (folder / "tokenizer").is_dir() and (folder / "vae").is_dir():
        abl = load_pipeline(folder)
    else:  # the recipe's --export: transformer/ + scheduler/ only
        transformer = load_component(SeedanceTransformer, folder / "transformer", torch_dtype=pipe.transformer.dtype)
        scheduler = pipe.scheduler
        if (folder / "scheduler" / "scheduler_config.json").is_file():
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(folder / "scheduler"))
        abl = SeedancePipeline(**{**pipe.components, "transformer": transformer.eval(), "scheduler": scheduler})
        abl.sampling_defaults = dict(pipe.sampling_defaults)
    abl.to(pipe.device)
    abl.set_progress_bar_config(disable=True)
    return abl


def parse_ablation(text: str) -> tuple[str, Path]:
    if "=" not in text:
        raise SeedanceError(f"--ablation wants NAME=DIR, got {text!r}")
    name, folder = text.split("=", 1)
    if not name or not folder:
        raise SeedanceError(f"--ablation wants NAME=DIR, got {text!r}")
    return name, Path(folder)


# ------------------------------------------------------------------------------------------ main
def run(args: argparse.Namespace) -> dict:
    import torch

    from seedance.data.syncworld import SCENES, make_sample
    from seedance.eval.probes import load_probes
    from seedance.eval.syncexpert import load_syncexpert
    from seedance.generate_cli import load_pipeline

    if args.n_clips < 2:
        raise SeedanceError(f"--n-clips must be at least 2 (chance pairs need two clips), got {args.n_clips}")
    if args.batch < 1:
        raise SeedanceError(f"--batch must be at least 1, got {args.batch}")
    scenes = [s for s in args.scenes.split(",") if s]
    unknown = [s for s in scenes if s not in SCENES]
    if not scenes or unknown:
        raise SeedanceError(f"--scenes must name scenes from {', '.join(SCENES)}, got {args.scenes!r}")
    ablations = [parse_ablation(a) for a in args.ablation]
    for _, folder in ablations:  # fail before an hour of generation, not after
        if not (folder / "model_index.json").is_file():
            raise WeightsError(f"no model at {folder} (model_index.json missing): export the ablation first")

    t0 = time.perf_counter()
    pipe = load_pipeline(args.weights)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    expert = load_syncexpert(args.syncexpert).to(device)
    probes = load_probes(args.probes).to(device)
    preset = pipe.preset
    fps, sr = preset.fps, preset.sample_rate
    sampler = apply_sampler_args(pipe, args)
    d = pipe.sampling_defaults
    steps = args.steps or (min(8, d["num_inference_steps"]) if args.quick else d["num_inference_steps"])
    sampler["num_inference_steps"] = int(steps)  # the steps run, not the model's default
    settings = {"num_inference_steps": int(steps), "guidance_scale": d["guidance_scale"],
                "audio_guidance_scale": d["audio_guidance_scale"], "sync_guidance_scale": d["sync_guidance_scale"],
                "duration": preset.duration_s}
    log(f"loaded {args.weights} on {device} in {time.perf_counter() - t0:.1f} s; {steps} steps")

    # held-out prompts: scenes interleaved (balanced)
    samples = [make_sample(scenes[i % len(scenes)], args.first_index + i // len(scenes), preset, "test")
               for i in range(args.n_clips)]
    captions = [s.caption for s in samples]
    clip_scenes = [s.scene for s in samples]
    real_frames = [s.frames[: preset.num_frames] for s in samples]
    real_audio = [s.audio[: preset.num_samples].astype(np.float32) for s in samples]
    partner = partners(clip_scenes)
    n_samples = preset.num_samples

    # 1. joint (after a warm-up call: the first call pays one-time costs that are not per-clip time)
    warm_up(pipe, captions, settings, args.batch)
    gen_frames, gen_audio, joint_s = generate(pipe, captions, settings, args.batch, args.seed)
    gen_rows = score_set(gen_frames, gen_audio, fps, sr, expert, "joint")
    chance_rows = score_set(gen_frames, swapped_audio(gen_audio, partner, n_samples), fps, sr, expert, "chance")
    real_rows = score_set(real_frames, real_audio, fps, sr, expert, "real")
    probes_gen, probe_rows = probe_accuracy(probes, gen_frames, gen_audio, captions)
    probes_real, probe_real_rows = probe_accuracy(probes, real_frames, real_audio, captions)

    # 2. video -> audio and audio -> video (the given modality from the real clip)
    v2a_frames, v2a_audio, v2a_s = generate(pipe, captions, settings, args.batch, args.seed, "v2a", real_frames)
    del v2a_frames  # the given video comes back unchanged; sync is measured against the real frames
    v2a_rows = score_set(real_frames, v2a_audio, fps, sr, expert, "v2a")
    v2a_chance = score_set(real_frames, swapped_audio(v2a_audio, partner, n_samples), fps, sr, expert, "v2a chance")
    a2v_frames, _, a2v_s = generate(pipe, captions, settings, args.batch, args.seed, "a2v", real_audio)
    a2v_rows = score_set(a2v_frames, real_audio, fps, sr, expert, "a2v")
    a2v_chance = score_set(a2v_frames, swapped_audio(real_audio, partner, n_samples), fps, sr, expert, "a2v chance")

    def by_scene(rows: list[dict]) -> dict:
        return {s: summarise([r for r, c in zip(rows, clip_scenes) if c == s]) for s in scenes}

    # 3. ablations, same prompts, seeds and settings
    ablation_out = {}
    for name, folder in ablations:
        mode = "cascaded" if "cascad" in name.lower() else "joint"
        log(f"ablation {name} ({mode}) from {folder}")
        abl = load_ablation(pipe, folder)
        warm_up(abl, captions, settings, args.batch)
        f, a, secs = generate(abl, captions, settings, args.batch, args.seed, mode)
        rows = score_set(f, a, fps, sr, expert, name)
        acc, _ = probe_accuracy(probes, f, a, captions)
        s = summarise(rows)
        ablation_out[name] = {"weights": str(folder), "mode": mode, **{k: v for k, v in s.items() if k != "n"},
                              "seconds_per_clip": secs / len(captions), "probe_accuracy": acc,
                              "cross_modal_attention": bool(abl.transformer.config.cross_modal_attention),
                              "per_scene": by_scene(rows)}
        del abl

    joint, chance, real = summarise(gen_rows), summarise(chance_rows), summarise(real_rows)
    v2a, a2v = summarise(v2a_rows), summarise(a2v_rows)
    per_scene = {}
    for s in scenes:
        idx = [i for i, c in enumerate(clip_scenes) if c == s]
        per_scene[s] = {
            "n_clips": len(idx),
            "generated": summarise([gen_rows[i] for i in idx]),
            "chance": summarise([chance_rows[i] for i in idx]),
            "real": summarise([real_rows[i] for i in idx]),
            "v2a": summarise([v2a_rows[i] for i in idx]),
            "a2v": summarise([a2v_rows[i] for i in idx]),
            "probe_accuracy": accuracy_of([probe_rows[i] for i in idx]),
            "probe_accuracy_real": accuracy_of([probe_real_rows[i] for i in idx]),
        }
    lsec_ratio = (joint["lsec"] / real["lsec"]) if joint["lsec"] is not None and real["lsec"] else None

    def at_least(value, bar):
        return None if value is None else bool(value >= bar)

    bars = {
        "offset_within_1_frame>=0.85": at_least(joint["offset_within_1_frame"], 0.85),
        "event_f1>=0.8": at_least(joint["event_f1"], 0.8),
        "lsec_generated>=0.7*lsec_real": at_least(lsec_ratio, 0.7),
        "probe_scene>=0.8": at_least(probes_gen.get("scene"), 0.8),
        "probe_colour>=0.8": at_least(probes_gen.get("colour"), 0.8),
    }

    def beats(key: str, other: dict, strict: bool) -> bool | None:
        if joint[key] is None or other[key] is None:
            return None
        return bool(joint[key] > other[key]) if strict else bool(joint[key] >= other[key])

    for name, abl in ablation_out.items():
        independent = "independ" in name.lower() or (abl["mode"] == "joint" and not abl["cross_modal_attention"])
        if independent:  # issue 6: better sync than "independent"
            bars[f"offset_within_1_frame>{name}"] = beats("offset_within_1_frame", abl, strict=True)
            bars[f"lsec>{name}"] = beats("lsec", abl, strict=True)
        if abl["mode"] == "cascaded":  # at least equal to "cascaded", at less time per clip
            bars[f"offset_within_1_frame>={name}"] = beats("offset_within_1_frame", abl, strict=False)
            bars[f"lsec>={name}"] = beats("lsec", abl, strict=False)
            bars[f"seconds_per_clip<{name}"] = bool(joint_s / len(captions) < abl["seconds_per_clip"])

    result = {
        "model": str(args.weights),
        "device": device,
        "n_clips": len(captions),
        "scenes": scenes,
        "steps": int(steps),
        "guidance": {k: settings[k] for k in ("guidance_scale", "audio_guidance_scale", "sync_guidance_scale")},
        "sampler": sampler,
        "clip_seconds": preset.duration_s,
        "seconds_per_clip": joint_s / len(captions),
        "offset_within_1_frame": joint["offset_within_1_frame"],
        "event_f1": joint["event_f1"],
        "lsec_generated": joint["lsec"],
        "lsec_real": real["lsec"],
        "lsec_ratio": lsec_ratio,
        "chance": {k: v for k, v in chance.items() if k != "n"},
        "chance_note": "the same generated videos, each with the audio of another clip of its scene",
        "real": {k: v for k, v in real.items() if k != "n"},
        "probe_accuracy": probes_gen,
        "probe_accuracy_real": probes_real,
        "v2a": {**{k: v for k, v in v2a.items() if k != "n"}, "seconds_per_clip": v2a_s / len(captions),
                "chance": {k: v for k, v in summarise(v2a_chance).items() if k != "n"}},
        "a2v": {**{k: v for k, v in a2v.items() if k != "n"}, "seconds_per_clip": a2v_s / len(captions),
                "chance": {k: v for k, v in summarise(a2v_chance).items() if k != "n"}},
        "ablations": ablation_out,
        "per_scene": per_scene,
        "bars": bars,
        "prompts": {"split": "test", "first_index": args.first_index, "seed": args.seed},
        "wall_s": time.perf_counter() - t0,
    }
    if args.details:
        details = [{"caption": c, "scene": sc, "joint": g, "chance": ch, "real": r, "v2a": v, "a2v": a,
                    "probes": p, "probes_real": pr}
                   for c, sc, g, ch, r, v, a, p, pr in zip(captions, clip_scenes, gen_rows, chance_rows, real_rows,
                                                           v2a_rows, a2v_rows, probe_rows, probe_real_rows)]
        Path(args.details).write_text(json.dumps(clean(details), indent=1) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="pipeline folder (model_index.json)")
    parser.add_argument("--n-clips", type=int, default=None, help="held-out prompts (default 66; --quick 6)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's; --quick <= 8)")
    parser.add_argument("--batch", type=int, default=8, help="prompts per pipeline call")
    parser.add_argument("--scenes", default="face,bounce,keys")
    parser.add_argument("--first-index", type=int, default=50_000, help="first SyncWorld test index used")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ablation", action="append", default=[], metavar="NAME=DIR",
                        help="another transformer to measure the same way (repeatable); 'cascad' in NAME samples "
                             "video first, then audio from it")
    parser.add_argument("--syncexpert", default=None, help="SyncExpert folder (default weights/syncexpert)")
    parser.add_argument("--probes", default=None, help="attribute probes folder (default weights/probes)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--details", default=None, help="also write per-clip scores to this JSON file")
    parser.add_argument("--quick", action="store_true", help="6 prompts, at most 8 steps")
    add_sampler_args(parser)
    args = parser.parse_args(argv)
    if args.n_clips is None:
        args.n_clips = 6 if args.quick else 66
    try:
        result = run(args)
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(clean(result), allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

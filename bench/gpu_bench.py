"""GPU benchmark of Seedance at the `base` preset (random weights), as one JSON object (issue 8 item 6).

    bench/gpu.sh                                    # the entry point on a GPU machine (checks CUDA, hard timeout)
    python bench/gpu_bench.py                       # the same without the wrapper
    python bench/gpu_bench.py --device cpu --quick  # toy widths, 2 steps: a smoke test of every code path

Installs nothing and loads no weight files: every model is the real class at the shipped widths
(app/random_model.py FULL_* and full_size_transformer_kwargs), randomly initialised, so the figures are the
cost of the architecture, not of a trained checkpoint. Each part has its own time budget and the whole run a
deadline (--budget-s); a part that fails (out of memory, say) reports its error and the others still run.

Keys:
    gpu, torch                  torch.cuda.get_device_name() and torch.__version__ (the CPU's name with --device cpu)
    base_train_steps_per_s      optimiser steps/s of the SeedanceTransformer at --batch-size (32), bf16 autocast,
                                the recipe's step (pipelines/train_transformer.py flow_loss + total_loss, grad clip,
                                AdamW, EMA update), on synthetic latents of the real VAEs' shapes at the preset
    gen_clips_per_s_batch{B}    clips/s of the full SeedancePipeline (text encoder, transformer with text and sync
                                guidance, video VAE decode, audio VAE decode, vocoder; no muxing) for each
                                --gen-batches size, bf16 autocast; the default sampling steps unless they do not
                                fit the part's budget, then fewer: `gen_steps` says how many were used, and
                                gen_clips_per_s_batch{B}_default_steps_est adds the missing steps at the probed
                                per-step cost (equal to the measured figure when all steps ran)
    peak_memory_gb              the largest torch.cuda.max_memory_allocated of any part (per part: *_by_part)
    engram_host_offload_ratio   text-encoder prompts/s with its Engram table in host memory (HostEngramTable:
                                rows gathered into pinned memory, copied on a side stream) / with the table on the
                                device; bench/text_encoder.py's interleaved-rounds measurement
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from seedance.errors import SeedanceError  # noqa: E402

# Seconds per part (a part also stops early when the run's deadline is near).
PART_BUDGET_S = {"train": 90.0, "gen": 170.0, "engram": 40.0}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Clock:
    """The run's deadline and the device synchronisation that makes a wall-clock time mean something."""

    def __init__(self, device: torch.device, budget_s: float):
        self.device = device
        self.deadline = time.perf_counter() + budget_s

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def now(self) -> float:
        self.sync()
        return time.perf_counter()

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip() + " (CPU)"
    except OSError:
        pass
    return (platform.processor() or platform.machine()) + " (CPU)"


def autocast(device: torch.device, enabled: bool = True):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def prompts(n: int) -> list[str]:
    """n distinct held-out SyncWorld captions (captions only, nothing rendered)."""
    from seedance.data.syncworld import SCENES, sample_caption

    return [sample_caption(SCENES[i % len(SCENES)], 60_000 + i // len(SCENES), "test")[0] for i in range(n)]


def clip_shapes(pipe, batch: int) -> tuple[tuple, tuple]:
    """Video [B,Cv,Tv,h,w] and audio [B,Ca,Ta] latent shapes of one default-length clip at the pipeline's preset."""
    p = pipe.preset
    return pipe.latent_shapes(batch, p.num_frames, p.num_samples, p.height, p.width)


# ---------------------------------------------------------------------------------------------- 1. training
def bench_train(pipe, clock: Clock, batch: int, budget_s: float, warmup: int, max_steps: int) -> dict:
    """Recipe steps/s of a fresh transformer with the pipeline transformer's config on synthetic latents."""
    from pipelines.train_transformer import EMA, flow_loss, total_loss
    from seedance.models.transformer_av import SeedanceTransformer

    device, start = clock.device, time.perf_counter()
    torch.manual_seed(0)
    model = SeedanceTransformer.from_config(pipe.transformer.config).to(device).train()
    recipe = argparse.Namespace(sigma_floor=0.05, audio_loss_weight=1.0, grad_clip=1.0, ema_decay=0.999,
                                weight_decay=0.01, lr=5e-4)  # pipelines/train_transformer.py defaults
    decay, no_decay = [], []
    for name, prm in model.named_parameters():
        (no_decay if prm.dim() < 2 or "mod_table" in name or name.endswith(".raw") else decay).append(prm)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr, betas=(0.9, 0.99))
    ema = EMA(model, recipe.ema_decay)
    video_shape, audio_shape = clip_shapes(pipe, batch)
    text_len, text_dim = 40, model.config.text_dim  # the recipe's --text-len
    g = torch.Generator(device=device).manual_seed(0)

    def draw() -> dict:
        sigma = torch.sigmoid(torch.randn(2, batch, device=device, generator=g))  # logit-normal(0, 1)
        return {
            "x0_v": torch.randn(video_shape, device=device, generator=g),
            "eps_v": torch.randn(video_shape, device=device, generator=g),
            "x0_a": torch.randn(audio_shape, device=device, generator=g),
            "eps_a": torch.randn(audio_shape, device=device, generator=g),
            "sigma_v": sigma[0], "sigma_a": sigma[1],
            "text_states": torch.randn(batch, text_len, text_dim, device=device, generator=g),
            "text_pooled": torch.randn(batch, text_dim, device=device, generator=g),
            "text_mask": torch.ones(batch, text_len, dtype=torch.uint8, device=device),
            "cross_modal": torch.ones(batch, device=device),
            "video_clean": torch.zeros(batch, dtype=torch.bool, device=device),
            "audio_clean": torch.zeros(batch, dtype=torch.bool, device=device),
        }

    batches = [draw() for _ in range(4)]  # drawn ahead: the timed loop measures the model, not the data

    def step(i: int) -> None:
        with autocast(device):
            per_sample = flow_loss(model, batches[i % len(batches)], recipe)
        loss, _ = total_loss(per_sample, batches[i % len(batches)], recipe)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.update(model, i)

    for i in range(warmup):
        step(i)
    t0 = clock.now()
    done = 0
    while done < max_steps and (done == 0 or (time.perf_counter() - start < budget_s and clock.left() > 0)):
        step(warmup + done)
        done += 1
        if done % 5 == 0:
            clock.sync()  # keep the budget check honest: queued kernels are not finished steps
    seconds = clock.now() - t0
    return {
        "base_train_steps_per_s": done / seconds,
        "train": {"batch_size": batch, "timed_steps": done, "warmup_steps": warmup, "seconds": round(seconds, 3),
                  "video_latents": list(video_shape[1:]), "audio_latents": list(audio_shape[1:]),
                  "text_tokens": text_len, "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                  "video_tokens": int(video_shape[2] * (video_shape[3] // model.config.patch_size)
                                      * (video_shape[4] // model.config.patch_size)),
                  "audio_tokens": int(audio_shape[2])},
    }


# ---------------------------------------------------------------------------------------------- 2. generation
def bench_generate(pipe, clock: Clock, batch: int, budget_s: float, texts: list[str], max_repeats: int) -> dict:
    """clips/s of the whole pipeline at `batch`; fewer than the default steps only when they do not fit the budget."""
    device, start = clock.device, time.perf_counter()
    default_steps = int(pipe.sampling_defaults["num_inference_steps"])
    batch_prompts = [texts[i % len(texts)] for i in range(batch)]
    marks: list[float] = []

    def mark(_pipe, _i, _t, kwargs):
        marks.append(clock.now())
        return kwargs

    def call(steps: int, timed_steps: bool = False) -> float:
        marks.clear()
        t0 = clock.now()
        # the per-step probe guides every step, so its step cost is a guided step's (an upper bound per step)
        stop = {"guidance_stop": 1.0} if timed_steps else {}
        with autocast(device):
            pipe(batch_prompts, num_inference_steps=steps, generator=torch.Generator(device).manual_seed(0),
                 callback_on_step_end=mark if timed_steps else None, **stop)
        return clock.now() - t0

    call(2)  # warm-up: kernels chosen, memory pools sized
    probe = call(3, timed_steps=True)  # per-step cost from the step marks; the rest is text encoding + decoding
    step_s = (marks[-1] - marks[0]) / (len(marks) - 1)
    fixed_s = max(0.0, probe - 3 * step_s)
    left = min(budget_s - (time.perf_counter() - start), clock.left())
    steps = default_steps
    if fixed_s + steps * step_s > left:
        steps = max(1, int((left - fixed_s) / step_s))
    times = []
    while len(times) < max_repeats and (not times or time.perf_counter() - start + times[-1] < budget_s) \
            and (not times or clock.left() > times[-1]):
        times.append(call(steps))
    seconds = statistics.median(times)
    # measured time plus the missing steps at the probed (guided) per-step cost; equal to the measurement at full
    # steps
    est_seconds = seconds + (default_steps - steps) * step_s
    return {
        f"gen_clips_per_s_batch{batch}": batch / seconds,
        f"gen_clips_per_s_batch{batch}_default_steps_est": batch / est_seconds,
        "detail": {"steps": steps, "default_steps": default_steps, "seconds_per_call_median": round(seconds, 4),
                   "calls": len(times), "step_s": round(step_s, 5), "fixed_s": round(fixed_s, 4),
                   "guidance_stop": pipe.sampling_defaults.get("guidance_stop", 1.0),
                   # guided steps run cond + uncond + no-cross-modal rows; steps after the guidance stop cond alone
                   "transformer_batch_per_step": {"guided": batch * 3, "after_guidance_stop": batch}},
    }


# ---------------------------------------------------------------------------------------------- 3. Engram offload
def load_text_encoder_bench():
    """bench/text_encoder.py as a module (bench/ is not a package), for its interleaved `throughput`."""
    spec = importlib.util.spec_from_file_location("bench_text_encoder", ROOT / "bench" / "text_encoder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def bench_engram(pipe, clock: Clock, texts: list[str], rounds: int) -> dict:
    """Prompts/s with the Engram table in host memory / on the device (same model, same prompts)."""
    from seedance.models.engram import HostEngramTable

    throughput = load_text_encoder_bench().throughput
    model, tokenizer = pipe.text_encoder, pipe.tokenizer
    host = HostEngramTable.from_model(model, device=clock.device)

    def on_device() -> int:
        model.encode(tokenizer, texts, batch_size=32)
        clock.sync()
        return len(texts)

    def host_table() -> int:
        model.use_host_table(host)
        try:
            return on_device()
        finally:
            model.use_host_table(None)

    speeds, relative = throughput({"on_device": on_device, "host": host_table}, rounds)
    return {"engram_host_offload_ratio": relative["host"],
            "engram": {"prompts": len(texts), "batch_size": 32, "rounds": rounds, "precision": "fp32",
                       "prompts_per_s_best": {k: round(v, 1) for k, v in speeds.items()},
                       "table_megabytes_fp32": round(model.engram.table.weight.numel() * 4 / 1e6, 2)}}


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (the benchmark) or cpu (a smoke test, with --quick)")
    p.add_argument("--quick", action="store_true", help="toy widths at the tiny preset, 2 steps, small batches")
    p.add_argument("--preset", default="base", help="clip preset of the full-size models (ignored with --quick)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch")
    p.add_argument("--gen-batches", default="1,32", help="generation batch sizes, comma-separated")
    p.add_argument("--steps", type=int, default=25, help="default sampling steps (the pipeline's default: 25)")
    p.add_argument("--budget-s", type=float, default=420.0, help="deadline of the whole run, seconds")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.steps < 1 or args.budget_s <= 0:
        raise SeedanceError("--batch-size and --steps must be >= 1 and --budget-s > 0")
    try:
        args.gen_batches = [int(b) for b in args.gen_batches.split(",") if b.strip()]
    except ValueError as exc:
        raise SeedanceError(f"--gen-batches must be whole numbers separated by commas, got {args.gen_batches!r}") \
            from exc
    if not args.gen_batches or min(args.gen_batches) < 1:
        raise SeedanceError("--gen-batches needs at least one batch size >= 1")
    if args.quick:
        args.batch_size, args.steps = min(args.batch_size, 2), 2
        args.gen_batches = [b for b in args.gen_batches if b <= 2] or [1]
        args.gen_batches = sorted(set(args.gen_batches) | {1, 2})
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeedanceError("no CUDA GPU found; run bench/gpu.sh on a GPU machine, or pass --device cpu --quick")
    clock = Clock(device, args.budget_s)
    result: dict = {"gpu": device_name(device), "torch": torch.__version__, "device": str(device),
                    "quick": args.quick, "preset": "tiny (toy widths)" if args.quick else args.preset}
    errors: dict[str, str] = {}
    peaks: dict[str, float] = {}

    def finish(signum=None, _frame=None) -> None:
        if signum is not None:
            errors["run"] = f"stopped by signal {signum} before the end; figures so far"
        result["peak_memory_gb"] = max(peaks.values()) if peaks else None  # None: not a CUDA run
        if peaks:
            result["peak_memory_gb_by_part"] = peaks
        if errors:
            result["errors"] = errors
        result["seconds_total"] = round(args.budget_s - clock.left(), 1)
        print(json.dumps(result), flush=True)
        if signum is not None:
            os._exit(3)

    signal.signal(signal.SIGTERM, finish)  # bench/gpu.sh's hard timeout still gets the figures so far

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers outside autocast
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        import seedance.models.transformer_av as tav

        tav.ATTENTION_BACKEND = "sdpa"  # flash / memory-efficient kernels; "matmul" is the CPU choice
    result["attention_backend"] = __import__("seedance.models.transformer_av", fromlist=["x"]).ATTENTION_BACKEND

    from app.random_model import random_pipeline

    log(f"[gpu_bench] {result['gpu']}, torch {result['torch']}: building the {result['preset']} pipeline")
    pipe = random_pipeline(seed=0, steps=args.steps, preset=None if args.quick else args.preset).to(device)
    pipe.set_progress_bar_config(disable=True)
    texts = prompts(128)

    def part(name: str, fn) -> None:
        if clock.left() < 5:
            errors[name] = "skipped: the run's time budget was spent"
            return
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        try:
            result.update(fn())
        except Exception as exc:  # noqa: BLE001 - one part's failure (e.g. out of memory) must not lose the others
            errors[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        finally:
            if device.type == "cuda":
                peaks[name] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        log(f"[gpu_bench] {name}: {time.perf_counter() - t0:.1f} s" + (f" ({errors[name]})" if name in errors else ""))

    part("train", lambda: bench_train(pipe, clock, args.batch_size, PART_BUDGET_S["train"],
                                      warmup=1 if args.quick else 5, max_steps=2 if args.quick else 200))
    gen_steps, gen_detail = {}, {}
    for b in args.gen_batches:
        # the larger batch gets most of the generation budget; batch 1 needs far less
        share = 0.25 if b == min(args.gen_batches) and len(args.gen_batches) > 1 else 0.75

        def gen(b=b, share=share) -> dict:
            out = bench_generate(pipe, clock, b, PART_BUDGET_S["gen"] * share, texts,
                                 max_repeats=1 if args.quick else 3)
            gen_steps[str(b)], gen_detail[str(b)] = out["detail"]["steps"], out.pop("detail")
            return out

        part(f"gen_batch{b}", gen)
    result["gen_steps"] = gen_steps
    result["gen"] = gen_detail
    part("engram", lambda: bench_engram(pipe, clock, texts[:64] if args.quick else texts, 3 if args.quick else 20))
    finish()
    return result


if __name__ == "__main__":
    try:
        main()
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

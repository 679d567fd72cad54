"""Where one generation spends its time, and how close the transformer gets to the matmul peak, as JSON (issue 8).

    python bench/profile_generation.py                  # batch 1, the model's steps and guidance
    python bench/profile_generation.py --batch 16       # the MFU goal (>= 30% of the bf16 peak at batch 16)
    python bench/profile_generation.py --bf16           # the same under bf16 autocast
    python bench/profile_generation.py --quick          # 4 steps

After one unprofiled warm-up call at the same shapes (its first clip saved too), one generation of `--batch`
clips is timed by parts: text encoding (pipe.encode_prompt), each transformer part via forward hooks on every
block's modules (self-attention: video.self_attn + audio.self_attn; text cross-attention: *.text_attn; cross-modal
attention: audio_to_video + video_to_audio; feed-forward: *.ff; other_transformer: the rest of the
transformer's forward, i.e. patch embedding, adaLN conditioning, RoPE tables, norms, output projection),
VAE decode, audio VAE decode, vocoder, muxing (the CLI's save_output per clip) and `other` (scheduler steps,
guidance arithmetic, noise). parts_s sums to total_s.

FLOPs: torch.utils.flop_counter over one transformer forward with the exact inputs of a sampling step
(all guidance passes in one batch), times the number of forwards with that many rows (after the guidance stop a
step runs the conditional row alone, so each row count is counted on its own); the CPU flash-attention kernel, which the
counter does not know, is counted as 4*B*H*Nq*Nk*d, and the packed bf16 linear layers (oneDNN's
_linear_pointwise) as 2*rows*in*out. transformer_tflops = FLOPs / transformer seconds;
matmul peaks are a 2048x2048 matmul in bf16 and fp32 on the same device in the same run (bf16 at 512x512
where it is emulated: a 2048 one took about a minute there);
mfu = transformer_tflops / the faster of the two peaks (the bf16 one wherever bf16 is native; on a CPU without
AMX or AVX-512 bf16, bf16 is emulated, its "peak" is hundreds of times below fp32's, and a share of it means
nothing), with mfu_bf16_peak and mfu_fp32_peak beside it. `bottleneck` names the part with the largest time
share and the rate it runs at. Other processes on the machine lower every rate: the 1-minute load average is reported.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import run_on_weights  # noqa: E402  (bench/ is on sys.path when run as a script)

from seedance.errors import SeedanceError  # noqa: E402
from seedance.hardware import native_bf16, resolve_precision  # noqa: E402

DEFAULT_WEIGHTS = ROOT / "weights" / "seedance-tiny"
# transformer part -> attribute paths inside each DualBranchBlock (seedance/models/transformer_av.py)
BLOCK_PARTS = {
    "self_attention": ("video.self_attn", "audio.self_attn"),
    "text_cross_attention": ("video.text_attn", "audio.text_attn"),
    "cross_modal_attention": ("audio_to_video", "video_to_audio"),
    "feed_forward": ("video.ff", "audio.ff"),
}
PART_ORDER = ("text_encoding", "self_attention", "text_cross_attention", "cross_modal_attention", "feed_forward",
              "other_transformer", "vae_decode", "audio_vae_decode", "vocoder", "muxing", "other")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------ timing
class PartTimer:
    """Seconds per named part, from forward hooks on modules and from wrapped methods."""

    def __init__(self, device: str):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.handles = []
        self.enabled = False

    def hook_module(self, module, part: str) -> None:
        def before(mod, args):
            if self.enabled:
                sync(self.device)
                mod._bench_t0 = time.perf_counter()

        def after(mod, args, output):
            if self.enabled:
                sync(self.device)
                self.seconds[part] += time.perf_counter() - mod._bench_t0
                self.calls[part] += 1

        self.handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]

    def wrap_method(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            if not self.enabled:
                return original(*args, **kwargs)
            sync(self.device)
            start = time.perf_counter()
            out = original(*args, **kwargs)
            sync(self.device)
            self.seconds[part] += time.perf_counter() - start
            self.calls[part] += 1
            return out

        setattr(owner, name, timed)  # an instance attribute shadows the method for this object only


def block_modules(transformer) -> dict[str, list]:
    """Every block's module for each transformer part (blocks without cross-modal attention have none)."""
    out = {part: [] for part in BLOCK_PARTS}
    for block in transformer.blocks:
        for part, paths in BLOCK_PARTS.items():
            for path in paths:
                module = block
                for attr in path.split("."):
                    module = getattr(module, attr, None)
                if module is not None:
                    out[part].append(module)
    return out


# ------------------------------------------------------------------------------------------ FLOPs
def count_flops(transformer, kwargs: dict) -> tuple[int, dict[str, int]]:
    """FLOPs of one transformer forward with `kwargs`: total and per transformer part."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    custom = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        def cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kw) -> int:
            b, h, n_q, d = query_shape
            n_k = key_shape[-2]
            return 4 * b * h * n_q * n_k * d  # QK^T and PV, 2 FLOPs per multiply-add

        custom[aten._scaled_dot_product_flash_attention_for_cpu] = cpu_sdpa_flop
    mkldnn = getattr(torch.ops, "mkldnn", None)
    if mkldnn is not None and hasattr(mkldnn, "_linear_pointwise"):  # the transformer's packed bf16 linear layers
        def packed_linear_flop(x_shape, w_shape, *args, out_shape=None, **kw) -> int:
            rows = math.prod(x_shape[:-1])
            return 2 * rows * x_shape[-1] * out_shape[-1]

        custom[mkldnn._linear_pointwise] = packed_linear_flop
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=custom) as counter:
        transformer(**kwargs)
    total = int(counter.get_total_flops())
    # module names as the counter's tracker writes them: "<Root>.blocks.<i>.video.self_attn"
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    per_part = {}
    for part, paths in BLOCK_PARTS.items():
        per_part[part] = int(sum(v for name, v in counts.items()
                                 if ".blocks." in name and any(name.endswith("." + p) for p in paths)))
    per_part["other_transformer"] = total - sum(per_part.values())
    return total, per_part


def matmul_peak_tflops(dtype, device: str, n: int = 2048, repeats: int = 5) -> float:
    """Achieved TFLOP/s of an n x n matmul (median of `repeats` after two warm-ups)."""
    import torch

    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(dtype)
    b = torch.randn(n, n, generator=g, device=device).to(dtype)
    for _ in range(2):
        torch.matmul(a, b)
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e12


# ------------------------------------------------------------------------------------------ main
def run(args: argparse.Namespace) -> dict:
    import contextlib

    import torch

    from seedance.data.syncworld import SCENES, sample_caption
    from seedance.generate_cli import generator_for, load_pipeline, save_output

    if args.batch < 1:
        raise SeedanceError(f"--batch must be at least 1, got {args.batch}")
    if args.steps is not None and args.steps <= 0:
        raise SeedanceError(f"--steps must be a positive whole number, got {args.steps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.weights)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    steps = args.steps or (4 if args.quick else pipe.sampling_defaults["num_inference_steps"])
    prompts = [sample_caption(SCENES[i % len(SCENES)], 70_000 + i // len(SCENES), "test")[0]
               for i in range(args.batch)]

    def autocast():
        if not args.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)

    def generate(n_steps: int):
        with autocast():
            return pipe(prompts, num_inference_steps=n_steps, generator=generator_for(args.seed), output_type="np")

    # what the transformer runs in when no --bf16 is given: the model's default, "auto" resolved for this device
    transformer_precision = resolve_precision(pipe.sampling_defaults.get("transformer_precision", "auto"), device)
    log(f"warm-up (batch {args.batch}, 1 step, saved) ...")
    warm = generate(1)
    with tempfile.TemporaryDirectory(prefix="seedance-profile-") as tmp:
        # the first save imports the media module (scipy.signal, PyAV) and opens the encoders: without this the
        # timed muxing below carried about 0.35 s of one-time start-up on a 2-core AVX2 CPU
        save_output(warm, Path(tmp) / "warm_up.mp4", pipe.preset.fps, 0)

    timer = PartTimer(device)
    for part, modules in block_modules(pipe.transformer).items():
        for module in modules:
            timer.hook_module(module, part)
    timer.hook_module(pipe.transformer, "transformer_total")
    timer.hook_module(pipe.vocoder, "vocoder")
    timer.wrap_method(pipe, "encode_prompt", "text_encoding")
    timer.wrap_method(pipe.vae, "decode_latents", "vae_decode")
    timer.wrap_method(pipe.audio_vae, "decode_latents", "audio_vae_decode")
    captured: dict[int, dict] = {}  # rows -> the inputs of the first forward with that many rows
    rows_per_forward: list[int] = []

    def capture(module, a, kw):
        rows = int(kw["hidden_states"].shape[0])
        rows_per_forward.append(rows)
        captured.setdefault(rows, kw)

    handle = pipe.transformer.register_forward_pre_hook(capture, with_kwargs=True)

    log(f"profiled generation: batch {args.batch}, {steps} steps ...")
    timer.enabled = True
    sync(device)
    start = time.perf_counter()
    out = generate(steps)
    sync(device)
    generate_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="seedance-profile-") as tmp:
        mux_start = time.perf_counter()
        for i in range(args.batch):
            save_output(out, Path(tmp) / f"clip_{i}.mp4", pipe.preset.fps, i)
        timer.seconds["muxing"] = time.perf_counter() - mux_start
    timer.enabled = False
    handle.remove()
    total_s = generate_s + timer.seconds["muxing"]

    sec = timer.seconds
    transformer_s = sec["transformer_total"]
    n_forwards = timer.calls["transformer_total"]
    parts = {p: sec.get(p, 0.0) for p in PART_ORDER}
    parts["other_transformer"] = transformer_s - sum(sec.get(p, 0.0) for p in BLOCK_PARTS)
    parts["other"] = generate_s - sum(sec.get(p, 0.0) for p in ("text_encoding", "transformer_total", "vae_decode",
                                                                 "audio_vae_decode", "vocoder"))

    log("counting FLOPs of one transformer forward per row count ...")
    flops_total, flops_parts_total = 0, {}
    # replayed at the precision the forwards ran in: the captured text cache holds keys and values of that dtype
    bf16_forwards = args.bf16 or transformer_precision == "bf16"
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16_forwards):
        for rows, kwargs in captured.items():
            flops, flops_parts = count_flops(pipe.transformer, kwargs)
            n = rows_per_forward.count(rows)
            flops_total += flops * n
            for p, v in flops_parts.items():
                flops_parts_total[p] = flops_parts_total.get(p, 0) + v * n
    transformer_tflops = flops_total / transformer_s / 1e12
    log("matmul peaks ...")
    # emulated bf16 (no AMX / AVX-512 bf16) runs a 2048 matmul in about a minute: a 512 one tells the same story
    bf16_size = 2048 if native_bf16(device) else 512
    peak_bf16 = matmul_peak_tflops(torch.bfloat16, device, n=bf16_size, repeats=3 if args.quick else 10)
    peak_fp32 = matmul_peak_tflops(torch.float32, device, repeats=3 if args.quick else 10)

    part_tflops = {p: (v / parts[p] / 1e12 if parts[p] > 0 else None) for p, v in flops_parts_total.items()}
    biggest = max(PART_ORDER, key=lambda p: parts[p])
    share = parts[biggest] / total_s
    peak, peak_name = (peak_bf16, "bf16") if peak_bf16 >= peak_fp32 else (peak_fp32, "fp32")
    if biggest in part_tflops and part_tflops[biggest] is not None:
        rate = part_tflops[biggest]
        bottleneck = (f"{biggest} ({share:.0%} of the time) at {rate:.3g} TFLOP/s, "
                      f"{rate / peak:.1%} of the {peak_name} matmul peak")
    else:
        bottleneck = f"{biggest} ({share:.0%} of the time; not transformer matmul work)"
    result = {
        "model": str(args.weights),
        "device": device if not device.startswith("cuda") else f"cuda ({torch.cuda.get_device_name()})",
        "batch": args.batch,
        "steps": steps,
        "precision": "bf16 autocast" if args.bf16 else transformer_precision,
        "guidance": {k: pipe.sampling_defaults[k] for k in ("guidance_scale", "audio_guidance_scale",
                                                            "sync_guidance_scale")},
        "total_s": total_s,
        "parts_s": parts,
        "parts_share": {p: v / total_s for p, v in parts.items()},
        "transformer_s": transformer_s,
        "transformer_forwards": n_forwards,
        "transformer_batch": max(rows_per_forward),
        "transformer_rows_per_forward": {str(r): rows_per_forward.count(r) for r in sorted(captured)},
        "transformer_gflop_per_forward": flops_total / n_forwards / 1e9,
        "transformer_gflop_by_part": {p: v / n_forwards / 1e9 for p, v in flops_parts_total.items()},
        "transformer_tflops": transformer_tflops,
        "transformer_tflops_by_part": part_tflops,
        "matmul_peak_tflops_bf16": peak_bf16,
        "matmul_peak_tflops_fp32": peak_fp32,
        "matmul_peak_size_bf16": bf16_size,
        "mfu": transformer_tflops / peak,
        "mfu_peak": peak_name,
        "native_bf16": native_bf16(device),
        "mfu_bf16_peak": transformer_tflops / peak_bf16,
        "mfu_fp32_peak": transformer_tflops / peak_fp32,
        "bottleneck": bottleneck,
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": os.getloadavg()[0],
    }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="pipeline folder (model_index.json)")
    parser.add_argument("--batch", type=int, default=1, help="clips per pipeline call (16 for the MFU goal)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's; --quick 4)")
    parser.add_argument("--bf16", action="store_true", help="run the generation under bf16 autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="4 steps, fewer matmul repeats")
    args = parser.parse_args(argv)
    return run_on_weights(args, run)


if __name__ == "__main__":
    sys.exit(main())

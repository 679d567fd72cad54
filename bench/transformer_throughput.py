"""Training and sampling throughput of the SeedanceTransformer on this machine, as JSON.

    .venv/bin/python bench/transformer_throughput.py [--quick] [--threads 1]

Measures one optimiser step (forward + backward + AdamW) at the shipped size for each attention kernel
(explicit matmul softmax vs torch's scaled_dot_product_attention) and precision (fp32 vs bf16 autocast), and
one sampling forward pass (batch 3: conditional, unconditional and no-coupling passes). Median of repeats
after warm-up; other processes on the machine make these numbers noisy, so the load average is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import seedance.models.transformer_av as tav  # noqa: E402

SHIPPED = dict(in_channels=16, audio_in_channels=16, patch_size=2, num_layers=6, video_dim=192, video_heads=4,
               audio_dim=128, audio_heads=4, cross_modal_dim=128, cross_modal_heads=4, text_dim=256,
               pooled_text_dim=256, ff_mult=3.0)


def batch(n: int, text_len: int = 24):
    g = torch.Generator().manual_seed(0)
    return dict(hidden_states=torch.randn(n, 16, 8, 8, 8, generator=g),
                audio_hidden_states=torch.randn(n, 16, 40, generator=g),
                encoder_hidden_states=torch.randn(n, text_len, 256, generator=g),
                pooled_projections=torch.randn(n, 256, generator=g),
                timestep=torch.rand(n, generator=g) * 1000,
                encoder_attention_mask=torch.ones(n, text_len, dtype=torch.long))


def time_it(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else 5
    bs = 8 if args.quick else args.batch_size
    torch.manual_seed(0)
    model = tav.SeedanceTransformer(**{**SHIPPED, "patch_size": args.patch_size})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = batch(bs)
    results = {}
    for backend in ("matmul", "sdpa"):
        tav.ATTENTION_BACKEND = backend
        for precision in ("fp32", "bf16"):

            def step(low: bool = precision == "bf16"):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                    out = model(**x)
                    loss = out.sample.square().mean() + out.audio_sample.square().mean()
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            results[f"train_step_s_{backend}_{precision}"] = round(time_it(step, repeats), 4)
    tav.ATTENTION_BACKEND = "matmul"
    xs = batch(3)
    for precision in ("fp32", "bf16"):
        def forward(low: bool = precision == "bf16"):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                model(**xs)

        results[f"sample_forward_s_{precision}"] = round(time_it(forward, repeats * 4), 4)
    best = min((k for k in results if k.startswith("train_step")), key=results.get)
    print(json.dumps({
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "video_tokens": 8 * (8 // args.patch_size) ** 2, "audio_tokens": 40, "batch_size": bs,
        "threads": args.threads, "load_average": round(os.getloadavg()[0], 2), **results,
        "fastest_train_step": best,
    }, indent=2))


if __name__ == "__main__":
    main()

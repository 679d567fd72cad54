"""Training and sampling throughput of the SeedanceTransformer on this machine, as JSON.

    .venv/bin/python bench/transformer_throughput.py [--quick] [--threads 1]
    .venv/bin/python bench/transformer_throughput.py --threads 2 --precisions fp32 --compile   # + compiled blocks

Measures one optimiser step (forward + backward + AdamW) at the shipped size (weights/seedance-tiny/transformer/
config.json when it exists, else the recipe's model for the shipped VAEs and text encoder) for each attention kernel
(explicit matmul softmax vs torch's scaled_dot_product_attention) and precision (fp32 vs bf16 autocast), and
one sampling forward pass (batch 3: conditional, unconditional and no-coupling passes). Median of repeats
after warm-up; other processes on the machine make these numbers noisy, so the load average is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import time_it  # noqa: E402  (bench/ is on sys.path when run as a script)

import seedance.models.transformer_av as tav  # noqa: E402
from seedance.config import ClipPreset  # noqa: E402

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "seedance-tiny"
TEXT_LEN = 40  # the transformer recipe's --text-len


def read_config(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def shipped_config(weights: Path = WEIGHTS) -> tuple[dict, str]:
    """The shipped transformer's config (weights/seedance-tiny/transformer/config.json) when it exists, else the
    recipe's model for the shipped VAEs and text encoder (app/random_model.py full_size_transformer_kwargs)."""
    config = read_config(weights / "transformer" / "config.json")
    if config is not None:
        return {k: v for k, v in config.items() if not k.startswith("_")}, str(weights / "transformer" / "config.json")
    from app.random_model import full_size_transformer_kwargs

    config = full_size_transformer_kwargs("tiny")
    text = read_config(weights / "text_encoder" / "config.json")
    if text is not None:  # the text width the shipped encoder really has
        config["text_dim"] = config["pooled_text_dim"] = text["hidden_size"]
    return config, "recipe defaults for the shipped VAEs (no transformer/config.json yet)"


def latent_shapes(config: dict, weights: Path = WEIGHTS) -> tuple[tuple, tuple]:
    """Video [Cv,Tv,h,w] and audio [Ca,Ta] latents of one default-length clip at the config's preset, with the
    shipped VAEs' compressions (video 4x time / 4x space, audio 5x time over mel frames when no config says else)."""
    preset = ClipPreset.from_dict(config.get("preset") or {})
    vae = read_config(weights / "vae" / "config.json") or {}
    avae = read_config(weights / "audio_vae" / "config.json") or {}
    tc, sc, tca = vae.get("temporal_compression", 4), vae.get("spatial_compression", 4), \
        avae.get("temporal_compression", 5)
    t_v = -(-preset.num_frames // tc)
    t_a = -(-(preset.num_samples // preset.hop_length) // tca)
    return (config["in_channels"], t_v, preset.height // sc, preset.width // sc), (config["audio_in_channels"], t_a)


def batch(n: int, config: dict, shapes: tuple[tuple, tuple]):
    g = torch.Generator().manual_seed(0)
    video, audio = shapes
    return dict(hidden_states=torch.randn(n, *video, generator=g),
                audio_hidden_states=torch.randn(n, *audio, generator=g),
                encoder_hidden_states=torch.randn(n, TEXT_LEN, config["text_dim"], generator=g),
                pooled_projections=torch.randn(n, config["pooled_text_dim"], generator=g),
                timestep=torch.rand(n, generator=g) * 1000,
                encoder_attention_mask=torch.ones(n, TEXT_LEN, dtype=torch.long))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=0, help="override the config's spatial patch (0: keep it)")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated, of fp32 and bf16")
    p.add_argument("--compile", action="store_true",
                   help="then compile the blocks (regional torch.compile, inductor) and time the training step again "
                        "at the precision auto picks here (compile_train_s: the first compiled step)")
    args = p.parse_args()
    precisions = [x for x in args.precisions.split(",") if x]
    if not precisions or set(precisions) - {"fp32", "bf16"}:
        p.error(f"--precisions takes fp32 and/or bf16, got {args.precisions!r}")
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else 5
    bs = 8 if args.quick else args.batch_size
    torch.manual_seed(0)
    config, source = shipped_config()
    if args.patch_size:
        config["patch_size"] = args.patch_size
    shapes = latent_shapes(config)
    model = tav.SeedanceTransformer.from_config(config).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = batch(bs, config, shapes)
    results = {}

    def train_step(precision: str):
        def step():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                out = model(**x)
                loss = out.sample.square().mean() + out.audio_sample.square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    for backend in ("matmul", "sdpa"):
        tav.ATTENTION_BACKEND = backend
        for precision in precisions:
            results[f"train_step_s_{backend}_{precision}"] = round(time_it(train_step(precision), repeats), 4)
    tav.ATTENTION_BACKEND = "auto"  # the default: sdpa for sampling forwards (no autograd)
    xs = batch(3, config, shapes)
    for precision in precisions:
        def forward(low: bool = precision == "bf16"):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                model(**xs)

        results[f"sample_forward_s_{precision}"] = round(time_it(forward, repeats * 4), 4)
    if args.compile:
        from seedance.hardware import resolve_precision

        precision = resolve_precision("auto", "cpu")
        model.compile_repeated_blocks()  # in place: the eager figures above were taken before
        compiled_step = train_step(precision)
        t0 = time.perf_counter()
        compiled_step()
        results["compile_train_s"] = round(time.perf_counter() - t0, 1)
        results[f"train_step_s_matmul_{precision}_compiled"] = round(time_it(compiled_step, repeats), 4)
    best = min((k for k in results if k.startswith("train_step")), key=results.get)
    print(json.dumps({
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "config": source, "video_latents": list(shapes[0]), "audio_latents": list(shapes[1]),
        "patch_size": config["patch_size"], "text_dim": config["text_dim"],
        "video_tokens": shapes[0][1] * (shapes[0][2] // config["patch_size"]) * (shapes[0][3] // config["patch_size"]),
        "audio_tokens": shapes[1][1], "batch_size": bs,
        "threads": args.threads, "load_average": round(os.getloadavg()[0], 2), **results,
        "fastest_train_step": best,
    }, indent=2))


if __name__ == "__main__":
    main()

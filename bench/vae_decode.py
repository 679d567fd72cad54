"""Video VAE decode and encode time on this CPU, with and without the direct oneDNN 3-D convolution, as JSON.

    .venv/bin/python bench/vae_decode.py [--quick] [--threads 2] [--batch 1]

For one 2 s clip at the tiny preset PyTorch's own backend choice sends the small 3-D convs of the
decoder to slow_conv3d (see seedance/models/video_vae.py, use_onednn_conv3d). This times the shipped
VAE's decode_latents (with the audio cue, as the pipeline calls it) and encode, median of repeats after a
warm-up, once with the direct oneDNN call (`onednn`) and once with nn.Conv3d's own choice (`pytorch`),
and reports the largest difference between their decoded frames.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import time_it  # noqa: E402  (bench/ is on sys.path when run as a script)

import seedance.models.video_vae as video_vae  # noqa: E402
from seedance.config import get_preset  # noqa: E402
from seedance.hardware import native_bf16  # noqa: E402

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "seedance-tiny" / "vae"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(WEIGHTS), help="a VideoVAE folder (save_pretrained layout)")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per setting (default 9, quick 5)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.batch < 1 or args.threads < 1:
        print("error: --batch and --threads must be >= 1", file=sys.stderr)
        return 1
    if not (Path(args.weights) / "config.json").is_file():
        print(f"error: no VideoVAE at {args.weights} (config.json missing): pass --weights", file=sys.stderr)
        return 1
    repeats = args.repeats or (5 if args.quick else 9)
    torch.set_num_threads(args.threads)
    vae = video_vae.VideoVAE.from_pretrained(args.weights).eval()
    preset = get_preset(args.preset)
    frames = preset.num_frames
    tc, sc = vae.config.temporal_compression, vae.config.spatial_compression
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(args.batch, vae.config.latent_channels, -(-frames // tc), preset.height // sc,
                          preset.width // sc, generator=gen)
    mel = torch.randn(args.batch, vae.config.audio_cue_mels, round(preset.duration_s * preset.mel_rate), generator=gen)
    video = torch.rand(args.batch, 3, frames, preset.height, preset.width, generator=gen) * 2 - 1

    def decode():
        with torch.inference_mode():
            return vae.decode_latents(latents, num_frames=frames, audio_mel=mel)

    def encode():
        with torch.inference_mode():
            return vae.encode(video).latent_dist.mean

    result: dict = {"batch": args.batch, "threads": args.threads, "frames": frames,
                    "latent_shape": list(latents.shape), "native_bf16": native_bf16("cpu"),
                    "torch": torch.__version__, "repeats": repeats}
    decoded = {}
    for name, on in (("onednn", True), ("pytorch", False)):
        video_vae.ONEDNN_CONV3D = on
        result[f"decode_s_{name}"] = time_it(decode, repeats)
        result[f"encode_s_{name}"] = time_it(encode, repeats)
        decoded[name] = decode()
    video_vae.ONEDNN_CONV3D = True
    result["decode_speedup"] = result["decode_s_pytorch"] / result["decode_s_onednn"]
    result["encode_speedup"] = result["encode_s_pytorch"] / result["encode_s_onednn"]
    result["decode_max_abs_diff"] = float((decoded["onednn"] - decoded["pytorch"]).abs().max())
    result["load_average_1m"] = os.getloadavg()[0]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Load on the web app: N generate requests at once through gradio_client, every clip checked.

    python bench/app_load.py                  # 8 concurrent requests, the shipped model
    python bench/app_load.py --requests 8 --steps 4 --concurrency 1
    python bench/app_load.py --quick          # 4 steps (bench/run_all.py --quick)

Starts the app in this process on a free 127.0.0.1 port (the model loaded once),
sends one warm-up request, then submits all requests at the same moment. Each
latency runs from submission to result, queueing included; each returned mp4
must hold an H.264 video stream and an AAC audio stream of the requested length.
Without trained weights (weights/seedance-tiny/model_index.json) it measures a
randomly initialised toy pipeline of the real classes and says so ("model").

Prints JSON: requests, ok, p50_s, p95_s, plus wall_s, clips_per_s, warmup_s and the settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_WEIGHTS = REPO / "weights" / "seedance-tiny"


def valid_clip(path: str, duration: float) -> tuple[bool, str]:
    """H.264 video of `duration` s and AAC audio within one AAC frame of it."""
    import av

    try:
        with av.open(path) as container:
            kinds = {s.type: s for s in container.streams}
            if "video" not in kinds or "audio" not in kinds:
                return False, f"streams {sorted(kinds)}"
            v, a = kinds["video"], kinds["audio"]
            if v.codec_context.name != "h264" or a.codec_context.name != "aac":
                return False, f"codecs {v.codec_context.name}/{a.codec_context.name}"
            frames = sum(1 for _ in container.decode(v))
            video_s = frames / float(v.average_rate)
        with av.open(path) as container:
            a = container.streams.audio[0]
            audio_s = float(a.duration * a.time_base)
    except Exception as exc:  # a broken file is a failed request, not a crashed benchmark
        return False, f"unreadable: {exc}"
    if abs(video_s - duration) > 1e-6 or abs(audio_s - duration) > 0.07:
        return False, f"durations video {video_s:.3f} s, audio {audio_s:.3f} s, wanted {duration} s"
    return True, ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=1, help="the app's generation concurrency limit")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="4 sampling steps (still 8 requests, all checked)")
    args = parser.parse_args(argv)
    if args.quick and args.steps is None:
        args.steps = 4

    import torch
    from gradio_client import Client

    from app.service import SeedanceService
    from app.ui import start_server

    if args.threads:
        torch.set_num_threads(args.threads)
    weights = Path(args.weights)
    model = str(weights)
    tmp = None
    if not (weights / "model_index.json").is_file():
        from app.random_model import build_random_pipeline

        tmp = tempfile.TemporaryDirectory(prefix="seedance-app-load-")
        weights = build_random_pipeline(Path(tmp.name) / "seedance-tiny", steps=args.steps or 2)
        model = "random-init toy pipeline (no trained weights yet)"

    t0 = time.perf_counter()
    service = SeedanceService(weights).load()
    demo, url = start_server(service, concurrency=args.concurrency)
    startup_s = time.perf_counter() - t0
    client = Client(url, verbose=False)
    steps = args.steps or service.pipeline_defaults().get("num_inference_steps")

    finished: dict[int, float] = {}

    def submit(seed: int):
        def record(*outputs):
            finished[seed] = time.perf_counter()

        return client.submit("a red ball bounces on a wooden floor", "", args.duration, steps, seed, False,
                             *(service.pipeline_defaults().get(k, 1.0) for k in
                               ("guidance_scale", "audio_guidance_scale", "sync_guidance_scale")),
                             api_name="/generate", result_callbacks=[record])

    t0 = time.perf_counter()
    warm = submit(10_000).result()
    warmup_s = time.perf_counter() - t0
    warm_ok, why = valid_clip(warm[0]["video"] if isinstance(warm[0], dict) else warm[0], args.duration)
    if not warm_ok:
        print(json.dumps({"error": f"warm-up clip invalid: {why}"}))
        return 1

    start = time.perf_counter()
    jobs = [(seed, submit(seed)) for seed in range(args.requests)]
    latencies, failures = [], []
    for seed, job in jobs:
        try:
            video = job.result()[0]
            ok, why = valid_clip(video["video"] if isinstance(video, dict) else video, args.duration)
        except Exception as exc:
            ok, why = False, str(exc).splitlines()[0]
        # each job's own finish time (its result callback), not when this loop got to it
        latencies.append(finished.get(seed, time.perf_counter()) - start)
        if not ok:
            failures.append({"seed": seed, "why": why})
    wall = time.perf_counter() - start
    demo.close()
    if tmp is not None:
        tmp.cleanup()

    lat = np.array(latencies)
    result = {
        "requests": args.requests,
        "ok": args.requests - len(failures),
        "p50_s": round(float(np.percentile(lat, 50)), 3),
        "p95_s": round(float(np.percentile(lat, 95)), 3),
        "wall_s": round(wall, 3),
        "clips_per_s": round(args.requests / wall, 3),
        "warmup_s": round(warmup_s, 3),
        "startup_s": round(startup_s, 3),
        "concurrency_limit": args.concurrency,
        "steps": steps,
        "clip_seconds": args.duration,
        "model": model,
        "torch_threads": torch.get_num_threads(),
        "failures": failures,
    }
    print(json.dumps(result))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())

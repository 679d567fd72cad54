"""SyncWorld rendering speed on one core, per scene family.

    python bench/data_throughput.py [--preset tiny] [--n 40]

Prints JSON: {"clips_per_s": {"face": ..., "bounce": ..., "keys": ...}, ...}. The
first pass over seeds 0..n-1 is reported as `clips_per_s_cold`; `clips_per_s` is
the steady state, measured on new seeds n..2n-1 after it (the talking face caches
speech per phrase, as a long training run does).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def clips_per_s(scene: str, seeds: range, preset: str) -> float:
    from seedance.data.syncworld import make_sample

    start = time.perf_counter()
    for seed in seeds:
        make_sample(scene, seed, preset, "train")
    return len(seeds) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--n", type=int, default=40, help="clips per scene")
    parser.add_argument("--quick", action="store_true", help="10 clips per scene")
    args = parser.parse_args()
    n = 10 if args.quick else args.n

    import torch

    torch.set_num_threads(1)
    from seedance.data.syncworld import SCENES

    machine = platform.processor() or platform.machine()
    result: dict = {"preset": args.preset, "clips_per_scene": n, "threads": 1, "machine": machine}
    warm, cold = {}, {}
    for scene in SCENES:
        cold[scene] = clips_per_s(scene, range(n), args.preset)
        warm[scene] = clips_per_s(scene, range(n, 2 * n), args.preset)
    result["clips_per_s"] = {s: round(warm[s], 2) for s in SCENES}
    result["clips_per_s_cold"] = {s: round(cold[s], 2) for s in SCENES}
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Run every benchmark in bench/, save one JSON file, and rewrite the README's results table.

    python bench/run_all.py [--quick] [--only data_throughput,autoencoders] [--no-readme]

Each bench script prints one JSON object on its last stdout line. The table lists
every scalar figure (nested objects flattened with dots) with the exact command
that produced it and the machine it ran on. A script that fails is reported as
failed in the JSON and left out of the table; nothing is invented.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SKIP = {"run_all.py", "__init__.py", "gpu_bench.py"}  # gpu_bench: GPU only, run through bench/gpu.sh
# The README shows each issue's headline figures; bench/results.json keeps everything each script printed.
HEADLINE = {
    "data_throughput": ["clips_per_s"],
    "eval_validation": ["xcorr_offset_acc", "syncexpert_offset_acc", "in_sync_reads_zero.xcorr",
                        "in_sync_reads_zero.syncexpert", "lsec_matched_median", "lsec_mismatched_median",
                        "probe_accuracy", "chance"],
    "autoencoders": ["video_psnr_db", "video_ssim", "mel_l1", "stft_dist_vocoder", "stft_dist_griffinlim",
                     "vocoder_speedup_vs_griffinlim", "sync_lag0_fraction", "mouth_open_corr"],
    "text_encoder": ["cosine_mean", "recall_at_1", "spearman", "student_sents_per_s", "teacher_sents_per_s",
                     "params_total", "params_active", "engram_ablation_cosine_drop", "big_table_throughput_ratio",
                     "host_table_throughput_ratio", "moe_max_imbalance", "dead_experts"],
    "generation_quality": ["n_clips", "offset_within_1_frame", "event_f1", "chance", "real", "lsec_generated",
                           "lsec_real", "probe_accuracy.", "v2a", "a2v", "ablations"],
    "generation_speed": ["seconds_per_clip_median", "clip_seconds", "rtf", "peak_rss_mb", "steps", "startup_s"],
    "generation_speed_compiled": ["seconds_per_clip_median", "rtf", "sampler.compiled", "sampler.compile_s"],
    "profile_generation": ["parts_s", "transformer_tflops", "matmul_peak_tflops", "mfu", "bottleneck"],
    "app_load": ["requests", "ok", "p50_s", "p95_s"],
    "transformer_throughput": [""],
    "reliability": ["cases_tried", "cases_passed", "load.rss_growth"]
    + [f"{area}.{k}" for area in ("training_faults", "fuzz", "load", "safe_defaults", "determinism")
       for k in ("cases", "passed")],
}
MAX_ROWS_PER_BENCH = 40
# one script run again with other options, reported under its own name: name -> (script stem, options)
VARIANTS = {"generation_speed_compiled": ("generation_speed", ["--compile"])}


def headline(name: str, figures: dict[str, object]) -> dict[str, object]:
    """The figures of `name` whose flattened key starts with one of its headline keys (all, if none listed)."""
    keys = HEADLINE.get(name)
    if not keys:
        return figures
    picked = {k: v for k, v in figures.items() if any(k == h or k.startswith(h if h.endswith(".") else h + ".")
                                                      or (h == "") for h in keys)}
    return dict(list(picked.items())[:MAX_ROWS_PER_BENCH])


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from seedance.hardware import native_bf16

    # machines of one name differ in what matters most here: whether bf16 is native or emulated
    return f"{cpu}, {os.cpu_count()} cores, {'native' if native_bf16('cpu') else 'no native'} bf16"


def flatten(obj, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(obj, (int, float, str, bool)) or obj is None:
        out[prefix] = obj
    return out


def run_bench(script: Path, quick: bool, timeout: float, options: list[str] | None = None) -> dict:
    command = [sys.executable, str(script.relative_to(ROOT))] + (["--quick"] if quick else []) + (options or [])
    shown = "python " + " ".join(command[1:])
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"command": shown, "ok": False, "error": f"timed out after {timeout:.0f} s"}
    seconds = round(time.perf_counter() - start, 1)
    result = last_json_object(proc.stdout)
    if proc.returncode != 0 or result is None:
        tail = (proc.stderr.strip().splitlines() or ["no JSON object on stdout"])[-1]
        return {"command": shown, "ok": False, "error": tail, "seconds": seconds}
    return {"command": shown, "ok": True, "seconds": seconds, "result": result}


def last_json_object(stdout: str) -> dict | None:
    """The last JSON object printed, on one line or pretty-printed over several (from a line starting '{')."""
    lines = stdout.splitlines()
    for start in reversed([i for i, line in enumerate(lines) if line.startswith("{")]):
        for end in (start + 1, len(lines)):
            try:
                value = json.loads("\n".join(lines[start:end]))
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def table(results: dict[str, dict], machine: str) -> str:
    rows = ["| benchmark | figure | value | command | machine |", "|---|---|---|---|---|"]
    for name, run in results.items():
        if not run["ok"]:
            continue
        for key, value in headline(name, flatten(run["result"])).items():
            if isinstance(value, float):
                value = f"{value:.4g}"
            rows.append(f"| {name} | `{key}` | {value} | `{run['command']}` | {run.get('machine', machine)} |")
    return "\n".join(rows)


def update_readme(markdown: str) -> None:
    text = README.read_text()
    block = f"{START}\n{markdown}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    tmp = README.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, README)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", default="", help="comma-separated bench names (without .py)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    parser.add_argument("--out", default=str(BENCH / "results.json"))
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README table")
    args = parser.parse_args()

    wanted = {n for n in args.only.split(",") if n}
    scripts = sorted(
        p for p in BENCH.glob("*.py")
        if p.name not in SKIP and not p.name.startswith("_") and (not wanted or p.stem in wanted)
    )
    machine = machine_description()
    results: dict[str, dict] = {}
    out = Path(args.out)
    if out.is_file():  # keep earlier figures of benches not rerun now
        results = json.loads(out.read_text()).get("benchmarks", {})
    runs = [(p.stem, p, []) for p in scripts]
    runs += [(name, BENCH / f"{stem}.py", options) for name, (stem, options) in VARIANTS.items()
             if (not wanted and (BENCH / f"{stem}.py") in scripts) or name in wanted]
    for name, script, options in runs:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = {**run_bench(script, args.quick, args.timeout, options), "machine": machine}
        status = "ok" if results[name]["ok"] else f"FAILED: {results[name]['error']}"
        print(f"  {name}: {status}", file=sys.stderr, flush=True)
    report = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "benchmarks": results}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    if not args.no_readme:
        update_readme(table(results, machine))
    print(json.dumps({"ran": [name for name, _, _ in runs], "failed": [k for k, v in results.items() if not v["ok"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

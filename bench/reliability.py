"""Reliability and security checks of Seedance, as JSON (issue 9).

    python bench/reliability.py                 # everything: 5 recipes, 200 fuzz cases per target, 50 + 8 requests
    python bench/reliability.py --quick         # 2 recipes, 25 fuzz cases per target, 10 + 4 requests
    python bench/reliability.py --area fuzz     # one area (training_faults, fuzz, load, safe_defaults, determinism)

Areas (each an object in the JSON with its own `cases`, `passed` and per-case details):
- training_faults: per recipe, a real SIGKILL (seedance/faults.py) inside step 3 and while checkpoint 4 is being
  written, then a plain restart. Passing means: the process died, no visible checkpoint is half-written, the
  restart resumed from the last complete checkpoint and removed the partial one, and its final weights equal
  an uninterrupted run's with the same seed, tensor for tensor.
- fuzz (hypothesis): prompts of any unicode (control characters, huge lengths) and every pipeline parameter at
  and beyond its bounds into SeedancePipeline; CLI options into `seedance generate`; media files mutated by
  truncation and bit flips into the media reader and `seedance eval sync`. A case passes when it either works
  or ends in one clean one-line error (a SeedanceError, or exit code 2 with one stderr line), within its
  timeout, leaving no output file behind when it failed.
- load: N sequential and M concurrent generate requests to the web app (gradio_client); every clip checked
  (H.264 + AAC of the requested length); resident memory after the last sequential request within 10% of
  after the 5th.
- safe_defaults: localhost binding, files outside the app's outputs refused, upload size and length caps,
  pickle weights refused unopened, awkward paths (spaces, quotes, unicode) through every CLI command.
- determinism: the same seed in two processes gives byte-identical mp4 files.

The model is the shipped one (weights/seedance-tiny) for load and determinism when present; the fuzz and
fault areas use small random-init instances of the real classes so that each case takes well under a second.
Prints one JSON line: cases_tried, cases_passed, seconds, and one object per area.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHIPPED = ROOT / "weights" / "seedance-tiny"
AWKWARD = "dir with spaces 'quoted' \"double\" ünïcödé"
KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)  # a direct child, or one behind a shell


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def area(cases: list[dict]) -> dict:
    return {"cases": len(cases), "passed": sum(bool(c["ok"]) for c in cases),
            "failed": [c for c in cases if not c["ok"]][:20], "details": cases}


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


# ================================================================================= 1. training faults
SMALL_TEXT_ENCODER = ["--hidden-size", "32", "--num-layers", "3", "--num-heads", "2", "--dense-ffn-hidden", "64",
                      "--num-experts", "4", "--expert-hidden", "16", "--shared-expert-hidden", "32",
                      "--engram-rows-per-head", "97", "--engram-dim-per-head", "8", "--max-position", "48"]
SMALL_EVAL_MODEL = json.dumps({"video_widths": [8, 8], "audio_widths": [8, 8], "embed_dim": 8})
SMALL_AUDIO_VAE = json.dumps({"hidden_channels": 16, "latent_hidden_channels": 16, "latent_channels": 4})


def recipe_argv(name: str, work: Path) -> list[str]:
    """The recipe script and small settings: one checkpoint per step, all kept; caches shared between runs."""
    if name == "transformer":
        from app.random_model import cached_random_pipeline

        weights = cached_random_pipeline(work / "toy")
        return ["pipelines/train_transformer.py", "--weights", str(weights), "--cache", str(work / "tf_cache"),
                "--scenes", "bounce", "--num-clips", "8", "--shard-size", "2", "--layers", "2", "--video-dim", "32",
                "--video-heads", "2", "--audio-dim", "32", "--audio-heads", "2", "--cross-modal-dim", "32",
                "--cross-modal-heads", "2", "--batch-size", "4", "--log-every", "1", "--checkpoint-every", "1",
                "--keep-checkpoints", "10", "--val-every", "0", "--threads", "1", "--text-len", "24"]
    if name == "text_encoder":
        return ["pipelines/train_text_encoder.py", "--corpus-size", "96", "--eval-size", "8", "--vocab-size", "400",
                "--batch-size", "8", "--save-every", "1", "--keep", "10", "--eval-every", "0", "--log-every", "1",
                "--warmup", "1", "--balance-steps", "5", *SMALL_TEXT_ENCODER]
    if name == "audio_vae":
        return ["pipelines/train_autoencoders.py", "--model", "audio_vae", "--cache", str(work / "ae_cache"),
                "--scenes", "bounce", "--clips-per-scene", "2", "--eval-clips-per-scene", "1", "--batch-size", "2",
                "--crop", "50", "--save-every", "1", "--eval-every", "100", "--keep-checkpoints", "10",
                "--threads", "1", "--mixed-precision", "no", "--model-config", SMALL_AUDIO_VAE]
    if name in ("syncexpert", "probes"):
        return [f"pipelines/train_{name}.py", "--cache", str(work / "eval_cache"), "--scenes", "bounce,keys",
                "--clips-per-scene", "2", "--val-clips-per-scene", "1", "--save-every", "1", "--eval-every", "100",
                "--keep-checkpoints", "10", "--batch-size", "4", "--model-config", SMALL_EVAL_MODEL]
    raise ValueError(f"unknown recipe {name!r}")


RECIPES = ("transformer", "text_encoder", "audio_vae", "syncexpert", "probes")
QUICK_RECIPES = ("transformer", "probes")  # the two checkpoint implementations: the transformer's and the shared one


def checkpoint_state(out: Path) -> dict:
    """Visible checkpoints (step_N folders) by step, whether each is complete, and the partial saves left."""
    root = out / "checkpoints"
    visible, partial = {}, []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if d.name.startswith(".tmp_step_"):
            partial.append(d.name)
        elif d.name.startswith("step_") and d.is_dir():
            marker = (d / "train_state.json").is_file() or (d / "trainer_state.json").is_file()
            visible[int(d.name.split("_")[1])] = marker and (d / "model.safetensors").is_file()
    return {"visible": visible, "partial": partial, "latest": max(visible, default=0)}


def same_weights(a: Path, b: Path) -> tuple[bool, float]:
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(str(a)), load_file(str(b))
    if wa.keys() != wb.keys():
        return False, float("inf")
    diff = max(float((wa[k].float() - wb[k].float()).abs().max()) if wa[k].numel() else 0.0 for k in wa)
    return all(torch.equal(wa[k], wb[k]) for k in wa), diff


def start_recipe(argv: list[str], out: Path, steps: int, kill_at: str | None = None) -> subprocess.Popen:
    env = child_env()
    if kill_at:
        env["SEEDANCE_KILL_AT"] = kill_at
    cmd = [sys.executable, argv[0], *argv[1:], "--out", str(out), "--steps", str(steps)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_recipe(proc: subprocess.Popen, timeout: float = 900) -> subprocess.CompletedProcess:
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def run_recipe(argv: list[str], out: Path, steps: int, kill_at: str | None = None) -> subprocess.CompletedProcess:
    return finish_recipe(start_recipe(argv, out, steps, kill_at))


def recipe_faults(name: str, work: Path, steps: int = 4) -> list[dict]:
    """Run B killed inside step 3, killed while saving checkpoint 4, then restarted; an uninterrupted run A beside."""
    argv = recipe_argv(name, work)
    a, b = work / f"{name}_a", work / f"{name}_b"
    cases = []

    def case(what: str, ok: bool, **info) -> None:
        cases.append({"recipe": name, "case": what, "ok": bool(ok), **info})

    died = run_recipe(argv, b, steps, kill_at=f"step:{steps - 1}")  # this first run also builds the shared cache
    state = checkpoint_state(b)
    case("SIGKILL inside a step", died.returncode in KILLED and all(state["visible"].values())
         and state["latest"] == steps - 2, returncode=died.returncode, checkpoints=sorted(state["visible"]),
         error=None if died.returncode in KILLED else (died.stdout + died.stderr)[-600:])

    # A runs alongside B's next two runs: each is one thread, the cache is complete by now, and a process
    # start (imports) costs as much as these few steps, so this saves about a third of the wall time.
    uninterrupted = start_recipe(argv, a, steps)
    died = run_recipe(argv, b, steps, kill_at=f"save:{steps}")
    state = checkpoint_state(b)
    case("SIGKILL while saving a checkpoint", died.returncode in KILLED and all(state["visible"].values())
         and steps not in state["visible"] and any(int(n.rsplit("_", 1)[1]) == steps for n in state["partial"])
         and state["latest"] == steps - 1, returncode=died.returncode, checkpoints=sorted(state["visible"]),
         partial=state["partial"])

    again = run_recipe(argv, b, steps)
    text = again.stdout + again.stderr
    state = checkpoint_state(b)
    case("restart resumes from the last complete checkpoint", again.returncode == 0 and "resumed from" in text
         and f"(step {steps - 1}" in text and not state["partial"] and state["latest"] == steps,
         returncode=again.returncode, partial_after=state["partial"],
         error=None if again.returncode == 0 else text[-600:])

    first = finish_recipe(uninterrupted)
    if first.returncode != 0:
        case("uninterrupted run", False, error=(first.stdout + first.stderr)[-600:])
        return cases
    final = f"step_{steps:07d}" if (a / "checkpoints" / f"step_{steps:07d}").is_dir() else f"step_{steps}"
    try:
        equal, diff = same_weights(a / "checkpoints" / final / "model.safetensors",
                                   b / "checkpoints" / final / "model.safetensors")
    except Exception as exc:  # a missing file is a failed case, not a crashed bench
        equal, diff = False, str(exc).splitlines()[0]
    case("final weights equal an uninterrupted run", equal, max_abs_diff=diff)
    return cases


def training_faults(work: Path, recipes: tuple[str, ...]) -> dict:
    cases = []
    for name in recipes:
        t0 = time.perf_counter()
        cases += recipe_faults(name, work)
        log(f"  training_faults {name}: {sum(c['ok'] for c in cases if c['recipe'] == name)}/"
            f"{sum(c['recipe'] == name for c in cases)} in {time.perf_counter() - t0:.0f} s")
    return area(cases)


# ========================================================================================= 2. fuzzing
class CaseTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """SIGALRM-based limit for one in-process case (main thread only)."""
    def fire(signum, frame):
        raise CaseTimeout(f"no answer within {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def classify(fn: Callable[[], object], timeout: float) -> dict:
    """Run one case: "ok", "clean_error" (SeedanceError with a one-line message) or a failure."""
    from seedance.errors import SeedanceError

    t0 = time.perf_counter()
    try:
        with time_limit(timeout):
            fn()
        outcome, message = "ok", ""
    except SeedanceError as exc:
        message = str(exc)
        outcome = "clean_error" if message and "\n" not in message else "multi_line_error"
    except CaseTimeout as exc:
        outcome, message = "timeout", str(exc)
    except Exception as exc:  # the finding: anything else is a crash
        outcome, message = "crash", f"{type(exc).__name__}: {exc}"[:300]
    return {"outcome": outcome, "message": message[:200], "s": round(time.perf_counter() - t0, 3),
            "ok": outcome in ("ok", "clean_error")}


def run_cli(argv: list[str], timeout: float) -> dict:
    """`seedance ...` in this process: exit code, and a failure must print exactly one stderr line."""
    import io

    from seedance.cli import main

    err, out = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    try:
        with time_limit(timeout), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            code = main(argv)
    except SystemExit as exc:  # argparse: a usage line and an error line, exit code 2
        code = exc.code if isinstance(exc.code, int) else 2
    except CaseTimeout as exc:
        return {"outcome": "timeout", "message": str(exc), "ok": False}
    except Exception as exc:
        return {"outcome": "crash", "message": f"{type(exc).__name__}: {exc}"[:300], "ok": False}
    lines = [x for x in err.getvalue().splitlines() if x.strip() and not x.startswith("usage:")
             and not x.startswith("  ") and "%|" not in x]
    clean = code == 0 or len(lines) == 1
    return {"outcome": "ok" if code == 0 else ("clean_error" if clean else "messy_error"), "code": code,
            "message": (lines[-1] if lines else "")[:200], "s": round(time.perf_counter() - t0, 3), "ok": clean}


def fuzz(work: Path, examples: int) -> dict:
    import numpy as np
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from app.random_model import cached_random_pipeline
    from seedance.generate_cli import load_pipeline

    weights = cached_random_pipeline(work / "toy")
    pipe = load_pipeline(weights)
    pipe.set_progress_bar_config(disable=True)
    cases: list[dict] = []
    run = settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                   suppress_health_check=list(HealthCheck))

    any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=400)
    huge_text = st.tuples(st.text(max_size=8), st.integers(1, 400_000)).map(lambda t: (t[0] or "a") * t[1])

    # 2a. prompts of any unicode, control characters and huge lengths
    @run
    @given(prompt=st.one_of(any_text, huge_text, st.just(""), st.just("\x00" * 50), st.just(" \t\n" * 100)))
    def prompts(prompt):
        r = classify(lambda: pipe(prompt, num_inference_steps=1, output_type="latent"), 60)
        cases.append({"target": "pipeline prompt", "input": repr(prompt[:60]), "len": len(prompt), **r})

    # 2b. every pipeline parameter at and beyond its bounds
    numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                        st.sampled_from([0, 1, -1, 2**31, 2**63, 1e308, float("nan"), float("inf")]),
                        st.text(max_size=5), st.none(), st.booleans())
    params = st.fixed_dictionaries({}, optional={
        "num_inference_steps": st.one_of(st.integers(-3, 3), st.sampled_from([1000, 1001, 10**9]), numbers),
        "guidance_scale": numbers, "audio_guidance_scale": numbers, "sync_guidance_scale": numbers,
        "duration": numbers, "num_frames": numbers, "height": st.one_of(st.integers(-64, 4096), numbers),
        "width": st.one_of(st.integers(-64, 4096), numbers), "frame_rate": numbers,
        "output_type": st.one_of(st.sampled_from(["np", "pt", "latent", "pil", ""]), st.text(max_size=4)),
        "video_led": st.booleans(), "negative_prompt": st.one_of(st.none(), any_text, numbers),
        "transformer_precision": st.one_of(st.sampled_from(["fp32", "bf16", "fp16", ""]), numbers),
        # given modalities of any shape: uint8 frames [F,H,W,3] (or wrong ranks) and float waveforms
        "video": st.one_of(st.none(), st.tuples(st.integers(0, 40), st.integers(0, 80), st.integers(0, 80),
                                                 st.sampled_from([1, 3, 4])).map(lambda t: np.zeros(t, np.uint8)),
                           st.lists(st.integers(0, 9), max_size=4).map(lambda s: np.ones(s, np.float32))),
        "audio": st.one_of(st.none(), st.integers(0, 70_000).map(lambda n: np.zeros(n, np.float32)),
                           st.sampled_from([np.full(100, np.nan, np.float32), np.ones((2, 3, 4), np.float32)]))})

    @run
    @given(kwargs=params)
    def parameters(kwargs):
        kwargs = dict(kwargs)
        if isinstance(kwargs.get("num_inference_steps"), int) and 4 < kwargs["num_inference_steps"] <= 1000:
            kwargs["num_inference_steps"] = 4  # in bounds: the value is accepted; keep the case fast
        r = classify(lambda: pipe("a red ball bounces", **{"num_inference_steps": 1, "output_type": "latent",
                                                            **kwargs}), 120)
        cases.append({"target": "pipeline parameters", "input": repr(kwargs)[:200], **r})

    # 2c. CLI options (as a user types them) into `seedance generate`: failures leave no file
    out_dir = work / "fuzz_cli"
    out_dir.mkdir(parents=True, exist_ok=True)
    option_values = st.one_of(st.sampled_from(["0", "-1", "1", "nan", "inf", "-inf", "1e309", "999999999999", "",
                                               "2.5", "0x10", "1,5"]), st.text(max_size=6))

    @run
    @given(options=st.dictionaries(st.sampled_from(["--steps", "--seed", "--guidance", "--audio-guidance",
                                                    "--sync-guidance", "--duration", "--negative-prompt",
                                                    "--precision"]), option_values, max_size=3),
           suffix=st.sampled_from([".mp4", ".mkv", ".txt", ""]))
    def cli_options(options, suffix):
        target = out_dir / f"clip{suffix}"
        target.unlink(missing_ok=True)
        options = dict(options)
        steps = options.get("--steps", "1")
        if steps.strip().isdigit() and 4 < int(steps) <= 1000:
            options["--steps"] = "4"  # in bounds: the value is accepted; keep the case fast
        options.setdefault("--steps", "1")
        argv = ["generate", "a red ball bounces", "-o", str(target), "--weights", str(weights)]
        argv += [f"{k}={v}" for k, v in options.items()]
        r = run_cli(argv, 120)
        left = sorted(p.name for p in out_dir.iterdir() if p.name != target.name or r["code"] != 0)
        if r.get("code") not in (0, None) and left:
            r = {**r, "ok": False, "outcome": "partial_output_left", "left": left}
        cases.append({"target": "seedance generate options", "input": " ".join(argv[4:])[:200], **r})
        for p in out_dir.iterdir():
            p.unlink()

    # 2d. media mutated by truncation and bit flips: the reader and `seedance eval sync`
    from seedance.data.media import read_clip, write_clip

    rng = np.random.default_rng(0)
    frames = (rng.random((32, 64, 64, 3)) * 255).astype(np.uint8)
    audio = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    originals = {}
    for ext in (".mp4", ".mkv"):
        write_clip(work / f"original{ext}", frames, audio, 16, 16000)
        originals[ext] = (work / f"original{ext}").read_bytes()
    bad_dir = work / "fuzz_media"
    bad_dir.mkdir(exist_ok=True)

    @run
    @given(ext=st.sampled_from(sorted(originals)), cut=st.floats(0, 1),
           flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), max_size=12))
    def media(ext, cut, flips):
        data = bytearray(originals[ext][: int(len(originals[ext]) * cut) if cut < 0.999 else None])
        for where, bit in flips:
            if data:
                data[int(where * (len(data) - 1))] ^= 1 << bit
        path = bad_dir / f"mutated{ext}"
        path.write_bytes(bytes(data))
        r = classify(lambda: read_clip(path), 60)
        cases.append({"target": "media reader", "input": f"{ext} cut {cut:.3f}, {len(flips)} flips", **r})
        r = run_cli(["eval", "sync", str(path), "--json", "--no-syncexpert"], 120)
        cases.append({"target": "seedance eval sync", "input": f"{ext} cut {cut:.3f}, {len(flips)} flips", **r})

    for name, test in (("prompts", prompts), ("parameters", parameters), ("cli", cli_options), ("media", media)):
        t0 = time.perf_counter()
        test()
        log(f"  fuzz {name}: {time.perf_counter() - t0:.0f} s")
    result = area(cases)
    result["by_target"] = {t: {"cases": sum(c["target"] == t for c in cases),
                               "passed": sum(c["ok"] for c in cases if c["target"] == t),
                               "worked": sum(c["outcome"] == "ok" for c in cases if c["target"] == t)}
                           for t in dict.fromkeys(c["target"] for c in cases)}
    result["details"] = [c for c in cases if not c["ok"]]  # the passing cases are counted, not listed
    return result


# ============================================================================================ 3. load
def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def load(work: Path, sequential: int, concurrent: int, steps: int | None) -> dict:
    from gradio_client import Client

    from app.random_model import cached_random_pipeline
    from app.service import SeedanceService
    from app.ui import start_server
    from bench.app_load import valid_clip

    weights = SHIPPED if (SHIPPED / "model_index.json").is_file() else cached_random_pipeline(work / "toy")
    service = SeedanceService(weights).load()
    demo, url = start_server(service, concurrency=1)
    client = Client(url, verbose=False)
    d = service.pipeline_defaults()
    cases, rss = [], {}

    def request(seed: int):
        return client.submit("a red ball bounces on a wooden floor", "", 2.0, steps or d["num_inference_steps"],
                             seed, False, *(d.get(k, 1.0) for k in
                                            ("guidance_scale", "audio_guidance_scale", "sync_guidance_scale")),
                             api_name="/generate")

    def check(job, what: str, seed: int) -> None:
        try:
            video = job.result()[0]
            ok, why = valid_clip(video["video"] if isinstance(video, dict) else video, 2.0)
        except Exception as exc:
            ok, why = False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        cases.append({"case": what, "seed": seed, "ok": ok, "why": why})

    t0 = time.perf_counter()
    for i in range(sequential):
        check(request(i), "sequential", i)
        if i + 1 in (5, sequential):
            rss[i + 1] = round(rss_mb(), 1)
    jobs = [(1000 + i, request(1000 + i)) for i in range(concurrent)]
    for seed, job in jobs:
        check(job, "concurrent", seed)
    # files outside the app's own outputs are refused (checked on the running server)
    import urllib.error
    import urllib.request

    for path in ("/etc/passwd", str(ROOT / "pyproject.toml"), str(weights / "model_index.json")):
        try:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=30)
            refused, code = False, 200
        except urllib.error.HTTPError as exc:
            refused, code = exc.code in (403, 404), exc.code
        cases.append({"case": "file outside outputs refused", "path": path, "ok": refused, "status": code})
    with contextlib.redirect_stdout(sys.stderr):  # Gradio announces the closing on stdout; the JSON line is ours
        demo.close()
    first, last = rss.get(5), rss.get(sequential)
    growth = None if not first or not last else round(last / first - 1, 4)
    cases.append({"case": f"RSS after {sequential} within 10% of after 5", "ok": growth is not None and growth <= 0.10,
                  "rss_mb": rss, "growth": growth})
    result = area(cases)
    result.update({"sequential": sequential, "concurrent": concurrent, "rss_mb": rss, "rss_growth": growth,
                   "seconds": round(time.perf_counter() - t0, 1), "model": str(weights.relative_to(ROOT))
                   if weights.is_relative_to(ROOT) else "random-init toy pipeline"})
    result["details"] = [c for c in cases if not c["ok"] or c["case"] != "sequential"]
    return result


# ==================================================================================== 4. safe defaults
def safe_defaults(work: Path) -> dict:
    import pickle

    from app.cli import add_parser
    from app.random_model import cached_random_pipeline
    from app.validate import MAX_MEDIA_SECONDS, MAX_UPLOAD_MB, Limits, check_upload
    from seedance.data.media import write_clip
    from seedance.errors import SeedanceError
    from seedance.models.io import atomic_save_pretrained, load_component
    from seedance.models.vocoder import Vocoder

    cases = []
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["app"])
    cases.append({"case": "app binds 127.0.0.1 and shares nothing by default",
                  "ok": args.host == "127.0.0.1" and args.share == "no", "host": args.host})

    limits = Limits()
    cases.append({"case": "upload size and media length capped", "ok": 0 < limits.max_upload_mb <= MAX_UPLOAD_MB
                  and 0 < limits.max_media_seconds <= MAX_MEDIA_SECONDS, "max_upload_mb": limits.max_upload_mb,
                  "max_media_s": limits.max_media_seconds})
    import numpy as np

    long_clip = work / "long.mp4"
    write_clip(long_clip, np.zeros((16 * 8, 64, 64, 3), np.uint8), np.zeros(16000 * 8, np.float32), 16, 16000)
    try:
        check_upload(long_clip, Limits(max_media_seconds=5.0), need="video")
        refused = False
    except SeedanceError:
        refused = True
    cases.append({"case": "an upload longer than the cap is refused", "ok": refused})

    marker = work / "pickle_ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    folder = work / "pickle_weights"
    atomic_save_pretrained(Vocoder(dim=16, num_blocks=1), folder)
    for f in folder.glob("*.safetensors"):
        f.unlink()
    (folder / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(Exploit()))
    try:
        load_component(Vocoder, folder)
        refused, message = False, ""
    except SeedanceError as exc:
        refused, message = "pickle" in str(exc).lower(), str(exc)
    cases.append({"case": "pickle weights refused unopened", "ok": refused and not marker.exists(),
                  "message": message[:200]})

    toy = cached_random_pipeline(work / "toy")
    place = work / AWKWARD
    place.mkdir(parents=True, exist_ok=True)
    weights = place / "model"
    if not weights.exists():
        shutil.copytree(toy, weights)
    clip = place / "clip «1».mp4"
    commands = {
        "generate": ["generate", "a ball", "-o", str(clip), "--weights", str(weights), "--steps", "1"],
        "dub": ["dub", str(clip), "-o", str(place / "dub 'x'.mp4"), "--weights", str(weights), "--steps", "1"],
        "lipsync": ["lipsync", str(clip), "-o", str(place / "lip \"y\".mp4"), "--weights", str(weights),
                    "--steps", "1"],
        "eval sync": ["eval", "sync", str(clip), "--json", "--no-syncexpert", "--csv", str(place / "r é.csv")],
        "generate --prompts": ["generate", "--prompts", str(place / "prompts ü.txt"), "--out-dir",
                               str(place / "batch out"), "--weights", str(weights), "--steps", "1"],
        "eval prompt": ["eval", "prompt", str(clip), "--caption", "a red ball bounces", "--json"],
        "data make": ["data", "make", "--scene", "bounce", "--n", "2", "--out", str(place / "data é")],
        "data show": ["data", "show", str(place / "data é")],
        "eval dist": ["eval", "dist", str(place / "batch out"), str(place / "data é"), "--json"],
        "demo": ["demo", "--out", str(place / "demo «out»"), "--weights", str(weights)],
    }
    (place / "prompts ü.txt").write_text("a ball\nkeys play\n")
    for name, argv in commands.items():
        r = subprocess.run([sys.executable, "-m", "seedance.cli", *argv], cwd=ROOT, env=child_env(),
                           capture_output=True, text=True, timeout=300)
        cases.append({"case": f"awkward path: seedance {name}", "ok": r.returncode == 0,
                      "error": r.stderr.strip().splitlines()[-1:] if r.returncode else None})
    return area(cases)


# ====================================================================================== 5. determinism
def determinism(work: Path) -> dict:
    from app.random_model import cached_random_pipeline

    cases = []
    for label, weights in (("toy", cached_random_pipeline(work / "toy")), ("shipped", SHIPPED)):
        if not (weights / "model_index.json").is_file():
            continue
        paths = [work / f"det_{label}_{k}.mp4" for k in (0, 1)]
        # both processes at once: half the wall time, and the same bytes must come out under contention too
        procs = [subprocess.Popen([sys.executable, "-m", "seedance.cli", "generate", "a red ball bounces", "-o",
                                   str(p), "--weights", str(weights), "--seed", "7"], cwd=ROOT,
                                  # a different hash seed per interpreter: nothing shared but the files
                                  env={**child_env(), "PYTHONHASHSEED": str(k)},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for k, p in enumerate(paths)]
        for proc in procs:
            try:
                proc.wait(timeout=600)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        same = all(p.is_file() for p in paths) and paths[0].read_bytes() == paths[1].read_bytes()
        cases.append({"case": f"same seed, two processes, byte-identical mp4 ({label} model)", "ok": same})
    return area(cases)


# ============================================================================================= main
AREAS = ("training_faults", "fuzz", "load", "safe_defaults", "determinism")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 recipes, 25 fuzz cases per target, 10 + 4 requests")
    parser.add_argument("--area", action="append", choices=AREAS, help="only these areas (repeatable)")
    parser.add_argument("--examples", type=int, default=None, help="fuzz cases per target (default 200; quick 25)")
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    areas = args.area or list(AREAS)
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="seedance-reliability-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report: dict = {}
    try:
        for name in areas:
            log(f"{name} ...")
            t = time.perf_counter()
            if name == "training_faults":
                report[name] = training_faults(work, QUICK_RECIPES if args.quick else RECIPES)
            elif name == "fuzz":
                report[name] = fuzz(work, args.examples or (25 if args.quick else 200))
            elif name == "load":
                report[name] = load(work, 10 if args.quick else 50, 4 if args.quick else 8,
                                    4 if args.quick else None)
            elif name == "safe_defaults":
                report[name] = safe_defaults(work)
            elif name == "determinism":
                report[name] = determinism(work)
            report[name]["seconds"] = report[name].get("seconds", round(time.perf_counter() - t, 1))
            log(f"{name}: {report[name]['passed']}/{report[name]['cases']} in {report[name]['seconds']} s")
    finally:
        if tmp is not None:
            tmp.cleanup()
    summary = {"cases_tried": sum(r["cases"] for r in report.values()),
               "cases_passed": sum(r["passed"] for r in report.values()),
               "seconds": round(time.perf_counter() - t0, 1), "quick": args.quick, **report}
    print(json.dumps(summary))
    return 0 if summary["cases_tried"] == summary["cases_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

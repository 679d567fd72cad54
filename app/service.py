"""What the web app does, without the web: one `SeedanceService` per process.

The service loads the model once (`load()`, called at start-up; later calls
reuse it), checks every input (app.validate), runs one pipeline call at a time
(a diffusers scheduler keeps per-call state, and two calls would also just split
the same CPU cores), writes every output file under Gradio's temporary folder,
and returns plain paths and dicts. The Gradio layer (app.ui) only lays it out.

Every failure a user can cause is a `SeedanceError` with one line; app.ui turns
it into a `gr.Error` toast.
"""

from __future__ import annotations

import gc
import logging
import random
import shutil
import threading
import time
import uuid
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app import plots
from app.scoring import score_clip
from app.validate import (
    MAX_GUIDANCE,
    MAX_SEED,
    MAX_SHIFT,
    MIN_SHIFT,
    Limits,
    check_number,
    check_prompt,
    check_upload,
)
from seedance.config import ClipPreset, get_preset
from seedance.errors import SeedanceError, WeightsError
from seedance.generate_cli import DEFAULT_WEIGHTS, call_kwargs, generator_for, save_output

log = logging.getLogger("seedance.app")

MIN_DURATION_S = 0.5
OUTPUT_MAX_AGE_S = 3600  # outputs older than this are removed from the app's folder
NEAREST_CAPTIONS = 600  # training captions indexed for the text-encoder tab (embedded once per process)


def gradio_temp_dir() -> Path:
    """Gradio's upload/cache folder: the only place the app writes, and the only place it serves from."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


@dataclass
class ClipResult:
    video: str  # .mp4 path under Gradio's temp folder
    plot: str  # waveform + spectrogram + sync traces .png
    report: dict  # sync report and settings
    seed: int = 0


@dataclass
class EvalResult:
    report: dict
    shift_plot: str
    clip_plot: str


@dataclass
class TextReport:
    tokens: list[list]  # rows: position, piece, compressed id, 2-gram, 3-gram, engram rows, gate
    engram_plot: str
    routing_plot: str
    info: dict
    nearest: list[list]  # rows: rank, cosine, caption
    headers: dict = field(default_factory=dict)


class SeedanceService:
    """Model, limits and output folder for one app process."""

    def __init__(self, weights: str | Path | None = DEFAULT_WEIGHTS, limits: Limits | None = None,
                 out_dir: str | Path | None = None, pipeline=None, syncexpert: str | Path | None = None):
        self.weights = Path(weights) if weights is not None else None
        self.syncexpert_path = Path(syncexpert) if syncexpert is not None else None  # None: the shipped one
        self.limits = limits or Limits()
        self.out_dir = Path(out_dir) if out_dir is not None else gradio_temp_dir() / "seedance"
        self._pipe = pipeline
        self._pipe_error: str | None = None
        self._expert = None
        self._loaded = False
        self._expert_note: str | None = None
        self._text = None  # (tokenizer, text_encoder) when loaded without the pipeline
        self._caption_index = None  # (captions, embeddings [N,D])
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()  # one model call at a time
        self.loads = 0  # how many times a model was loaded (tests check it stays 1)

    # ---- loading ------------------------------------------------------------------------------------------

    def load(self) -> SeedanceService:
        """Load the models once. A missing generator is remembered (Evaluate still works); a broken one raises."""
        with self._load_lock:
            if self._loaded:
                return self
            self._load_syncexpert()
            if self._pipe is None:
                if self.weights is None or not (self.weights / "model_index.json").is_file():
                    self._pipe_error = (
                        f"no generator at {self.weights} (model_index.json missing): train it (see weights/README.md) "
                        "or start the app with --weights DIR"
                    )
                    log.warning(self._pipe_error)
                else:
                    from seedance.generate_cli import load_pipeline

                    t0 = time.perf_counter()
                    self._pipe = load_pipeline(self.weights)
                    self.loads += 1
                    log.info("loaded %s in %.2f s", self.weights, time.perf_counter() - t0)
            self._loaded = True
        return self

    def _load_syncexpert(self) -> None:
        """The evaluator for LSE-D/LSE-C; absent weights are a note in every report, broken ones raise."""
        from seedance.eval.syncexpert import DEFAULT_WEIGHTS as EXPERT_WEIGHTS
        from seedance.eval.syncexpert import load_syncexpert

        path = self.syncexpert_path or EXPERT_WEIGHTS
        if not (path / "config.json").is_file():
            self._expert_note = f"no SyncExpert at {path}: train it (pipelines/train_syncexpert.py) for LSE-D/LSE-C"
            log.warning(self._expert_note)
            return
        self._expert = load_syncexpert(path)
        self.loads += 1

    @property
    def load_error(self) -> str | None:
        """Why there is no generator (None when there is one)."""
        self.load()
        return self._pipe_error

    @property
    def has_generator(self) -> bool:
        self.load()
        return self._pipe is not None

    @property
    def pipe(self):
        self.load()
        if self._pipe is None:
            raise WeightsError(self._pipe_error or "no generator loaded")
        return self._pipe

    @property
    def preset(self) -> ClipPreset:
        if self.has_generator and getattr(self._pipe, "preset", None) is not None:
            return self._pipe.preset
        return get_preset("tiny")

    def pipeline_defaults(self) -> dict:
        """The loaded pipeline's default steps, guidance scales, timestep shift and guidance stop (the UI's initial
        values)."""
        if not self.has_generator:
            return {}
        defaults = getattr(self._pipe, "sampling_defaults", None) or {}
        names = ("num_inference_steps", "guidance_scale", "audio_guidance_scale", "sync_guidance_scale",
                 "timestep_shift", "guidance_stop")
        return {k: defaults[k] for k in names if isinstance(defaults.get(k), (int, float))}

    def text_model(self):
        """(tokenizer, text_encoder): the pipeline's, or loaded alone from weights/<…>/{tokenizer,text_encoder}."""
        if self.has_generator:
            return self._pipe.tokenizer, self._pipe.text_encoder
        with self._load_lock:
            if self._text is None:
                from seedance.models.io import load_component
                from seedance.models.text_encoder import EngramMoETextEncoder
                from seedance.models.tokenizer import SeedanceTokenizer

                if self.weights is None or not (self.weights / "text_encoder").is_dir():
                    raise WeightsError(f"no text encoder at {self.weights}/text_encoder: train it or pass --weights")
                tokenizer = SeedanceTokenizer.from_pretrained(self.weights / "tokenizer")
                encoder = load_component(EngramMoETextEncoder, self.weights / "text_encoder").eval()
                self._text = (tokenizer, encoder)
                self.loads += 1
        return self._text

    def warm_up(self) -> float:
        """One 1-step generation and one scoring + plot of a synthetic clip (first-call costs: torch kernels,
        librosa/numba compiles, matplotlib fonts), so the first user request does not pay for them. Returns s."""
        t0 = time.perf_counter()
        preset = self.preset
        if self.has_generator:
            self._run("warm up", 0, {"num_inference_steps": 1, "duration": preset.duration_s})
        n, spf = preset.fps, preset.samples_per_frame
        frames = np.zeros((n, preset.height, preset.width, 3), np.uint8)
        audio = np.zeros(n * spf, np.float32)
        for k in (4, 10):  # two flashes, each with a click
            frames[k] = 255
            audio[k * spf : k * spf + 200] = 0.5
        score_clip(frames, audio, preset.fps, preset.sample_rate, preset, self._expert, self._expert_note)
        plots.clip_figure(frames, audio, preset.fps, preset.sample_rate, preset, self.new_output("warmup.png"))
        return time.perf_counter() - t0

    # ---- memory -------------------------------------------------------------------------------------------

    @staticmethod
    def settle() -> None:
        """Once everything is loaded: move the heap built so far out of the garbage collector's sight.

        Matplotlib figures are reference cycles holding megabytes; left to the collector's own schedule they
        pile up (measured: +470 MB RSS over 45 requests). A full collection after every request frees them,
        and after gc.freeze() it only scans what the request made (~20 ms instead of ~0.9 s).
        """
        gc.collect()
        gc.freeze()

    @staticmethod
    def after_request() -> None:
        gc.collect()

    # ---- outputs ------------------------------------------------------------------------------------------

    def new_output(self, name: str) -> Path:
        """A fresh path out_dir/<random>/<name>; old outputs are pruned on the way."""
        self.prune_outputs()
        folder = self.out_dir / uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def prune_outputs(self, max_age_s: float = OUTPUT_MAX_AGE_S) -> None:
        if not self.out_dir.is_dir():
            return
        cutoff = time.time() - max_age_s
        for folder in self.out_dir.iterdir():
            try:
                if folder.is_dir() and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)
            except OSError:
                pass

    # ---- text -> clip -------------------------------------------------------------------------------------

    def settings(self, steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                 negative_prompt=None, duration=None, timestep_shift=None, guidance_stop=None) -> tuple[dict, int]:
        """Validated pipeline kwargs (through the CLI's call_kwargs) and the seed to use."""
        if randomize_seed:
            seed = random.SystemRandom().randint(0, MAX_SEED)
        seed = check_number("seed", seed, 0, MAX_SEED, whole=True)
        steps = None if steps is None else check_number("steps", steps, 1, self.limits.max_steps, whole=True)
        scales = {}
        for name, value in (("video guidance", guidance), ("audio guidance", audio_guidance),
                            ("sync guidance", sync_guidance)):
            scales[name] = None if value is None else check_number(name, value, 0.0, MAX_GUIDANCE)
        if timestep_shift is not None:
            timestep_shift = check_number("timestep shift", timestep_shift, MIN_SHIFT, MAX_SHIFT)
        if guidance_stop is not None:
            guidance_stop = check_number("guidance stop", guidance_stop, 0.0, 1.0)
        args = Namespace(steps=steps, guidance=scales["video guidance"], audio_guidance=scales["audio guidance"],
                         sync_guidance=scales["sync guidance"], negative_prompt=negative_prompt or None,
                         duration=duration, shift=timestep_shift, guidance_stop=guidance_stop)
        return call_kwargs(args), seed

    def generate(self, prompt, negative_prompt=None, duration=None, steps=None, seed=0, randomize_seed=False,
                 guidance=None, audio_guidance=None, sync_guidance=None, timestep_shift=None,
                 guidance_stop=None) -> ClipResult:
        prompt = check_prompt(prompt, self.limits)
        negative_prompt = check_prompt(negative_prompt, self.limits, required=False, what="negative prompt")
        preset = self.preset
        if duration is not None:
            duration = check_number("duration (s)", duration, MIN_DURATION_S, preset.max_duration_s)
        kwargs, seed = self.settings(steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                                     negative_prompt, duration, timestep_shift, guidance_stop)
        output, seconds = self._run(prompt, seed, kwargs)
        return self._finish(output, seconds, {"mode": "text-to-clip", "prompt": prompt, "seed": seed, **kwargs},
                            seed, "clip.mp4")

    def dub(self, video, prompt="", steps=None, seed=0, randomize_seed=False, guidance=None, audio_guidance=None,
            sync_guidance=None, timestep_shift=None, guidance_stop=None) -> ClipResult:
        """Video -> audio: the uploaded picture gets a generated soundtrack."""
        from seedance.data.media import read_clip

        prompt = check_prompt(prompt, self.limits, required=False)
        check_upload(video, self.limits, "video", "video")
        preset = self.preset
        kwargs, seed = self.settings(steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                                     timestep_shift=timestep_shift, guidance_stop=guidance_stop)
        clip = read_clip(video, fps=preset.fps, size=(preset.height, preset.width), sample_rate=preset.sample_rate,
                         require_audio=False)
        duration = min(clip.frames.shape[0] / preset.fps, preset.max_duration_s)
        if duration < MIN_DURATION_S:
            raise SeedanceError(f"the uploaded video lasts {duration:.2f} s; give at least {MIN_DURATION_S:g} s")
        n = int(round(duration * preset.fps))
        output, seconds = self._run(prompt, seed, {**kwargs, "video": clip.frames[:n], "duration": duration})
        return self._finish(output, seconds, {"mode": "video-to-audio", "prompt": prompt, "seed": seed,
                                              "duration": duration, **kwargs}, seed, "dubbed.mp4")

    def lipsync(self, audio, prompt="a cartoon face talking", steps=None, seed=0, randomize_seed=False,
                guidance=None, audio_guidance=None, sync_guidance=None, timestep_shift=None,
                guidance_stop=None) -> ClipResult:
        """Audio -> video: a picture that moves with the uploaded or recorded sound."""
        prompt = check_prompt(prompt, self.limits)
        check_upload(audio, self.limits, "audio", "audio")
        from seedance.data.media import read_audio

        preset = self.preset
        kwargs, seed = self.settings(steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                                     timestep_shift=timestep_shift, guidance_stop=guidance_stop)
        wave = read_audio(audio, sample_rate=preset.sample_rate)
        duration = min(wave.shape[0] / preset.sample_rate, preset.max_duration_s)
        if duration < MIN_DURATION_S:
            raise SeedanceError(f"the uploaded audio lasts {duration:.2f} s; give at least {MIN_DURATION_S:g} s")
        n = int(round(duration * preset.sample_rate))
        output, seconds = self._run(prompt, seed, {**kwargs, "audio": wave[:n], "duration": duration})
        return self._finish(output, seconds, {"mode": "audio-to-video", "prompt": prompt, "seed": seed,
                                              "duration": duration, **kwargs}, seed, "lipsync.mp4")

    def _run(self, prompt: str, seed: int, kwargs: dict):
        pipe = self.pipe
        with self._run_lock:
            t0 = time.perf_counter()
            output = pipe(prompt, generator=generator_for(seed), output_type="np", **kwargs)
            return output, time.perf_counter() - t0

    def _finish(self, output, seconds: float, settings: dict, seed: int, name: str) -> ClipResult:
        preset = self.preset
        path = self.new_output(name)
        save_output(output, path, preset.fps)
        clip = self.read_for_eval(path)  # score what the user downloads, codec round trip included
        report = {"file": name, "duration_s": round(clip.duration_s, 3), **self.score(clip)[0]}
        report["settings"] = {k: v for k, v in settings.items() if k not in ("video", "audio")}
        report["generation_s"] = round(seconds, 3)
        plot = plots.clip_figure(clip.frames, clip.audio, preset.fps, preset.sample_rate, preset,
                                 path.with_suffix(".png"), title=str(settings.get("prompt", ""))[:80])
        return ClipResult(video=str(path), plot=str(plot), report=report, seed=seed)

    # ---- evaluation ---------------------------------------------------------------------------------------

    def read_for_eval(self, path):
        from seedance.data.media import read_clip

        preset = self.preset
        return read_clip(path, fps=preset.fps, size=(preset.height, preset.width), sample_rate=preset.sample_rate)

    def score(self, clip) -> tuple[dict, dict]:
        """Sync report and shift curves of a decoded clip (at the preset's rates)."""
        self.load()
        preset = self.preset
        # The SyncExpert is a plain eval-mode module (no hooks, no state): safe to share between request threads.
        return score_clip(clip.frames, clip.audio, preset.fps, preset.sample_rate, preset, self._expert,
                          self._expert_note)

    def evaluate(self, clip) -> EvalResult:
        """An uploaded clip -> its sync report and plots."""
        check_upload(clip, self.limits, "clip", "clip")
        preset = self.preset
        decoded = self.read_for_eval(clip)
        report, curves = self.score(decoded)
        report = {"file": Path(str(clip)).name, "duration_s": round(decoded.duration_s, 3), **report}
        out = self.new_output("shift.png")
        shift_plot = plots.shift_figure(curves["shifts"], curves["correlation"], report["offset_frames"], preset.fps,
                                        out, curves.get("expert_shifts"), curves.get("expert_distances"))
        clip_plot = plots.clip_figure(decoded.frames, decoded.audio, preset.fps, preset.sample_rate, preset,
                                      out.with_name("clip.png"), title=report["file"])
        return EvalResult(report=report, shift_plot=str(shift_plot), clip_plot=str(clip_plot))

    # ---- text encoder inspector ---------------------------------------------------------------------------

    def inspect_text(self, text) -> TextReport:
        from app.text_inspect import inspect_text

        text = check_prompt(text, self.limits, what="text")
        tokenizer, encoder = self.text_model()
        with self._run_lock:
            index = self.caption_index(tokenizer, encoder)
            result = inspect_text(tokenizer, encoder, text, index)
        nearest = index.nearest(result["embedding"])
        folder = self.new_output("engram.png").parent
        engram_plot = plots.engram_figure(result["pieces"], result["gates"], result["update_ratio"],
                                          folder / "engram.png")
        routing_plot = plots.routing_figure(result["pieces"], result["routing"], result["routing_layers"],
                                            folder / "routing.png")
        info = {**result["info"], "nearest_from": f"the first {len(index.captions)} training captions"}
        return TextReport(tokens=result["rows"], engram_plot=str(engram_plot), routing_plot=str(routing_plot),
                          info=info, nearest=nearest, headers={"tokens": result["headers"]})

    def caption_index(self, tokenizer, encoder):
        """Training captions embedded once per process."""
        from app.text_inspect import CaptionIndex, caption_corpus

        if self._caption_index is None:
            captions = caption_corpus(NEAREST_CAPTIONS)
            self._caption_index = CaptionIndex.build(tokenizer, encoder, captions,
                                                     tuple(encoder.engram_hasher.orders))
        return self._caption_index


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


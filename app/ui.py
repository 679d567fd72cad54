"""The Gradio layout: five tabs over one `SeedanceService`, each action a named API endpoint.

    demo = build_app(SeedanceService(weights).load())
    demo.launch(server_name="127.0.0.1", max_file_size=...)

Endpoints (gradio_client: `Client(url).predict(..., api_name="/generate")`):
    /generate      prompt, negative_prompt, duration, steps, seed, randomize_seed, guidance, audio_guidance,
                   sync_guidance, timestep_shift, guidance_stop -> video, plot, report, seed
    /dub           video, prompt, steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                   timestep_shift, guidance_stop -> same
    /lipsync       audio, prompt, steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                   timestep_shift, guidance_stop -> same
    (timestep_shift and guidance_stop may be left out: the model's defaults)
    /evaluate      clip -> report, shift plot, clip plot
    /encode_text   text -> tokens table, Engram heatmap, MoE routing heatmap, info, nearest training captions

Generation endpoints share one queue slot group ("model", `concurrency` at a time;
the service also runs one pipeline call at a time); evaluation and the text
inspector have their own. Errors a user can cause arrive as `gr.Error` toasts.
"""

from __future__ import annotations

import functools
import logging

import gradio as gr

from app.service import SeedanceService
from app.validate import MAX_GUIDANCE, MAX_SHIFT, MIN_SHIFT
from seedance.errors import SeedanceError
from seedance.generate_cli import FAST_SAMPLING

log = logging.getLogger("seedance.app")

FALLBACK_EXAMPLES = {
    "Talking face": ["a cartoon face says hello there in a calm voice", "a green face on a blue background talks"],
    "Bouncing objects": ["a red ball bounces on a wooden floor", "two small metal cubes bounce and clink"],
    "Keys and drum pads": ["a row of piano keys lights up playing a rising melody", "drum pads flash with each hit"],
}
SCENE_TITLES = {"face": "Talking face", "bounce": "Bouncing objects", "keys": "Keys and drum pads"}
DEFAULT_GUIDANCE = {"guidance_scale": 3.0, "audio_guidance_scale": 3.0, "sync_guidance_scale": 0.0}
DEFAULT_STEPS = 25
MAX_STEPS_SLIDER = 100
QUEUE_SIZE = 64


def user_errors(fn):
    """SeedanceError -> gr.Error with its one line; anything else is logged and shown as a short internal error.

    Every request ends with SeedanceService.after_request() (frees the request's garbage at once).
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except SeedanceError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception as exc:  # a bug, not the user's fault: keep serving, log the traceback
            log.exception("request failed")
            raise gr.Error(f"internal error ({type(exc).__name__}): the app is still running; try again or "
                           "report it with the server log", print_exception=False) from None
        finally:
            SeedanceService.after_request()

    return wrapper


def example_prompts(per_scene: int = 2) -> dict[str, list[str]]:
    """Test-split SyncWorld captions per scene family (the wording the model was trained on).

    A family whose generator module is missing from this checkout keeps hand-written examples.
    """
    from seedance.data.syncworld import SCENES, sample_caption

    out = {}
    for scene in SCENES:
        title = SCENE_TITLES.get(scene, scene)
        try:
            out[title] = [sample_caption(scene, seed, "test")[0] for seed in range(per_scene)]
        except ModuleNotFoundError:
            out[title] = FALLBACK_EXAMPLES[title]
    return out


def _guidance_controls(defaults: dict) -> tuple[gr.Slider, gr.Slider, gr.Slider, gr.Slider, gr.Slider]:
    with gr.Accordion("Advanced", open=False):
        guidance = gr.Slider(0.0, MAX_GUIDANCE, value=defaults["guidance_scale"], step=0.1, label="video guidance",
                             info="classifier-free guidance of the picture")
        audio_guidance = gr.Slider(0.0, MAX_GUIDANCE, value=defaults["audio_guidance_scale"], step=0.1,
                                   label="audio guidance", info="classifier-free guidance of the sound")
        sync_guidance = gr.Slider(0.0, MAX_GUIDANCE, value=defaults["sync_guidance_scale"], step=0.1,
                                  label="sync guidance",
                                  info="push away from the uncoupled (unsynchronised) prediction")
        shift = gr.Slider(MIN_SHIFT, MAX_SHIFT, value=defaults["timestep_shift"], step=0.25, label="timestep shift",
                          info="above 1: more steps at high noise; 12 steps with shift 2 is the fast sampler")
        stop = gr.Slider(0.0, 1.0, value=defaults["guidance_stop"], step=0.05, label="guidance stop",
                         info="share of the steps that are guided; the last ones run unguided")
    return guidance, audio_guidance, sync_guidance, shift, stop


def _sampler_buttons(prefix: str, steps: gr.Slider, shift: gr.Slider, default_steps: int,
                     default_shift: float) -> None:
    """Two buttons that set the steps and shift sliders: the few-step sampler (`--fast`) or the model's defaults."""
    fast_steps, fast_shift = FAST_SAMPLING["num_inference_steps"], FAST_SAMPLING["timestep_shift"]
    with gr.Row():
        fast = gr.Button(f"fast: {fast_steps} steps, shift {fast_shift:g}", size="sm", elem_id=f"{prefix}-fast")
        full = gr.Button(f"model default: {default_steps} steps", size="sm", elem_id=f"{prefix}-full")
    # Pure UI events: no queue slot, hidden from the API docs (still callable, which the tests use).
    fast.click(lambda: (fast_steps, fast_shift), None, [steps, shift], queue=False,
               api_name=f"{prefix}_fast_sampler", api_visibility="undocumented")
    full.click(lambda: (default_steps, default_shift), None, [steps, shift], queue=False,
               api_name=f"{prefix}_default_sampler", api_visibility="undocumented")


def _seed_controls(prefix: str) -> tuple[gr.Number, gr.Checkbox]:
    with gr.Row():
        seed = gr.Number(value=0, precision=0, minimum=0, label="seed", elem_id=f"{prefix}-seed")
        randomize = gr.Checkbox(value=False, label="randomize seed", elem_id=f"{prefix}-randomize")
    return seed, randomize


def _clip_outputs(prefix: str) -> list:
    video = gr.Video(label="clip (video + sound)", elem_id=f"{prefix}-video", interactive=False, height=360)
    seed_used = gr.Number(label="seed used", precision=0, interactive=False, elem_id=f"{prefix}-seed-used")
    plot = gr.Image(label="waveform, spectrogram, sync traces", type="filepath", interactive=False)
    report = gr.JSON(label="sync report", open=True)
    return [video, plot, report, seed_used]


def build_app(service: SeedanceService, default_steps: int | None = None, concurrency: int = 1,
              queue_size: int = QUEUE_SIZE) -> gr.Blocks:
    """The Blocks app over a loaded service. `default_steps` overrides the pipeline's (tests use 2)."""
    service.load()
    preset = service.preset
    pipe_defaults = service.pipeline_defaults()
    steps_default = default_steps or pipe_defaults.get("num_inference_steps", DEFAULT_STEPS)
    guidance_defaults = {k: pipe_defaults.get(k, v) for k, v in DEFAULT_GUIDANCE.items()}
    guidance_defaults["timestep_shift"] = default_shift = pipe_defaults.get("timestep_shift", 1.0)
    guidance_defaults["guidance_stop"] = pipe_defaults.get("guidance_stop", 1.0)

    @user_errors
    def generate(prompt, negative_prompt, duration, steps, seed, randomize_seed, guidance, audio_guidance,
                 sync_guidance, timestep_shift=None, guidance_stop=None,
                 progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        progress(0, desc="generating")
        r = service.generate(prompt, negative_prompt, duration, steps, seed, randomize_seed, guidance,
                             audio_guidance, sync_guidance, timestep_shift, guidance_stop)
        return r.video, r.plot, r.report, r.seed

    @user_errors
    def dub(video, prompt, steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance, timestep_shift=None,
            guidance_stop=None, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (Gradio's idiom)
        progress(0, desc="dubbing")
        r = service.dub(video, prompt, steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                        timestep_shift, guidance_stop)
        return r.video, r.plot, r.report, r.seed

    @user_errors
    def lipsync(audio, prompt, steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                timestep_shift=None, guidance_stop=None,
                progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (Gradio's idiom)
        progress(0, desc="animating")
        r = service.lipsync(audio, prompt, steps, seed, randomize_seed, guidance, audio_guidance, sync_guidance,
                            timestep_shift, guidance_stop)
        return r.video, r.plot, r.report, r.seed

    @user_errors
    def evaluate(clip):
        r = service.evaluate(clip)
        return r.report, r.shift_plot, r.clip_plot

    @user_errors
    def encode_text(text):
        r = service.inspect_text(text)
        tokens = {"headers": r.headers["tokens"], "data": r.tokens}
        nearest = {"headers": ["rank", "cosine", "training caption"], "data": r.nearest}
        return tokens, r.engram_plot, r.routing_plot, r.info, nearest

    model_queue = {"concurrency_limit": concurrency, "concurrency_id": "model"}
    status = (f"Generator: `{service.weights}` (preset **{preset.name}**: {preset.width}×{preset.height}, "
              f"{preset.fps} fps, {preset.sample_rate // 1000} kHz)" if service.has_generator
              else f"⚠️ {service.load_error}. Evaluate works without it.")

    with gr.Blocks(title="Seedance", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# Seedance\nText to a short video clip with synchronized sound.\n\n" + status)
        with gr.Tabs():
            with gr.Tab("Generate", id="generate"):
                with gr.Row():
                    with gr.Column():
                        prompt = gr.Textbox(label="prompt", lines=2, elem_id="prompt",
                                            placeholder="a red ball bounces on a wooden floor")
                        negative = gr.Textbox(label="negative prompt", elem_id="negative-prompt")
                        duration = gr.Slider(0.5, preset.max_duration_s, value=preset.duration_s, step=0.25,
                                             label="duration (s)", elem_id="duration")
                        steps = gr.Slider(1, MAX_STEPS_SLIDER, value=steps_default, step=1, label="steps",
                                          elem_id="steps")
                        seed, randomize = _seed_controls("gen")
                        advanced = _guidance_controls(guidance_defaults)
                        _sampler_buttons("gen", steps, advanced[3], steps_default, default_shift)
                        go = gr.Button("Generate", variant="primary", elem_id="generate-btn")
                        for family, prompts in example_prompts().items():
                            gr.Examples([[p] for p in prompts], inputs=[prompt], label=family)
                    with gr.Column():
                        gen_out = _clip_outputs("gen")
                go.click(generate, [prompt, negative, duration, steps, seed, randomize, *advanced], gen_out,
                         api_name="generate", **model_queue)

            with gr.Tab("Dub (video → audio)", id="dub"):
                gr.Markdown(f"Upload a video (up to {service.limits.max_upload_mb:g} MB and "
                            f"{service.limits.max_media_seconds:g} s); its first {preset.max_duration_s:g} s get a "
                            "generated soundtrack.")
                with gr.Row():
                    with gr.Column():
                        dub_video = gr.Video(label="video to dub", sources=["upload"], elem_id="dub-input")
                        dub_prompt = gr.Textbox(label="describe the sound (optional)", elem_id="dub-prompt")
                        dub_steps = gr.Slider(1, MAX_STEPS_SLIDER, value=steps_default, step=1, label="steps")
                        dub_seed, dub_randomize = _seed_controls("dub")
                        dub_advanced = _guidance_controls(guidance_defaults)
                        _sampler_buttons("dub", dub_steps, dub_advanced[3], steps_default, default_shift)
                        dub_go = gr.Button("Dub", variant="primary", elem_id="dub-btn")
                    with gr.Column():
                        dub_out = _clip_outputs("dub")
                dub_go.click(dub, [dub_video, dub_prompt, dub_steps, dub_seed, dub_randomize, *dub_advanced],
                             dub_out, api_name="dub", **model_queue)

            with gr.Tab("Lip-sync (audio → video)", id="lipsync"):
                gr.Markdown(f"Upload or record speech or sound (up to {service.limits.max_upload_mb:g} MB and "
                            f"{service.limits.max_media_seconds:g} s); its first {preset.max_duration_s:g} s get a "
                            "picture that moves with it.")
                with gr.Row():
                    with gr.Column():
                        lip_audio = gr.Audio(label="speech or sound", sources=["upload", "microphone"],
                                             type="filepath", elem_id="lip-input")
                        lip_prompt = gr.Textbox(label="describe the picture", value="a cartoon face talking",
                                                elem_id="lip-prompt")
                        lip_steps = gr.Slider(1, MAX_STEPS_SLIDER, value=steps_default, step=1, label="steps")
                        lip_seed, lip_randomize = _seed_controls("lip")
                        lip_advanced = _guidance_controls(guidance_defaults)
                        _sampler_buttons("lip", lip_steps, lip_advanced[3], steps_default, default_shift)
                        lip_go = gr.Button("Animate", variant="primary", elem_id="lip-btn")
                    with gr.Column():
                        lip_out = _clip_outputs("lip")
                lip_go.click(lipsync, [lip_audio, lip_prompt, lip_steps, lip_seed, lip_randomize, *lip_advanced],
                             lip_out, api_name="lipsync", **model_queue)

            with gr.Tab("Evaluate", id="evaluate"):
                gr.Markdown("Upload a clip with picture and sound: its audio-visual offset (positive = audio late), "
                            "the confidence of that estimate, SyncExpert LSE-D / LSE-C and AV-Align.")
                with gr.Row():
                    with gr.Column():
                        eval_clip = gr.Video(label="clip", sources=["upload"], elem_id="eval-input")
                        eval_go = gr.Button("Evaluate", variant="primary", elem_id="eval-btn")
                        eval_report = gr.JSON(label="sync report", open=True)
                    with gr.Column():
                        eval_shift = gr.Image(label="offset search", type="filepath", interactive=False)
                        eval_plot = gr.Image(label="waveform, spectrogram, sync traces", type="filepath",
                                             interactive=False)
                eval_go.click(evaluate, [eval_clip], [eval_report, eval_shift, eval_plot], api_name="evaluate",
                              concurrency_limit=2, concurrency_id="evaluate")

            with gr.Tab("Text encoder", id="text"):
                gr.Markdown(
                    "How the Engram/MoE text encoder reads a prompt. Per token: its piece, normalised text and "
                    "compressed **id** (pieces with equal normalised text share one); the suffix **n-grams** the "
                    "Engram memory hashes there, their **hits** (occurrences in the training captions indexed "
                    "below; 0 = likely unseen, its rows hold other n-grams that hash there) and the table "
                    "**rows** read (one per hash head); the gate **α** and **|Δh|/|h|**, how much the memory "
                    "changed the hidden state; the **experts** each MoE layer routed it to, with weights. Then "
                    "where the Engram table lives, the encode latency, and the nearest training captions.")
                with gr.Row():
                    text_in = gr.Textbox(label="text", value="a cornflower blue ball bounces", elem_id="text-input",
                                         scale=4)
                    text_go = gr.Button("Encode", variant="primary", elem_id="text-btn", scale=1)
                text_tokens = gr.Dataframe(label="tokens", wrap=True)
                with gr.Row():
                    text_engram = gr.Image(label="Engram gate per token", type="filepath", interactive=False)
                    text_info = gr.JSON(label="encoder and Engram table", open=True)
                text_routing = gr.Image(label="MoE routing per token and layer", type="filepath", interactive=False)
                text_nearest = gr.Dataframe(label="nearest training captions")
                text_go.click(encode_text, [text_in], [text_tokens, text_engram, text_routing, text_info,
                                                       text_nearest], api_name="encode_text",
                              concurrency_limit=2, concurrency_id="text")
    demo.queue(default_concurrency_limit=1, max_size=queue_size)
    return demo


def start_server(service: SeedanceService, host: str = "127.0.0.1", port: int | None = None,
                 default_steps: int | None = None, concurrency: int = 1) -> tuple[gr.Blocks, str]:
    """Build and launch the app in this process without blocking (tests, benchmarks); returns (demo, url)."""
    from app.service import free_port

    demo = build_app(service, default_steps=default_steps, concurrency=concurrency)
    port = port or free_port(host)
    demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True,
                max_file_size=service.limits.max_upload_bytes)
    service.settle()
    return demo, f"http://{host}:{port}/"


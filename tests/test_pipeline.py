"""SeedancePipeline (text -> audio+video, V2A, A2V) and the transformer training recipe under accelerate."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from seedance_tiny_parts import save_tiny_weights, tiny_pipeline
from test_transformer_av import perturb_cross_modal, perturb_outputs

from pipelines.pipeline_seedance import SeedancePipeline
from seedance.errors import SeedanceError, WeightsError

ROOT = Path(__file__).resolve().parent.parent
FAST = dict(num_inference_steps=2)


@pytest.fixture(scope="module")
def pipe():
    p = tiny_pipeline()
    perturb_outputs(p.transformer)  # a model whose outputs depend on its inputs
    return p


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_text_to_audio_video_shapes_and_ranges(pipe):
    out = pipe("a red ball bounces", generator=gen(), **FAST)
    assert out.frames.shape == (1, 32, 64, 64, 3) and out.frames.dtype == np.float32
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    assert out.audio.shape == (1, 32000) and out.sample_rate == 16000
    assert np.isfinite(out.audio).all()
    short = pipe(["a", "b"], duration=1.25, generator=gen(), output_type="pt", **FAST)
    assert short.frames.shape == (2, 20, 3, 64, 64) and short.audio.shape == (2, 1, 20000)
    lat = pipe("a", output_type="latent", generator=gen(), **FAST)
    assert lat.frames.shape == (1, 4, 8, 8, 8) and lat.audio.shape == (1, 4, 40)


def test_same_seed_same_clip_other_seed_other_clip(pipe):
    a = pipe("keys light up", generator=gen(3), **FAST)
    b = pipe("keys light up", generator=gen(3), **FAST)
    c = pipe("keys light up", generator=gen(4), **FAST)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames)


def test_video_to_audio_keeps_the_given_video(pipe):
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, size=(32, 64, 64, 3), dtype=np.uint8)
    out = pipe("a ball", video=video, generator=gen(), **FAST)
    assert np.array_equal(np.round(out.frames[0] * 255).astype(np.uint8), video)
    assert out.audio.shape == (1, 32000)
    # the duration follows the given video when none is asked for
    out = pipe("a ball", video=video[:24], generator=gen(), **FAST)
    assert out.frames.shape[1] == 24 and out.audio.shape[1] == 24000


def test_audio_to_video_keeps_the_given_audio(pipe):
    audio = (0.3 * np.sin(np.linspace(0, 800, 32000))).astype(np.float32)
    out = pipe("a face", audio=audio, generator=gen(), **FAST)
    assert np.array_equal(out.audio[0], audio)
    assert out.frames.shape == (1, 32, 64, 64, 3)


def test_given_modality_conditions_the_other_once_coupled():
    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    rng = np.random.default_rng(1)
    v1 = rng.integers(0, 256, size=(32, 64, 64, 3), dtype=np.uint8)
    v2 = np.ascontiguousarray(v1[::-1])
    kw = dict(guidance_scale=1.0, audio_guidance_scale=1.0, sync_guidance_scale=0.0, **FAST)
    a1, a2 = p("x", video=v1, generator=gen(), **kw).audio, p("x", video=v2, generator=gen(), **kw).audio
    assert np.array_equal(a1, a2)  # zero-init coupling: the audio cannot see the video yet
    perturb_cross_modal(p.transformer)
    a1, a2 = p("x", video=v1, generator=gen(), **kw).audio, p("x", video=v2, generator=gen(), **kw).audio
    assert not np.allclose(a1, a2)


def test_sync_guidance_is_a_no_op_until_the_coupling_is_learned():
    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    kw = dict(guidance_scale=1.0, audio_guidance_scale=1.0, output_type="latent", **FAST)
    base = p("a", sync_guidance_scale=0.0, generator=gen(), **kw)
    synced = p("a", sync_guidance_scale=2.0, generator=gen(), **kw)
    assert torch.allclose(base.frames, synced.frames, atol=1e-5)
    perturb_cross_modal(p.transformer)
    base = p("a", sync_guidance_scale=0.0, generator=gen(), **kw)
    synced = p("a", sync_guidance_scale=2.0, generator=gen(), **kw)
    assert not torch.allclose(base.frames, synced.frames, atol=1e-3)


def test_video_led_sampling_moves_the_audio_and_leaves_the_video_and_given_modes_alone():
    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    perturb_cross_modal(p.transformer)
    kw = dict(output_type="latent", num_inference_steps=2)
    base = p("a ball", video_led=False, generator=gen(), **kw)
    led = p("a ball", video_led=True, generator=gen(), **kw)
    again = p("a ball", video_led=True, generator=gen(), **kw)
    assert torch.equal(led.audio, again.audio) and torch.equal(led.frames, again.frames)  # deterministic
    # step 1 is plain joint; in step 2 the audio reads the clean-video estimate of step 1, while the video's
    # velocity still comes from the same passes (one more row in the batch only), so only the audio moves
    assert torch.allclose(base.frames, led.frames, atol=1e-4)
    assert not torch.allclose(base.audio, led.audio, atol=1e-3)
    video = np.random.default_rng(0).integers(0, 256, size=(32, 64, 64, 3), dtype=np.uint8)
    dub = [p("x", video=video, video_led=flag, generator=gen(), **kw).audio for flag in (False, True)]
    assert torch.equal(dub[0], dub[1])  # video= already gives the audio a clean video: nothing to lead


def test_repeated_prompts_reuse_their_text_embeddings(pipe, monkeypatch):
    from pipelines import pipeline_seedance

    pipe.clear_text_cache()
    calls = []
    forward = pipe.text_encoder.forward
    monkeypatch.setattr(pipe.text_encoder, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    first = pipe("a red ball", generator=gen(), **FAST)
    second = pipe("a red ball", generator=gen(), **FAST)
    assert len(calls) == 1 and np.array_equal(first.frames, second.frames)  # encoded once, same clip
    pipe("a blue ball", generator=gen(), **FAST)
    assert len(calls) == 2
    monkeypatch.setattr(pipeline_seedance, "TEXT_CACHE_SIZE", 1)
    pipe("a green ball", generator=gen(), **FAST)  # evicts the rest
    pipe("a red ball", generator=gen(), **FAST)
    assert len(calls) == 4 and len(pipe._text_cache) == 1


def test_bf16_transformer_precision_stays_close_to_fp32():
    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    kw = dict(output_type="latent", num_inference_steps=3)
    full = p("a ball", transformer_precision="fp32", generator=gen(), **kw)
    half = p("a ball", transformer_precision="bf16", generator=gen(), **kw)
    assert not torch.equal(full.frames, half.frames)  # it did run in bf16
    assert torch.allclose(full.frames, half.frames, atol=0.1) and torch.allclose(full.audio, half.audio, atol=0.1)


def test_bf16_sampling_casts_each_weight_once_per_call_and_the_callback_runs_in_fp32():
    from torch.utils._python_dispatch import TorchDispatchMode

    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    linears = [m for m in p.transformer.modules() if isinstance(m, torch.nn.Linear)]
    weights = {t.data_ptr() for m in linears for t in m.parameters()}

    class WeightCasts(TorchDispatchMode):  # counts bf16 casts of the transformer's linear weights and biases
        def __init__(self):
            super().__init__()
            self.casts: dict[int, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16:
                ptr = args[0].data_ptr()
                if ptr in weights:
                    self.casts[ptr] = self.casts.get(ptr, 0) + 1
            return func(*args, **kwargs)

    autocast_in_callback = []

    def callback(pipe, i, t, tensors):
        autocast_in_callback.append(torch.is_autocast_enabled("cpu"))
        return {}

    counter = WeightCasts()
    with counter:
        p("a ball", transformer_precision="bf16", num_inference_steps=4, generator=gen(), output_type="latent",
          callback_on_step_end=callback)
    assert len(counter.casts) == len(weights)  # every linear weight and bias was cast to bf16 ...
    assert max(counter.casts.values()) == 1  # ... once for the 4 steps, not once per step
    assert autocast_in_callback == [False] * 4
    # the kept casts change nothing: clearing autocast's cache at every step (the old per-step casts) gives the
    # same latents to the bit
    once = p("a ball", transformer_precision="bf16", num_inference_steps=4, generator=gen(), output_type="latent")
    recast = p("a ball", transformer_precision="bf16", num_inference_steps=4, generator=gen(), output_type="latent",
               callback_on_step_end=lambda *a: torch.clear_autocast_cache() or {})
    assert torch.equal(once.frames, recast.frames) and torch.equal(once.audio, recast.audio)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_text_keys_and_values_are_made_once_per_set_of_rows_and_change_nothing(monkeypatch, precision):
    """The text's cross-attention keys and values do not change from step to step: the pipeline makes them once
    for the guided rows and once for the unguided steps after the guidance stop, not at every step, and the
    latents equal those of a run that recomputes them in every forward."""
    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    text_k = p.transformer.blocks[0].video.text_attn.to_k
    calls, inside_forward, outside = [], [False], []
    text_k.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    # made inside the transformer's forward, after hooks on it (accelerate's CPU offload moves the weights there)
    p.transformer.register_forward_pre_hook(lambda module, args: inside_forward.__setitem__(0, True))
    p.transformer.register_forward_hook(lambda module, args, out: inside_forward.__setitem__(0, False))
    text_k.register_forward_pre_hook(lambda module, args: None if inside_forward[0] else outside.append(1))
    kw = dict(transformer_precision=precision, num_inference_steps=5, guidance_stop=0.6, output_type="latent")
    cached = p("a ball", generator=gen(), **kw)
    assert calls == [3, 1]  # 3 guided steps of 3 rows (cond, uncond, no cross-modal), then 2 of the cond row
    assert outside == []
    calls.clear()
    import pipelines.pipeline_seedance as pipeline_module

    monkeypatch.setattr(pipeline_module, "TextCache", lambda: None)  # no cache: every forward on its own
    per_step = p("a ball", generator=gen(), **kw)
    assert calls == [3, 3, 3, 1, 1]
    assert torch.equal(cached.frames, per_step.frames) and torch.equal(cached.audio, per_step.audio)


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_runs_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    """"auto" (the shipped default) takes bf16 on a CPU with native bf16 and fp32 elsewhere, where emulated bf16
    was measured several times slower: its clip equals the explicit precision's."""
    from seedance import hardware

    monkeypatch.setattr(hardware, "_cpu_has_native_bf16", lambda: native)
    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    kw = dict(output_type="latent", num_inference_steps=2)
    auto = p("a ball", transformer_precision="auto", generator=gen(), **kw)
    same = p("a ball", transformer_precision="bf16" if native else "fp32", generator=gen(), **kw)
    other = p("a ball", transformer_precision="fp32" if native else "bf16", generator=gen(), **kw)
    assert torch.equal(auto.frames, same.frames) and torch.equal(auto.audio, same.audio)
    assert not torch.equal(auto.frames, other.frames)


def test_compiled_blocks_give_the_eager_clip_and_take_any_prompt_length():
    """Regional torch.compile: the blocks go through dynamo (here with a counting backend that runs the traced
    graph as it is, so the clip must be bit-identical; inductor's kernels and speed are measured by
    bench/generation_speed.py --compile). The warm-up compiles, and a prompt of another length reuses its graphs."""
    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    kw = dict(output_type="latent", num_inference_steps=2)
    prompts = ["a ball", "a red ball bounces on a wooden floor while a drum plays twice"]
    eager = [p(text, generator=gen(), **kw) for text in prompts]
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    try:
        assert p.compile_transformer(backend=counting_backend) > 0
        compiled_at_warmup = len(graphs)
        compiled = [p(text, generator=gen(), **kw) for text in prompts]
    finally:
        torch._dynamo.reset()
    assert compiled_at_warmup >= 1 and len(graphs) == compiled_at_warmup  # no new graph for new prompt lengths
    for e, c in zip(eager, compiled):
        assert torch.equal(e.frames, c.frames) and torch.equal(e.audio, c.audio)


def test_a_failing_compiler_leaves_the_pipeline_eager_with_one_warning():
    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    kw = dict(output_type="latent", num_inference_steps=2)
    before = p("a ball", generator=gen(), **kw)

    def no_compiler(gm, example_inputs):
        raise RuntimeError("no C++ compiler found")

    torch._dynamo.reset()
    try:
        with pytest.warns(UserWarning, match=r"^torch.compile is not available here \(.*no C\+\+ compiler found.*\); "
                                             "generating without it$"):
            assert p.compile_transformer(backend=no_compiler) == 0.0
        after = p("a ball", generator=gen(), **kw)
    finally:
        torch._dynamo.reset()
    assert torch.equal(before.frames, after.frames) and torch.equal(before.audio, after.audio)


def test_timestep_shift_bends_the_schedule_of_this_call_only(pipe):
    seen = {}

    def record(name):
        def callback(p, i, t, kwargs):
            seen.setdefault(name, []).append(float(t))
            return kwargs
        return callback

    plain = pipe("a", generator=gen(), num_inference_steps=4, callback_on_step_end=record("plain"))
    shifted = pipe("a", generator=gen(), num_inference_steps=4, timestep_shift=3.0,
                   callback_on_step_end=record("shifted"))
    again = pipe("a", generator=gen(), num_inference_steps=4, callback_on_step_end=record("again"))
    sigma = np.array(seen["plain"]) / 1000.0
    # sigma -> 3 sigma / (1 + 2 sigma): every step after the first sits at higher noise
    assert np.allclose(np.array(seen["shifted"]) / 1000.0, 3 * sigma / (1 + 2 * sigma), atol=1e-3)
    assert not np.array_equal(plain.frames, shifted.frames)
    assert seen["again"] == seen["plain"] and np.array_equal(plain.frames, again.frames)  # the shift did not stick
    assert pipe.scheduler.shift == 1.0


def test_guidance_stop_runs_the_guidance_passes_on_the_first_steps_only(pipe):
    rows = []
    hook = pipe.transformer.register_forward_pre_hook(lambda m, args, kwargs: rows.append(
        kwargs["hidden_states"].shape[0]), with_kwargs=True)
    try:
        kw = dict(num_inference_steps=5, output_type="latent", guidance_scale=3.0,
                  audio_guidance_scale=3.0, sync_guidance_scale=2.0)
        full = pipe("a", generator=gen(), **kw)
        default = rows[:]
        rows.clear()
        stopped = pipe("a", generator=gen(), guidance_stop=0.6, **kw)
        assert rows == [3, 3, 3, 1, 1] and default == [3] * 5  # cond + uncond + no-cross-modal, then cond alone
        rows.clear()
        led = pipe("a", generator=gen(), guidance_stop=0.6, video_led=True, **kw)
        assert rows == [3, 4, 4, 2, 2]  # the video-led row rides along after the stop
    finally:
        hook.remove()
    assert not torch.equal(full.frames, stopped.frames) and not torch.equal(stopped.audio, led.audio)
    # with no step guided the scales no longer matter: the conditional pass alone makes the clip
    other_scales = dict(guidance_scale=5.0, audio_guidance_scale=1.5, sync_guidance_scale=4.0)
    none = pipe("a", generator=gen(), **{**kw, "guidance_stop": 0.0})
    none_other = pipe("a", generator=gen(), **{**kw, **other_scales, "guidance_stop": 0.0})
    assert torch.equal(none.frames, none_other.frames) and torch.equal(none.audio, none_other.audio)
    other_stopped = pipe("a", generator=gen(), **{**kw, **other_scales, "guidance_stop": 0.6})
    assert not torch.equal(other_stopped.frames, stopped.frames)
    assert torch.equal(pipe("a", generator=gen(), **{**kw, "guidance_stop": 1.0}).frames, full.frames)


def test_callback_on_step_end_sees_every_step_and_can_edit_latents(pipe):
    seen = []

    def callback(p, i, t, tensors):
        seen.append((i, float(t), tuple(tensors["latents"].shape), tuple(tensors["audio_latents"].shape)))
        return {"audio_latents": torch.zeros_like(tensors["audio_latents"])}

    out = pipe("a", num_inference_steps=3, generator=gen(), output_type="latent", callback_on_step_end=callback,
               callback_on_step_end_tensor_inputs=["latents", "audio_latents"])
    assert [s[0] for s in seen] == [0, 1, 2]
    assert seen[0][1] > seen[-1][1]  # noise level falls
    assert torch.count_nonzero(out.audio) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(num_inference_steps=-3), "num_inference_steps"),
        (dict(guidance_scale=float("nan")), "guidance_scale"),
        (dict(audio_guidance_scale=float("inf")), "audio_guidance_scale"),
        (dict(sync_guidance_scale=float("nan")), "sync_guidance_scale"),
        (dict(duration=9.0), "out of range"),
        (dict(duration=float("nan")), "finite"),
        (dict(height=60), "multiple of 16"),
        (dict(width=0), "multiple of 16"),
        (dict(frame_rate=24), "16 fps"),
        (dict(num_frames=32, duration=1.0), "disagree"),
        (dict(video=np.zeros((32, 64, 64, 3), np.uint8), audio=np.zeros(32000, np.float32)), "not both"),
        (dict(video=np.zeros((32, 48, 48, 3), np.uint8)), "resize"),
        (dict(audio=np.full(32000, np.nan, np.float32)), "NaN"),
        (dict(output_type="pil"), "output_type"),
        (dict(callback_on_step_end_tensor_inputs=["noise"]), "callback"),
        (dict(transformer_precision="fp8"), "transformer_precision"),
        (dict(timestep_shift=0.0), "timestep_shift"),
        (dict(timestep_shift=float("nan")), "timestep_shift"),
        (dict(timestep_shift=100.0), "timestep_shift"),
        (dict(guidance_stop=float("nan")), "guidance_stop"),
        (dict(guidance_stop=1.5), "guidance_stop"),
        (dict(guidance_stop=-0.1), "guidance_stop"),
        (dict(guidance_stop="most"), "guidance_stop"),
        (dict(timestep_shift="3x"), "timestep_shift"),
        (dict(generator=[gen(0), gen(1)]), "2 generators for 1 prompts"),
    ],
)
def test_bad_settings_give_one_line_errors(pipe, kwargs, message):
    with pytest.raises(SeedanceError, match=message) as info:
        pipe("a", **{"generator": gen(), **FAST, **kwargs})
    assert "\n" not in str(info.value)


def test_a_batch_with_one_generator_per_prompt_gives_each_clip_its_own_noise(pipe):
    prompts = ["a red ball bounces", "keys light up one by one", "a face talks"]
    batch = pipe(prompts, generator=[gen(10 + k) for k in range(3)], output_type="latent", **FAST)
    for k, prompt in enumerate(prompts):
        alone = pipe(prompt, generator=gen(10 + k), output_type="latent", **FAST)
        # the same noise and text: equal up to the rounding of batched matmuls
        assert torch.allclose(batch.frames[k], alone.frames[0], atol=1e-4)
        assert torch.allclose(batch.audio[k], alone.audio[0], atol=1e-4)
    assert not torch.allclose(batch.frames[0], batch.frames[1], atol=1e-2)  # and each its own


def test_the_video_decoder_takes_a_batch_a_few_clips_at_a_time_with_the_same_frames(pipe, monkeypatch):
    import pipelines.pipeline_seedance as pipeline_module

    calls = []
    real_decode = pipe.vae.decode_latents
    monkeypatch.setattr(pipe.vae, "decode_latents", lambda z, **kw: calls.append(z.shape[0]) or real_decode(z, **kw))
    prompts = ["a red ball bounces", "keys light up", "a face talks"]
    chunked = pipe(prompts, generator=[gen(k) for k in range(3)], output_type="pt", **FAST)
    assert calls == [2, 1]  # VAE_DECODE_CHUNK = 2
    calls.clear()
    monkeypatch.setattr(pipeline_module, "VAE_DECODE_CHUNK", 16)
    whole = pipe(prompts, generator=[gen(k) for k in range(3)], output_type="pt", **FAST)
    assert calls == [3]
    assert torch.allclose(chunked.frames, whole.frames, atol=1e-5)


def test_under_bf16_a_clip_does_not_change_with_the_prompts_batched_with_it(pipe):
    """Batched captions are padded to the longest one. The text attention keeps the explicit softmax, where a masked
    key weighs exactly 0; torch's fused kernel let the padding move bf16 roundings (up to 0.04 in these latents)."""
    prompts = ["a red ball bounces", "keys light up one by one while a soft chord rings out", "a face talks"]
    kw = dict(output_type="latent", transformer_precision="bf16", **FAST)
    batch = pipe(prompts, generator=[gen(10 + k) for k in range(3)], **kw)
    for k in (0, 2):  # the two shorter prompts, padded in the batch
        alone = pipe(prompts[k], generator=gen(10 + k), **kw)
        assert (batch.frames[k] - alone.frames[0]).abs().mean() < 1e-3
        assert (batch.audio[k] - alone.audio[0]).abs().mean() < 1e-3


def test_save_load_round_trip_gives_the_same_clip(pipe, tmp_path):
    pipe.sampling_defaults["guidance_scale"] = 2.5
    pipe.save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["transformer"] == ["seedance.models.transformer_av", "SeedanceTransformer"]
    loaded = SeedancePipeline.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.sampling_defaults["guidance_scale"] == 2.5
    a, b = pipe("a ball", generator=gen(7), **FAST), loaded("a ball", generator=gen(7), **FAST)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)


def test_loading_a_broken_folder_is_a_weights_error(tmp_path, pipe):
    with pytest.raises(WeightsError, match="model_index.json"):
        SeedancePipeline.from_pretrained(tmp_path / "nothing")
    pipe.save_pretrained(tmp_path / "p")
    weights = tmp_path / "p" / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(WeightsError, match="transformer"):
        SeedancePipeline.from_pretrained(tmp_path / "p")


def test_cross_modal_off_runs_the_independent_path(pipe):
    out = pipe("a", cross_modal=False, generator=gen(), output_type="latent", **FAST)
    assert out.frames.shape == (1, 4, 8, 8, 8)


# ---------------------------------------------------------------------------------------------- training recipe
TRAIN_ARGS = [
    "--scenes", "bounce", "--num-clips", "8", "--shard-size", "2", "--layers", "2", "--video-dim", "32",
    "--video-heads", "2", "--audio-dim", "32", "--audio-heads", "2", "--cross-modal-dim", "32",
    "--cross-modal-heads", "2", "--batch-size", "4", "--log-every", "1", "--checkpoint-every", "2",
    "--keep-checkpoints", "3", "--val-every", "0", "--threads", "1", "--text-len", "24",
]


def launch(args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    # --multi_gpu makes accelerate start the processes with torchrun; on a CPU-only machine the recipe then asks
    # for cpu=True and they form a gloo group (accelerate launch --cpu would start a single process)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "bf16", "--dynamo_backend", "no", "--main_process_port", "0",
           str(ROOT / "pipelines" / "train_transformer.py"), *args]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{processes} processes" in result.stdout + result.stderr, "the processes did not form one group"
    return result


def test_training_recipe_two_processes_with_exact_resume(tmp_path):
    from safetensors.torch import load_file

    weights = save_tiny_weights(tmp_path / "w")
    common = ["--weights", str(weights), "--cache", str(tmp_path / "cache"), *TRAIN_ARGS]
    # uninterrupted: 4 steps
    launch([*common, "--out", str(tmp_path / "a"), "--steps", "4", "--export", str(tmp_path / "export")])
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["count"] == 8 and len(index["shards"]) == 4
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step_2", "step_4"]
    state = json.loads((tmp_path / "a" / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert state["step"] == 4
    assert list((tmp_path / "a" / "logs").rglob("events.out.tfevents*")), "no tensorboard log"
    # a run that stopped after step 2 holds what run A saved at step 2 (the state is written by the same code at
    # the same step; stopping runs themselves are covered by the SIGKILL tests and the autoencoders' two-process
    # stop-and-resume). Resumed to 4 from that checkpoint, it must give the uninterrupted run's weights. One launch
    # fewer than training B to step 2 saves a third of this test's time on a slow CPU.
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step_2", tmp_path / "b" / "checkpoints" / "step_2")
    result = launch([*common, "--out", str(tmp_path / "b"), "--steps", "4"])
    assert "resumed from" in result.stdout + result.stderr
    a = load_file(str(tmp_path / "a" / "checkpoints" / "step_4" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step_4" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ema_a = load_file(str(tmp_path / "a" / "checkpoints" / "step_4" / "ema.safetensors"))
    assert any(not torch.equal(ema_a[k], a[k]) for k in a)  # the EMA is its own average
    # the export is a loadable pipeline together with the frozen components
    for name in ("tokenizer", "text_encoder", "vae", "audio_vae", "vocoder"):
        os.symlink(weights / name, tmp_path / "export" / name)
    pipe = SeedancePipeline.from_pretrained(tmp_path / "export")
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a ball bounces", generator=gen(), **FAST)
    assert out.frames.shape == (1, 32, 64, 64, 3) and math.isfinite(float(out.audio.sum()))


def test_compiled_training_takes_the_same_steps_and_saves_the_same_checkpoint(tmp_path):
    """--compile BACKEND compiles the blocks in place: with dynamo's eager backend (the tracing and the graph, run as
    traced) two steps give bit-identical weights, under the plain model's parameter names."""
    from safetensors.torch import load_file

    from pipelines import train_transformer

    weights = save_tiny_weights(tmp_path / "w")
    common = ["--weights", str(weights), "--cache", str(tmp_path / "cache"), *TRAIN_ARGS, "--steps", "2",
              "--mixed-precision", "no"]  # in-process: match the accelerate state other in-process recipes left
    graphs = torch._dynamo.utils.counters["stats"]
    torch._dynamo.reset()
    try:
        graphs.clear()
        assert train_transformer.main([*common, "--out", str(tmp_path / "plain")]) == 0
        assert graphs["unique_graphs"] == 0
        assert train_transformer.main([*common, "--out", str(tmp_path / "compiled"), "--compile", "eager"]) == 0
        assert graphs["unique_graphs"] >= 1  # the blocks did go through dynamo
    finally:
        torch._dynamo.reset()
    plain = load_file(str(tmp_path / "plain" / "checkpoints" / "step_2" / "model.safetensors"))
    compiled = load_file(str(tmp_path / "compiled" / "checkpoints" / "step_2" / "model.safetensors"))
    assert plain.keys() == compiled.keys() and all(torch.equal(plain[k], compiled[k]) for k in plain)
    with pytest.raises(SystemExit):
        train_transformer.parse_args(["--compile", "no-such-backend"])


def test_latent_cache_is_refused_when_built_from_other_vaes_or_clips(tmp_path, capsys):
    from pipelines import train_transformer

    cache = tmp_path / "cache"
    small = ["--scenes", "bounce", "--num-clips", "4", "--shard-size", "2", "--threads", "1", "--cache-only",
             "--mixed-precision", "no"]  # in-process: match the accelerate state other in-process recipes left

    def build(weights: Path, *extra: str) -> int:
        return train_transformer.main(["--weights", str(weights), "--cache", str(cache), "--out",
                                       str(tmp_path / "out"), *small, *extra])

    weights = save_tiny_weights(tmp_path / "w")
    assert build(weights) == 0
    index = json.loads((cache / "index.json").read_text())
    assert set(index["meta"]["fingerprint"]) == {"syncworld", "scenes", "preset", "vae", "audio_vae"}
    assert build(weights) == 0  # the same VAEs and clips: the cache is used as it is
    other = save_tiny_weights(tmp_path / "w2", seed=1)  # other VAE weights
    with pytest.raises(SeedanceError, match="other vae, audio_vae .*--cache"):
        build(other)
    with pytest.raises(SeedanceError, match="other scenes"):
        build(weights, "--scenes", "keys")
    # an unfinished rebuild: a shard encoded by other VAEs is encoded again, not mixed in
    (cache / "index.json").unlink()
    shard = cache / "shard_00001.json"
    side = json.loads(shard.read_text())
    shard.write_text(json.dumps({**side, "fingerprint": {**side["fingerprint"], "vae": "another"}}))
    assert build(weights) == 0
    assert json.loads(shard.read_text())["fingerprint"] == index["meta"]["fingerprint"]
    # a cache from before fingerprints were kept is used, with a warning
    index = json.loads((cache / "index.json").read_text())
    del index["meta"]["fingerprint"]
    (cache / "index.json").write_text(json.dumps(index))
    capsys.readouterr()
    assert build(weights) == 0
    assert "records no fingerprint" in capsys.readouterr().out


def test_a_video_decoder_with_an_audio_cue_reads_the_clips_audio():
    """Generated and lip-synced clips decode their video with the clip's log-mel; the audio itself is untouched."""
    from seedance.models.video_vae import VideoVAE

    p = tiny_pipeline()
    perturb_outputs(p.transformer)
    torch.manual_seed(3)
    p.vae = VideoVAE(latent_channels=4, base_channels=8, channel_multipliers=(1, 1, 1), audio_cue_channels=8).eval()
    audio = (0.3 * np.sin(np.linspace(0, 800, 32000)) * (np.arange(32000) > 12000)).astype(np.float32)
    plain = [p("a ball", generator=gen(), **FAST), p("a face", audio=audio, generator=gen(), **FAST)]
    torch.nn.init.normal_(p.vae.decoder.audio_cue.frame_conv.weight, std=0.3)
    cued = [p("a ball", generator=gen(), **FAST), p("a face", audio=audio, generator=gen(), **FAST)]
    for before, after in zip(plain, cued):
        assert np.array_equal(before.audio, after.audio)
        assert not np.allclose(before.frames, after.frames, atol=1e-4)
    # 1.1 s = 18 frames, decoded as 20 (whole latent groups): the mel is stretched over the padding; a dub works
    assert p("a ball", duration=1.1, generator=gen(), **FAST).frames.shape[1] == 18
    video = np.zeros((32, 64, 64, 3), dtype=np.uint8)
    assert np.array_equal(p("a ball", video=video, generator=gen(), **FAST).frames[0], video.astype(np.float32))

"""The web app end to end: a real server on a free port, every endpoint called with gradio_client.

The model is the shipped one when weights/seedance-tiny exists, else a small
randomly initialised pipeline of the real classes (app.random_model); sampling
uses 2 steps so the whole module runs in well under a minute.
"""

from __future__ import annotations

import gc
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "weights" / "seedance-tiny"
STEPS = 2
UPLOAD_CAP_MB = 8


def streams_of(path) -> dict:
    """{type: (codec name, duration s)} of a media file, read with PyAV."""
    out = {}
    with av.open(str(path)) as container:
        for s in container.streams:
            if s.type == "video":
                frames = s.frames or sum(1 for _ in container.decode(s))
                out["video"] = (s.codec_context.name, frames / float(s.average_rate))
            elif s.type == "audio":
                out["audio"] = (s.codec_context.name, float(s.duration * s.time_base))
    return out


def video_path(value) -> str:
    return value["video"] if isinstance(value, dict) else value


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    if (SHIPPED / "model_index.json").is_file():
        return SHIPPED
    pytest.importorskip("pipelines.pipeline_seedance")
    from app.random_model import cached_random_pipeline

    return cached_random_pipeline(tmp_path_factory.getbasetemp() / "app-model", steps=STEPS)


@pytest.fixture(scope="module")
def expert_dir(tmp_path_factory) -> Path:
    from seedance.eval.syncexpert import DEFAULT_WEIGHTS, SyncExpert

    if (DEFAULT_WEIGHTS / "config.json").is_file():
        return DEFAULT_WEIGHTS
    folder = tmp_path_factory.mktemp("syncexpert")
    SyncExpert(embed_dim=16, video_widths=(8, 16), audio_widths=(16, 16)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(model_dir, expert_dir):
    from app.service import SeedanceService
    from app.ui import start_server
    from app.validate import Limits

    service = SeedanceService(model_dir, limits=Limits(max_upload_bytes=UPLOAD_CAP_MB * 2**20),
                              syncexpert=expert_dir).load()
    demo, url = start_server(service, default_steps=STEPS)  # ends with service.settle(): gc.freeze()
    client = Client(url, verbose=False)
    yield service, client, url
    demo.close()
    gc.unfreeze()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict:
    """A bouncing-ball clip in sync, the same clip with its audio 4 frames late, its audio as wav, junk files."""
    from scipy.io import wavfile

    from seedance.data.media import write_clip
    from seedance.data.syncworld import make_sample
    from seedance.eval.offset import shift_audio

    folder = tmp_path_factory.mktemp("media")
    s = make_sample("bounce", 0, "tiny", "test")
    write_clip(folder / "bounce.mp4", s.frames, s.audio, s.fps, s.sample_rate)
    write_clip(folder / "late.mp4", s.frames, shift_audio(s.audio, 4, s.fps, s.sample_rate), s.fps, s.sample_rate)
    wavfile.write(folder / "speech.wav", s.sample_rate, (s.audio * 32767).astype(np.int16))
    (folder / "notes.mp4").write_text("this is a text file with a video extension\n" * 50)
    # ten minutes of 8 kHz 8-bit audio: 4.8 MB, under the upload cap, over the length cap
    wavfile.write(folder / "ten_minutes.wav", 8000, np.full(8000 * 600, 128, np.uint8))
    (folder / "big.mp4").write_bytes(b"\0" * (UPLOAD_CAP_MB * 2**20 + 4096))
    return {k: folder / f for k, f in [("clip", "bounce.mp4"), ("late", "late.mp4"), ("wav", "speech.wav"),
                                       ("junk", "notes.mp4"), ("long", "ten_minutes.wav"), ("big", "big.mp4")]}


def generate(client, prompt="a red ball bounces on a wooden floor", duration=1.5, seed=0, randomize=False, **kw):
    args = dict(negative_prompt="", duration=duration, steps=STEPS, seed=seed, randomize_seed=randomize,
                guidance=3.0, audio_guidance=3.0, sync_guidance=1.0)
    args.update(kw)
    return client.predict(prompt, *args.values(), api_name="/generate")


def test_every_action_is_a_named_endpoint(served):
    _, client, _ = served
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/generate", "/dub", "/lipsync", "/evaluate", "/encode_text"} <= names


def test_sampler_buttons_set_the_few_step_sampler_and_the_model_default(served):
    from seedance.generate_cli import FAST_SAMPLING

    service, client, _ = served
    default_shift = service.pipe.sampling_defaults.get("timestep_shift", 1.0)
    for tab in ("gen", "dub", "lip"):
        fast = client.predict(api_name=f"/{tab}_fast_sampler")
        assert tuple(fast) == (FAST_SAMPLING["num_inference_steps"], FAST_SAMPLING["timestep_shift"])
        assert tuple(client.predict(api_name=f"/{tab}_default_sampler")) == (STEPS, default_shift)


def test_generate_gives_h264_aac_clip_of_requested_duration(served):
    from app.service import gradio_temp_dir

    service, client, _ = served
    video, plot, report, seed = generate(client, duration=1.5, seed=7)
    path = video_path(video)
    info = streams_of(path)
    assert info["video"][0] == "h264" and info["audio"][0] == "aac"
    assert info["video"][1] == pytest.approx(1.5, abs=1e-6)
    assert info["audio"][1] == pytest.approx(1.5, abs=0.07)  # AAC rounds up to whole 1024-sample frames
    assert seed == 7
    assert report["duration_s"] == pytest.approx(1.5)
    assert report["settings"]["num_inference_steps"] == STEPS
    assert report["settings"]["timestep_shift"] == 1.0  # the slider starts at the model's default
    _, _, shifted, _ = generate(client, duration=1.0, seed=7, timestep_shift=3.0)
    assert shifted["settings"]["timestep_shift"] == 3.0
    stop = service.pipe.sampling_defaults.get("guidance_stop", 1.0)
    assert report["settings"]["guidance_stop"] == stop  # the slider starts at the model's default
    _, _, stopped, _ = generate(client, duration=1.0, seed=7, timestep_shift=3.0, guidance_stop=0.5)
    assert stopped["settings"]["guidance_stop"] == 0.5
    for key in ("offset_frames", "offset_ms", "confidence", "av_align", "event_f1", "lse_d", "lse_c"):
        assert key in report
    assert report["lse_d"] is not None and report["lse_c"] is not None
    assert Path(plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    temp = gradio_temp_dir().resolve()
    for p in (path, plot):
        assert Path(p).resolve().is_relative_to(temp), p


def test_randomized_seed_is_reported_and_reproduces_the_clip(served):
    from seedance.data.media import read_clip

    _, client, _ = served
    video_a, _, _, seed = generate(client, seed=0, randomize=True, duration=1.0)
    assert isinstance(seed, (int, float)) and seed == int(seed)
    video_b, _, report, seed_b = generate(client, seed=int(seed), randomize=False, duration=1.0)
    video_c, _, _, _ = generate(client, seed=(int(seed) + 1) % 2**31, randomize=False, duration=1.0)
    assert seed_b == seed and report["settings"]["seed"] == seed
    a, b, c = (read_clip(video_path(v)) for v in (video_a, video_b, video_c))
    # AAC encoding is deterministic, so the same seed must give the very same samples
    assert np.array_equal(a.audio, b.audio) and not np.array_equal(a.audio, c.audio)
    # libx264 output varies slightly from run to run under CPU load (seen: mean |diff| ~2.7 of 255 on noise)
    assert np.abs(a.frames.astype(int) - b.frames).mean() < 6


def test_generate_reports_live_step_progress(served):
    import time

    _, client, _ = served
    steps = 30
    job = client.submit("a red ball bounces", "", 1.0, steps, 0, False, 3.0, 3.0, 1.0, api_name="/generate")
    seen = []
    while not job.done():
        status = job.status()
        seen += [(p.index, p.length, p.unit) for p in (status.progress_data or [])]
        time.sleep(0.01)
    job.result()
    # the pipeline's own tqdm bar, tracked by gr.Progress(track_tqdm=True), seen while the job ran
    step_updates = [s for s in seen if s[1] == steps and s[2] == "steps"]
    assert step_updates, seen
    assert all(0 <= index <= steps for index, _, _ in step_updates)


def test_same_seed_gives_identical_arrays(served):
    service, _, _ = served
    kwargs, seed = service.settings(STEPS, 11, False, None, None, None, None, 1.0)
    first, _ = service._run("two blue cubes bounce", seed, kwargs)
    second, _ = service._run("two blue cubes bounce", seed, kwargs)
    assert np.array_equal(first.frames, second.frames) and np.array_equal(first.audio, second.audio)


def test_dub_adds_sound_to_an_uploaded_video(served, media):
    _, client, _ = served
    video, plot, report, _ = client.predict(handle_file(str(media["clip"])), "", STEPS, 0, False, 3.0, 3.0, 1.0,
                                            api_name="/dub")
    info = streams_of(video_path(video))
    assert info["video"][0] == "h264" and info["audio"][0] == "aac"
    assert info["video"][1] == pytest.approx(2.0, abs=1e-6)  # the uploaded clip's length
    assert report["settings"]["mode"] == "video-to-audio"


def test_lipsync_animates_uploaded_audio(served, media):
    import seedance.data.media

    if not hasattr(seedance.data.media, "read_audio"):
        pytest.skip("seedance.data.media.read_audio (used by `seedance lipsync` too) is not written yet")
    _, client, _ = served
    video, plot, report, _ = client.predict(handle_file(str(media["wav"])), "a cartoon face talking", STEPS, 0,
                                            False, 3.0, 3.0, 1.0, api_name="/lipsync")
    info = streams_of(video_path(video))
    assert info["video"][0] == "h264" and info["audio"][0] == "aac"
    assert info["video"][1] == pytest.approx(2.0, abs=1e-6)
    assert report["settings"]["mode"] == "audio-to-video"


def test_evaluate_measures_the_offset_of_an_uploaded_clip(served, media):
    _, client, _ = served
    in_sync, shift_plot, clip_plot = client.predict(handle_file(str(media["clip"])), api_name="/evaluate")
    late, _, _ = client.predict(handle_file(str(media["late"])), api_name="/evaluate")
    # delaying the audio by 4 frames moves the measured offset by 4 (positive = audio late)
    assert late["offset_frames"] - in_sync["offset_frames"] == pytest.approx(4, abs=1)
    assert late["offset_ms"] == pytest.approx(late["offset_frames"] * 1000 / 16, abs=0.1)
    assert in_sync["confidence"] > 0
    assert in_sync["lse_d"] is not None and in_sync["lse_c"] >= 0
    assert 0.0 <= in_sync["av_align"] <= 1.0 and 0.0 <= in_sync["event_f1"] <= 1.0
    for p in (shift_plot, clip_plot):
        assert Path(p).read_bytes()[:4] == b"\x89PNG"


def test_text_encoder_tab_shows_tokens_engram_routing_and_neighbours(served):
    service, client, _ = served
    from app.text_inspect import caption_corpus

    caption = caption_corpus(1)[0]  # a training caption: its nearest neighbour must be itself
    tokens, engram_plot, routing_plot, info, nearest = client.predict(caption, api_name="/encode_text")
    rows = tokens["data"]
    assert len(rows) == info["tokens"] >= 3
    assert rows[0][1] == "<s>" and rows[-1][1] == "</s>"
    header = tokens["headers"]
    gate = [r[header.index("gate α")] for r in rows]
    assert all(0.0 <= g <= 1.0 for g in gate)
    hits = [r[header.index("2g hits")] for r in rows[1:]]
    assert all(h >= 1 for h in hits)  # every bigram of a training caption occurs in the training captions
    assert info["engram_table_mb"] > 0 and "model" in info["engram_table_location"]
    assert info["encode_latency_ms"] > 0
    assert nearest["data"][0][2] == caption and nearest["data"][0][1] == pytest.approx(1.0, abs=1e-4)
    cosines = [r[1] for r in nearest["data"]]
    assert cosines == sorted(cosines, reverse=True)
    for p in (engram_plot, routing_plot):
        assert Path(p).read_bytes()[:4] == b"\x89PNG"


def test_routing_heatmap_matches_the_model_s_own_expert_loads(served):
    """The inspector recomputes routing from router logits; it must agree with what the MoE layers counted."""
    from app.text_inspect import inspect_text

    service, _, _ = served
    tokenizer, encoder = service.text_model()
    result = inspect_text(tokenizer, encoder, "two bouncy red plastic discs on a navy background")
    # after the latency runs, each layer's last_load is for this same prompt
    for weights, layer in zip(result["routing"], encoder.moe_layers()):
        picked = (weights > 0).sum(axis=1)  # tokens per expert
        assert np.array_equal(picked, layer.last_load.numpy().astype(int))
        assert np.allclose(weights.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "prompt is empty"),
        ("huge", "10,000 characters"),
        ("steps", "less than minimum value 1"),  # the slider's own bound check
        ("guidance", "greater than maximum value 30"),
        ("duration", "greater than maximum value 8"),
        ("shift", "less than minimum value 0.25"),
        ("stop", "greater than maximum value 1"),
    ],
)
def test_bad_generate_settings_get_one_line_errors(served, case, message):
    _, client, _ = served
    kwargs = {
        "empty": dict(prompt="   "),
        "huge": dict(prompt="x" * 10_000),
        "steps": dict(steps=-3),
        "guidance": dict(guidance=1e6),
        "duration": dict(duration=600.0),
        "shift": dict(timestep_shift=0.0),
        "stop": dict(timestep_shift=1.0, guidance_stop=1.5),
    }[case]
    prompt = kwargs.pop("prompt", "a red ball")
    with pytest.raises(AppError) as err:
        generate(client, prompt=prompt, **kwargs)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_uploads_get_errors_and_the_app_keeps_serving(served, media):
    service, client, _ = served
    loads = service.loads
    with pytest.raises(AppError, match="not a media file"):
        client.predict(handle_file(str(media["junk"])), api_name="/evaluate")
    with pytest.raises(AppError, match="not a media file"):
        client.predict(handle_file(str(media["junk"])), "", STEPS, 0, False, 3.0, 3.0, 1.0, api_name="/dub")
    with pytest.raises(AppError, match=r"plays 10\.0 min"):
        client.predict(handle_file(str(media["long"])), "a face", STEPS, 0, False, 3.0, 3.0, 1.0,
                       api_name="/lipsync")
    with pytest.raises(AppError, match="no picture"):
        client.predict(handle_file(str(media["wav"])), api_name="/evaluate")
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict(handle_file(str(media["big"])), api_name="/evaluate")
    # still serving, same model
    video, _, _, _ = generate(client, duration=1.0)
    assert streams_of(video_path(video))["video"][0] == "h264"
    assert service.loads == loads


def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


def test_request_garbage_is_freed_after_each_request(served, tmp_path):
    """Plot figures are reference cycles holding megabytes; each request must free its own (issue 9: RSS flat)."""
    from app import plots

    service, _, _ = served
    frames = np.zeros((32, 64, 64, 3), np.uint8)
    audio = np.random.default_rng(0).standard_normal(32000).astype(np.float32)
    sizes = {}
    for i in range(16):
        plots.clip_figure(frames, audio, 16, 16000, service.preset, tmp_path / "plot.png")
        service.after_request()
        if i + 1 in (4, 16):
            sizes[i + 1] = rss_mb()
    # without after_request this grew ~6-9 MB per figure (116 MB over 20)
    assert sizes[16] - sizes[4] < 40, sizes


def test_serves_no_file_outside_its_outputs(served):
    _, client, url = served
    video, _, _, _ = generate(client, duration=1.0)
    ok = urllib.request.urlopen(f"{url}gradio_api/file={video_path(video)}", timeout=30)
    assert ok.status == 200 and len(ok.read()) > 1000
    for path in ("/etc/passwd", str(REPO / "pyproject.toml"), str(REPO / "app" / "ui.py")):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=30)
        assert err.value.code in (403, 404)


def test_binds_localhost_by_default(served):
    import argparse

    from app.cli import add_parser

    _, _, url = served
    assert url.startswith("http://127.0.0.1:")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["app"])
    assert args.host == "127.0.0.1" and args.share == "no"


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses with a socket listening on `port` (from /proc/net/tcp)."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            out.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return out


def test_seedance_app_command_serves_on_localhost_only(model_dir, tmp_path):
    import os
    import subprocess
    import sys
    import time

    from app.service import free_port

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    log = tmp_path / "app.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "seedance.cli", "app", "--port", str(port), "--weights",
                                 str(model_dir)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 240  # imports + model load + warm-up; slow when the 2 cores are shared
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"seedance app exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        else:
            pytest.fail(f"seedance app did not answer within 240 s: {log.read_text()[-2000:]}")
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cli_rejects_a_bad_port_in_one_line(capsys):
    from seedance.cli import main

    assert main(["app", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["error: --port must be between 0 and 65535, got 70000"]

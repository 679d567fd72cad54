"""`seedance generate`, `dub` and `lipsync` end to end on a small random pipeline of the real classes.

The clips are noise (the model is untrained), but every step a user's command takes runs for real: loading
the folder, sampling, decoding, the vocoder, and muxing H.264 + AAC through PyAV. Paths carry spaces,
quotes and non-ASCII letters on purpose.
"""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np
import pytest

from app.random_model import build_random_pipeline
from seedance.cli import main
from seedance.data.media import read_clip, write_clip

ROOT = Path(__file__).resolve().parent.parent
AWKWARD = "dir with spaces 'quoted' ünïcödé"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_random_pipeline(tmp_path_factory.mktemp("toy") / AWKWARD / "model")


def streams(path: Path) -> dict[str, tuple[str, float]]:
    """codec name and duration in seconds of each stream kind."""
    with av.open(str(path)) as container:
        return {s.type: (s.codec_context.name, float(s.duration * s.time_base)) for s in container.streams}


def test_generate_writes_h264_aac_of_the_requested_duration(model_dir, tmp_path, capsys):
    out = tmp_path / AWKWARD / "clip «1».mp4"
    out.parent.mkdir(parents=True)
    code = main(["generate", "a red ball bounces", "-o", str(out), "--weights", str(model_dir),
                 "--steps", "2", "--duration", "1.5"])
    assert code == 0 and out.is_file()
    info = streams(out)
    assert info["video"][0] == "h264" and info["audio"][0] == "aac"
    assert info["video"][1] == pytest.approx(1.5, abs=1 / 16)
    clip = read_clip(out)
    assert clip.frames.shape[0] == 24 and clip.audio.shape[0] == pytest.approx(24000, abs=160)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_batch_prompts_file_writes_one_clip_per_line(model_dir, tmp_path):
    prompts = tmp_path / "my prompts.txt"
    prompts.write_text("a red ball bounces\n\nkeys light up\n", encoding="utf-8")
    out_dir = tmp_path / "clips dir"
    assert main(["generate", "--prompts", str(prompts), "--out-dir", str(out_dir), "--weights", str(model_dir),
                 "--steps", "1"]) == 0
    assert len(sorted(out_dir.glob("*.mp4"))) == 2
    assert len((out_dir / "prompts.0.jsonl").read_text().splitlines()) == 2


def test_batch_prompts_in_batches_match_clips_made_one_at_a_time(model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red ball bounces\nkeys light up\na face talks\n", encoding="utf-8")
    common = ["--weights", str(model_dir), "--steps", "2", "--seed", "5"]
    assert main(["generate", "--prompts", str(prompts), "--out-dir", str(tmp_path / "b2"), "--batch-size", "2",
                 *common]) == 0
    batched = sorted((tmp_path / "b2").glob("*.mp4"))
    assert [p.name[:4] for p in batched] == ["0000", "0001", "0002"]  # 2 batches: one of 2, one of 1
    alone = tmp_path / "alone.mp4"  # line 3 is seed 5 + 2
    assert main(["generate", "a face talks", "-o", str(alone), "--weights", str(model_dir), "--steps", "2",
                 "--seed", "7"]) == 0
    a, b = read_clip(alone), read_clip(batched[2])
    assert np.abs(a.frames.astype(float) - b.frames.astype(float)).mean() < 0.5  # uint8 levels, through H.264
    assert np.abs(a.audio - b.audio).max() < 1e-2
    assert main(["generate", "--prompts", str(prompts), "--batch-size", "0", *common]) == 2
    assert "--batch-size must be a positive whole number" in capsys.readouterr().err


def test_dub_and_lipsync_keep_the_given_modality(model_dir, tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(16, 64, 64, 3), dtype=np.uint8)
    silent = write_clip(tmp_path / "silent clip é.mp4", frames, None, 16, 16000)
    dubbed = tmp_path / "dubbed 'x'.mp4"
    assert main(["dub", str(silent), "-o", str(dubbed), "--weights", str(model_dir), "--steps", "1"]) == 0
    assert streams(dubbed)["audio"][0] == "aac" and streams(dubbed)["video"][1] == pytest.approx(1.0, abs=1 / 16)

    speech = (0.3 * np.sin(np.linspace(0, 3000, 16000))).astype(np.float32)
    wav = tmp_path / "voice ü.wav"
    with wave.open(str(wav), "wb") as f:  # a plain WAV, as a user's recording would be
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((speech * 32767).astype("<i2").tobytes())
    lip = tmp_path / "lip sync.mp4"
    assert main(["lipsync", str(wav), "-o", str(lip), "--weights", str(model_dir), "--steps", "1"]) == 0
    assert read_clip(lip).frames.shape[0] == 16


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "", "-o", "x.mp4"], "prompt is empty"),
        (["generate", "x" * 10_000, "-o", "x.mp4"], "characters"),
        (["generate", "a ball", "-o", "x.mp4", "--steps", "0"], "--steps"),
        (["generate", "a ball", "-o", "x.mp4", "--guidance", "nan"], "--guidance"),
        (["generate", "a ball", "-o", "x.mp4", "--shift", "nan"], "--shift"),
        (["generate", "a ball", "-o", "x.mp4", "--shift", "-1"], "timestep_shift"),
        (["generate", "a ball", "-o", "x.mp4", "--guidance-stop", "nan"], "--guidance-stop"),
        (["generate", "a ball", "-o", "x.mp4", "--guidance-stop", "2"], "guidance_stop"),
        (["generate", "a ball", "-o", "x.mp4", "--duration", "60"], "duration"),
        (["generate", "a ball", "-o", "x.gif"], "unsupported output"),
        (["dub", "does not exist.mp4", "-o", "x.mp4"], "no such file"),
    ],
)
def test_bad_input_is_one_line_error_and_no_output(model_dir, tmp_path, capsys, argv, message):
    argv = [a if a != "x.mp4" and a != "x.gif" else str(tmp_path / a) for a in argv]
    code = main([*argv, "--weights", str(model_dir), "--steps" if "--steps" not in argv else "--seed", "1"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and "Traceback" not in err and len(err.splitlines()) == 1
    assert message in err, err
    assert not list(tmp_path.iterdir()), "a failed command left a file behind"


def test_fast_flag_picks_the_few_step_sampler_unless_told_otherwise():
    from seedance.cli import build_parser
    from seedance.generate_cli import FAST_SAMPLING, call_kwargs

    parse = build_parser().parse_args
    assert call_kwargs(parse(["generate", "a ball", "--fast"])) == FAST_SAMPLING
    assert call_kwargs(parse(["generate", "a ball", "--fast", "--steps", "6"])) == {
        "num_inference_steps": 6, "timestep_shift": FAST_SAMPLING["timestep_shift"]}
    assert call_kwargs(parse(["dub", "v.mp4", "--shift", "2"])) == {"timestep_shift": 2.0}
    assert "timestep_shift" not in call_kwargs(parse(["generate", "a ball"]))
    assert call_kwargs(parse(["generate", "a ball", "--guidance-stop", "0.5"])) == {"guidance_stop": 0.5}


def test_missing_weights_folder_says_what_to_do(tmp_path, capsys):
    code = main(["generate", "a ball", "-o", str(tmp_path / "x.mp4"), "--weights", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code != 0 and "model_index.json" in err and "Traceback" not in err


def test_demo_generates_every_example_prompt_and_lists_them(model_dir, tmp_path):
    from seedance.demo import CLIPS_START

    out = tmp_path / "samples"
    assert main(["demo", "--out", str(out), "--weights", str(model_dir)]) == 0
    prompts = [p for p in (ROOT / "samples" / "prompts.txt").read_text().splitlines() if p.strip()]
    clips = sorted(out.glob("*.mp4"))
    assert len(clips) == len(prompts)
    readme = (out / "README.md").read_text()
    assert CLIPS_START in readme and all(c.name in readme for c in clips) and all(p in readme for p in prompts)
    assert main(["demo", "--out", str(out), "--weights", str(model_dir)]) == 0  # a rerun rewrites, not appends
    assert (out / "README.md").read_text().count(CLIPS_START) == 1


SHIPPED = ROOT / "weights" / "seedance-tiny"


@pytest.mark.skipif(not (SHIPPED / "model_index.json").is_file(), reason="no shipped generator in weights/")
def test_shipped_model_generates_a_clip_with_sound(tmp_path):
    out = tmp_path / "shipped.mp4"
    # a talking face speaks for most of the clip (a bouncing object may rightly stay silent between impacts)
    prompt = (ROOT / "samples" / "prompts.txt").read_text().splitlines()[0]
    assert prompt.startswith("talking face")
    assert main(["generate", prompt, "-o", str(out)]) == 0
    info = streams(out)
    assert info["video"][0] == "h264" and info["audio"][0] == "aac"
    clip = read_clip(out)
    assert clip.frames.shape == (32, 64, 64, 3)
    assert clip.frames.std() > 1.0 and np.abs(clip.audio).max() > 1e-3  # a picture and a sound, not a blank

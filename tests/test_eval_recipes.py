"""The evaluation models' training recipes run, checkpoint atomically, resume and export loadable weights."""

from __future__ import annotations

import json

import pytest

from pipelines import train_probes, train_syncexpert
from seedance.eval.probes import load_probes
from seedance.eval.syncexpert import load_syncexpert

SMALL_SE = json.dumps({"video_widths": [8, 8], "audio_widths": [8, 8], "embed_dim": 8})
SMALL_PROBE = json.dumps({"video_widths": [8, 8], "audio_widths": [8, 8], "embed_dim": 8})


@pytest.mark.parametrize(
    ("recipe", "extra", "loader"),
    [
        (train_syncexpert, ["--model-config", SMALL_SE, "--batch-size", "4"], load_syncexpert),
        (train_probes, ["--model-config", SMALL_PROBE, "--batch-size", "4"], load_probes),
    ],
)
def test_recipe_trains_resumes_and_exports(tmp_path, capsys, recipe, extra, loader):
    common = [
        "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), "--scenes", "bounce,keys",
        "--clips-per-scene", "2", "--val-clips-per-scene", "1", "--save-every", "1", "--eval-every", "100",
        "--keep-checkpoints", "2", *extra,
    ]  # fmt: skip
    assert recipe.main([*common, "--steps", "2"]) == 0
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_0000001", "step_0000002"]
    assert json.loads((checkpoints / "step_0000002" / "train_state.json").read_text())["step"] == 2
    capsys.readouterr()
    assert recipe.main([*common, "--steps", "3", "--export", str(tmp_path / "export")]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_0000002", "step_0000003"]  # the oldest pruned
    model = loader(tmp_path / "export")
    info = json.loads((tmp_path / "export" / "train_info.json").read_text())
    assert info["step"] == 3 and "accelerate launch" in info["command"]
    assert not any(p.suffix in (".bin", ".pt", ".pkl") for p in (tmp_path / "export").iterdir())
    assert sum(p.numel() for p in model.parameters()) < 200_000


def test_probe_recipe_adds_a_word_spotter_to_trained_probes(tmp_path):
    # --init-from + --train-only words: the loaded parts stay bit-identical, only the new spotter trains
    common = ["--cache", str(tmp_path / "cache"), "--scenes", "face", "--clips-per-scene", "2",
              "--val-clips-per-scene", "1", "--eval-every", "100", "--batch-size", "2"]  # fmt: skip
    assert train_probes.main([*common, "--out", str(tmp_path / "a"), "--steps", "1", "--model-config", SMALL_PROBE,
                              "--export", str(tmp_path / "base")]) == 0  # fmt: skip
    spotter = json.dumps({"word_spotter_width": 8})
    assert train_probes.main([*common, "--out", str(tmp_path / "b"), "--steps", "2", "--init-from",
                              str(tmp_path / "base"), "--model-config", spotter, "--train-only", "words",
                              "--spec-augment", "--export", str(tmp_path / "words")]) == 0  # fmt: skip
    base, words = load_probes(tmp_path / "base"), load_probes(tmp_path / "words")
    assert words.word_spotter is not None and base.word_spotter is None
    for name, tensor in base.state_dict().items():
        assert (words.state_dict()[name] == tensor).all(), name
    with pytest.raises(SystemExit):
        train_probes.parse_args(["--out", str(tmp_path), "--train-only", "loudness"])


def test_probe_recipe_trains_a_pitch_spotter_that_reads_the_f0_track(tmp_path):
    common = ["--cache", str(tmp_path / "cache"), "--scenes", "face", "--clips-per-scene", "2",
              "--val-clips-per-scene", "1", "--eval-every", "100", "--batch-size", "2"]  # fmt: skip
    assert train_probes.main([*common, "--out", str(tmp_path / "a"), "--steps", "1", "--model-config", SMALL_PROBE,
                              "--export", str(tmp_path / "base")]) == 0  # fmt: skip
    spotter = json.dumps({"pitch_spotter_width": 8, "pitch_spotter_f0": True})
    assert train_probes.main([*common, "--out", str(tmp_path / "b"), "--steps", "2", "--init-from",
                              str(tmp_path / "base"), "--model-config", spotter, "--train-only", "pitch",
                              "--pitch-track-dropout", "0.5", "--export", str(tmp_path / "pitch")]) == 0  # fmt: skip
    base, pitch = load_probes(tmp_path / "base"), load_probes(tmp_path / "pitch")
    assert pitch.config.pitch_spotter_f0 and pitch.pitch_spotter.net[0].in_channels == pitch.config.n_mels + 2
    for name, tensor in base.state_dict().items():
        assert (pitch.state_dict()[name] == tensor).all(), name
    for bad in ("1.0", "-0.1", "nan"):
        with pytest.raises(SystemExit):
            train_probes.parse_args(["--out", str(tmp_path), "--pitch-track-dropout", bad])


def test_probe_recipe_adds_object_heads_and_more_voices(tmp_path):
    # object heads trained alone on the whole clips' cues; extra training faces in other voices, never held-out ones
    from pipelines.syncworld_cache import render_faces_with_voices, voice_gender
    from seedance.config import get_preset

    common = ["--cache", str(tmp_path / "cache"), "--clips-per-scene", "2", "--val-clips-per-scene", "1",
              "--eval-every", "100", "--batch-size", "2"]  # fmt: skip
    assert train_probes.main([*common, "--scenes", "bounce", "--out", str(tmp_path / "a"), "--steps", "1",
                              "--model-config", SMALL_PROBE, "--export", str(tmp_path / "base")]) == 0  # fmt: skip
    objects = json.dumps({"object_cue_width": 8})
    assert train_probes.main([*common, "--scenes", "bounce", "--out", str(tmp_path / "b"), "--steps", "2",
                              "--init-from", str(tmp_path / "base"), "--model-config", objects, "--train-only",
                              "colors,count", "--export", str(tmp_path / "objects")]) == 0  # fmt: skip
    base, extended = load_probes(tmp_path / "base"), load_probes(tmp_path / "objects")
    assert extended.object_heads is not None
    for name, tensor in base.state_dict().items():
        assert (extended.state_dict()[name] == tensor).all(), name
    assert train_probes.main([*common, "--scenes", "face", "--out", str(tmp_path / "c"), "--steps", "1",
                              "--init-from", str(tmp_path / "objects"), "--model-config",
                              json.dumps({"word_spotter_width": 8}), "--train-only", "words",
                              "--extra-voices", "en-gb-scotland+m2,en-us+f1", "--extra-clips", "2"]) == 0  # fmt: skip
    clips = render_faces_with_voices(get_preset("tiny"), ("en-gb-scotland+m2", "en-us+f1"), 2, 500_000)
    assert [lab["voice"] for lab in clips.labels] == ["en-gb-scotland+m2", "en-us+f1"]
    assert [lab["gender"] for lab in clips.labels] == ["male", "female"] and clips.audio.std(axis=1).min() > 0.01
    assert voice_gender("en+f3") == "female"
    assert voice_gender("en+Hugo") == "male" and voice_gender("en-us+Annie") == "female"  # named variants
    with pytest.raises(ValueError, match="gender"):
        voice_gender("en+klatt")  # its variant file names no gender
    with pytest.raises(SystemExit):
        train_probes.parse_args(["--out", str(tmp_path), "--extra-voices", "en-gb-x-rp+m7"])  # a held-out variant


def test_clip_cache_renders_again_when_syncworld_changed(tmp_path, capsys):
    # a cache rendered by an older SyncWorld (here: its audio zeroed, its fingerprint another) is not read
    from safetensors.numpy import load_file, save_file

    from pipelines.syncworld_cache import cache_file, load_or_render, syncworld_fingerprint
    from seedance.config import get_preset

    preset = get_preset("tiny")
    fresh = load_or_render(tmp_path, preset, "face", "test", 2)
    path = cache_file(tmp_path, preset, "face", "test", 2)
    assert json.loads(path.with_suffix(".json").read_text())["syncworld"] == syncworld_fingerprint()
    assert "rendering it again" not in capsys.readouterr().out
    stored = load_file(str(path))
    save_file({"frames": stored["frames"], "audio": stored["audio"] * 0}, str(path))
    assert load_or_render(tmp_path, preset, "face", "test", 2).audio.std() == 0  # same SyncWorld: read as stored
    meta = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**meta, "syncworld": "an-older-one"}))
    again = load_or_render(tmp_path, preset, "face", "test", 2)
    assert "rendering it again" in capsys.readouterr().out
    assert (again.audio == fresh.audio).all() and again.labels == fresh.labels

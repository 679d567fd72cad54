"""Prompt-adherence probes, caption parsing, Frechet analogs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seedance.data.syncworld import make_sample, sample_caption
from seedance.data.syncworld.common import COLORS
from seedance.errors import SeedanceError
from seedance.eval.frechet import embed_clips, frechet_distance
from seedance.eval.probes import (
    MULTI_LABEL,
    AttributeProbe,
    check_caption,
    default_classes,
    load_probes,
    parse_caption,
    predict,
    targets_from_labels,
)


@pytest.fixture(scope="module")
def probes():
    return load_probes()  # the shipped weights/probes


@pytest.mark.parametrize("scene", ["face", "bounce", "keys"])
def test_parse_caption_reads_what_syncworld_captions_name(scene):
    classes = default_classes()
    named = 0
    for split in ("train", "test"):
        for seed in range(60):
            caption, labels = sample_caption(scene, seed, split)
            target = targets_from_labels({"scene": scene, **labels}, classes)
            parsed = parse_caption(caption)
            assert parsed.get("scene") == scene, caption
            for name, value in parsed.items():
                named += 1
                if name in MULTI_LABEL:
                    assert set(value) == {c for c, f in zip(classes[name], target[name]) if f}, (caption, name)
                else:
                    assert classes[name][target[name]] == value, (caption, name)
    assert named >= 120 * 2  # scene and colours at least, in every caption


def test_parse_caption_handles_free_text():
    p = parse_caption("A deep purple face says 'tea' in a high-pitched woman's voice")
    assert p["scene"] == "face" and p["colors"] == ["deep purple"]
    assert p["voice"] == "female" and p["pitch"] == "high" and p["words"] == ["tea"]  # "deep" belongs to the colour
    p = parse_caption("three red balls bounce on a black floor")
    assert p == {"scene": "bounce", "colors": ["red"], "count": 3}
    assert parse_caption("a 2x3 grid of teal pads flash white as a synth plays")["count"] == 6
    assert parse_caption("a sunny afternoon") == {}


def test_colour_and_pitch_cues_measure_what_they_claim():
    model = AttributeProbe()
    frames = torch.zeros(1, 4, 3, 64, 64)
    frames[..., :, :] = torch.tensor(COLORS["teal"], dtype=torch.float32).view(3, 1, 1) / 255.0
    cues = model.color_cues(frames)[0]
    assert model.classes["colors"][int(cues.argmax())] == "teal"
    t = torch.arange(32000) / 16000.0
    tone = sum(torch.sin(2 * torch.pi * 150.0 * k * t) / k for k in range(1, 6))[None] * 0.3  # 150 Hz, harmonics
    median, spread, voiced = model.pitch_cues(tone)[0].tolist()
    assert abs(median - (np.log2(150.0) - 7.0)) < 0.03 and voiced > 0.9 and spread < 0.05


def test_pitch_track_follows_f0_on_the_log_mel_frames():
    model = AttributeProbe()
    t = torch.arange(32000) / 16000.0
    tone = sum(torch.sin(2 * torch.pi * 200.0 * k * t) / k for k in range(1, 6)) * 0.3  # 200 Hz, harmonics
    tone[:16000] = 0.0  # silent first second: unvoiced there
    track = model.pitch_track(tone[None])[0]  # [2, M]
    mel = model.logmel()(tone[None])[0]
    assert track.shape == (2, mel.shape[-1])
    voiced = track[1] > 0.5
    first = int(torch.nonzero(voiced)[0])
    # log-mel frame i is centred on sample i*hop, so the tone starts at frame 100 (uncentred F0 frames read 98)
    assert abs(first - 16000 // model.config.hop_length) <= 1, first
    assert not voiced[: first].any() and voiced[first + 3 :].all()
    assert torch.allclose(track[0, first + 3 :], torch.tensor(np.log2(200.0) - 7.0).float(), atol=0.03)
    assert torch.all(track[0, ~voiced] == 0)


def test_pitch_spotter_reads_the_f0_track_when_asked(tmp_path):
    from pipelines.train_probes import extend_probes

    with pytest.raises(SeedanceError, match="--reinit"):  # the saved spotter's input grows: it cannot load as it was
        _small_probes_extended(tmp_path, {"pitch_spotter_f0": True}, pitch_spotter_width=16)
    model = extend_probes(tmp_path / "probes", {"pitch_spotter_f0": True}, ("pitch",))
    audio = torch.randn(2, 32000) * 0.1
    frames, mel = torch.rand(2, 4, 3, 64, 64), model.logmel()(audio)
    got = model(frames, mel, audio=audio)["pitch"]
    heard = torch.cat([(mel - model.config.mel_mean) / model.config.mel_std, model.pitch_track(audio)], dim=1)
    assert torch.allclose(got, model.pitch_spotter(heard))
    other = model(frames, mel, audio=audio, pitch_track=torch.ones_like(model.pitch_track(audio)))["pitch"]
    assert not torch.allclose(got, other)  # the track is read, not ignored
    with pytest.raises(SeedanceError, match="pitch track"):
        model(frames, mel, audio=audio, pitch_track=model.pitch_track(audio)[..., :-1])
    with pytest.raises(SeedanceError, match="waveform"):
        model(frames, mel, pitch=torch.zeros(2, 3))


def test_shipped_probes_read_held_out_clips(probes):
    scenes = ("face", "bounce", "keys")
    for i, scene in enumerate(scenes):
        s = make_sample(scene, 4000 + i, "tiny", "test")
        pred = predict(probes, s.frames, s.audio)
        assert pred["scene"]["top"] == scene
        checks = check_caption(probes, s.frames, s.audio, s.caption)
        assert {c.attribute for c in checks} >= {"scene", "colors"}
        assert sum(c.matched for c in checks) >= len(checks) - 1, [c.to_dict() for c in checks]
    # a caption that names the wrong scene and colour is caught
    s = make_sample("bounce", 4100, "tiny", "test")
    wrong = "a cartoon face with hot pink lips says 'go'"
    wrong_colors = [c for c in COLORS if c not in s.labels["colors"] and c != "hot pink"][:1]
    checks = {c.attribute: c for c in check_caption(probes, s.frames, s.audio, f"{wrong} on a {wrong_colors[0]} face")}
    assert not checks["scene"].matched and not checks["colors"].matched


def test_frechet_distance_known_values():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2000, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    b = a + np.array([3.0, 0, 0, 0])  # mean moved by 3: d^2 = 9
    assert frechet_distance(a, b) == pytest.approx(9.0, rel=1e-3)
    c = a * 2.0  # covariance I against 4I: tr(I + 4I - 2 * 2I) = 1 per dimension, 4 in all
    assert frechet_distance(a, c) == pytest.approx(4.0, rel=0.1)
    with pytest.raises(Exception, match="at least 2"):
        frechet_distance(a[:1], b)


def test_frechet_analogs_tell_scenes_apart(probes):
    def clips(scene, first):
        return [(s.frames, s.audio) for s in (make_sample(scene, first + i, "tiny", "test") for i in range(6))]

    bounce_a, bounce_b = embed_clips(probes, clips("bounce", 0)), embed_clips(probes, clips("bounce", 50))
    keys = embed_clips(probes, clips("keys", 0))
    assert bounce_a.video.shape == (6, probes.config.embed_dim)
    same = frechet_distance(bounce_a.video, bounce_b.video)
    other = frechet_distance(bounce_a.video, keys.video)
    assert other > same
    assert frechet_distance(bounce_a.audio, keys.audio) > frechet_distance(bounce_a.audio, bounce_b.audio)


def _small_probes_extended(tmp_path, overrides: dict, **saved_config):
    """Small probes saved to tmp_path/probes, then loaded through extend_probes with `overrides`: (extended, saved)."""
    from pipelines.train_probes import extend_probes
    from seedance.models.io import atomic_save_pretrained

    torch.manual_seed(0)
    atomic_save_pretrained(AttributeProbe(video_widths=(8, 8), audio_widths=(8, 8), embed_dim=16, **saved_config),
                           tmp_path / "probes")  # fmt: skip
    return extend_probes(tmp_path / "probes", overrides), AttributeProbe.from_pretrained(str(tmp_path / "probes"))


def test_word_spotter_replaces_the_words_head_and_trains_alone(tmp_path):
    from pipelines.train_probes import extend_probes, freeze_all_but

    model, saved = _small_probes_extended(tmp_path, {"word_spotter_width": 16})
    assert torch.equal(model.heads["scene"].weight, saved.heads["scene"].weight)  # the trained parts loaded
    frames, mel = torch.rand(2, 4, 3, 64, 64), torch.randn(2, 64, 200) - 6
    logits = model(frames, mel, pitch=torch.zeros(2, 3))
    assert logits["words"].shape == (2, len(model.classes["words"]))
    assert torch.allclose(logits["words"], model.word_spotter((mel - model.config.mel_mean) / model.config.mel_std))
    freeze_all_but(model, ("words",))
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"word_spotter"}
    with pytest.raises(SeedanceError, match="only add new parts"):
        extend_probes(tmp_path / "probes", {"embed_dim": 32})
    both = extend_probes(tmp_path / "probes", {"word_spotter_width": 16, "pitch_spotter_width": 16})
    assert both(frames, mel, pitch=torch.zeros(2, 3))["pitch"].shape == (2, len(both.classes["pitch"]))
    freeze_all_but(both, ("pitch",))
    assert {n.split(".")[0] for n, p in both.named_parameters() if p.requires_grad} == {"pitch_spotter"}


def test_shipped_probes_hear_the_spoken_words(probes):
    # issue 3's words probe: the exact set of spoken words, on held-out face clips (held-out voices included)
    hits = []
    for i in range(30):
        s = make_sample("face", 4200 + i, "tiny", "test")
        probs = predict(probes, s.frames, s.audio)["words"]["probs"]
        want = set(s.labels["words"])
        hits.append(set(sorted(probs, key=probs.get, reverse=True)[: len(want)]) == want)
    assert np.mean(hits) >= 0.8


def test_shipped_probes_hear_the_voice_pitch(probes):
    # issue 3's pitch probe (low / medium / high for the voice), on held-out face clips
    hits = []
    for i in range(30):
        s = make_sample("face", 4200 + i, "tiny", "test")
        hits.append(predict(probes, s.frames, s.audio)["pitch"]["top"] == s.labels["pitch"])
    assert np.mean(hits) >= 0.65


def _clip_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0)[None]


def test_object_cues_count_bouncing_objects_and_see_every_drawn_colour():
    from seedance.eval.object_cues import MAX_COUNT, object_cue_dim, object_cues

    names = list(COLORS)
    palette = torch.tensor([COLORS[c] for c in names], dtype=torch.float32) / 255.0
    K = len(names)
    for i in range(8):  # objects that overlap, rest or leave the frame for a while are still counted
        s = make_sample("bounce", 4300 + i, "tiny", "test")
        cues = object_cues(_clip_tensor(s.frames), palette)[0]
        assert cues.shape == (object_cue_dim(K),)
        largest = int(cues[-(MAX_COUNT + 1) :].argmax())
        assert largest == s.labels["count"], (i, s.labels)
        want = set(s.labels["colors"])
        tight = cues[:K]
        assert {names[k] for k in tight.argsort(descending=True)[: len(want)].tolist()} == want
    for i in range(4):  # a key lit in its colour for a few frames still shows
        s = make_sample("keys", 4300 + i, "tiny", "test")
        tight = object_cues(_clip_tensor(s.frames), palette)[0, :K]
        want = {s.labels["key_color"], s.labels["light_color"]}
        assert {names[k] for k in tight.argsort(descending=True)[:2].tolist()} == want
    with pytest.raises(ValueError, match=r"\[B,F,3,H,W\]"):
        object_cues(torch.rand(4, 3, 64, 64), palette)


def test_object_heads_replace_colour_and_count_and_train_alone(tmp_path):
    from pipelines.train_probes import freeze_all_but

    model, saved = _small_probes_extended(tmp_path, {"object_cue_width": 8})
    assert torch.equal(model.heads["colors"].weight, saved.heads["colors"].weight)  # the trained parts loaded
    frames, mel = torch.rand(2, 4, 3, 64, 64), torch.randn(2, 64, 200) - 6
    clip = torch.rand(2, 32, 3, 64, 64)
    objects = model.object_cues(clip)
    logits = model(frames, mel, pitch=torch.zeros(2, 3), objects=objects)
    old = saved(frames, mel, pitch=torch.zeros(2, 3))
    assert torch.equal(logits["scene"], old["scene"])  # other heads unchanged
    assert not torch.allclose(logits["colors"], old["colors"])  # colours come from the object head
    teal, red = (torch.tensor(COLORS[c], dtype=torch.float32).view(1, 1, 3, 1, 1).expand(2, 8, 3, 64, 64) / 255.0
                 for c in ("teal", "red"))  # fmt: skip
    as_teal = model(frames, mel, pitch=torch.zeros(2, 3), objects=model.object_cues(teal))
    as_red = model(frames, mel, pitch=torch.zeros(2, 3), objects=model.object_cues(red))
    assert not torch.allclose(as_teal["colors"], as_red["colors"])  # the same 4 frames, other whole-clip cues
    freeze_all_but(model, ("colors", "count"))
    assert {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad} == {"object_heads", "object_proj"}


def test_shipped_probes_read_colours_and_counts(probes):
    # issue 3's colour and count probes, on held-out clips of every scene (counts: objects, keys or pads)
    colours, counts = [], []
    for scene in ("face", "bounce", "keys"):
        for i in range(10):
            s = make_sample(scene, 4400 + i, "tiny", "test")
            pred = predict(probes, s.frames, s.audio)
            target = targets_from_labels({"scene": scene, **s.labels}, probes.classes)
            want = {c for c, flag in zip(probes.classes["colors"], target["colors"]) if flag}
            probs = pred["colors"]["probs"]
            colours.append(set(sorted(probs, key=probs.get, reverse=True)[: len(want)]) == want)
            if target["count"] is not None:
                counts.append(pred["count"]["top"] == probes.classes["count"][target["count"]])
    assert np.mean(colours) >= 0.9 and np.mean(counts) >= 0.9, (np.mean(colours), np.mean(counts))


def test_voice_warp_moves_content_and_reinit_starts_a_spotter_fresh(tmp_path):
    from pipelines.train_probes import extend_probes, warp_axis

    m = torch.full((2, 8, 10), -11.0)
    m[:, 4, 6] = 0.0  # one loud cell: bin 4, frame 6
    squeezed = warp_axis(m, 2, torch.tensor([1.0, 1.5]), torch.tensor(-11.0))
    assert torch.equal(squeezed[0], m[0])  # factor 1 leaves a row alone
    assert squeezed[1, 4].argmax() == 4  # frame 6 read at output frame 6 / 1.5 = 4
    lowered = warp_axis(m, 1, torch.tensor([2.0, 1.0]), torch.tensor(-11.0))
    assert lowered[0, :, 6].argmax() == 2 and (lowered[0, 5:] == -11.0).all()  # past the end: silence
    kept, _ = _small_probes_extended(tmp_path, {}, word_spotter_width=8)
    fresh = extend_probes(tmp_path / "probes", {}, reinit=("words",))
    w = "word_spotter.score.weight"
    assert torch.equal(kept.state_dict()[w], AttributeProbe.from_pretrained(str(tmp_path / "probes")).state_dict()[w])
    assert not torch.equal(fresh.state_dict()[w], kept.state_dict()[w])
    assert torch.equal(fresh.heads["scene"].weight, kept.heads["scene"].weight)


def test_object_cues_of_a_long_clip_read_evenly_spread_frames(probes):
    from seedance.eval.probes import MAX_OBJECT_CUE_FRAMES, clip_object_cues, sample_frame_indices

    s = make_sample("bounce", 4500, "tiny", "test")
    long = np.concatenate([s.frames] * 100)  # 3200 frames: all at once their palette distances would take GBs
    cues = clip_object_cues(probes, long)
    picked = long[sample_frame_indices(len(long), MAX_OBJECT_CUE_FRAMES)]
    assert torch.equal(cues, probes.object_cues(torch.from_numpy(picked).permute(0, 3, 1, 2).float()[None] / 255.0))
    assert predict(probes, long, np.tile(s.audio, 100))["count"]["top"] == s.labels["count"]

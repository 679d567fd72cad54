"""`seedance eval sync | prompt | dist` end to end, on real files, with bad files in the batch."""

from __future__ import annotations

import csv
import json

import av
import numpy as np
import pytest

from seedance.cli import main
from seedance.data.media import write_clip
from seedance.data.syncworld import make_sample


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_cli")
    good = root / "good"
    good.mkdir()
    samples = [make_sample(scene, 11, "tiny", "test") for scene in ("face", "bounce", "keys")]
    paths = []
    for s, ext in zip(samples, ("mp4", "mkv", "webm")):
        paths.append(write_clip(good / f"{s.scene}.{ext}", s.frames, s.audio, s.fps, s.sample_rate))
    # 720p, 48 kHz 5.1 AAC: the keys clip scaled up (nearest) with its audio on six channels
    s = samples[2]
    big = np.repeat(np.repeat(s.frames[:16], 12, axis=1), 20, axis=2)[:, :720, :1280]
    from scipy.signal import resample_poly

    audio48 = resample_poly(s.audio[:16000], 3, 1).astype(np.float32)
    paths.append(write_clip(good / "hd51.mp4", big, np.stack([audio48] * 6), 16, 48_000))
    bad = root / "bad"
    bad.mkdir()
    silent = write_clip(bad / "silent.mp4", samples[0].frames, None, 16, 16000)
    junk = bad / "notes.mp4"
    junk.write_text("not a video\n" * 40)
    data = paths[1].read_bytes()
    cut = bad / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    zero = bad / "zero.mkv"  # a container with a video stream but no frames, and a little audio
    with av.open(str(zero), "w") as c:
        v = c.add_stream("libx264", rate=16)
        v.width, v.height, v.pix_fmt = 32, 32, "yuv420p"
        a = c.add_stream("pcm_s16le", rate=16000, layout="mono")
        af = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        af.sample_rate, af.pts = 16000, 0
        c.mux(a.encode(af))
        c.mux(a.encode(None))
        c.mux(v.encode(None))
    return {"root": root, "good": paths, "bad": [silent, junk, cut, zero], "samples": samples}


def test_eval_sync_scores_good_files_and_reports_bad_ones(media, capsys):
    out = media["root"] / "out"
    args = ["eval", "sync", *map(str, media["good"] + media["bad"]), "--json"]
    args += ["--csv", str(out / "sync.csv"), "--plot", str(out / "plots")]
    assert main(args) == 1  # some clips failed, the rest were scored
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["schema"] == "seedance.eval.sync/1"
    rows = {r["name"]: r for r in report["clips"]}
    for path in media["good"]:
        r = rows[str(path)]
        assert r["ok"] and r["syncexpert"] is not None
        assert abs(r["offset"]["offset_frames"]) <= 1 and abs(r["syncexpert"]["offset_frames"]) <= 1, r["name"]
    reasons = {"silent.mp4": "no audio stream", "notes.mp4": "not a readable media file", "cut.mkv": "truncated",
               "zero.mkv": "no frames"}
    for path in media["bad"]:
        r = rows[str(path)]
        assert not r["ok"] and reasons[path.name] in r["error"] and "\n" not in r["error"]
        assert f"error: {r['error']}" in captured.err
    assert report["n_failed"] == 4 and report["aggregate"]["n_clips"] == 4
    assert report["chance"]["n_clips"] == 4 and report["aggregate"]["lse_c_mean"] > report["chance"]["lse_c_mean"]
    with open(out / "sync.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    assert len(list((out / "plots").glob("*.png"))) == 4


def test_eval_sync_table_and_input_errors(media, capsys):
    assert main(["eval", "sync", str(media["good"][0]), "--no-syncexpert"]) == 0
    table = capsys.readouterr().out
    assert "face.mp4" in table and "aggregate:" in table and "chance: n/a" in table
    assert main(["eval", "sync", str(media["good"][0]), "--crop", "5,5,1,1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --crop") and err.count("\n") == 1
    assert main(["eval", "sync", str(media["good"][0]), "--syncexpert", str(media["root"] / "none")]) == 2
    assert "weights folder not found" in capsys.readouterr().err


def test_eval_prompt(media, capsys):
    s = media["samples"][1]
    assert main(["eval", "prompt", str(media["good"][1]), "--caption", s.caption, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "seedance.eval.prompt/1" and report["caption"] == s.caption
    assert report["parsed"]["scene"] == "bounce"
    assert report["adherence"] >= 0.5 and {c["attribute"] for c in report["checks"]} >= {"scene", "colors"}
    assert main(["eval", "prompt", str(media["bad"][1]), "--caption", "a red ball"]) == 2
    assert "not a readable media file" in capsys.readouterr().err


def test_eval_dist(media, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    for i in range(3):
        s = make_sample("bounce", 30 + i, "tiny", "test")
        write_clip(other / f"b{i}.mp4", s.frames, s.audio, s.fps, s.sample_rate)
    good_dir = media["good"][0].parent
    assert main(["eval", "dist", str(good_dir), str(other), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "seedance.eval.dist/1"
    assert report["a"]["n_clips"] == 4 and report["b"]["n_clips"] == 3
    assert report["fvd_analog"] > 0 and report["fad_analog"] > 0 and "not comparable" in report["note"]
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    assert main(["eval", "dist", str(good_dir), str(lonely)]) == 2
    assert "at least 2" in capsys.readouterr().err

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

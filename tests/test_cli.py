"""The `seedance` CLI: help for every subcommand, and bad input -> one line, non-zero exit, no traceback."""

import subprocess
import sys
from pathlib import Path

import pytest

from seedance.cli import build_parser


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seedance.cli", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def assert_one_line_error(result: subprocess.CompletedProcess, needle: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]


def test_every_subcommand_has_help():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert {"data", "demo"} <= set(subcommands)
    for name in subcommands:
        result = run_cli(name, "--help")
        assert result.returncode == 0, result.stderr
        assert "usage: seedance" in result.stdout


def test_unknown_scene_is_one_line_error(tmp_path):
    assert_one_line_error(run_cli("data", "make", "--scene", "volcano", "--n", "1", "--out", str(tmp_path)), "volcano")


@pytest.mark.parametrize("n", ["0", "-3"])
def test_non_positive_n_is_one_line_error(tmp_path, n):
    assert_one_line_error(run_cli("data", "make", "--scene", "bounce", "--n", n, "--out", str(tmp_path)), "--n")


def test_unwritable_out_dir_is_one_line_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_cli("data", "make", "--scene", "bounce", "--n", "1", "--out", str(blocker / "sub"))
    assert_one_line_error(result, "--out")


def test_unknown_preset_is_one_line_error(tmp_path):
    result = run_cli("data", "make", "--scene", "bounce", "--n", "1", "--out", str(tmp_path), "--preset", "huge")
    assert_one_line_error(result, "huge")


def test_data_show_on_corrupt_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    assert_one_line_error(run_cli("data", "show", str(bad)), "broken.mp4")


def test_data_show_missing_path(tmp_path):
    assert_one_line_error(run_cli("data", "show", str(tmp_path / "nope")), "nope")

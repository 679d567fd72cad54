"""`seedance train`: the accelerate command it builds, and clear errors."""

import pytest
from test_cli import assert_one_line_error, run_cli

from pipelines.train_cli import RECIPES, launch_command
from seedance.errors import SeedanceError


def test_every_recipe_script_exists():
    for recipe in RECIPES:
        command = launch_command(recipe, 1, True, [])
        assert command[-1].endswith(RECIPES[recipe])


def test_two_cpu_processes_and_options_pass_through():
    command = launch_command("transformer", 2, True, ["--", "--steps", "3", "--out", "runs/x"])
    assert command[command.index("--num_processes") + 1] == "2"
    assert "--cpu" in command and "--multi_gpu" not in command
    assert command[-4:] == ["--steps", "3", "--out", "runs/x"]


def test_bad_process_count():
    with pytest.raises(SeedanceError, match="--processes"):
        launch_command("transformer", 0, True, [])


def test_unknown_recipe_is_rejected_by_the_cli():
    result = run_cli("train", "everything")
    assert result.returncode != 0 and "Traceback" not in result.stderr


def test_zero_processes_is_one_line_error():
    assert_one_line_error(run_cli("train", "--processes", "0", "syncexpert"), "--processes")


def test_one_process_runs_the_script_directly():
    command = launch_command("syncexpert", 1, True, ["--steps", "2"])
    assert command[1].endswith("train_syncexpert.py") and command[2:] == ["--steps", "2"]

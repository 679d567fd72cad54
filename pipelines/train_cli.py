"""`seedance train RECIPE [recipe options]`: run a training recipe through `accelerate launch`.

    seedance train autoencoders --model video_vae --preset tiny --out runs/video_vae
    seedance train text-encoder --out runs/text_encoder --export weights/seedance-tiny
    seedance train --processes 2 transformer --steps 100 --out runs/t2   # 2 processes (CPU without a GPU)
    seedance train syncexpert --help                                      # the recipe's own options

Options of `seedance train` itself (`--processes`, `--cpu`) come before the recipe
name; everything after it goes to the recipe unchanged. One process runs the
script directly; several go through `accelerate launch`. Each recipe resumes
from its newest complete checkpoint in `--out`.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from seedance.errors import SeedanceError

PIPELINES = Path(__file__).resolve().parent
RECIPES = {
    "autoencoders": "train_autoencoders.py",
    "text-encoder": "train_text_encoder.py",
    "syncexpert": "train_syncexpert.py",
    "transformer": "train_transformer.py",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="run a training recipe with accelerate (resumable)",
        description=__doc__.split("\n\n", 1)[0],
    )
    train.add_argument("recipe", choices=sorted(RECIPES), help="what to train")
    train.add_argument("--processes", type=int, default=1, help="processes to launch (default: 1)")
    train.add_argument("--cpu", action="store_true", help="force the CPU even where a GPU is present")
    train.add_argument("recipe_args", nargs=argparse.REMAINDER, help="options passed to the recipe")
    train.set_defaults(func=run_train)


def launch_command(recipe: str, processes: int, cpu: bool, recipe_args: list[str]) -> list[str]:
    if recipe not in RECIPES:
        raise SeedanceError(f"unknown recipe {recipe!r}; choose one of: {', '.join(sorted(RECIPES))}")
    if processes < 1:
        raise SeedanceError(f"--processes must be at least 1, got {processes}")
    script = PIPELINES / RECIPES[recipe]
    if not script.is_file():
        raise SeedanceError(f"recipe script {script} is missing from this checkout")
    import torch

    use_cpu = cpu or not torch.cuda.is_available()
    args = recipe_args[1:] if recipe_args[:1] == ["--"] else list(recipe_args)
    if processes == 1:
        return [sys.executable, str(script), *args]
    launcher = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    command = [launcher, "launch", "--num_processes", str(processes), "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no"]
    if use_cpu:
        command.append("--cpu")
    if not use_cpu:
        command.append("--multi_gpu")
    return command + [str(script), *args]


def run_train(args: argparse.Namespace) -> int:
    command = launch_command(args.recipe, args.processes, args.cpu, args.recipe_args)
    print(" ".join(command), file=sys.stderr)
    code = subprocess.call(command)
    if code != 0:
        raise SeedanceError(f"the {args.recipe} recipe stopped with exit code {code}; see its message above")
    return 0

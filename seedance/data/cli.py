"""`seedance data make` and `seedance data show`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

from seedance.errors import MediaError, SeedanceError

MEDIA_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
MANIFEST = "manifest.jsonl"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="make or inspect SyncWorld datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")

    make = data_sub.add_parser("make", help="render SyncWorld clips and a JSONL manifest into a folder")
    make.add_argument("--scene", default="all", help="face, bounce, keys or all (default: all)")
    make.add_argument("--n", type=int, required=True, help="clips per scene")
    make.add_argument("--out", required=True, help="output folder (created if missing)")
    make.add_argument("--preset", default="tiny", help="clip preset: tiny or base (default: tiny)")
    make.add_argument("--split", default="train", help="train or test (default: train)")
    make.add_argument("--seed", type=int, default=0, help="first seed (default: 0)")
    make.add_argument("--format", default="mp4", choices=["mp4", "mkv"], help="mp4 (H.264+AAC) or mkv (H.264+PCM)")
    make.set_defaults(func=run_make)

    show = data_sub.add_parser("show", help="summarise a folder of clips (or one media file)")
    show.add_argument("path", help="a dataset folder or a media file")
    show.set_defaults(func=run_show)

    data.set_defaults(func=lambda args: data.print_help() or 2)


def scenes_from_arg(scene: str) -> list[str]:
    from seedance.data.syncworld import SCENES

    if scene == "all":
        return list(SCENES)
    if scene not in SCENES:
        raise SeedanceError(f"unknown scene {scene!r}; choose one of: {', '.join(SCENES)}, all")
    return [scene]


def prepare_out_dir(out: str) -> Path:
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SeedanceError(f"cannot create output folder {folder}: {exc.strerror}; choose a writable --out") from None
    if not os.access(folder, os.W_OK):
        raise SeedanceError(f"output folder {folder} is not writable; choose a writable --out")
    return folder


def make_dataset(
    out: str, scenes: list[str], n: int, preset: str = "tiny", split: str = "train", seed: int = 0, fmt: str = "mp4"
) -> Path:
    """Render `n` clips per scene into `out` and append their rows to its manifest. Returns the manifest path."""
    from tqdm import tqdm

    from seedance.config import get_preset
    from seedance.data.syncworld import SPLITS, make_sample

    if n <= 0:
        raise SeedanceError(f"--n must be a positive number of clips, got {n}")
    if split not in SPLITS:
        raise SeedanceError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    clip_preset = get_preset(preset)
    folder = prepare_out_dir(out)
    from seedance.data.media import write_clip

    manifest = folder / MANIFEST
    jobs = [(scene, seed + i) for scene in scenes for i in range(n)]
    with manifest.open("a", encoding="utf-8") as rows:
        for scene, clip_seed in tqdm(jobs, desc="rendering clips", unit="clip"):
            sample = make_sample(scene, clip_seed, clip_preset, split)
            name = f"{scene}_{split}_{clip_seed:06d}.{fmt}"
            write_clip(folder / name, sample.frames, sample.audio, sample.fps, sample.sample_rate)
            rows.write(json.dumps({"file": name, **sample.manifest_row()}) + "\n")
            rows.flush()
    return manifest


def run_make(args: argparse.Namespace) -> int:
    manifest = make_dataset(
        args.out, scenes_from_arg(args.scene), args.n, args.preset, args.split, args.seed, args.format
    )
    print(f"wrote {args.n * len(scenes_from_arg(args.scene))} clips; manifest: {manifest}")
    return 0


def read_manifest(folder: Path) -> list[dict]:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return []
    rows = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise SeedanceError(f"{manifest} line {number} is not valid JSON; fix or delete that line") from None
    return rows


def describe_file(path: Path) -> dict:
    from seedance.data.media import read_clip

    clip = read_clip(path)
    return {
        "file": path.name,
        "frames": int(clip.frames.shape[0]),
        "size": [int(clip.frames.shape[1]), int(clip.frames.shape[2])],
        "fps": round(float(clip.fps), 3),
        "duration_s": round(float(clip.duration_s), 3),
        "sample_rate": int(clip.sample_rate),
    }


def run_show(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.is_file():
        print(json.dumps(describe_file(path)))
        return 0
    if not path.is_dir():
        raise SeedanceError(f"no such file or folder: {path}")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in MEDIA_SUFFIXES)
    rows = read_manifest(path)
    scenes = Counter(r.get("scene", "?") for r in rows)
    splits = Counter(r.get("split", "?") for r in rows)
    failed = []
    durations = []
    for file in files:
        try:
            durations.append(describe_file(file)["duration_s"])
        except MediaError as exc:
            failed.append(f"{file.name}: {exc}")
    summary = {
        "folder": str(path),
        "media_files": len(files),
        "readable": len(files) - len(failed),
        "unreadable": len(failed),
        "manifest_rows": len(rows),
        "scenes": dict(scenes),
        "splits": dict(splits),
        "total_duration_s": round(sum(durations), 2),
        "example_captions": [r["caption"] for r in rows[:3]],
    }
    print(json.dumps(summary, indent=2))
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failed else 0

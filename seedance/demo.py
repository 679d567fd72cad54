"""`seedance demo`: the main job on the shipped weights (what `make demo` runs).

With a shipped generator in weights/seedance-tiny it generates one clip per
example prompt; until then it renders SyncWorld clips, one per scene family.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "seedance-tiny"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="make example clips with sound into a folder (what `make demo` runs)")
    demo.add_argument("--out", default="samples", help="output folder (default: samples)")
    demo.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="shipped model folder")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=run_demo)


def generator_available(weights: Path) -> bool:
    return (weights / "model_index.json").is_file() and (weights / "transformer").is_dir()


def render_syncworld_demo(out: Path, seed: int) -> list[dict]:
    from seedance.data.cli import prepare_out_dir
    from seedance.data.media import write_clip
    from seedance.data.syncworld import SCENES, make_sample

    prepare_out_dir(str(out))
    rows = []
    for scene in SCENES:
        sample = make_sample(scene, seed, "tiny", "test")
        name = f"syncworld_{scene}.mp4"
        write_clip(out / name, sample.frames, sample.audio, sample.fps, sample.sample_rate)
        rows.append({"file": name, "caption": sample.caption, "events": sample.events})
        print(f"wrote {out / name}: {sample.caption}")
    return rows


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    weights = Path(args.weights)
    if generator_available(weights):
        from seedance.generate_cli import generate_demo_clips

        rows = generate_demo_clips(weights, out, args.seed)
    else:
        print(f"no generator in {weights} yet: rendering SyncWorld clips instead")
        rows = render_syncworld_demo(out, args.seed)
    (out / "demo.json").write_text(json.dumps(rows, indent=2) + "\n")
    list_clips_in_readme(out / "README.md", rows)
    return 0


CLIPS_START, CLIPS_END = "<!-- clips:start -->", "<!-- clips:end -->"


def list_clips_in_readme(readme: Path, rows: list[dict]) -> None:
    """Rewrite the clip table between the markers of <out>/README.md (the rest of the file is left alone)."""
    lines = ["| clip | prompt | seed |", "|---|---|---|"]
    for row in rows:
        prompt = str(row.get("prompt", row.get("caption", ""))).replace("|", "\\|")
        lines.append(f"| [{row['file']}]({row['file']}) | {prompt} | {row.get('seed', '')} |")
    table = "\n".join([CLIPS_START, *lines, CLIPS_END])
    text = readme.read_text(encoding="utf-8") if readme.is_file() else "# Samples\n"
    if CLIPS_START in text and CLIPS_END in text:
        head, rest = text.split(CLIPS_START, 1)
        text = head + table + rest.split(CLIPS_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + table + "\n"
    readme.write_text(text, encoding="utf-8")

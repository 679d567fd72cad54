"""`seedance eval sync | prompt | dist`: the evaluation suite on the command line.

    seedance eval sync a.mp4 b.webm --json --csv sync.csv --plot plots/
    seedance eval prompt clip.mp4 --caption "two teal rubber balls bounce on a black floor"
    seedance eval dist samples/ data/real/ --json

Every report is JSON with a `schema` field (see README, "Evaluation reports").
A clip that cannot be read (no audio track, truncated, no frames, not media)
gets a one-line error in its report row and on stderr while the rest are
scored; the exit code is then 1. Input errors of the command itself exit 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from seedance.errors import MediaError, SeedanceError

MEDIA_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v")
ANALYSIS_SHORT_SIDE = 128  # larger videos are scaled down for the sync measures (timing does not need pixels)
ANALYSIS_SAMPLE_RATE = 16_000


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    ev = subparsers.add_parser("eval", help="measure audio-visual sync, prompt adherence and distribution distances")
    sub = ev.add_subparsers(dest="eval_command", metavar="ACTION")

    sync = sub.add_parser("sync", help="offset, SyncExpert LSE-D/LSE-C, AV-Align and event F1 per clip and overall")
    sync.add_argument("clips", nargs="+", help="media files (any container/codec PyAV reads)")
    sync.add_argument("--json", action="store_true", help="print the JSON report instead of a table")
    sync.add_argument("--csv", metavar="FILE", help="also write one CSV row per clip")
    sync.add_argument("--plot", metavar="DIR", help="also write a distance/correlation-vs-shift plot per clip")
    sync.add_argument("--crop", metavar="T,L,B,R", help="score only this box (pixels of the original frame)")
    sync.add_argument("--max-shift", type=int, default=15, help="search +-this many frames (default 15)")
    sync.add_argument("--reference", nargs="+", metavar="CLIP", help="real in-sync clips: report their ceiling")
    sync.add_argument("--syncexpert", metavar="DIR", help="SyncExpert weights (default: weights/syncexpert)")
    sync.add_argument("--no-syncexpert", action="store_true", help="skip the SyncExpert (no weights needed)")
    sync.set_defaults(func=run_sync)

    prompt = sub.add_parser("prompt", help="check the attributes a caption names against probes run on the clip")
    prompt.add_argument("clip", help="a media file")
    prompt.add_argument("--caption", required=True, help="the prompt the clip was made from")
    prompt.add_argument("--json", action="store_true", help="print the JSON report")
    prompt.add_argument("--probes", metavar="DIR", help="probe weights (default: weights/probes)")
    prompt.set_defaults(func=run_prompt)

    dist = sub.add_parser("dist", help="FVD-analog and FAD-analog between two folders (own encoders)")
    dist.add_argument("dir_a")
    dist.add_argument("dir_b")
    dist.add_argument("--json", action="store_true", help="print the JSON report")
    dist.add_argument("--probes", metavar="DIR", help="encoder weights (default: weights/probes)")
    dist.set_defaults(func=run_dist)

    ev.set_defaults(func=lambda args: ev.print_help() or 2)


# --------------------------------------------------------------------------- helpers


def parse_crop(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        box = tuple(int(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[0] >= box[2] or box[1] >= box[3] or min(box) < 0:
        raise SeedanceError(f"--crop must be top,left,bottom,right in pixels with top<bottom, left<right; got {text!r}")
    return box


def read_for_sync(path: str, crop=None, fps: float | None = None):
    """Read a clip for the sync measures: native frame rate, short side at most 128 px, 16 kHz mono."""
    from seedance.data.media import probe_clip, read_clip

    info = probe_clip(path)
    scale = min(1.0, ANALYSIS_SHORT_SIDE / max(1, min(info.width, info.height)))
    size = None
    if scale < 1.0:
        size = (max(2, int(round(info.height * scale))), max(2, int(round(info.width * scale))))
    clip = read_clip(path, fps=fps, size=size, sample_rate=ANALYSIS_SAMPLE_RATE, fit="stretch")
    if crop is not None:
        top, left, bottom, right = crop
        if bottom > info.height or right > info.width:
            raise MediaError(f"cannot score {path}: --crop {crop} is outside its {info.height}x{info.width} frame")
        crop = tuple(int(round(c * scale)) for c in crop)
    return clip, crop


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise SeedanceError(f"cannot write {path}: {e.strerror or e}; choose a writable path") from None


def print_error(message: str) -> None:
    """One line on stderr for a clip that could not be scored (the batch goes on)."""
    print(f"error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- sync


CSV_COLUMNS = (
    "name",
    "ok",
    "error",
    "offset_frames",
    "offset_ms",
    "offset_confidence",
    "lse_d",
    "lse_c",
    "syncexpert_offset_ms",
    "av_align",
    "event_f1",
)


def csv_rows(report: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in report["clips"]:
        if not r.get("ok"):
            w.writerow([r["name"], False, r["error"]] + [""] * (len(CSV_COLUMNS) - 3))
            continue
        se = r.get("syncexpert") or {}
        w.writerow(
            [
                r["name"],
                True,
                "",
                r["offset"]["offset_frames"],
                r["offset"]["offset_ms"],
                round(r["offset"]["confidence"], 6),
                se.get("lse_d", ""),
                se.get("lse_c", ""),
                se.get("offset_ms", ""),
                r["av_align"]["score"],
                r["event_f1"]["score"],
            ]
        )
    return buf.getvalue()


def write_plots(report: dict, folder: str) -> list[str]:
    """One PNG per scored clip: SyncExpert mean distance and cross-correlation against the shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(folder)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SeedanceError(f"cannot create plot folder {out_dir}: {e.strerror}; choose a writable --plot") from None
    written = []
    for i, r in enumerate(report["clips"]):
        if not r.get("ok"):
            continue
        fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
        shifts_ms = [s * 1000.0 / r["fps"] for s in r["offset"]["shifts"]]
        ax.plot(shifts_ms, r["offset"]["correlation"], color="tab:blue", label="cross-correlation")
        ax.set_xlabel("shift of audio (ms; positive = audio late)")
        ax.set_ylabel("cross-correlation", color="tab:blue")
        ax.axvline(0, color="grey", lw=0.5)
        se = r.get("syncexpert")
        if se:
            ax2 = ax.twinx()
            ax2.plot(se["shifts_ms"], se["distances"], color="tab:red", label="SyncExpert distance")
            ax2.set_ylabel("SyncExpert mean distance", color="tab:red")
        ax.set_title(f"{Path(r['name']).name}: offset {r['offset']['offset_ms']:.0f} ms", fontsize=9)
        fig.tight_layout()
        name = f"{i:03d}_{Path(r['name']).stem}.png"
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out_dir)
        os.close(fd)
        fig.savefig(tmp, format="png")
        plt.close(fig)
        os.replace(tmp, out_dir / name)
        written.append(str(out_dir / name))
    return written


def format_sync_table(report: dict) -> str:
    lines = [
        f"{'clip':<32} {'offset':>11} {'conf':>6} {'LSE-D':>6} {'LSE-C':>6} {'SE off':>8} {'AV-Align':>8} {'F1':>5}",
    ]

    def fmt(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    for r in report["clips"]:
        name = Path(r["name"]).name[:32]
        if not r.get("ok"):
            lines.append(f"{name:<32} FAILED: {r['error']}")
            continue
        se = r.get("syncexpert") or {}
        off = f"{r['offset']['offset_frames']:+d}f/{r['offset']['offset_ms']:+.0f}ms"
        se_off = f"{se['offset_ms']:+.0f}ms" if se else "-"
        lines.append(
            f"{name:<32} {off:>11} {r['offset']['confidence']:>6.3f} {fmt(se.get('lse_d'), '6.3f'):>6} "
            f"{fmt(se.get('lse_c'), '6.3f'):>6} {se_off:>8} {fmt(r['av_align']['score'], '8.3f'):>8} "
            f"{fmt(r['event_f1']['score'], '5.2f'):>5}"
        )
    for label in ("aggregate", "chance", "ceiling"):
        agg = report.get(label)
        if not agg:
            continue
        parts = [f"{k}={v}" for k, v in agg.items()]
        lines.append(f"{label}: " + ", ".join(parts))
    if report["chance"] is None:
        lines.append(f"chance: n/a ({report['chance_note']})")
    return "\n".join(lines)


def run_sync(args: argparse.Namespace) -> int:
    from seedance.eval.sync import SyncClip, evaluate_sync

    crop = parse_crop(args.crop)
    if args.max_shift < 1:
        raise SeedanceError(f"--max-shift must be at least 1 frame, got {args.max_shift}")
    expert = None
    if not args.no_syncexpert:
        from seedance.eval.syncexpert import DEFAULT_WEIGHTS, load_syncexpert

        expert = load_syncexpert(args.syncexpert)
        expert_path = args.syncexpert or str(DEFAULT_WEIGHTS)
    clips, failures = [], []
    clip_crop = None
    for path in args.clips:
        try:
            clip, clip_crop = read_for_sync(path, crop)
            clips.append(SyncClip(path, clip.frames, clip.audio, clip.fps, clip.sample_rate))
        except SeedanceError as e:
            print_error(str(e))
            failures.append({"name": path, "ok": False, "error": str(e)})
    reference = []
    for path in args.reference or []:
        try:
            clip, _ = read_for_sync(path)
            reference.append(SyncClip(path, clip.frames, clip.audio, clip.fps, clip.sample_rate))
        except SeedanceError as e:
            print_error(f"reference clip skipped: {e}")
    settings = {"syncexpert": expert_path if expert is not None else None}
    report = evaluate_sync(clips, expert, clip_crop, args.max_shift, failures, reference or None, settings)
    if args.csv:
        atomic_write_text(args.csv, csv_rows(report))
    if args.plot:
        report["plots"] = write_plots(report, args.plot)
    print(json.dumps(report, indent=2) if args.json else format_sync_table(report))
    return 1 if failures else 0


# --------------------------------------------------------------------------- prompt


def read_for_probe(model, path: str):
    from seedance.data.media import read_clip

    cfg = model.config
    return read_clip(path, fps=cfg.fps, size=(cfg.height, cfg.width), sample_rate=cfg.sample_rate)


def run_prompt(args: argparse.Namespace) -> int:
    from seedance.eval.probes import check_caption, load_probes, parse_caption, predict

    if not args.caption.strip():
        raise SeedanceError("--caption is empty; give the prompt the clip was made from")
    model = load_probes(args.probes)
    clip = read_for_probe(model, args.clip)
    parsed = parse_caption(args.caption, model.classes.get("words"))
    predictions = predict(model, clip.frames, clip.audio)
    checks = check_caption(model, clip.frames, clip.audio, args.caption, predictions)
    matched = sum(c.matched for c in checks)
    report = {
        "schema": "seedance.eval.prompt/1",
        "clip": args.clip,
        "caption": args.caption,
        "parsed": parsed,
        "checks": [c.to_dict() for c in checks],
        "adherence": round(matched / len(checks), 4) if checks else None,
        "predictions": predictions,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if not checks:
            print("the caption names no attribute the probes know (scene, colours, count, voice, pitch, words)")
        for c in checks:
            mark = "ok  " if c.matched else "MISS"
            print(f"{mark} {c.attribute:<7} expected {c.expected!s:<28} read {c.predicted!s:<28} p={c.probability:.2f}")
        if checks:
            print(f"adherence: {matched}/{len(checks)} = {report['adherence']:.2f}")
    return 0


# --------------------------------------------------------------------------- dist


def media_files(folder: str) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise SeedanceError(f"{root} is not a folder; give two folders of clips")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
    if len(files) < 2:
        raise SeedanceError(f"{root} holds {len(files)} media file(s); a Frechet distance needs at least 2 per folder")
    return files


def run_dist(args: argparse.Namespace) -> int:
    from seedance.eval.frechet import embed_clips, frechet_report
    from seedance.eval.probes import load_probes

    model = load_probes(args.probes)
    sides, failed = {}, 0
    for key, folder in (("a", args.dir_a), ("b", args.dir_b)):
        files = media_files(folder)
        clips, errors = [], []
        for path in files:
            try:
                c = read_for_probe(model, str(path))
                clips.append((c.frames, c.audio))
            except MediaError as e:
                print_error(str(e))
                errors.append({"path": str(path), "error": str(e)})
        if len(clips) < 2:
            raise SeedanceError(f"only {len(clips)} readable clip(s) in {folder}; need at least 2")
        failed += len(errors)
        sides[key] = {"dir": folder, "n_clips": len(clips), "failed": errors, "emb": embed_clips(model, clips)}
    report = {
        "schema": "seedance.eval.dist/1",
        "a": {k: v for k, v in sides["a"].items() if k != "emb"},
        "b": {k: v for k, v in sides["b"].items() if k != "emb"},
        **frechet_report(sides["a"]["emb"], sides["b"]["emb"]),
        "note": "FVD-/FAD-analog on Seedance's own SyncWorld encoders; not comparable with published FVD/FAD",
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"FVD-analog {report['fvd_analog']:.4f}   FAD-analog {report['fad_analog']:.4f}")
        print(f"({report['a']['n_clips']} vs {report['b']['n_clips']} clips; {report['note']})")
    return 1 if failed else 0

#!/usr/bin/env python
"""Train the prompt-adherence probes (seedance/eval/probes.py) on SyncWorld.

    accelerate launch pipelines/train_probes.py --preset tiny --out runs/probes --export weights/probes
    accelerate launch --cpu --num_processes 2 pipelines/train_probes.py --preset tiny --out runs/probes2

One network with a head per attribute (scene, colours, count, voice, pitch,
words), trained with cross-entropy (single-label heads) and binary
cross-entropy (multi-label heads), each head only on the clips where its
attribute exists. Each step shows 4 random frames of each clip in time order,
with flips, brightness noise and audio gain. The pitch cues (gain-independent) and,
for probes with object heads, the object cues of all frames are computed once per clip.

Data: `--clips-per-scene` training clips per scene (pipelines/syncworld_cache.py,
shared with the SyncExpert recipe); accuracy measured on held-out test-split
clips (held-out factor combinations and voices). Resumable like every Seedance
recipe: <out>/checkpoints/step_N written atomically, the newest complete one
resumed; tqdm, tensorboard logs in <out>/logs; `--export DIR` writes the final
model with save_pretrained plus DIR/train_info.json.

Adding a part to trained probes: `--init-from weights/probes --model-config
'{"word_spotter_width": 128}' --train-only words --scenes face` loads the probes,
adds the word spotter (new weights, the rest loaded), and trains only what
serves the named heads (here the spotter) on only those heads' losses.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from pipelines.recipe_common import resume, run_steps, start_run, write_train_info  # noqa: E402
from pipelines.syncworld_cache import ClipSet, load_scenes, render_faces_with_voices  # noqa: E402
from seedance.config import ClipPreset, get_preset  # noqa: E402
from seedance.errors import SeedanceError  # noqa: E402
from seedance.eval.probes import (  # noqa: E402
    MULTI_LABEL,
    OBJECT_HEADS,
    AttributeProbe,
    default_classes,
    sample_frame_indices,
    targets_from_labels,
)
from seedance.models.io import atomic_save_pretrained, atomic_write_bytes  # noqa: E402
from seedance.models.mel import LogMel, mel_config  # noqa: E402

SCENES = ("face", "bounce", "keys")
EXTRA_FIRST_SEED = 500_000  # the extra-voice faces draw labels from training seeds no cache uses


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--export", type=Path, default=None)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--model-config", default="{}", help="JSON overrides of AttributeProbe's config")
    p.add_argument("--scenes", default=",".join(SCENES))
    p.add_argument("--clips-per-scene", type=int, default=300)
    p.add_argument("--val-clips-per-scene", type=int, default=60)
    p.add_argument("--cache", type=Path, default=Path("runs/cache"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--spec-augment", action="store_true",
                   help="also shift each training log-mel by up to 2 bins in frequency (another voice's formants and "
                        "pitch) and mask one band of up to 8 bins and one span of up to 20 frames (SpecAugment); "
                        "not for the pitch head, whose label the shift would falsify")
    p.add_argument("--voice-augment", action="store_true",
                   help="also warp each training log-mel's frequency axis by 0.88-1.12 (another vocal tract: VTLP) "
                        "and its time axis by 0.9-1.1 (another speaking rate); for the words head, whose held-out "
                        "voices are the hard part. Not for the pitch head")
    p.add_argument("--pitch-track-dropout", type=float, default=0.0,
                   help="with a pitch spotter that reads the F0 track (pitch_spotter_f0): blank the track of this "
                        "share of training clips, so that the spotter also learns to hear pitch in the log-mel alone")
    p.add_argument("--extra-voices", default="",
                   help="comma-separated espeak voices with m<N>/f<N> or gendered named variants (e.g. "
                        "en-gb-scotland+m2, en+Hugo): "
                        "--extra-clips more training faces are spoken by them (never SyncWorld's held-out voices)")
    p.add_argument("--extra-clips", type=int, default=0)
    p.add_argument("--reinit", default="",
                   help="with --init-from: comma-separated spotters (words, pitch) to start fresh instead of loading")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from these saved probes (their config, with --model-config overriding fields)")
    p.add_argument("--train-only", default=None,
                   help="comma-separated heads: train only them (a spotter, where there is one), on their losses")
    args = p.parse_args(argv)
    args.scenes = tuple(s.strip() for s in args.scenes.split(",") if s.strip())
    args.reinit = tuple(h.strip() for h in args.reinit.split(",") if h.strip())
    args.extra_voices = tuple(v.strip() for v in args.extra_voices.split(",") if v.strip())
    from seedance.data.syncworld.face import TEST_VOICES

    held_out_variants = {v.rpartition("+")[2] for v in TEST_VOICES}
    leaked = [v for v in args.extra_voices if v in TEST_VOICES or v.rpartition("+")[2] in held_out_variants]
    if leaked:
        p.error(f"--extra-voices {','.join(leaked)} use a held-out voice variant ({', '.join(sorted(TEST_VOICES))})")
    if args.extra_clips and not args.extra_voices:
        p.error("--extra-clips needs --extra-voices")
    if set(args.reinit) - {"words", "pitch"}:
        p.error(f"--reinit takes words and pitch (their spotters); got {','.join(args.reinit)}")
    if args.reinit and args.init_from is None:
        p.error("--reinit needs --init-from")
    if not 0.0 <= args.pitch_track_dropout < 1.0:
        p.error(f"--pitch-track-dropout must be in [0, 1), got {args.pitch_track_dropout}")
    if args.train_only is not None:
        args.train_only = tuple(h.strip() for h in args.train_only.split(",") if h.strip())
        unknown = set(args.train_only) - set(default_classes())
        if unknown:
            p.error(f"--train-only names unknown heads {sorted(unknown)}; heads: {', '.join(default_classes())}")
    try:
        args.model_config = json.loads(args.model_config)
    except json.JSONDecodeError as exc:
        p.error(f"--model-config is not valid JSON: {exc}")
    return args


class ProbeData:
    """Cached clips as tensors, their log-mels and their per-head targets and masks."""

    def __init__(self, clips: ClipSet, preset: ClipPreset, classes: dict[str, list]):
        self.frames = torch.from_numpy(clips.frames)  # uint8 [N,F,H,W,3]
        self.audio = torch.from_numpy(clips.audio)  # float [N,S]
        logmel = LogMel(preset)
        self.mels = torch.cat([logmel(self.audio[i : i + 64]) for i in range(0, len(self.audio), 64)])  # [N,n_mels,M]
        self.pitch: torch.Tensor | None = None  # [N,3], filled by cache_pitch (needs the model's settings)
        self.pitch_track: torch.Tensor | None = None  # [N,2,M], by cache_pitch for a spotter that reads F0
        self.objects: torch.Tensor | None = None  # [N,D], filled by cache_objects for probes with object heads
        self.targets, self.masks = {}, {}
        rows = [targets_from_labels(lab, classes) for lab in clips.labels]
        for name, c in classes.items():
            present = [r[name] is not None for r in rows]
            self.masks[name] = torch.tensor(present)
            if name in MULTI_LABEL:
                zero = np.zeros(len(c), np.float32)
                self.targets[name] = torch.from_numpy(
                    np.stack([r[name] if ok else zero for r, ok in zip(rows, present)])
                )
            else:
                self.targets[name] = torch.tensor([r[name] if ok else -1 for r, ok in zip(rows, present)])

    def __len__(self) -> int:
        return self.frames.shape[0]

    def video(self, idx: torch.Tensor, num_frames: int, g: torch.Generator | None) -> torch.Tensor:
        """[B,T,3,H,W] in [0,1]: random sorted frames (training) or evenly spread ones (g=None)."""
        F_ = self.frames.shape[1]
        if g is None:
            t = torch.from_numpy(sample_frame_indices(F_, num_frames)).expand(len(idx), -1)
        else:
            t = torch.stack([torch.randperm(F_, generator=g)[:num_frames].sort().values for _ in range(len(idx))])
        x = self.frames[idx[:, None], t].permute(0, 1, 4, 2, 3).float().div(255.0)
        if g is not None:
            flip = torch.rand(len(idx), generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
            x = x * torch.empty(len(idx), 1, 1, 1, 1).uniform_(0.85, 1.15, generator=g)
            x = x + torch.randn(x.shape, generator=g) * 0.02
        return x.clamp(0, 1)

    @torch.no_grad()
    def cache_pitch(self, model: AttributeProbe) -> None:
        self.pitch = torch.cat([model.pitch_cues(self.audio[i : i + 64]) for i in range(0, len(self.audio), 64)])
        if model.config.pitch_spotter_f0:
            chunks = range(0, len(self.audio), 64)
            self.pitch_track = torch.cat([model.pitch_track(self.audio[i : i + 64]) for i in chunks])

    @torch.no_grad()
    def cache_objects(self, model: AttributeProbe, measure: bool = True) -> None:
        """The whole clips' object cues (clean frames: like the pitch cues, a fixed measurement); zeros when
        not `measure`."""
        if model.object_heads is None:
            return
        if not measure:
            self.objects = torch.zeros(len(self), model.object_proj[0].in_features)
            return
        rows = []
        for i in tqdm(range(0, len(self), 16), desc="object cues", leave=False):
            rows.append(model.object_cues(self.frames[i : i + 16].permute(0, 1, 4, 2, 3).float().div(255.0)))
        self.objects = torch.cat(rows)

    def cues(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        return {} if self.objects is None else {"objects": self.objects[idx]}

    def sound(
        self, idx: torch.Tensor, g: torch.Generator | None, augment: bool = False, voice: bool = False
    ) -> dict[str, torch.Tensor]:
        """Model inputs for the audio side: log-mel [B,n_mels,M] (training: a random gain; with `augment` also
        a frequency shift and masks; with `voice` a frequency and time warp) and pitch cues and track (from the
        clean waveform, which the masks do not reach)."""
        m = self.mels[idx]
        floor = self.mels.min()
        if g is not None:  # a gain adds its log to a magnitude log-mel (floored at silence); pitch ignores it
            m = torch.maximum(m + torch.empty(len(idx), 1, 1).uniform_(-1.5, 0.7, generator=g), floor)
        if g is not None and voice:
            m = warp_axis(m, 1, torch.empty(len(idx)).uniform_(0.88, 1.12, generator=g), floor)
            m = warp_axis(m, 2, torch.empty(len(idx)).uniform_(0.9, 1.1, generator=g), floor)
        if g is not None and augment:
            m = m.clone()
            n_mels, frames = m.shape[1:]
            for row, shift in enumerate(torch.randint(-2, 3, (len(idx),), generator=g).tolist()):
                m[row] = torch.roll(m[row], shift, dims=0)  # the spectrum up or down; vacated bins are silence
                if shift > 0:
                    m[row, :shift] = floor
                elif shift < 0:
                    m[row, shift:] = floor
                f0, fw = int(torch.randint(n_mels, (1,), generator=g)), int(torch.randint(9, (1,), generator=g))
                t0, tw = int(torch.randint(frames, (1,), generator=g)), int(torch.randint(21, (1,), generator=g))
                m[row, f0 : f0 + fw] = floor
                m[row, :, t0 : t0 + tw] = floor
        track = {} if self.pitch_track is None else {"pitch_track": self.pitch_track[idx]}
        return {"mel": m, "pitch": self.pitch[idx], **track}


def warp_axis(m: torch.Tensor, dim: int, factor: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """m [B,n_mels,M]: row b read at positions i * factor[b] along `dim` (1: mel bins, 2: frames), linearly
    interpolated; positions past the end read `fill` (silence). factor > 1 squeezes the content toward 0."""
    n = m.shape[dim]
    pos = torch.arange(n, dtype=m.dtype)[None] * factor[:, None]  # [B,n]
    lo = pos.floor().long()
    frac = (pos - lo).to(m.dtype)
    padded = torch.cat([m, torch.full_like(m.narrow(dim, 0, 1), float(fill)).expand_as(m.narrow(dim, 0, 1))], dim)
    lo, hi = lo.clamp(max=n), (lo + 1).clamp(max=n)  # index n is the fill row / column

    def take(index: torch.Tensor) -> torch.Tensor:
        shape = [m.shape[0], 1, 1]
        shape[dim] = n
        index = index.view(shape).expand(*(m.shape[i] if i != dim else n for i in range(3)))
        return padded.gather(dim, index)

    shape = [m.shape[0], 1, 1]
    shape[dim] = n
    frac = frac.view(shape)
    return take(lo) * (1 - frac) + take(hi) * frac


def probe_loss(
    logits: dict, data: ProbeData, idx: torch.Tensor, heads: tuple[str, ...] | None = None
) -> tuple[torch.Tensor, dict]:
    total, logs = 0.0, {}
    for name, z in logits.items():
        if heads is not None and name not in heads:
            continue
        mask = data.masks[name][idx]
        if not mask.any():
            continue
        target = data.targets[name][idx][mask]
        if name in MULTI_LABEL:
            loss = F.binary_cross_entropy_with_logits(z[mask], target)
        else:
            loss = F.cross_entropy(z[mask], target)
        total = total + loss
        logs[name] = loss.item()
    return total, logs


@torch.no_grad()
def evaluate(model: AttributeProbe, data: ProbeData, batch: int = 32) -> dict:
    """Accuracy per head on `data` (multi-label: the top-|true set| classes equal the true set)."""
    model.eval()
    hits: dict[str, list] = {name: [] for name in data.targets}
    for start in range(0, len(data), batch):
        idx = torch.arange(start, min(len(data), start + batch))
        logits = model(data.video(idx, model.config.num_frames, None), **data.sound(idx, None), **data.cues(idx))
        for name, z in logits.items():
            mask = data.masks[name][idx]
            if not mask.any():
                continue
            target = data.targets[name][idx][mask]
            z = z[mask]
            if name in MULTI_LABEL:
                k = target.sum(dim=1).long()
                order = z.argsort(dim=1, descending=True)
                for row, kk, tt in zip(order, k, target):
                    hits[name].append(bool(set(row[:kk].tolist()) == set(torch.nonzero(tt)[:, 0].tolist())))
            else:
                hits[name] += (z.argmax(dim=1) == target).tolist()
    model.train()
    return {f"val/{name}_acc": float(np.mean(h)) for name, h in hits.items() if h}


def extend_probes(folder: Path, overrides: dict, reinit: tuple[str, ...] = ()) -> AttributeProbe:
    """Saved probes with config overrides; parts the overrides add (a word spotter) start fresh, the rest load.
    `reinit` names spotters ("words", "pitch") that start fresh even though the saved probes have them."""
    from seedance.models.io import load_component

    saved = load_component(AttributeProbe, folder)
    config = {k: v for k, v in saved.config.items() if not k.startswith("_")}
    model = AttributeProbe(**{**config, **overrides})
    fresh = tuple(f"{'word' if name == 'words' else name}_spotter." for name in reinit)
    state = {k: v for k, v in saved.state_dict().items() if not k.startswith(fresh)} if fresh else saved.state_dict()
    problem = (
        f"--model-config changed the shape of trained parts of {folder}; "
        "only add new parts (*_spotter_width, object_cue_width) or --reinit the spotter whose input changes"
    )
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:  # a size mismatch
        raise SeedanceError(problem) from None
    new_parts = ("word_spotter.", "pitch_spotter.", "object_proj.", "object_heads.")
    if unexpected or any(not k.startswith(new_parts) for k in missing):
        raise SeedanceError(problem)
    return model


def freeze_all_but(model: AttributeProbe, heads: tuple[str, ...]) -> None:
    """Only the named heads train ("words", "pitch": their spotter when there is one; "colors", "count": their
    object head and the object-cue projection when there are object heads; else the linear head)."""
    model.requires_grad_(False)
    spotters = {"words": model.word_spotter, "pitch": model.pitch_spotter}
    for name in heads:
        if model.object_heads is not None and name in model.object_heads:
            model.object_heads[name].requires_grad_(True)
            model.object_proj.requires_grad_(True)
        else:
            (spotters.get(name) or model.heads[name]).requires_grad_(True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    preset = get_preset(args.preset)

    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out: Path = args.out
    accelerator = Accelerator(log_with="tensorboard", project_dir=str(out / "logs"))
    set_seed(args.seed)
    with accelerator.main_process_first():
        train_clips = load_scenes(args.cache, preset, args.scenes, "train", args.clips_per_scene)
        if args.extra_clips:
            extra = render_faces_with_voices(preset, args.extra_voices, args.extra_clips, EXTRA_FIRST_SEED)
            train_clips = ClipSet.concat([train_clips, extra])
            del extra  # the concatenated copy is all that is kept (frames are ~0.4 MB a clip)
        val_clips = load_scenes(args.cache, preset, args.scenes, "test", args.val_clips_per_scene)
    classes = default_classes()
    train, val = ProbeData(train_clips, preset, classes), ProbeData(val_clips, preset, classes)
    config = {
        **mel_config(preset),
        "fps": float(preset.fps),
        "height": preset.height,
        "width": preset.width,
        "mel_mean": float(train.mels.mean()),
        "mel_std": float(train.mels.std()),
        "classes": classes,
        **args.model_config,
    }
    torch.manual_seed(args.seed)
    model = (
        AttributeProbe(**config)
        if args.init_from is None
        else extend_probes(args.init_from, args.model_config, args.reinit)
    )
    if args.train_only is not None:
        freeze_all_but(model, args.train_only)
    for data in (train, val):
        data.cache_pitch(model)
    val.cache_objects(model)
    # Measured only where a trained head reads them; else zeros stand in (the object heads are frozen and their
    # losses unused), which spares measuring every training clip, or 4 frames per clip at every step.
    train.cache_objects(model, measure=args.train_only is None or bool(set(args.train_only) & set(OBJECT_HEADS)))
    n_params = sum(p.numel() for p in model.parameters())
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.99), weight_decay=1e-4)
    model, optimizer = accelerator.prepare(model, optimizer)

    step, seconds = resume(accelerator, out / "checkpoints")
    what = f"{n_params / 1e6:.2f} M parameters, {len(train)} training clips"
    bar = start_run(accelerator, "probes", args, what, step)
    unwrapped = accelerator.unwrap_model(model)
    num_frames = unwrapped.config.num_frames

    def loss_fn(g: torch.Generator):
        idx = torch.randint(len(train), (args.batch_size,), generator=g)
        sound = train.sound(idx, g, args.spec_augment, args.voice_augment)
        if args.pitch_track_dropout > 0 and "pitch_track" in sound:
            blank = torch.rand(len(idx), generator=g) < args.pitch_track_dropout
            sound["pitch_track"] = torch.where(blank[:, None, None], 0.0, sound["pitch_track"])
        logits = model(train.video(idx, num_frames, g), **sound, **train.cues(idx))
        return probe_loss(logits, train, idx, args.train_only)

    step, seconds, stopped_early = run_steps(
        accelerator, model, optimizer, args, out, (step, seconds), bar, loss_fn,
        lambda: evaluate(unwrapped, val)
    )

    summary = {"model": "probes", "step": step, "steps": args.steps, "train_minutes": round(seconds / 60, 2)}
    if accelerator.is_main_process:
        summary.update(evaluate(unwrapped, val))
        unwrapped.eval()
        atomic_write_bytes(out / "train_summary.json", json.dumps(summary, indent=2).encode())
        if args.export is not None and not stopped_early:
            atomic_save_pretrained(unwrapped, args.export)
            write_train_info(accelerator, args, summary, n_params)
            accelerator.print(f"exported the probes to {args.export}")
        accelerator.print(json.dumps(summary))
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None

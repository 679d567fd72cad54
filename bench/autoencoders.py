#!/usr/bin/env python
"""Benchmark the shipped autoencoders on SyncWorld test clips; prints one JSON object.

    python bench/autoencoders.py            # 20 test clips per scene
    python bench/autoencoders.py --quick    # 6 per scene

Keys (issue 4):
    video_psnr_db, video_ssim      video VAE round trip (uint8 frames, mean over clips); a decoder with an audio
                                   timing cue reads the audio VAE's decoded mel of the clip (as in generation)
    mel_l1                         audio VAE round trip, mean |log-mel error| (natural-log units)
    stft_dist_vocoder              multi-resolution STFT distance to the original audio, vocoder on the true mel
    stft_dist_griffinlim           the same for torchaudio Griffin-Lim (32 iterations) on the same mel
    vocoder_speedup_vs_griffinlim  Griffin-Lim time / vocoder time, one 2 s clip at a time, one thread (median of
                                   back-to-back pairs)
    sync_lag0_fraction             clips whose audio-visual lag (seedance.eval.offset.av_offset) is 0 frames after
                                   the full chain: video VAE + audio VAE + vocoder, written to .mp4 (H.264 + AAC)
                                   and read back
    mouth_open_corr                talking-face clips: correlation of the mouth opening measured on decoded frames
                                   with the same measurement on the original frames (pooled over clips)
    train_minutes                  the three recipes' training minutes (from each weights folder's train_info.json)
plus the context needed to read them (lag-0 fraction of the original clips, of the original clips through the
codec alone, of each decoded half beside the other's original, per-scene numbers, timings).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seedance.config import get_preset  # noqa: E402
from seedance.models.audio_vae import AudioVAE  # noqa: E402
from seedance.models.io import load_component  # noqa: E402
from seedance.models.mel import LogMel, mel_span  # noqa: E402
from seedance.models.video_vae import VideoVAE  # noqa: E402
from seedance.models.vocoder import GriffinLimVocoder, Vocoder, multi_resolution_stft_distance  # noqa: E402

SCENES = ("face", "bounce", "keys")


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def ssim_uint8(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03) over frames and channels."""
    x = torch.from_numpy(a).double().permute(0, 3, 1, 2)  # [F,3,H,W]
    y = torch.from_numpy(b).double().permute(0, 3, 1, 2)
    g = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    g = (g / g.sum())[:, None] * (g / g.sum())[None, :]
    w = g.expand(3, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, w, groups=3)  # 'valid' window, as in the reference implementation

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def paired_times(fast, slow, arg, repeats: int) -> tuple[list[float], list[float]]:
    """Alternate the two calls so both see the same machine load (other jobs share the cores)."""
    fast(arg), slow(arg)  # warm-up
    t_fast, t_slow = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        fast(arg)
        t_fast.append(time.perf_counter() - t)
        t = time.perf_counter()
        slow(arg)
        t_slow.append(time.perf_counter() - t)
    return t_fast, t_slow


def mouth_opening(frames: np.ndarray, preset) -> np.ndarray:
    """Per-frame mouth opening measured from pixels: how much of the mouth box shows the mouth's inside colour.

    Soft count (weight 1 at the exact colour, falling linearly to 0 at RGB distance 60), so blurred
    decoded frames are measured on the same scale as the originals. float64 [F].
    """
    from seedance.data.syncworld.face import MOUTH_INTERIOR, mouth_box

    x0, y0, x1, y1 = mouth_box(preset)
    box = frames[:, y0:y1, x0:x1].astype(np.float64)
    dist = np.linalg.norm(box - np.asarray(MOUTH_INTERIOR, dtype=np.float64), axis=-1)
    return np.clip(1.0 - dist / 60.0, 0.0, 1.0).sum(axis=(1, 2))


def load_models(weights: Path):
    vae = load_component(VideoVAE, weights / "vae").eval()
    audio_vae = load_component(AudioVAE, weights / "audio_vae").eval()
    vocoder = load_component(Vocoder, weights / "vocoder").eval()
    return vae, audio_vae, vocoder


def train_minutes(weights: Path) -> dict:
    out = {}
    for name in ("vae", "audio_vae", "vocoder"):
        info = weights / name / "train_info.json"
        out[name] = json.loads(info.read_text()).get("train_minutes") if info.is_file() else None
    return out


@torch.no_grad()
def run(args: argparse.Namespace) -> dict:
    from seedance.data.media import read_clip, write_clip
    from seedance.data.syncworld import make_sample
    from seedance.eval.offset import av_offset

    torch.set_num_threads(1)
    preset = get_preset(args.preset)
    vae, audio_vae, vocoder = load_models(args.weights)
    logmel = LogMel(preset)
    griffin_lim = GriffinLimVocoder(logmel, n_iter=32)
    per_clip = []
    mouth_orig, mouth_dec = [], []
    t_voc, t_gl = [], []
    t_start = time.time()
    for scene in args.scenes:
        for seed in range(args.clips_per_scene):
            s = make_sample(scene, seed, preset, "test")
            row = {"scene": scene, "seed": seed}
            # 1. audio VAE round trip
            audio = torch.from_numpy(s.audio[: preset.num_samples])[None]
            mel = logmel(audio)
            mel_dec = audio_vae.decode_latents(audio_vae.encode_latents(mel), num_frames=mel.shape[-1])
            row["mel_l1"] = float((mel_dec - mel).abs().mean())
            # 2. video VAE round trip; a decoder with an audio timing cue reads the decoded mel, as in generation
            x = torch.from_numpy(s.frames).permute(3, 0, 1, 2)[None].float().div(127.5).sub(1)
            cue = mel_span(mel_dec, 0, x.shape[2], preset.fps, preset.sample_rate, preset.hop_length)
            cue = None if args.no_audio_cue else cue
            y = vae.decode_latents(vae.encode_latents(x), num_frames=x.shape[2], audio_mel=cue)
            frames_dec = y[0].add(1).mul(127.5).round().clamp(0, 255).byte().permute(1, 2, 3, 0).numpy()
            row["psnr"] = psnr_uint8(frames_dec, s.frames)
            row["ssim"] = ssim_uint8(frames_dec, s.frames)
            # 3. vocoder vs Griffin-Lim on the true mel
            wave_voc = vocoder(mel)
            wave_gl = griffin_lim(mel)
            row["stft_vocoder"] = float(multi_resolution_stft_distance(wave_voc, audio))
            row["stft_griffinlim"] = float(multi_resolution_stft_distance(wave_gl, audio))
            if len(t_voc) < 3 * args.timing_clips:
                fast, slow = paired_times(vocoder, griffin_lim, mel, 3)
                t_voc += fast
                t_gl += slow
            # 4. sync through the whole chain, and an .mp4 in the middle
            wave_dec = vocoder(mel_dec)[0, 0].numpy()
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "roundtrip.mp4"
                write_clip(path, frames_dec, wave_dec, fps=preset.fps, sample_rate=preset.sample_rate)
                clip = read_clip(path, fps=preset.fps, sample_rate=preset.sample_rate)
                # the original clip through the same codec alone: how much the codec by itself moves the reading
                write_clip(path, s.frames, s.audio, fps=preset.fps, sample_rate=preset.sample_rate)
                clip_orig = read_clip(path, fps=preset.fps, sample_rate=preset.sample_rate)
            n = min(len(clip.frames), len(s.frames))
            n_orig = min(len(clip_orig.frames), len(s.frames))
            row["lag_original"] = av_offset(s.frames, s.audio, preset.fps, preset.sample_rate).offset_frames
            row["lag_vae"] = av_offset(frames_dec, wave_dec, preset.fps, preset.sample_rate).offset_frames
            row["lag_mp4"] = av_offset(clip.frames[:n], clip.audio, preset.fps, preset.sample_rate).offset_frames
            row["lag_codec_only"] = av_offset(
                clip_orig.frames[:n_orig], clip_orig.audio, preset.fps, preset.sample_rate
            ).offset_frames
            # each half alone: which of the two decoders loses the sync (no codec, as lag_vae)
            row["lag_audio_decoded"] = av_offset(s.frames, wave_dec, preset.fps, preset.sample_rate).offset_frames
            row["lag_video_decoded"] = av_offset(frames_dec, s.audio, preset.fps, preset.sample_rate).offset_frames
            # 5. mouth opening (talking face only)
            if scene == "face":
                mo, md = mouth_opening(s.frames, preset), mouth_opening(frames_dec, preset)
                mouth_orig.append(mo)
                mouth_dec.append(md)
                row["mouth_corr"] = float(np.corrcoef(mo, md)[0, 1]) if mo.std() > 0 and md.std() > 0 else None
            per_clip.append(row)

    def mean(key, rows=per_clip):
        vals = [r[key] for r in rows if r.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    def frac0(key, rows=per_clip):
        return float(np.mean([r[key] == 0 for r in rows])) if rows else None

    minutes = train_minutes(args.weights)
    result = {
        "video_psnr_db": mean("psnr"),
        "video_ssim": mean("ssim"),
        "mel_l1": mean("mel_l1"),
        "stft_dist_vocoder": mean("stft_vocoder"),
        "stft_dist_griffinlim": mean("stft_griffinlim"),
        # median of per-pair ratios: each pair ran back to back under the same load
        "vocoder_speedup_vs_griffinlim": float(np.median(np.asarray(t_gl) / np.asarray(t_voc))),
        "sync_lag0_fraction": frac0("lag_mp4"),
        "mouth_open_corr": (
            float(np.corrcoef(np.concatenate(mouth_orig), np.concatenate(mouth_dec))[0, 1]) if mouth_orig else None
        ),
        "train_minutes": (round(sum(minutes.values()), 2) if all(v is not None for v in minutes.values()) else None),
        # context
        "train_minutes_per_model": minutes,
        "sync_lag0_fraction_original": frac0("lag_original"),
        "sync_lag0_fraction_without_codec": frac0("lag_vae"),
        "sync_lag_unchanged_fraction": float(np.mean([r["lag_mp4"] == r["lag_original"] for r in per_clip])),
        "sync_lag0_fraction_codec_only": frac0("lag_codec_only"),
        "sync_lag0_fraction_audio_decoded_only": frac0("lag_audio_decoded"),
        "sync_lag0_fraction_video_decoded_only": frac0("lag_video_decoded"),
        "mouth_open_corr_mean_per_clip": mean("mouth_corr"),
        "vocoder_ms_per_clip": 1000 * float(np.median(t_voc)),
        "griffinlim_ms_per_clip": 1000 * float(np.median(t_gl)),
        "clip_seconds": preset.duration_s,
        "per_scene": {
            scene: {
                "video_psnr_db": mean("psnr", [r for r in per_clip if r["scene"] == scene]),
                "video_ssim": mean("ssim", [r for r in per_clip if r["scene"] == scene]),
                "mel_l1": mean("mel_l1", [r for r in per_clip if r["scene"] == scene]),
                "stft_dist_vocoder": mean("stft_vocoder", [r for r in per_clip if r["scene"] == scene]),
                "stft_dist_griffinlim": mean("stft_griffinlim", [r for r in per_clip if r["scene"] == scene]),
                "sync_lag0_fraction": frac0("lag_mp4", [r for r in per_clip if r["scene"] == scene]),
                "sync_lag0_fraction_original": frac0("lag_original", [r for r in per_clip if r["scene"] == scene]),
            }
            for scene in args.scenes
        },
        "video_decoder_audio_cue": vae.uses_audio_cue and not args.no_audio_cue,
        "num_clips": len(per_clip),
        "split": "test",
        "preset": preset.name,
        "bench_seconds": round(time.time() - t_start, 1),
    }
    if args.per_clip:
        result["clips"] = per_clip
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="6 test clips per scene instead of 20")
    p.add_argument("--clips-per-scene", type=int, default=None)
    p.add_argument("--scenes", default=",".join(SCENES))
    p.add_argument("--preset", default="tiny")
    p.add_argument("--weights", type=Path, default=Path(__file__).resolve().parents[1] / "weights" / "seedance-tiny")
    p.add_argument("--timing-clips", type=int, default=6, help="clips timed for the vocoder speed-up")
    p.add_argument("--per-clip", action="store_true", help="include every clip's numbers")
    p.add_argument("--no-audio-cue", action="store_true",
                   help="ablation: decode the video without the clip's mel even where the decoder can read it")
    args = p.parse_args(argv)
    args.scenes = tuple(s for s in args.scenes.split(",") if s)
    if args.clips_per_scene is None:
        args.clips_per_scene = 6 if args.quick else 20
    from seedance.errors import SeedanceError

    try:
        print(json.dumps(run(args), indent=2))
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

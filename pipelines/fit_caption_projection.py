"""Fit a trained transformer's caption projection so that it reads a new text encoder as it read its own.

    accelerate launch pipelines/fit_caption_projection.py --weights weights/seedance-tiny \
        --text-encoder runs/te_new/export --cache runs/transformer_cache --out runs/caption_projection \
        --steps 1500 --export runs/caption_projection/weights

A transformer learns to read one encoder's token states; a new encoder (another tokenizer, another basis)
means nothing to it, and fine-tuning the whole transformer on the new states unlearned what the text says
(README, "Text encoder: general English beside the captions"). Here the transformer stays frozen and only a
linear map in front of its text input learns (SeedanceTransformer(text_input_projection=True): one map on the
token states, one on the pooled vector):

1. Both encoders encode the cached clips' captions and the empty prompt (text dropout's null prompt).
2. Initial maps by least squares: the new encoder's token states averaged over each word's pieces against the
   reference encoder's (plus the <s> and </s> states), and the pooled vectors against each other.
3. Distillation through the frozen transformer: the transformer reading the reference encoder's states is the
   teacher; the same weights behind the projection, reading the new encoder's states, are the student. Both see
   identical noisy latents, timesteps and conditioning choices (drawn as in train_transformer.py); the loss is
   the flow loss's weighting applied to the difference of their velocity predictions, so the student is pulled
   toward the teacher's generations rather than toward noisy training targets.
4. Checkpoints (accelerate save_state, EMA), resume, tensorboard logs; the export is a complete pipeline folder:
   the new text encoder and tokenizer, the transformer with its fitted projection, the other components copied.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipelines import train_transformer as tt  # noqa: E402
from seedance.errors import SeedanceError  # noqa: E402
from seedance.hardware import auto_mixed_precision  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="weights/seedance-tiny",
                   help="the pipeline folder whose transformer (and text encoder, the reference) to start from")
    p.add_argument("--text-encoder", required=True, help="folder with the new text_encoder/ and tokenizer/")
    p.add_argument("--cache", required=True, help="latent cache of train_transformer.py (text is not cached)")
    p.add_argument("--out", default="runs/caption_projection", help="run folder: checkpoints, logs")
    p.add_argument("--text-len", type=int, default=40)
    p.add_argument("--ridge", type=float, default=1e-3, help="least-squares ridge, as a share of the pair count")
    p.add_argument("--init-from", default=None,
                   help="a transformer folder whose fitted projection (and text-path weights) to start from, instead "
                        "of least squares (a first run's export/transformer, continued with --text-path)")
    p.add_argument("--steps", type=int, default=1500, help="distillation steps (0: least squares only)")
    p.add_argument("--text-path", action="store_true",
                   help="also train the weights that read only the text (text attention's keys and values, the "
                        "pooled-text conditioning, the text LayerNorm)")
    p.add_argument("--batch-size", type=int, default=16, help="global batch (split over processes)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--ema-decay", type=float, default=0.99)
    p.add_argument("--text-dropout", type=float, default=0.1, help="share of samples given the empty prompt")
    p.add_argument("--p-v2a", type=float, default=0.25)
    p.add_argument("--p-a2v", type=float, default=0.25)
    p.add_argument("--p-nocm", type=float, default=0.1)
    p.add_argument("--sigma-mean", type=float, default=0.0)
    p.add_argument("--sigma-std", type=float, default=1.0)
    p.add_argument("--sigma-floor", type=float, default=0.05)
    p.add_argument("--mixed-precision", default="auto", choices=("auto", "no", "bf16"))
    p.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--keep-checkpoints", type=int, default=2)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--export", default=None, help="write the complete pipeline folder here at the end")
    p.add_argument("--export-dtype", default="bf16", choices=("fp32", "bf16", "fp16"))
    args = p.parse_args(argv)
    for name in ("steps", "batch_size", "text_len"):
        if getattr(args, name) < (0 if name == "steps" else 1):
            p.error(f"--{name.replace('_', '-')} is out of range")
    if not (args.lr > 0 and np.isfinite(args.lr)):
        p.error("--lr must be a positive number")
    # train_transformer's batch drawing reads these
    args.cascaded, args.couple_steps = False, 0
    return args


# ---------------------------------------------------------------------------------------------- encoders
def load_text_encoder(folder: str | Path) -> tuple:
    from seedance.models.io import load_component
    from seedance.models.text_encoder import EngramMoETextEncoder
    from seedance.models.tokenizer import SeedanceTokenizer

    folder = Path(folder)
    tokenizer = SeedanceTokenizer.from_pretrained(folder / "tokenizer")
    encoder = load_component(EngramMoETextEncoder, folder / "text_encoder").float().eval().requires_grad_(False)
    return tokenizer, encoder


@torch.no_grad()
def word_states(tokenizer, encoder, texts: list[str], text_len: int) -> tuple[list[dict], torch.Tensor]:
    """Per text: {word index or '<s>'/'</s>': mean token state over its pieces}; and the pooled vectors [N,D]."""
    batch = tokenizer(texts, max_length=text_len, padding="max_length")
    out = encoder(**batch)
    words = tokenizer.word_ids(texts, max_length=text_len)
    states, mask = out.last_hidden_state, batch["attention_mask"]
    rows = []
    for r in range(len(texts)):
        row = {"<s>": states[r, 0], "</s>": states[r, int(mask[r].sum()) - 1]}
        w = words[r, : states.shape[1]]
        for k in range(int(w.max()) + 1 if w.numel() else 0):
            sel = w == k
            if sel.any():
                row[k] = states[r, : w.shape[0]][sel].mean(0)
        rows.append(row)
    return rows, out.pooler_output


def least_squares(x: torch.Tensor, y: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge fit y ~ x W^T + b -> (W [Dy,Dx], b [Dy]) and the fit's R^2 on its own pairs."""
    xa = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    a = xa.T @ xa + ridge * len(x) * torch.eye(xa.shape[1], dtype=torch.float64)
    sol = torch.linalg.solve(a, xa.T @ y.double())  # [Dx+1,Dy]
    return sol[:-1].T.float().contiguous(), sol[-1].float().contiguous()


def fit_initial_maps(ref: tuple, new: tuple, captions: list[str], text_len: int, ridge: float) -> dict:
    """Least-squares maps new -> reference for word-averaged token states and for pooled vectors."""
    xs, ys, xp, yp = [], [], [], []
    texts = list(captions) + [""]
    for i in range(0, len(texts), 256):
        chunk = texts[i : i + 256]
        ref_rows, ref_pooled = word_states(*ref, chunk, text_len)
        new_rows, new_pooled = word_states(*new, chunk, text_len)
        for a, b in zip(ref_rows, new_rows):
            for key in a.keys() & b.keys():
                ys.append(a[key]), xs.append(b[key])
        yp.append(ref_pooled), xp.append(new_pooled)
    x, y, xp, yp = torch.stack(xs), torch.stack(ys), torch.cat(xp), torch.cat(yp)
    w, b = least_squares(x, y, ridge)
    wp, bp = least_squares(xp, yp, ridge)

    def r2(x, y, w, b):
        pred = x @ w.T + b
        return float(1 - (pred - y).pow(2).sum() / (y - y.mean(0)).pow(2).sum())

    return {"weight": w, "bias": b, "pooled_weight": wp, "pooled_bias": bp, "pairs": len(x),
            "r2_tokens": r2(x, y, w, b), "r2_pooled": r2(xp, yp, wp, bp)}


# ---------------------------------------------------------------------------------------------- models
TEXT_PATH = ("text_norm.", "video_cond.text.", "audio_cond.text.", "text_attn.to_k.", "text_attn.to_v.",
             "text_attn.norm_k.")  # every weight that reads the text and nothing else


def build_student(teacher, text_path: bool = False):
    """The teacher's weights behind a caption projection (identity until fitted). The projection learns; with
    text_path, so do the weights that read only the text (keys and values of text attention, the pooled-text
    conditioning): more room to fit, still no weight that the picture or the sound passes through."""
    from seedance.models.transformer_av import SeedanceTransformer

    config = {k: v for k, v in teacher.config.items() if k != "_use_default_values"}  # else diffusers drops new keys
    student = SeedanceTransformer.from_config({**config, "text_input_projection": True})
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("caption_projection.", "pooled_projection.")) for k in missing):
        raise SeedanceError("the transformer's weights do not fit its own config; re-export it")
    student.requires_grad_(False)
    for module in (student.caption_projection, student.pooled_projection):
        module.requires_grad_(True)
    if text_path:
        for name, param in student.named_parameters():
            if name.startswith(TEXT_PATH[:3]) or any(part in name for part in TEXT_PATH[3:]):
                param.requires_grad_(True)
    return student


def distill_loss(student, teacher, b_new: dict, b_ref: dict, args) -> torch.Tensor:
    """Flow-loss-weighted squared difference of the two velocity predictions on the same noisy latents."""
    sv, sa = b_new["sigma_v"], b_new["sigma_a"]
    xt_v = (1 - sv.view(-1, 1, 1, 1, 1)) * b_new["x0_v"] + sv.view(-1, 1, 1, 1, 1) * b_new["eps_v"]
    xt_a = (1 - sa.view(-1, 1, 1)) * b_new["x0_a"] + sa.view(-1, 1, 1) * b_new["eps_a"]
    common = {"hidden_states": xt_v, "audio_hidden_states": xt_a, "timestep": sv * 1000,
              "audio_timestep": sa * 1000, "cross_modal": b_new["cross_modal"]}
    with torch.no_grad():
        target = teacher(encoder_hidden_states=b_ref["text_states"], pooled_projections=b_ref["text_pooled"],
                         encoder_attention_mask=b_ref["text_mask"], **common)
    out = student(encoder_hidden_states=b_new["text_states"], pooled_projections=b_new["text_pooled"],
                  encoder_attention_mask=b_new["text_mask"], **common)
    wv = (sv / sv.clamp(min=args.sigma_floor)) ** 2 * (~b_new["video_clean"]).float()
    wa = (sa / sa.clamp(min=args.sigma_floor)) ** 2 * (~b_new["audio_clean"]).float()
    lv = (out.sample.float() - target.sample.float()).pow(2).mean(dim=(1, 2, 3, 4)) * wv
    la = (out.audio_sample.float() - target.audio_sample.float()).pow(2).mean(dim=(1, 2)) * wa
    return lv.sum() / wv.gt(0).sum().clamp(min=1) + la.sum() / wa.gt(0).sum().clamp(min=1)


def export_folder(student, ema, comps: dict, args, info: dict) -> None:
    """A complete pipeline folder, assembled beside the target and moved into place."""
    final = Path(args.export)
    tmp = final.parent / f".tmp_{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    source, text = Path(args.weights), Path(args.text_encoder)
    for name in ("vae", "audio_vae", "vocoder"):
        shutil.copytree(source / name, tmp / name)
    for name in ("text_encoder", "tokenizer"):
        shutil.copytree(text / name, tmp / name)
    for extra in source.glob("*.json"):  # sampling defaults; model_index.json is written again below
        shutil.copy2(extra, tmp / extra.name)
    tt.export_transformer(student, ema, comps, tmp, args.export_dtype)
    (tmp / "transformer" / "caption_projection.json").write_text(json.dumps(info, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from tqdm.auto import tqdm

    from seedance.data.datasets import LatentCacheDataset
    from seedance.models.io import load_component
    from seedance.models.transformer_av import SeedanceTransformer

    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=auto_mixed_precision(args.mixed_precision),
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    if args.batch_size % accelerator.num_processes:
        raise SeedanceError(f"--batch-size {args.batch_size} must divide over {accelerator.num_processes} processes")
    local_batch = args.batch_size // accelerator.num_processes

    # 1. both encoders over the cached captions
    comps = tt.load_frozen_components(args.weights)  # the reference text encoder, the VAEs, the vocoder
    ref = (comps["tokenizer"], comps["text_encoder"])
    new = load_text_encoder(args.text_encoder)
    if new[1].config.hidden_size != ref[1].config.hidden_size:
        raise SeedanceError(f"the new encoder's width {new[1].config.hidden_size} differs from the reference's "
                            f"{ref[1].config.hidden_size}: the caption projection maps equal widths")
    if not (Path(args.cache) / "index.json").is_file():
        raise SeedanceError(f"no latent cache at {args.cache}: build one with train_transformer.py --cache-only")
    ds = LatentCacheDataset(Path(args.cache), keys=("latents", "audio_latents"))
    latents = {k: v.float() for k, v in ds.tensors.items()}
    comps_new = {**comps, "tokenizer": new[0], "text_encoder": new[1]}
    parts = {}
    for tag, cs in (("ref", comps), ("new", comps_new)):
        enc = [tt.encode_text(cs, ds.captions[i : i + 256], args.text_len) for i in range(0, len(ds.captions), 256)]
        parts[tag] = ({**latents, **{k: torch.cat([e[k] for e in enc]) for k in enc[0]}},
                      tt.encode_text(cs, [""], args.text_len))

    # 2. teacher, student, initial maps
    teacher = load_component(SeedanceTransformer, Path(args.weights) / "transformer", torch_dtype=torch.float32)
    teacher.eval().requires_grad_(False)
    student = build_student(teacher, args.text_path)
    fit = fit_initial_maps(ref, new, ds.captions, args.text_len, args.ridge)
    accelerator.print(f"least squares on {fit['pairs']} word pairs: R^2 token states {fit['r2_tokens']:.3f}, "
                      f"pooled {fit['r2_pooled']:.3f}")
    with torch.no_grad():
        if args.init_from:
            start_from = load_component(SeedanceTransformer, args.init_from, torch_dtype=torch.float32)
            if not start_from.config.text_input_projection:
                raise SeedanceError(f"--init-from {args.init_from} has no caption projection: give a transformer "
                                    "this recipe exported")
            student.load_state_dict(start_from.state_dict())
            reference = dict(teacher.named_parameters())
            if any(not torch.equal(p, reference[n]) for n, p in student.named_parameters() if not p.requires_grad):
                raise SeedanceError(f"--init-from {args.init_from} differs from --weights' transformer outside the "
                                    "weights this run trains: start from a transformer fitted to this one")
        else:
            student.caption_projection.weight.copy_(fit["weight"])
            student.caption_projection.bias.copy_(fit["bias"])
            student.pooled_projection.weight.copy_(fit["pooled_weight"])
            student.pooled_projection.bias.copy_(fit["pooled_bias"])
    ema = tt.EMA(student, args.ema_decay)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    student, optimizer = accelerator.prepare(student, optimizer)
    teacher = teacher.to(accelerator.device)
    start = 0 if args.no_resume else tt.resume(accelerator, out, ema)
    accelerator.init_trackers("fit_caption_projection", config={k: v for k, v in vars(args).items()
                                                                  if isinstance(v, (int, float, str, bool))})

    # 3. distillation through the frozen transformer
    bar = tqdm(range(start, args.steps), initial=start, total=args.steps, disable=not accelerator.is_main_process)
    t_last, acc = time.time(), []
    for step in bar:
        student.train()
        draws = [tt.draw_batch(*parts[tag], args, local_batch, tt.step_generator(args.seed, step,
                               accelerator.process_index)) for tag in ("new", "ref")]  # same seed: same draw
        for group in optimizer.param_groups:
            group["lr"] = tt.lr_at(step, args)
        with accelerator.autocast():
            loss = distill_loss(student, teacher, draws[0], draws[1], args)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.update(accelerator.unwrap_model(student), step)
        acc.append(loss.item())
        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            now = time.time()
            row = {"loss/distill": float(np.mean(acc)), "lr": tt.lr_at(step, args),
                   "steps_per_s": len(acc) / (now - t_last)}
            accelerator.log(row, step=done)
            bar.set_postfix(loss=f"{row['loss/distill']:.4f}")
            t_last, acc = now, []
        if done % args.checkpoint_every == 0 or done == args.steps:
            tt.save_checkpoint(accelerator, out, done, ema, args)

    # 4. export
    if args.export and accelerator.is_main_process:
        info = {"least_squares": {k: fit[k] for k in ("pairs", "r2_tokens", "r2_pooled")}, "steps": args.steps,
                "argv": sys.argv[1:] if argv is None else list(argv)}
        export_folder(accelerator.unwrap_model(student), ema, comps_new, args, info)
        accelerator.print(f"exported the pipeline folder to {args.export}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SeedanceError as exc:
        sys.exit(f"error: {exc}")

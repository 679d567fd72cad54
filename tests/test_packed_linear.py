"""Linear with a packed bf16 weight: the same bits as autocast's nn.Linear (alone and in the whole transformer),
packed again when the weight changes, never in the state dict, and the plain path where autograd records or
autocast is off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from seedance_tiny_parts import tiny_transformer

from seedance.models import packed_linear
from seedance.models.packed_linear import Linear

needs_packing = pytest.mark.skipif(not packed_linear._packing_available(),
                                   reason="this CPU's oneDNN does not run bf16 (the packed path is off here)")


def layer(in_features: int = 192, out_features: int = 576, seed: int = 0) -> Linear:
    torch.manual_seed(seed)
    return Linear(in_features, out_features)


def sampled(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return module(x)


@needs_packing
@pytest.mark.parametrize("shape", [(3, 128, 192), (1, 40, 192), (5, 192)])
def test_packed_path_gives_autocast_linear_bits(shape):
    lin = layer()
    plain = torch.nn.Linear(192, 576)
    plain.load_state_dict(lin.state_dict())
    x = torch.randn(*shape)
    out = sampled(lin, x)
    assert "_packed_bf16" in lin.__dict__  # the packed path ran
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, sampled(plain, x))


@needs_packing
def test_a_changed_weight_is_packed_again():
    lin = layer()
    x = torch.randn(4, 192)
    before = sampled(lin, x)
    with torch.no_grad():
        lin.weight.mul_(2)  # in place, as an optimizer step or load_state_dict does
    after = sampled(lin, x)
    assert not torch.equal(before, after)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = F.linear(x, lin.weight, lin.bias)
    assert torch.equal(after, expected)


@needs_packing
def test_packed_weight_stays_out_of_the_state_dict():
    lin = layer()
    sampled(lin, torch.randn(2, 192))
    assert "_packed_bf16" in lin.__dict__  # packed, yet not saved
    assert set(lin.state_dict()) == {"weight", "bias"}


def test_autograd_and_fp32_take_the_plain_path():
    lin = layer()
    x = torch.randn(2, 192)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lin(x)
    assert out.requires_grad and "_packed_bf16" not in lin.__dict__
    fp32 = lin(x)
    assert fp32.dtype == torch.float32
    assert torch.equal(fp32, F.linear(x, lin.weight, lin.bias))


@needs_packing
def test_transformer_sampling_forward_is_the_same_to_the_bit_packed_or_not(monkeypatch):
    """The whole transformer under bf16 autocast (the pipeline's sampling), packed against plain."""
    model = tiny_transformer().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    x = dict(hidden_states=torch.randn(2, 4, 8, 8, 8, generator=g),
             audio_hidden_states=torch.randn(2, 4, 40, generator=g),
             encoder_hidden_states=torch.randn(2, 6, 32, generator=g),
             pooled_projections=torch.randn(2, 32, generator=g), timestep=torch.tensor([700.0, 300.0]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        packed = model(**x).sample
        monkeypatch.setattr(packed_linear, "PACKED_BF16", False)
        plain = model(**x).sample
    assert plain.abs().max() > 0
    assert torch.equal(packed, plain)
    assert any("_packed_bf16" in m.__dict__ for m in model.modules())

"""seedance.hardware: bf16 only where the device runs it natively."""

from __future__ import annotations

import pytest
import torch

from seedance import hardware
from seedance.models.vocoder import Vocoder


@pytest.mark.parametrize("native", [False, True])
def test_auto_resolves_by_the_cpus_bf16_support(monkeypatch, native):
    monkeypatch.setattr(hardware, "_cpu_has_native_bf16", lambda: native)
    assert hardware.native_bf16("cpu") is native
    assert hardware.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a recipe on this CPU
    assert hardware.auto_mixed_precision("auto") == ("bf16" if native else "no")
    # explicit choices stay as asked
    assert hardware.resolve_precision("fp32", "cpu") == "fp32" and hardware.resolve_precision("bf16", "cpu") == "bf16"
    assert hardware.auto_mixed_precision("no") == "no" and hardware.auto_mixed_precision("bf16") == "bf16"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        hardware.resolve_precision("fp8")


def test_cpu_check_reads_torchs_own_flags():
    """The CPU check is torch's AMX / AVX-512 bf16 detection, not a guess from the machine's name."""
    hardware._cpu_has_native_bf16.cache_clear()
    expected = torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    assert hardware._cpu_has_native_bf16() is bool(expected)


@torch.no_grad()
@pytest.mark.parametrize("native", [False, True])
def test_bf16_vocoder_trunk_runs_in_fp32_without_native_bf16(monkeypatch, native):
    import seedance.models.vocoder as vocoder_module

    torch.manual_seed(0)
    bf16 = Vocoder(dim=16, num_blocks=1, compute_dtype="bfloat16").eval()
    fp32 = Vocoder(**{**{k: v for k, v in bf16.config.items() if not k.startswith("_")}, "compute_dtype": "float32"})
    fp32.load_state_dict(bf16.state_dict())
    fp32.eval()
    monkeypatch.setattr(vocoder_module, "native_bf16", lambda device: native)
    mel = torch.randn(1, bf16.config.n_mels, 40) - 5
    same = torch.equal(bf16(mel), fp32(mel))
    assert same is (not native)

"""Safe weight loading: missing or corrupt folders and pickle files give one-line errors naming the file."""

import pickle

import pytest
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from seedance.errors import WeightsError
from seedance.models.io import atomic_save_pretrained, load_component


class TinyNet(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, width: int = 8):
        super().__init__()
        self.proj = torch.nn.Linear(width, width)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(width=8)
    folder = tmp_path / "tiny"
    atomic_save_pretrained(model, folder)
    return model, folder


def test_round_trip_loads_identical_weights(saved):
    model, folder = saved
    loaded = load_component(TinyNet, folder)
    assert torch.equal(loaded.proj.weight, model.proj.weight)


def test_missing_folder_names_it(tmp_path):
    with pytest.raises(WeightsError, match="not found.*nowhere"):
        load_component(TinyNet, tmp_path / "nowhere")


def test_missing_config_names_file(saved):
    _, folder = saved
    (folder / "config.json").unlink()
    with pytest.raises(WeightsError, match="config.json"):
        load_component(TinyNet, folder)


def test_corrupt_config_names_file(saved):
    _, folder = saved
    (folder / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="config.json"):
        load_component(TinyNet, folder)


def test_truncated_safetensors_names_file(saved):
    _, folder = saved
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(WeightsError, match=weights.name) as info:
        load_component(TinyNet, folder)
    assert "\n" not in str(info.value)


def test_garbage_safetensors_names_file(saved):
    _, folder = saved
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(b"\xff" * 64)
    with pytest.raises(WeightsError, match=weights.name):
        load_component(TinyNet, folder)


def test_pickle_weights_are_refused_unopened(saved, tmp_path):
    _, folder = saved
    next(folder.glob("*.safetensors")).unlink()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(WeightsError, match="pickle"):
        load_component(TinyNet, folder)
    assert not marker.exists()


def test_atomic_save_replaces_whole_folder(saved):
    model, folder = saved
    with torch.no_grad():
        model.proj.weight.add_(1.0)
    atomic_save_pretrained(model, folder)
    assert torch.equal(load_component(TinyNet, folder).proj.weight, model.proj.weight)
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())

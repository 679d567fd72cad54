"""Small, randomly initialised instances of the real Seedance components, for fast tests.

They are the project's own classes (tokenizer, text encoder, VAEs, vocoder, transformer) at toy widths, so
tests exercise the real code paths (shapes, save/load, the pipeline's modes) in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from seedance.config import get_preset

CORPUS = [
    "a red ball bounces on the floor",
    "a cartoon face says hello world",
    "piano keys light up with the notes",
    "two small glass squares hop on a navy ground",
] * 4


def tiny_transformer(**overrides):
    from seedance.models.transformer_av import SeedanceTransformer

    config = dict(in_channels=4, audio_in_channels=4, patch_size=2, num_layers=2, video_dim=32, video_heads=2,
                  audio_dim=32, audio_heads=2, cross_modal_dim=32, cross_modal_heads=2, text_dim=32,
                  pooled_text_dim=32, ff_mult=2.0, video_latent_rate=4.0, audio_latent_rate=20.0,
                  preset=get_preset("tiny").to_dict())
    config.update(overrides)
    return SeedanceTransformer(**config)


def tiny_components(seed: int = 0) -> dict:
    from seedance.models.audio_vae import AudioVAE
    from seedance.models.text_encoder import EngramMoETextEncoder
    from seedance.models.tokenizer import SeedanceTokenizer
    from seedance.models.video_vae import VideoVAE
    from seedance.models.vocoder import Vocoder

    torch.manual_seed(seed)
    tokenizer = SeedanceTokenizer.train(CORPUS, vocab_size=300, min_frequency=1)
    return {
        "tokenizer": tokenizer,
        "text_encoder": EngramMoETextEncoder(
            vocab_size=tokenizer.vocab_size, hidden_size=32, num_layers=2, num_heads=2, dense_ffn_hidden=64,
            num_experts=4, experts_per_token=2, expert_hidden=16, shared_expert_hidden=32,
            engram_rows_per_head=31, engram_dim_per_head=8, teacher_dim=16,
        ).eval(),
        "vae": VideoVAE(latent_channels=4, base_channels=8, channel_multipliers=(1, 1, 1)).eval(),
        "audio_vae": AudioVAE(latent_channels=4, hidden_channels=16, latent_hidden_channels=16, blocks=1).eval(),
        "vocoder": Vocoder(dim=16, num_blocks=1).eval(),
    }


def tiny_pipeline(seed: int = 0, **transformer_overrides):
    from pipelines.pipeline_seedance import SeedancePipeline

    parts = tiny_components(seed)
    torch.manual_seed(seed + 1)
    pipe = SeedancePipeline(transformer=tiny_transformer(**transformer_overrides).eval(),
                            scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0), **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_weights(folder: Path, seed: int = 0) -> Path:
    """The frozen components in the weights layout train_transformer.py reads (<folder>/<component>/)."""
    folder = Path(folder)
    for name, part in tiny_components(seed).items():
        part.save_pretrained(folder / name)
    return folder

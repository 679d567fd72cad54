"""A small, randomly initialised SeedancePipeline from the real classes, saved with save_pretrained.

The app's tests and load benchmark need a model folder before trained weights
exist (weights/seedance-tiny/model_index.json). This builds one with the real
tokenizer, text encoder, transformer, VAEs, vocoder and scheduler at toy widths:
the clips are noise, but every code path (loading, sampling, decoding, muxing,
serving) is the one the trained model takes.

    folder = build_random_pipeline(tmp_path / "model")   # ~1-2 s on 2 cores
"""

from __future__ import annotations

from pathlib import Path

import torch

TOKENIZER_CORPUS = [
    "a red ball bounces on a wooden floor",
    "two small metal cubes bounce and clink on a blue background",
    "a cartoon face with a green background says hello there",
    "a row of piano keys lights up playing a slow rising melody",
    "drum pads flash with each hit of a fast rhythm",
    "a cornflower blue ball bounces",
    "a bass drum and a snare play on the pads",
] * 4


def build_random_pipeline(folder: str | Path, seed: int = 0, steps: int = 2) -> Path:
    """Save a random toy pipeline (default `steps` sampling steps) into `folder`; returns the folder."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from pipelines.pipeline_seedance import SeedancePipeline
    from seedance.models.audio_vae import AudioVAE
    from seedance.models.text_encoder import EngramMoETextEncoder
    from seedance.models.tokenizer import SeedanceTokenizer
    from seedance.models.transformer_av import SeedanceTransformer
    from seedance.models.video_vae import VideoVAE
    from seedance.models.vocoder import Vocoder

    torch.manual_seed(seed)
    tokenizer = SeedanceTokenizer.train(TOKENIZER_CORPUS, vocab_size=320, min_frequency=1)
    text_dim, latent_v, latent_a = 32, 4, 4
    text_encoder = EngramMoETextEncoder(
        vocab_size=tokenizer.vocab_size, hidden_size=text_dim, num_layers=3, num_heads=2, dense_ffn_hidden=64,
        num_experts=4, experts_per_token=2, expert_hidden=16, shared_expert_hidden=32, engram_rows_per_head=127,
        engram_dim_per_head=8, teacher_dim=32,
    )
    transformer = SeedanceTransformer(
        in_channels=latent_v, audio_in_channels=latent_a, num_layers=1, video_dim=32, video_heads=2, audio_dim=32,
        audio_heads=2, cross_modal_dim=32, cross_modal_heads=2, text_dim=text_dim, pooled_text_dim=text_dim,
    )
    vae = VideoVAE(latent_channels=latent_v, base_channels=12)
    audio_vae = AudioVAE(latent_channels=latent_a, hidden_channels=16, latent_hidden_channels=16, blocks=1)
    vocoder = Vocoder(dim=16, num_blocks=1)
    pipe = SeedancePipeline(tokenizer=tokenizer, text_encoder=text_encoder.eval(), transformer=transformer.eval(),
                            vae=vae.eval(), audio_vae=audio_vae.eval(), vocoder=vocoder.eval(),
                            scheduler=FlowMatchEulerDiscreteScheduler())
    pipe.sampling_defaults["num_inference_steps"] = int(steps)
    folder = Path(folder)
    pipe.save_pretrained(folder)
    return folder


def cached_random_pipeline(base: str | Path, steps: int = 2) -> Path:
    """`build_random_pipeline` into base/seedance-tiny once; later calls (e.g. other test modules) reuse it."""
    folder = Path(base) / "seedance-tiny"
    if not (folder / "model_index.json").is_file():
        build_random_pipeline(folder, steps=steps)
    return folder


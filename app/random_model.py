"""A small, randomly initialised SeedancePipeline from the real classes, saved with save_pretrained.

The app's tests and load benchmark need a model folder before trained weights
exist (weights/seedance-tiny/model_index.json). This builds one with the real
tokenizer, text encoder, transformer, VAEs, vocoder and scheduler at toy widths:
the clips are noise, but every code path (loading, sampling, decoding, muxing,
serving) is the one the trained model takes.

    folder = build_random_pipeline(tmp_path / "model")   # ~1-2 s on 2 cores

`preset="tiny"` or `"base"` builds the same classes at the shipped widths for that clip preset instead (the
GPU benchmark, bench/gpu_bench.py, times those); `random_pipeline` returns the pipeline without saving it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seedance.config import ClipPreset, get_preset

TOKENIZER_CORPUS = [
    "a red ball bounces on a wooden floor",
    "two small metal cubes bounce and clink on a blue background",
    "a cartoon face with a green background says hello there",
    "a row of piano keys lights up playing a slow rising melody",
    "drum pads flash with each hit of a fast rhythm",
    "a cornflower blue ball bounces",
    "a bass drum and a snare play on the pads",
] * 4


# Full-size widths (preset=...): the shipped components' configs (weights/seedance-tiny/*/config.json) and the
# transformer recipe's defaults (pipelines/train_transformer.py), so a random pipeline costs what a trained one
# does at that clip preset. Kept here as constants: a benchmark on a bare GPU machine needs no weight files.
FULL_TEXT_ENCODER = dict(hidden_size=192, num_layers=4, num_heads=3, max_position=128, dense_ffn_hidden=384,
                         num_experts=8, experts_per_token=2, expert_hidden=96, shared_expert_hidden=192,
                         engram_layer=1, engram_orders=(2, 3), engram_heads_per_order=4, engram_rows_per_head=4093,
                         engram_dim_per_head=32, teacher_dim=384)
FULL_VAE = dict(latent_channels=8, base_channels=24, channel_multipliers=(1, 4), patch_size=2, spatial_compression=4,
                temporal_compression=4, spatial_only_levels=1, encoder_blocks=1, decoder_blocks=1)
FULL_AUDIO_VAE = dict(latent_channels=16, hidden_channels=128, latent_hidden_channels=256, blocks=2,
                      temporal_compression=5)
FULL_VOCODER = dict(dim=128, num_blocks=5, mlp_mult=3)
FULL_TRANSFORMER = dict(num_layers=6, video_dim=192, video_heads=4, audio_dim=128, audio_heads=4, cross_modal_dim=128,
                        cross_modal_heads=4, ff_mult=3.0)


def full_size_transformer_kwargs(preset: str | ClipPreset) -> dict:
    """SeedanceTransformer arguments as pipelines/train_transformer.py build_model sets them for `preset`."""
    preset = get_preset(preset)
    tc_v, sc_v, tc_a = FULL_VAE["temporal_compression"], FULL_VAE["spatial_compression"], \
        FULL_AUDIO_VAE["temporal_compression"]
    latent_hw = (preset.height // sc_v, preset.width // sc_v)
    return dict(
        in_channels=FULL_VAE["latent_channels"], audio_in_channels=FULL_AUDIO_VAE["latent_channels"],
        patch_size=max(1, min(latent_hw) // 4),  # build_model's default: a 4x4 token grid
        text_dim=FULL_TEXT_ENCODER["hidden_size"], pooled_text_dim=FULL_TEXT_ENCODER["hidden_size"],
        video_latent_rate=preset.fps / tc_v, audio_latent_rate=preset.mel_rate / tc_a,
        video_latent_offset=(tc_v - 1) / 2 / tc_v, audio_latent_offset=(tc_a - 1) / 2 / tc_a,
        preset=preset.to_dict(), **FULL_TRANSFORMER,
    )


def random_pipeline(seed: int = 0, steps: int = 2, preset: str | ClipPreset | None = None):
    """A random SeedancePipeline in memory: toy widths (preset None) or full-size widths for a clip preset."""
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
    if preset is None:
        text_dim, latent_v, latent_a = 32, 4, 4
        text_encoder = EngramMoETextEncoder(
            vocab_size=tokenizer.vocab_size, hidden_size=text_dim, num_layers=3, num_heads=2, dense_ffn_hidden=64,
            num_experts=4, experts_per_token=2, expert_hidden=16, shared_expert_hidden=32, engram_rows_per_head=127,
            engram_dim_per_head=8, teacher_dim=32,
        )
        transformer = SeedanceTransformer(
            in_channels=latent_v, audio_in_channels=latent_a, num_layers=1, video_dim=32, video_heads=2,
            audio_dim=32, audio_heads=2, cross_modal_dim=32, cross_modal_heads=2, text_dim=text_dim,
            pooled_text_dim=text_dim,
        )
        vae = VideoVAE(latent_channels=latent_v, base_channels=12)
        audio_vae = AudioVAE(latent_channels=latent_a, hidden_channels=16, latent_hidden_channels=16, blocks=1)
        vocoder = Vocoder(dim=16, num_blocks=1)
    else:
        text_encoder = EngramMoETextEncoder(vocab_size=tokenizer.vocab_size, **FULL_TEXT_ENCODER)
        transformer = SeedanceTransformer(**full_size_transformer_kwargs(preset))
        vae = VideoVAE(**FULL_VAE)
        audio_vae = AudioVAE(**FULL_AUDIO_VAE)
        vocoder = Vocoder(**FULL_VOCODER)
    pipe = SeedancePipeline(tokenizer=tokenizer, text_encoder=text_encoder.eval(), transformer=transformer.eval(),
                            vae=vae.eval(), audio_vae=audio_vae.eval(), vocoder=vocoder.eval(),
                            scheduler=FlowMatchEulerDiscreteScheduler())
    pipe.sampling_defaults["num_inference_steps"] = int(steps)
    return pipe


def build_random_pipeline(
    folder: str | Path, seed: int = 0, steps: int = 2, preset: str | ClipPreset | None = None
) -> Path:
    """Save a random pipeline (default `steps` sampling steps; toy widths unless `preset`) into `folder`."""
    pipe = random_pipeline(seed=seed, steps=steps, preset=preset)
    folder = Path(folder)
    pipe.save_pretrained(folder)
    return folder


def cached_random_pipeline(base: str | Path, steps: int = 2) -> Path:
    """`build_random_pipeline` into base/seedance-tiny once; later calls (e.g. other test modules) reuse it."""
    folder = Path(base) / "seedance-tiny"
    if not (folder / "model_index.json").is_file():
        build_random_pipeline(folder, steps=steps)
    return folder


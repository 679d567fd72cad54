"""SeedanceTransformer: one dual-branch diffusion transformer for video and audio latents.

Two token streams run side by side through `num_layers` blocks:

    video latents [B,Cv,Tv,h,w] --patchify--> video tokens [B,Nv,Dv]  (Nv = Tv/pt * h/p * w/p)
    audio latents [B,Ca,Ta]     --patchify--> audio tokens [B,Na,Da]  (Na = Ta/pa)

and every block, for each branch:

    1. adaLN modulation from the branch's conditioning (own timestep + other branch's timestep + pooled text)
    2. self-attention in the branch (video: 3-D RoPE over t [s], h, w; audio: 1-D RoPE over t [s])
    3. cross-attention to the text tokens
    4. cross-modal attention: video queries audio and audio queries video, with 1-D RoPE over time in
       seconds on both sides and a learned temporal locality bias (-slope * |t_q - t_k|); both updates read
       the states from before this step; output projections start at zero, so at initialisation the
       model is exactly the "independent" twin and coupling has to be learned
    5. feed-forward

Every token knows its time in **seconds** (one clock): with 4 video latent frames/s and 20 audio
latents/s, audio token 15 (0.775 s) and video latent frame 3 (0.875 s) are 0.1 s apart by construction.

The model predicts clean latents (x0) internally when `prediction_type="x0"` and returns the
rectified-flow velocity v = (x_t - x0) / sigma, the quantity diffusers' FlowMatchEulerDiscreteScheduler
steps with; sigma = timestep / 1000. Each modality has its own timestep: 0 marks a clean,
given modality (video-to-audio, audio-to-video).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch._dynamo  # maybe_mark_dynamic for compiled blocks (already loaded by diffusers; explicit here)
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from seedance.models.packed_linear import Linear
from seedance.models.rope import RotaryTables, rope_cos_sin, time_axes, video_axes

# Attention kernel: "matmul" (explicit softmax(QK^T)V), "sdpa" (torch's fused kernel) or "auto": matmul while
# autograd records (its backward measured faster than torch's CPU SDPA backward at these sizes) and sdpa without
# (sampling: one fused call in place of four, 3% off a 25-step call on a 2-core AMX CPU). Module-level so a
# benchmark or a GPU run can switch it.
ATTENTION_BACKEND = "auto"

MASK_VALUE = -1e9  # finite: a fully masked row becomes uniform instead of NaN

# adaLN vectors per branch per block: self-attn (shift, scale, gate), FF (shift, scale, gate),
# cross-modal query side (shift, scale, gate), cross-modal key/value side (shift, scale).
N_MOD = 11


@dataclass
class SeedanceTransformerOutput(BaseOutput):
    sample: torch.Tensor  # [B,Cv,Tv,h,w] predicted velocity for the video latents
    audio_sample: torch.Tensor | None = None  # [B,Ca,Ta] predicted velocity for the audio latents (always set;
    # the default only lets BaseOutput be rebuilt from a dict, as accelerate's fp32 conversion does)


def attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None, padded_keys: bool = False
) -> torch.Tensor:
    """q [B,H,Nq,d], k/v [B,H,Nk,d], additive bias broadcastable to [B,H,Nq,Nk] -> [B,H,Nq,d].

    padded_keys: the keys hold padding that `bias` masks (a batch of captions). "auto" then keeps the explicit
    softmax, where a masked key weighs exactly 0: the fused kernel's blocked softmax lets the padding move bf16
    roundings, and a clip would change with the length of the prompts batched with it."""
    backend = ATTENTION_BACKEND
    if backend == "auto":
        backend = "matmul" if torch.is_grad_enabled() or padded_keys else "sdpa"
    if backend == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.to(q.dtype), scale=1.0)
    scores = torch.matmul(q, k.transpose(-1, -2))  # q arrives pre-scaled by 1/sqrt(d)
    if bias is not None:
        scores = scores + bias.to(scores.dtype)
    return torch.matmul(scores.softmax(dim=-1), v)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self._scaled_weight(gain)).to(dtype)

    def _scaled_weight(self, gain: float) -> torch.Tensor:
        """weight * gain; without autograd made once and kept until the weight changes (sampling calls this
        60 times a forward with the same two gains). weight * 1.0 is weight to the bit."""
        if gain == 1.0:
            return self.weight
        if torch.is_grad_enabled():
            return self.weight * gain
        w = self.weight
        key = (gain, w.data_ptr(), w._version, w.device)
        cached = self.__dict__.get("_scaled")
        if cached is None or cached[0] != key:
            cached = (key, w.detach() * gain)
            self.__dict__["_scaled"] = cached  # a plain attribute: not in the state dict
        return cached[1]


class Attention(nn.Module):
    """Multi-head attention with QK-RMSNorm and optional RoPE on either side; context=None means self-attention."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, head_dim: int, zero_out: bool = False,
                 padded_context: bool = False):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.padded_context = padded_context  # the context is a padded caption batch (see attention())
        self.to_q = Linear(query_dim, inner)
        self.to_k = Linear(context_dim, inner)
        self.to_v = Linear(context_dim, inner)
        self.norm_q = RMSNorm(head_dim)
        self.norm_k = RMSNorm(head_dim)
        self.to_out = Linear(inner, query_dim)
        if zero_out:  # cross-modal: starts as "no coupling"
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # [B,N,H*d] -> [B,H,N,d]
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)

    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (normalised, before RoPE) and values of a context [B,L,Dc] -> two [B,H,L,d]."""
        return self.norm_k(self._split(self.to_k(context))), self._split(self.to_v(context))

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        q_rope: RotaryTables | None = None,
        k_rope: RotaryTables | None = None,
        bias: torch.Tensor | None = None,
        kv: tuple[torch.Tensor, torch.Tensor] | None = None,  # context_kv(context), computed ahead (the text's)
    ) -> torch.Tensor:
        q = self.norm_q(self._split(self.to_q(x)), gain=self.head_dim**-0.5)  # softmax scale folded in
        k, v = self.context_kv(x if context is None else context) if kv is None else kv
        if q_rope is not None:
            q = q_rope.rotate(q)
        if k_rope is not None:
            k = k_rope.rotate(k)
        out = attention(q, k, v, bias, padded_keys=self.padded_context)  # [B,H,Nq,d]
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.head_dim))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: float):
        super().__init__()
        hidden = int(dim * mult)
        self.fc1 = Linear(dim, hidden)
        self.fc2 = Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def modulate(x: torch.Tensor, shift: torch.Tensor, one_plus_scale: torch.Tensor) -> torch.Tensor:
    """x [B,N,D], shift and 1 + scale [B,1,D] -> x * (1 + scale) + shift. The block makes 1 + scale for all of
    its vectors in one addition (`mv1`), not one per use."""
    return torch.addcmul(shift, x, one_plus_scale)


def gated(h: torch.Tensor, gate: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """Residual h + gate * update, gate [B,D] or [B,1,D]."""
    return torch.addcmul(h, gate if gate.dim() == 3 else gate[:, None], update)


class BranchLayers(nn.Module):
    """The per-branch parts of a block: self-attention, text cross-attention, feed-forward, their norms."""

    def __init__(self, dim: int, heads: int, text_dim: int, ff_mult: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, dim, heads, dim // heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.text_attn = Attention(dim, text_dim, heads, dim // heads, padded_context=True)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim, ff_mult)
        # per-block offsets added to the shared adaLN output (PixArt's adaLN-single); zeros => gates start at 0
        self.mod_table = nn.Parameter(torch.zeros(N_MOD, dim))


class CrossModalLocality(nn.Module):
    """Additive bias -slope_h * |t_q - t_k| (seconds), one learned slope per head (softplus keeps it >= 0)."""

    def __init__(self, heads: int, init_slopes: tuple[float, float] | None):
        super().__init__()
        if init_slopes is None:
            self.raw = None
            return
        lo, hi = init_slopes
        slopes = torch.tensor([lo * (hi / lo) ** (i / max(heads - 1, 1)) for i in range(heads)])
        self.raw = nn.Parameter(torch.log(torch.expm1(slopes)))  # inverse softplus

    def forward(self, dt: torch.Tensor) -> torch.Tensor | None:
        """dt [Nq,Nk] absolute time differences -> bias [1,H,Nq,Nk] (or None)."""
        if self.raw is None:
            return None
        return -F.softplus(self.raw.float())[None, :, None, None] * dt[None, None]


class DualBranchBlock(nn.Module):
    def __init__(
        self,
        video_dim: int,
        video_heads: int,
        audio_dim: int,
        audio_heads: int,
        cross_modal_dim: int,
        cross_modal_heads: int,
        text_dim: int,
        ff_mult: float,
        cross_modal_attention: bool,
        locality: tuple[float, float] | None,
    ):
        super().__init__()
        self.video = BranchLayers(video_dim, video_heads, text_dim, ff_mult)
        self.audio = BranchLayers(audio_dim, audio_heads, text_dim, ff_mult)
        self.has_cross_modal = cross_modal_attention
        if cross_modal_attention:
            hd = cross_modal_dim // cross_modal_heads
            self.audio_to_video = Attention(video_dim, audio_dim, cross_modal_heads, hd, zero_out=True)  # Q video
            self.video_to_audio = Attention(audio_dim, video_dim, cross_modal_heads, hd, zero_out=True)  # Q audio
            self.a2v_locality = CrossModalLocality(cross_modal_heads, locality)
            self.v2a_locality = CrossModalLocality(cross_modal_heads, locality)
            self.cm_norm_video = nn.LayerNorm(video_dim, elementwise_affine=False, eps=1e-6)
            self.cm_norm_audio = nn.LayerNorm(audio_dim, elementwise_affine=False, eps=1e-6)

    def forward(
        self,
        h_v: torch.Tensor,  # [B,Nv,Dv]
        h_a: torch.Tensor,  # [B,Na,Da]
        mod_v: torch.Tensor,  # [B,N_MOD,Dv] shared adaLN output
        mod_a: torch.Tensor,  # [B,N_MOD,Da]
        text: torch.Tensor | None,  # [B,L,Dt]; None when text_kv is given
        text_bias: torch.Tensor | None,  # [B,1,1,L]
        rope_v: RotaryTables,  # [Nv,Dv/H] 3-D (t,h,w)
        rope_a: RotaryTables,  # [Na,Da/H] 1-D t
        cm_rope_v: RotaryTables | None,  # [Nv,Dc/H] 1-D t, cross-modal head size
        cm_rope_a: RotaryTables | None,  # [Na,Dc/H]
        dt_va: torch.Tensor | None,  # [Nv,Na] |t_video - t_audio| seconds
        cross_modal_scale: torch.Tensor | None,  # [B] 1 = coupled, 0 = independent; None = skip entirely
        text_kv: tuple | None = None,  # ((k, v) video, (k, v) audio) of the text, from a TextCache; else from text
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # the block's adaLN vectors, each [B,1,D]; mv1/ma1 hold 1 + each (the scales and the cross-modal gate)
        m_v = (mod_v + self.video.mod_table[None].to(mod_v.dtype))[:, :, None]
        m_a = (mod_a + self.audio.mod_table[None].to(mod_a.dtype))[:, :, None]
        mv, mv1, ma, ma1 = m_v.unbind(1), (1 + m_v).unbind(1), m_a.unbind(1), (1 + m_a).unbind(1)

        # 1-2. self-attention per branch (adaLN, zero-init gates)
        x_v = modulate(self.video.norm1(h_v), mv[0], mv1[1])
        h_v = gated(h_v, mv[2], self.video.self_attn(x_v, q_rope=rope_v, k_rope=rope_v))
        x_a = modulate(self.audio.norm1(h_a), ma[0], ma1[1])
        h_a = gated(h_a, ma[2], self.audio.self_attn(x_a, q_rope=rope_a, k_rope=rope_a))

        # 3. text cross-attention (no positions on text: the caption is a bag of facts for both branches)
        kv_text_v, kv_text_a = (None, None) if text_kv is None else text_kv
        h_v = h_v + self.video.text_attn(self.video.norm2(h_v), text, bias=text_bias, kv=kv_text_v)
        h_a = h_a + self.audio.text_attn(self.audio.norm2(h_a), text, bias=text_bias, kv=kv_text_a)

        # 4. cross-modal attention; both directions read the pre-step states
        if self.has_cross_modal and cross_modal_scale is not None:
            n_v = self.cm_norm_video(h_v)
            n_a = self.cm_norm_audio(h_a)
            q_v, kv_v = modulate(n_v, mv[6], mv1[7]), modulate(n_v, mv[9], mv1[10])
            q_a, kv_a = modulate(n_a, ma[6], ma1[7]), modulate(n_a, ma[9], ma1[10])
            upd_v = self.audio_to_video(q_v, kv_a, q_rope=cm_rope_v, k_rope=cm_rope_a, bias=self.a2v_locality(dt_va))
            upd_a = self.video_to_audio(q_a, kv_v, q_rope=cm_rope_a, k_rope=cm_rope_v,
                                        bias=self.v2a_locality(dt_va.transpose(0, 1)))
            # gates are 1 + modulation: with zero-init output projections a zero gate would block all gradient
            s = cross_modal_scale.to(h_v.dtype)[:, None, None]
            h_v = gated(h_v, s * mv1[8], upd_v)
            h_a = gated(h_a, s * ma1[8], upd_a)

        # 5. feed-forward
        h_v = gated(h_v, mv[5], self.video.ff(modulate(self.video.norm3(h_v), mv[3], mv1[4])))
        h_a = gated(h_a, ma[5], self.audio.ff(modulate(self.audio.norm3(h_a), ma[3], ma1[4])))
        return h_v, h_a


@dataclass
class TextCache:
    """The text's share of a forward that no denoising step changes, kept from one step to the next.

    The caption's keys and values in every block's text cross-attention (both branches) and its mask bias are
    functions of the text alone. Pass an empty `TextCache()` with the first forward of a sampling loop: that forward
    fills it (with its own modules and, under autocast, its own casts, so later forwards given it return the same
    values to the bit), and later forwards with the same text reuse it. Filling it inside forward, not ahead of it,
    keeps it working where hooks on forward move the weights (accelerate's CPU offload)."""

    kv: tuple | None = None  # per block: ((k, v) video branch, (k, v) audio branch), each [B,H,L,d]
    bias: torch.Tensor | None = None  # [B,1,1,L] additive mask bias, None when every token is real

    @property
    def filled(self) -> bool:
        return self.kv is not None

    @property
    def batch_size(self) -> int:
        return self.kv[0][0][0].shape[0]


def timestep_features(t: torch.Tensor, dim: int = 256, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of timesteps t [B] (0..1000) -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class BranchConditioning(nn.Module):
    """c = MLP(own timestep) + MLP(other branch's timestep) + Linear(pooled text); adaLN-single projection of c."""

    def __init__(self, dim: int, pooled_dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.own_t = nn.Sequential(Linear(freq_dim, dim), nn.SiLU(), Linear(dim, dim))
        self.other_t = nn.Sequential(Linear(freq_dim, dim), nn.SiLU(), Linear(dim, dim))
        self.text = Linear(pooled_dim, dim)
        self.to_mod = Linear(dim, N_MOD * dim)  # shared by all blocks
        self.to_out_mod = Linear(dim, 2 * dim)  # final layer shift/scale
        for lin in (self.to_mod, self.to_out_mod):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, t_own: torch.Tensor, t_other: torch.Tensor, pooled: torch.Tensor):
        c = self.own_t(timestep_features(t_own, self.freq_dim).to(pooled.dtype))
        c = c + self.other_t(timestep_features(t_other, self.freq_dim).to(pooled.dtype)) + self.text(pooled)
        c = F.silu(c)
        mod = self.to_mod(c).view(c.shape[0], N_MOD, -1)  # [B,N_MOD,D]
        out_shift, out_scale = self.to_out_mod(c).chunk(2, dim=-1)
        return mod, out_shift, out_scale


class SeedanceTransformer(ModelMixin, ConfigMixin):
    """Dual-branch audio-video diffusion transformer (see module docstring)."""

    _supports_gradient_checkpointing = True
    _no_split_modules = ["DualBranchBlock"]
    _repeated_blocks = ["DualBranchBlock"]  # diffusers' compile_repeated_blocks: one compiled graph serves all six

    @register_to_config
    def __init__(
        self,
        in_channels: int = 8,  # video latent channels Cv
        audio_in_channels: int = 8,  # audio latent channels Ca
        patch_size: int = 2,  # spatial patch on the video latent grid
        patch_size_t: int = 1,
        audio_patch_size: int = 1,
        num_layers: int = 6,
        video_dim: int = 192,
        video_heads: int = 4,
        audio_dim: int = 128,
        audio_heads: int = 4,
        cross_modal_dim: int = 128,
        cross_modal_heads: int = 4,
        text_dim: int = 256,
        pooled_text_dim: int = 256,
        ff_mult: float = 3.0,
        video_latent_rate: float = 4.0,  # video latent frames per second
        audio_latent_rate: float = 20.0,  # audio latents per second
        video_latent_offset: float = 0.5,  # where in its period a video latent's centre lies (0.375 for a causal tc=4)
        audio_latent_offset: float = 0.5,  # same for audio latents (0.4 for tc=5 over mel frames)
        rope_min_wavelength_s: float = 0.1,
        rope_max_wavelength_s: float = 32.0,
        max_grid: int = 16,  # largest patch grid side the spatial RoPE is tuned for
        cross_modal_attention: bool = True,  # False builds the "independent" ablation
        cross_modal_locality: tuple[float, float] | None = (2.0, 16.0),  # initial slopes per second, over heads
        prediction_type: str = "x0",  # "x0" (returned as velocity) or "velocity"
        text_input_projection: bool = False,  # linear maps on the text states and pooled text before they are read
        min_sigma: float = 1e-3,  # floor of sigma when turning x0 into a velocity
        preset: dict | None = None,  # the ClipPreset (as a dict) the model was trained for
    ):
        super().__init__()
        if prediction_type not in ("x0", "velocity"):
            raise ValueError(f"prediction_type must be 'x0' or 'velocity', got {prediction_type!r}")
        for name, dim, heads in (("video", video_dim, video_heads), ("audio", audio_dim, audio_heads),
                                 ("cross_modal", cross_modal_dim, cross_modal_heads)):
            if dim % heads or (dim // heads) % 2:
                raise ValueError(f"{name}_dim {dim} must split into {heads} heads of an even size")
        self.gradient_checkpointing = False
        v_patch = in_channels * patch_size_t * patch_size * patch_size
        a_patch = audio_in_channels * audio_patch_size

        # 0. token embeddings
        self.patch_embed = Linear(v_patch, video_dim)
        self.audio_patch_embed = Linear(a_patch, audio_dim)
        if text_input_projection:
            # Lets a trained transformer read another text encoder: fitted to map the new encoder's states onto
            # the ones it was trained on (pipelines/fit_caption_projection.py). Starts as the identity.
            self.caption_projection = Linear(text_dim, text_dim)
            self.pooled_projection = Linear(pooled_text_dim, pooled_text_dim)
            for lin in (self.caption_projection, self.pooled_projection):
                nn.init.eye_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.text_norm = nn.LayerNorm(text_dim, eps=1e-6)
        self.video_cond = BranchConditioning(video_dim, pooled_text_dim)
        self.audio_cond = BranchConditioning(audio_dim, pooled_text_dim)

        self.blocks = nn.ModuleList(
            DualBranchBlock(video_dim, video_heads, audio_dim, audio_heads, cross_modal_dim, cross_modal_heads,
                            text_dim, ff_mult, cross_modal_attention,
                            None if cross_modal_locality is None else tuple(cross_modal_locality))
            for _ in range(num_layers)
        )

        # final layers: adaLN (zero-init) + zero-init projection back to patches
        self.norm_out = nn.LayerNorm(video_dim, elementwise_affine=False, eps=1e-6)
        self.proj_out = Linear(video_dim, v_patch)
        self.audio_norm_out = nn.LayerNorm(audio_dim, elementwise_affine=False, eps=1e-6)
        self.audio_proj_out = Linear(audio_dim, a_patch)
        for lin in (self.proj_out, self.audio_proj_out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    # ----------------------------------------------------------------- positions (seconds)
    def latent_times(self, num_video_frames: int, num_audio_latents: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Centre time in seconds of each video latent frame [Tv] and audio latent [Ta]."""
        c = self.config
        t_v = (torch.arange(num_video_frames, dtype=torch.float64) + c.video_latent_offset) / c.video_latent_rate
        t_a = (torch.arange(num_audio_latents, dtype=torch.float64) + c.audio_latent_offset) / c.audio_latent_rate
        return t_v, t_a

    def _positions(self, t_v: torch.Tensor, t_a: torch.Tensor, grid_h: int, grid_w: int):
        """Token coordinates: video [Nv,3] (t s, h, w) in (t,h,w) token order; audio [Na,1] (t s)."""
        c = self.config
        tv_tok = t_v.view(-1, c.patch_size_t).mean(1)  # [Tv/pt]
        ta_tok = t_a.view(-1, c.audio_patch_size).mean(1)  # [Na]
        tt, hh, ww = torch.meshgrid(tv_tok, torch.arange(grid_h, dtype=torch.float64),
                                    torch.arange(grid_w, dtype=torch.float64), indexing="ij")
        video_coords = torch.stack([tt, hh, ww], dim=-1).reshape(-1, 3)
        return video_coords, ta_tok[:, None]

    def _rotations(self, t_len: int, h_len: int, w_len: int, ta_len: int, video_times: torch.Tensor | None,
                   audio_times: torch.Tensor | None, device: torch.device, rope_dtype: torch.dtype, use_cm: bool):
        """The forward's RoPE tables (video, audio, and both cross-modal ones) and the video-audio time
        distances [Nv,Na]. They depend on the latent shapes only, so on the config's clocks (no times given) the
        last few sets are kept: a sampling loop makes them once, not once a step. Same values either way."""
        key = None
        if video_times is None and audio_times is None:
            # inference mode apart: its tensors could not be saved for a backward pass outside it
            key = (t_len, h_len, w_len, ta_len, str(device), rope_dtype, use_cm, torch.is_inference_mode_enabled())
            cache = self.__dict__.setdefault("_rotation_cache", {})  # a plain attribute: not in the state dict
            if key in cache:
                return cache[key]
        c = self.config
        if video_times is None or audio_times is None:
            dv, da = self.latent_times(t_len, ta_len)
            video_times = dv if video_times is None else video_times
            audio_times = da if audio_times is None else audio_times
        grid_h, grid_w = h_len // c.patch_size, w_len // c.patch_size
        v_coords, a_coords = self._positions(video_times.double().cpu(), audio_times.double().cpu(), grid_h, grid_w)
        v_coords, a_coords = v_coords.to(device), a_coords.to(device)
        lo, hi = c.rope_min_wavelength_s, c.rope_max_wavelength_s
        hd_v, hd_a = c.video_dim // c.video_heads, c.audio_dim // c.audio_heads  # head sizes
        hd_c = c.cross_modal_dim // c.cross_modal_heads
        rope_v = RotaryTables(*rope_cos_sin(v_coords, video_axes(hd_v, lo, hi, c.max_grid)), hd_v, rope_dtype)
        rope_a = RotaryTables(*rope_cos_sin(a_coords, time_axes(hd_a, lo, hi)), hd_a, rope_dtype)
        cm_rope_v = cm_rope_a = dt_va = None
        if use_cm:
            cm_axes = time_axes(hd_c, lo, hi)
            cm_rope_v = RotaryTables(*rope_cos_sin(v_coords[:, :1], cm_axes), hd_c, rope_dtype)
            cm_rope_a = RotaryTables(*rope_cos_sin(a_coords, cm_axes), hd_c, rope_dtype)
            dt_va = (v_coords[:, :1] - a_coords[:, 0][None]).abs().float()  # [Nv,Na]
        out = (rope_v, rope_a, cm_rope_v, cm_rope_a, dt_va)
        if key is not None:
            if len(cache) >= 8:  # a few shapes at a time (durations, sizes); the oldest goes first
                cache.pop(next(iter(cache)))
            cache[key] = out
        return out

    # ----------------------------------------------------------------- patchify
    def _patchify_video(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, t, h, w = x.shape
        pt, p = self.config.patch_size_t, self.config.patch_size
        x = x.view(b, ch, t // pt, pt, h // p, p, w // p, p)
        x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)  # [B,T',H',W',C,pt,p,p]
        return x.reshape(b, (t // pt) * (h // p) * (w // p), ch * pt * p * p)

    def _unpatchify_video(self, x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, ch, t, h, w = shape
        pt, p = self.config.patch_size_t, self.config.patch_size
        x = x.view(b, t // pt, h // p, w // p, ch, pt, p, p).permute(0, 4, 1, 5, 2, 6, 3, 7)
        return x.reshape(b, ch, t, h, w)

    def _patchify_audio(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, t = x.shape
        pa = self.config.audio_patch_size
        return x.view(b, ch, t // pa, pa).permute(0, 2, 1, 3).reshape(b, t // pa, ch * pa)

    def _unpatchify_audio(self, x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        b, ch, t = shape
        pa = self.config.audio_patch_size
        return x.view(b, t // pa, ch, pa).permute(0, 2, 1, 3).reshape(b, ch, t)

    def check_latent_shapes(self, video_shape: tuple, audio_shape: tuple) -> None:
        c = self.config
        if len(video_shape) != 5 or video_shape[1] != c.in_channels:
            raise ValueError(f"video latents must be [B,{c.in_channels},T,h,w], got {list(video_shape)}")
        if len(audio_shape) != 3 or audio_shape[1] != c.audio_in_channels:
            raise ValueError(f"audio latents must be [B,{c.audio_in_channels},T], got {list(audio_shape)}")
        _, _, t, h, w = video_shape
        if t % c.patch_size_t or h % c.patch_size or w % c.patch_size:
            raise ValueError(f"video latent grid {t}x{h}x{w} is not divisible by the patch "
                             f"{c.patch_size_t}x{c.patch_size}x{c.patch_size}")
        if audio_shape[2] % c.audio_patch_size:
            raise ValueError(f"{audio_shape[2]} audio latents are not divisible by the patch {c.audio_patch_size}")

    # ----------------------------------------------------------------- text
    @staticmethod
    def _text_bias(encoder_attention_mask: torch.Tensor, device: torch.device) -> torch.Tensor:
        """[B,L] 1 = real token -> additive bias [B,1,1,L] (0 or MASK_VALUE)."""
        keep = encoder_attention_mask.to(device).bool()
        bias = torch.zeros(keep.shape, device=device, dtype=torch.float32).masked_fill(~keep, MASK_VALUE)
        return bias[:, None, None, :]

    def _fill_text_cache(self, cache: TextCache, text: torch.Tensor, text_bias: torch.Tensor | None) -> None:
        """Every block's text keys and values from the normalised text [B,L,Dt], into `cache`."""
        kv = tuple((block.video.text_attn.context_kv(text), block.audio.text_attn.context_kv(text))
                   for block in self.blocks)
        for pairs in kv:  # compiled blocks: the text length stays a dynamic dimension
            for k, v in pairs:
                torch._dynamo.maybe_mark_dynamic(k, 2)
                torch._dynamo.maybe_mark_dynamic(v, 2)
        cache.kv, cache.bias = kv, text_bias

    # ----------------------------------------------------------------- forward
    def forward(
        self,
        hidden_states: torch.Tensor,  # [B,Cv,Tv,h,w] noisy video latents
        audio_hidden_states: torch.Tensor,  # [B,Ca,Ta] noisy audio latents
        encoder_hidden_states: torch.Tensor,  # [B,L,Dt] text tokens
        pooled_projections: torch.Tensor,  # [B,Dp] pooled text
        timestep: torch.Tensor,  # [B] or scalar, sigma*1000 for video
        audio_timestep: torch.Tensor | None = None,  # [B] for audio; defaults to `timestep`
        encoder_attention_mask: torch.Tensor | None = None,  # [B,L] 1 = real token
        cross_modal: bool | torch.Tensor = True,  # False / [B] zeros: run without cross-modal attention
        video_times: torch.Tensor | None = None,  # [Tv] seconds, overrides the config rates
        audio_times: torch.Tensor | None = None,  # [Ta] seconds
        text_cache: TextCache | None = None,  # empty: filled by this call; filled: its text work is not redone
        return_dict: bool = True,
    ) -> SeedanceTransformerOutput | tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        self.check_latent_shapes(hidden_states.shape, audio_hidden_states.shape)
        b, _, t_len, h_len, w_len = hidden_states.shape
        ta_len = audio_hidden_states.shape[2]
        device, dtype = hidden_states.device, hidden_states.dtype
        timestep = _per_sample(timestep, b, device)
        audio_timestep = timestep if audio_timestep is None else _per_sample(audio_timestep, b, device)

        # 1. positions in seconds and their rotations
        # the rotated queries and keys come out of linear layers: in autocast's dtype under autocast
        rope_dtype = (torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type)
                      else self.patch_embed.weight.dtype)
        use_cm = c.cross_modal_attention and not (isinstance(cross_modal, bool) and not cross_modal)
        rope_v, rope_a, cm_rope_v, cm_rope_a, dt_va = self._rotations(
            t_len, h_len, w_len, ta_len, video_times, audio_times, device, rope_dtype, use_cm)
        cm_scale = None
        if use_cm:
            cm_scale = torch.ones(b, device=device) if isinstance(cross_modal, bool) else (
                cross_modal.to(device).float().expand(b))

        # 2. tokens and conditioning
        h_v = self.patch_embed(self._patchify_video(hidden_states))  # [B,Nv,Dv]
        h_a = self.audio_patch_embed(self._patchify_audio(audio_hidden_states))  # [B,Na,Da]
        if text_cache is not None and text_cache.filled:
            if text_cache.batch_size != b:
                raise ValueError(f"text_cache holds {text_cache.batch_size} rows for a batch of {b}")
            text, text_bias, text_kv = None, text_cache.bias, text_cache.kv
        else:
            if c.text_input_projection:
                encoder_hidden_states = self.caption_projection(encoder_hidden_states)
            text, text_bias, text_kv = self.text_norm(encoder_hidden_states), None, [None] * len(self.blocks)
            if encoder_attention_mask is not None:
                text_bias = self._text_bias(encoder_attention_mask, device)
            if text_cache is not None:  # the first forward of a loop: make the text's keys and values once
                self._fill_text_cache(text_cache, text, text_bias)
                text, text_kv = None, text_cache.kv
        pooled = pooled_projections.to(h_v.dtype)
        if c.text_input_projection:
            pooled = self.pooled_projection(pooled)
        mod_v, out_shift_v, out_scale_v = self.video_cond(timestep, audio_timestep, pooled)
        mod_a, out_shift_a, out_scale_a = self.audio_cond(audio_timestep, timestep, pooled)

        # 3. blocks. The text length changes with the prompt: marked dynamic, compiled blocks (regional
        # torch.compile) take any prompt with one graph instead of compiling again per length. A no-op when eager.
        if text is not None:
            torch._dynamo.maybe_mark_dynamic(text, 1)
        if text_bias is not None:
            torch._dynamo.maybe_mark_dynamic(text_bias, 3)
        for block, kv in zip(self.blocks, text_kv):
            args = (h_v, h_a, mod_v, mod_a, text, text_bias, rope_v, rope_a, cm_rope_v, cm_rope_a, dt_va, cm_scale, kv)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                h_v, h_a = self._gradient_checkpointing_func(block, *args)
            else:
                h_v, h_a = block(*args)

        # 4. back to latent patches
        out_v = self.proj_out(modulate(self.norm_out(h_v), out_shift_v[:, None], 1 + out_scale_v[:, None]))
        out_a = self.audio_proj_out(modulate(self.audio_norm_out(h_a), out_shift_a[:, None], 1 + out_scale_a[:, None]))
        out_v = self._unpatchify_video(out_v.float(), hidden_states.shape)
        out_a = self._unpatchify_audio(out_a.float(), audio_hidden_states.shape)

        # 5. x0 -> velocity: v = (x_t - x0) / sigma
        if c.prediction_type == "x0":
            sig_v = (timestep / 1000.0).clamp(min=c.min_sigma).view(b, 1, 1, 1, 1)
            sig_a = (audio_timestep / 1000.0).clamp(min=c.min_sigma).view(b, 1, 1)
            out_v = (hidden_states.float() - out_v) / sig_v
            out_a = (audio_hidden_states.float() - out_a) / sig_a
        out_v, out_a = out_v.to(dtype), out_a.to(audio_hidden_states.dtype)
        if not return_dict:
            return out_v, out_a
        return SeedanceTransformerOutput(sample=out_v, audio_sample=out_a)


def _per_sample(t: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    """A scalar or [B] timestep as float32 [B]."""
    t = torch.as_tensor(t, device=device).float()
    return t.expand(batch) if t.dim() == 0 else t.reshape(batch)


def velocity_to_x0(x_t: torch.Tensor, velocity: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Clean-sample estimate from a velocity under x_t = (1-sigma) x0 + sigma eps: x0 = x_t - sigma v."""
    return x_t - sigma.view(-1, *([1] * (x_t.dim() - 1))) * velocity

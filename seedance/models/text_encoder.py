"""EngramMoETextEncoder: a small bidirectional text encoder with an Engram memory and MoE layers.

    input_ids [B,L] (compressed ids from SeedanceTokenizer), attention_mask [B,L]
      0. engram indices [B,L,H] = hash(suffix 2-/3-grams of input_ids)   (ids only: before any layer)
         -> start gathering the rows (host table: prefetch, overlapping step 2)
      1. x = token embedding + position embedding                        [B,L,D]
      2. block 0: self-attention + dense SwiGLU
      3. x += Engram(x, rows)                                            (gate alpha_t per token)
      4. blocks 1..N-1: self-attention + MoE (routed + shared SwiGLU experts)
      5. RMSNorm -> last_hidden_state [B,L,D]  (token states for cross-attention)
         masked mean -> pooler_output [B,D]    (pooled vector for adaLN)
         normalize(W pooler_output) -> text_embeds [B,teacher_dim]  (the distilled sentence embedding)
         (embedding_pooling="layers": normalize(W [masked means of every block's output, pooler_output] + b),
          a head refitted by least squares after training: seedance/models/text_head.py)

Distilled from all-MiniLM-L6-v2 (pipelines/train_text_encoder.py); the teacher
is not needed at inference.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from seedance.errors import SeedanceError
from seedance.models.engram import EngramMemory, HostEngramTable, NgramHasher, RMSNorm
from seedance.models.moe import MoEFeedForward, SwiGLU


@dataclass
class TextEncoderOutput(BaseOutput):
    # Defaults only so that wrappers that rebuild outputs from a dict (accelerate's fp32 conversion) work.
    last_hidden_state: torch.Tensor = None  # [B,L,D], zero at padding
    pooler_output: torch.Tensor = None  # [B,D]
    text_embeds: torch.Tensor = None  # [B,teacher_dim], unit length
    engram_gates: torch.Tensor | None = None  # [B,L] alpha_t, when asked for
    token_embeds: torch.Tensor | None = None  # [B,L,teacher_dim] per-token W h_t (their mean -> text_embeds)
    layer_pooled: torch.Tensor | None = None  # [B,(num_layers+1)*D] masked means of each block's output + pooled
    balance_loss: torch.Tensor | None = None  # sequence-wise MoE balance loss (training)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError("hidden_size must be divisible by num_heads")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3x[B,h,L,hd]
        # Plain matmul attention: at these sizes it is faster than CPU SDPA, forward and backward.
        att = (q @ k.transpose(-2, -1)) * (self.head_dim**-0.5) + attn_bias  # [B,h,L,L]
        y = att.softmax(-1) @ v  # [B,h,L,hd]
        return self.out(y.transpose(1, 2).reshape(B, L, D))


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn: nn.Module):
        super().__init__()
        self.norm_attn = RMSNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm_ffn = RMSNorm(dim)
        self.ffn = ffn

    def forward(self, x, attn_bias, flat_valid, seq_ids):
        x = x + self.attn(self.norm_attn(x), attn_bias)
        h = self.norm_ffn(x)
        if isinstance(self.ffn, MoEFeedForward):
            B, L, D = h.shape
            tokens = h.reshape(B * L, D).index_select(0, flat_valid)  # padding never reaches the router
            y, loss = self.ffn(tokens, seq_ids, B)
            y = h.new_zeros(B * L, D).index_copy(0, flat_valid, y).view(B, L, D)
            return x + y, loss
        return x + self.ffn(h), None


class EngramMoETextEncoder(ModelMixin, ConfigMixin):
    """See the module docstring. forward(input_ids [B,L], attention_mask [B,L]) -> TextEncoderOutput."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        vocab_size: int = 2048,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_heads: int = 4,
        max_position: int = 128,
        dense_ffn_hidden: int = 512,
        num_experts: int = 8,
        experts_per_token: int = 2,
        expert_hidden: int = 96,
        shared_expert_hidden: int = 192,
        moe_balance_alpha: float = 1e-4,
        engram_layer: int = 1,
        engram_orders: tuple[int, ...] = (2, 3),
        engram_heads_per_order: int = 4,
        engram_rows_per_head: int = 4093,
        engram_dim_per_head: int = 32,
        engram_hash_seed: int = 0,
        teacher_dim: int = 384,
        pad_token_id: int = 0,
        embedding_pooling: str = "last",  # "last": W pooler_output; "layers": W [every layer's mean] + b
    ):
        super().__init__()
        if not 1 <= engram_layer < num_layers:
            raise ValueError("engram_layer must be in [1, num_layers): it follows at least one attention layer")
        if embedding_pooling not in ("last", "layers"):
            raise ValueError(f"embedding_pooling must be 'last' or 'layers', got {embedding_pooling!r}")
        self.token_embedding = nn.Embedding(vocab_size, hidden_size)
        self.position_embedding = nn.Parameter(torch.zeros(max_position, hidden_size))
        blocks = [EncoderBlock(hidden_size, num_heads, SwiGLU(hidden_size, dense_ffn_hidden))]  # first layer dense
        for _ in range(num_layers - 1):
            moe = MoEFeedForward(
                hidden_size,
                num_experts,
                experts_per_token,
                expert_hidden,
                shared_expert_hidden,
                balance_alpha=moe_balance_alpha,
            )
            blocks.append(EncoderBlock(hidden_size, num_heads, moe))
        self.blocks = nn.ModuleList(blocks)
        self.engram_hasher = self._make_hasher(engram_rows_per_head)
        self.engram = EngramMemory(
            hidden_size, self.engram_hasher.num_heads, self.engram_hasher.total_rows, engram_dim_per_head
        )
        self.final_norm = RMSNorm(hidden_size)
        if embedding_pooling == "layers":
            self.pool_proj = nn.Linear((num_layers + 1) * hidden_size, teacher_dim, bias=True)
        else:
            self.pool_proj = nn.Linear(hidden_size, teacher_dim, bias=False)
        self._host_table: HostEngramTable | None = None
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)
        n = self.config.num_layers
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv.weight, std=self.config.hidden_size**-0.5)
            nn.init.normal_(block.attn.out.weight, std=self.config.hidden_size**-0.5 / math.sqrt(2 * n))
            if isinstance(block.ffn, SwiGLU):
                nn.init.normal_(block.ffn.gate_up.weight, std=self.config.hidden_size**-0.5)
                nn.init.normal_(block.ffn.down.weight, std=block.ffn.down.in_features**-0.5 / math.sqrt(2 * n))
        nn.init.normal_(self.pool_proj.weight, std=self.config.hidden_size**-0.5)

    @torch.no_grad()
    def grow_vocabulary(self, sources: dict[int, list[int]]) -> None:
        """Add embedding rows for new token ids (a tokenizer grown by seedance.models.vocab_extension).

        `sources` maps each new id (the next ids after the current vocabulary, all of them) to the old ids
        its text used to split into; the new row starts as their mean, so a grown tokenizer at first reads a
        new word about as the model read its pieces. Old rows, and so every old id's output, are untouched.
        """
        old = self.token_embedding
        new_size = old.num_embeddings + len(sources)
        if sorted(sources) != list(range(old.num_embeddings, new_size)):
            raise SeedanceError("the new token ids must follow the current vocabulary without gaps")
        table = nn.Embedding(new_size, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
        table.weight[: old.num_embeddings] = old.weight
        for cid, ids in sources.items():
            if not ids or max(ids) >= old.num_embeddings:
                raise SeedanceError(f"new token {cid} must come from existing ids, got {ids}")
            table.weight[cid] = old.weight[ids].mean(0)
        self.token_embedding = table
        self.register_to_config(vocab_size=new_size)

    # ---- Engram table placement -------------------------------------------------------------------------------

    def _make_hasher(self, rows_per_head: int) -> NgramHasher:
        cfg = self.config
        return NgramHasher(tuple(cfg.engram_orders), cfg.engram_heads_per_order, rows_per_head, cfg.engram_hash_seed)

    def _cpu_hasher(self) -> NgramHasher:
        if self.engram_hasher.primes.device.type == "cpu":
            return self.engram_hasher
        cache = self.__dict__.setdefault("_cpu_hashers", {})
        key = self.engram_hasher.total_rows
        if key not in cache:
            cache[key] = copy.deepcopy(self.engram_hasher).cpu()
        return cache[key]

    def _hasher_for(self, rows_per_head: int) -> NgramHasher:
        cache = self.__dict__.setdefault("_hashers", {})  # plain dict: not a submodule, not saved
        if rows_per_head not in cache:
            cache[rows_per_head] = self._make_hasher(rows_per_head).to(self.token_embedding.weight.device)
        return cache[rows_per_head]

    def use_host_table(self, table: HostEngramTable | None, rows_per_head: int | None = None) -> None:
        """Look Engram rows up in `table` (host RAM or memory-mapped) instead of the in-model table.

        `rows_per_head` re-hashes for a table of a different size (the big-table benchmark);
        None keeps this model's hashing. `use_host_table(None)` goes back to the in-model table.
        """
        cfg = self.config
        if table is None:
            self._host_table = None
            if self.engram_hasher.total_rows != self.engram.table.num_embeddings:  # undo a re-hash
                self.engram_hasher = self._hasher_for(cfg.engram_rows_per_head)
            return
        hasher = self._hasher_for(rows_per_head or cfg.engram_rows_per_head)
        if table.shape != (hasher.total_rows, cfg.engram_dim_per_head):
            raise SeedanceError(
                f"Engram table has shape {table.shape}, the model needs "
                f"({hasher.total_rows}, {cfg.engram_dim_per_head}); pass the matching rows_per_head"
            )
        self.engram_hasher = hasher
        self._host_table = table

    # ---- MoE balancing ------------------------------------------------------------------------------------

    def moe_layers(self) -> list[MoEFeedForward]:
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoEFeedForward)]

    def routing_loads(self) -> torch.Tensor:
        """Tokens per expert in the latest forward, per MoE layer [n_moe, E]."""
        return torch.stack([m.last_load for m in self.moe_layers()])

    def update_routing_biases(self, loads: torch.Tensor, gamma: float = 1e-3) -> None:
        for layer, load in zip(self.moe_layers(), loads):
            layer.update_bias(load, gamma)

    def set_moe_dispatch(self, dispatch: str) -> None:
        if dispatch not in ("auto", "loop"):
            raise ValueError("dispatch must be 'auto' or 'loop'")
        for layer in self.moe_layers():
            layer.dispatch = dispatch

    # ---- forward ------------------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        engram_scale: float = 1.0,
        output_engram_gates: bool = False,
        output_token_embeds: bool = False,
        output_layer_pooled: bool = False,
        return_dict: bool = True,
    ) -> TextEncoderOutput | tuple:
        if input_ids.dim() != 2:
            raise SeedanceError(f"input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
        B, L = input_ids.shape
        if L > self.config.max_position:
            raise SeedanceError(
                f"sequence of {L} tokens is longer than the encoder's {self.config.max_position}; "
                f"tokenize with max_length={self.config.max_position}"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = attention_mask.bool()
        # 0. Engram indices from ids alone; a host table starts gathering now and overlaps block 0
        pending = None
        if self._host_table is not None:
            # hash on the host (ids are tiny), so a host table never waits for the accelerator
            pending = self._host_table.prefetch(self._cpu_hasher()(input_ids.cpu()))
            indices = None
        else:
            indices = self.engram_hasher(input_ids)  # [B,L,H]
        # 1. embeddings
        x = self.token_embedding(input_ids) + self.position_embedding[:L]  # [B,L,D]
        attn_bias = torch.zeros(B, 1, 1, L, dtype=x.dtype, device=x.device).masked_fill(
            ~mask[:, None, None, :], torch.finfo(x.dtype).min
        )  # [B,1,1,L]
        flat_valid = mask.reshape(-1).nonzero().squeeze(1)  # [T] valid token positions in B*L
        seq_ids = flat_valid // L  # [T]
        balance_loss = x.new_zeros(())
        gates = None
        by_layers = self.config.embedding_pooling == "layers"
        layer_states = []  # every block's output, for the "layers" embedding head
        for i, block in enumerate(self.blocks):
            if i == self.config.engram_layer:
                # 3. Engram memory, after the first attention layer
                rows = pending.result() if pending is not None else self.engram.gather(indices)  # [B,L,H,dm]
                y, gates = self.engram(x, rows)
                x = x + engram_scale * y
            # 2./4. attention + dense or MoE feed-forward
            x, loss = block(x, attn_bias, flat_valid, seq_ids)
            if loss is not None:
                balance_loss = balance_loss + loss
            if by_layers or output_layer_pooled:
                layer_states.append(x)
        # 5. outputs
        keep = mask.unsqueeze(-1).to(x.dtype)  # [B,L,1]
        count = keep.sum(1).clamp_min(1.0)  # [B,1]
        hidden = self.final_norm(x) * keep  # [B,L,D]
        pooled = hidden.sum(1) / count  # [B,D]
        layer_pooled = None
        if layer_states:
            layer_pooled = torch.cat([(h * keep).sum(1) / count for h in layer_states] + [pooled], -1)
        text_embeds = F.normalize(self.pool_proj(layer_pooled if by_layers else pooled), dim=-1)  # [B,teacher_dim]
        token_embeds = None
        if output_token_embeds:  # per token; their mean is the pre-normalisation embedding (the head is linear)
            token_embeds = self.pool_proj(torch.cat([h * keep for h in layer_states] + [hidden], -1) if by_layers
                                          else hidden)
        out = TextEncoderOutput(
            last_hidden_state=hidden,
            pooler_output=pooled,
            text_embeds=text_embeds,
            engram_gates=gates * mask if output_engram_gates else None,
            token_embeds=token_embeds,
            layer_pooled=layer_pooled if output_layer_pooled else None,
            balance_loss=balance_loss if self.training else None,
        )
        return out if return_dict else out.to_tuple()

    # ---- convenience --------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, tokenizer, prompts: list[str], batch_size: int = 32) -> torch.Tensor:
        """Prompts -> unit sentence embeddings [N,teacher_dim] (eval mode, batches of batch_size)."""
        prompts = list(prompts)
        # Batch prompts of similar length together (less padding), then restore the caller's order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        outs = []
        for i in range(0, len(prompts), batch_size):
            batch = tokenizer([prompts[j] for j in order[i : i + batch_size]], max_length=self.config.max_position)
            batch = {k: v.to(self.device) for k, v in batch.items()}
            outs.append(self(**batch).text_embeds)
        embeds = torch.cat(outs)
        return embeds[torch.argsort(torch.tensor(order, device=embeds.device))]

    def parameter_counts(self) -> dict[str, int]:
        """Exact counts: total parameters, and those one token uses (routed experts: k of E; Engram: H table rows)."""
        cfg = self.config
        total = sum(p.numel() for p in self.parameters())
        inactive = 0
        for layer in self.moe_layers():
            per_expert = layer.w_gate_up[0].numel() + layer.w_down[0].numel()
            inactive += (layer.num_experts - layer.top_k) * per_expert
        table = self.engram.table.weight
        inactive += table.numel() - self.engram_hasher.num_heads * cfg.engram_dim_per_head
        inactive += self.token_embedding.weight.numel() - cfg.hidden_size  # one embedding row per token
        inactive += self.position_embedding.numel() - cfg.hidden_size
        return {"params_total": total, "params_active": total - inactive}

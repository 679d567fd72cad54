"""Look inside the Engram/MoE text encoder for one prompt (the app's Text-encoder tab).

For every token: its piece, its compressed id (the tokenizer folds pieces whose
normalised text is equal), the suffix 2-/3-grams the Engram memory hashes at that
position, how often those n-grams occur in the training captions ("hits": an
n-gram never seen in training reads only hash-collision rows), the Engram table
rows read, the gate alpha_t and how much the memory changed the hidden state.
For every MoE layer: which experts each token was routed to, with what weight.
Forward hooks read these from the real model; nothing is recomputed apart.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

LATENCY_RUNS = 5


@dataclass
class CaptionIndex:
    """Training captions, their distilled embeddings [N,D], and compressed-id n-gram counts."""

    captions: list[str]
    embeddings: np.ndarray
    ngram_counts: Counter

    @classmethod
    def build(cls, tokenizer, encoder, captions: list[str], orders: tuple[int, ...]) -> CaptionIndex:
        counts: Counter = Counter()
        for caption in captions:
            ids = tokenizer.encode(caption)
            for n in orders:
                counts.update(tuple(ids[i - n + 1 : i + 1]) for i in range(n - 1, len(ids)))
        embeddings = encoder.encode(tokenizer, captions).float().numpy() if captions else np.zeros((0, 1))
        return cls(captions, embeddings, counts)

    def nearest(self, embedding: np.ndarray, k: int = 5) -> list[list]:
        if not self.captions:
            return []
        cos = self.embeddings @ embedding
        order = np.argsort(-cos, kind="stable")[:k]
        return [[rank + 1, round(float(cos[i]), 4), self.captions[i]] for rank, i in enumerate(order)]


def caption_corpus(n: int) -> list[str]:
    """The first `n` captions of the text encoder's own training corpus (seedance.data.captions)."""
    from seedance.data.captions import training_corpus

    return training_corpus(n)


def table_info(encoder) -> dict:
    """Where the Engram table lives and how big it is."""
    hasher = encoder.engram_hasher
    host = getattr(encoder, "_host_table", None)
    weight = encoder.engram.table.weight
    rows, dim = hasher.total_rows, encoder.config.engram_dim_per_head
    if host is None:
        where = f"in the model: nn.Embedding on {weight.device} ({str(weight.dtype).replace('torch.', '')})"
        nbytes = weight.numel() * weight.element_size()
    else:
        array = getattr(host, "_np", None)
        if isinstance(array, np.memmap):
            where = f"memory-mapped file {array.filename} (rows read on demand)"
        else:
            where = "host RAM (HostEngramTable, gathered ahead of the layer)"
        nbytes = int(np.prod(host.shape)) * (array.itemsize if array is not None else host.weight.element_size())
    return {
        "engram_table_location": where,
        "engram_table_rows": int(rows),
        "engram_table_dim_per_head": int(dim),
        "engram_table_mb": round(nbytes / 2**20, 3),
        "engram_heads": int(hasher.num_heads),
        "engram_orders": list(hasher.orders),
        "engram_rows_per_head": " ".join(str(int(p)) for p in hasher.primes.tolist()),
        "engram_after_layer": int(encoder.config.engram_layer) - 1,
    }


def inspect_text(tokenizer, encoder, text: str, index: CaptionIndex | None = None) -> dict:
    """Per-token Engram and MoE details of `text`, the sentence embedding, and the encode latency."""
    from seedance.models.tokenizer import PromptTruncatedWarning, normalize_piece

    max_length = int(encoder.config.max_position)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptTruncatedWarning)
        batch = tokenizer([text], max_length=max_length)
        pieces = tokenizer.tokenize(text, max_length=max_length)
    truncated = [str(w.message) for w in caught if issubclass(w.category, PromptTruncatedWarning)]
    ids = batch["input_ids"][0].tolist()
    if len(pieces) != len(ids):  # should not happen; keep the table aligned with the model's input anyway
        pieces = (pieces + ["?"] * len(ids))[: len(ids)]

    captured: dict = {"routing": []}
    hooks = [encoder.engram.register_forward_hook(_engram_hook(captured))]
    moe_layers = encoder.moe_layers()
    for layer in moe_layers:
        hooks.append(layer.router.register_forward_hook(_router_hook(captured, layer)))
    try:
        with torch.no_grad():
            out = encoder(**batch, output_engram_gates=True)
            indices = encoder.engram_hasher(batch["input_ids"])[0]  # [L,H]
    finally:
        for h in hooks:
            h.remove()
    latency_ms = encode_latency_ms(encoder, batch)

    gates = out.engram_gates[0].float().numpy()  # [L]
    update_ratio = captured["update_ratio"]  # [L]
    routing = np.stack(captured["routing"]) if captured["routing"] else np.zeros((0, 0, len(ids)))  # [n,E,L]

    orders = list(encoder.engram_hasher.orders)
    heads_per_order = encoder.engram_hasher.num_heads // len(orders)
    # column names kept short; the tab's text explains them
    rows, headers = [], ["#", "token", "normalised", "id"]
    for n in orders:
        headers += [f"{n}-gram", f"{n}g hits", f"{n}g rows"]
    headers += ["gate α", "|Δh|/|h|", "experts (per MoE layer)"]
    for t, (piece, token_id) in enumerate(zip(pieces, ids)):
        row = [t, piece, normalize_piece(piece), int(token_id)]
        for k, n in enumerate(orders):
            if t >= n - 1:
                gram = "".join(pieces[t - n + 1 : t + 1])
                hits = index.ngram_counts.get(tuple(ids[t - n + 1 : t + 1]), 0) if index is not None else None
            else:
                gram, hits = "", None
            heads = indices[t, k * heads_per_order : (k + 1) * heads_per_order].tolist()
            row += [gram, hits, " ".join(str(int(h)) for h in heads)]
        experts = []
        for layer_weights in routing:
            chosen = np.nonzero(layer_weights[:, t])[0]
            experts.append("+".join(f"e{e}:{layer_weights[e, t]:.2f}" for e in chosen))
        row += [round(float(gates[t]), 4), round(float(update_ratio[t]), 4), " | ".join(experts)]
        rows.append(row)

    info = {
        "tokens": len(ids),
        "max_tokens": max_length,
        "truncated": truncated[0] if truncated else None,
        "encode_latency_ms": round(latency_ms, 3),
        "latency_runs": LATENCY_RUNS,
        **table_info(encoder),
        "moe_layers": len(moe_layers),
        "experts_per_layer": int(moe_layers[0].num_experts) if moe_layers else 0,
        "experts_per_token": int(moe_layers[0].top_k) if moe_layers else 0,
        **encoder.parameter_counts(),
        "tokenizer_compression_ratio": round(float(tokenizer.compression_ratio), 4),
    }
    return {
        "pieces": pieces,
        "rows": rows,
        "headers": headers,
        "gates": gates,
        "update_ratio": update_ratio,
        "routing": routing,
        "routing_layers": [f"MoE {i + 1}" for i in range(len(moe_layers))],
        "info": info,
        "embedding": out.text_embeds[0].float().numpy(),
    }


def _engram_hook(captured: dict):
    def hook(module, inputs, output):
        hidden = inputs[0][0].float()  # [L,D] (batch of one)
        update = output[0][0].float()  # [L,D]
        ratio = update.norm(dim=-1) / hidden.norm(dim=-1).clamp_min(1e-6)
        captured["update_ratio"] = ratio.numpy()

    return hook


def _router_hook(captured: dict, layer):
    """Recompute the layer's routing decision from its router logits (same rule as MoEFeedForward.forward)."""

    def hook(module, inputs, logits):
        scores = torch.sigmoid(logits.float())  # [T,E]; T = tokens (no padding for a batch of one)
        chosen = torch.topk(scores + layer.route_bias, layer.top_k, dim=-1).indices  # [T,k]
        weights = scores.gather(1, chosen)
        weights = weights / weights.sum(-1, keepdim=True)
        dense = torch.zeros_like(scores).scatter_(1, chosen, weights)  # [T,E]
        captured["routing"].append(dense.T.numpy())  # [E,T]

    return hook


def encode_latency_ms(encoder, batch: dict) -> float:
    """Median wall time of the encoder's forward for this prompt (after one warm-up), in milliseconds."""
    times = []
    with torch.no_grad():
        encoder(**batch)
        for _ in range(LATENCY_RUNS):
            t0 = time.perf_counter()
            encoder(**batch)
            times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)

"""SeedanceTokenizer: a byte-level BPE with tokenizer compression.

Why an own BPE rather than the teacher's WordPiece: captions use a few thousand
pieces, so a small vocabulary keeps the embedding table (and the shipped
weights) small, and byte-level pieces mean no prompt is ever "unknown".

Tokenizer compression (DESIGN.md, after DeepSeek's Engram): the BPE keeps case
and accents, so "Blue", "blue", " BLUE" and "blué" are different raw pieces. Ids
whose normalised text (NFKC, lowercase, accents stripped, whitespace collapsed)
is equal are folded into one compressed id. Every id this tokenizer hands out
is a compressed id; the raw BPE ids never leave this file. This shrinks the
embedding table and makes the Engram n-gram hashes see "Cornflower Blue" and
"cornflower blue" as the same bigram.

Robust input handling: control characters become spaces, whitespace collapses,
an empty prompt encodes as just <s></s>, and a prompt longer than `max_length`
tokens is truncated with a warning.

    tok = SeedanceTokenizer.train(corpus, vocab_size=2048)
    batch = tok(["a red ball bounces"], max_length=64)   # dict(input_ids, attention_mask) [B,L]
    tok.save_pretrained("weights/seedance-tiny/tokenizer")
"""

from __future__ import annotations

import bisect
import json
import os
import re
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from seedance.errors import SeedanceError, WeightsError

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIAL_TOKENS = (PAD, BOS, EOS)  # compressed ids 0, 1, 2
TOKENIZER_FILE = "tokenizer.json"  # the raw BPE (Hugging Face `tokenizers` format)
CONFIG_FILE = "seedance_tokenizer.json"  # compression map + settings
DEFAULT_MAX_LENGTH = 128


class PromptTruncatedWarning(UserWarning):
    """A prompt was longer than the tokenizer's maximum length and was cut."""


def clean_text(text: str) -> str:
    """Control / format characters -> space, whitespace collapsed, ends stripped."""
    if not isinstance(text, str):
        raise SeedanceError(f"a prompt must be a string, got {type(text).__name__}; pass text such as 'a red ball'")
    chars = [" " if unicodedata.category(c)[0] == "C" else c for c in text]
    return " ".join("".join(chars).split())


def word_spans(text: str) -> list[re.Match]:
    """Whitespace-separated words of an already cleaned text, as regex matches (start/end)."""
    return list(re.finditer(r"\S+", text))


def normalize_piece(text: str) -> str:
    """The text two pieces must share to share a compressed id."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return " ".join(text.split())


def _build_compression(tokenizer) -> tuple[list[int], int]:
    """Map each raw BPE id to a compressed id; specials keep 0, 1, 2."""
    raw_vocab = tokenizer.get_vocab_size()
    special_raw = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
    mapping = [-1] * raw_vocab
    key_to_id: dict[tuple[str, str], int] = {}
    for new_id, raw_id in enumerate(special_raw):
        mapping[raw_id] = new_id
    next_id = len(SPECIAL_TOKENS)
    for raw_id in range(raw_vocab):
        if mapping[raw_id] >= 0:
            continue
        piece = tokenizer.id_to_token(raw_id)
        text = tokenizer.decode([raw_id], skip_special_tokens=False)
        norm = normalize_piece(text)
        # A piece that is a partial UTF-8 sequence decodes to U+FFFD, and a bare
        # space normalises to "": both keep their own id rather than collide.
        key = ("raw", piece) if (not norm or "\ufffd" in text) else ("norm", norm)
        if key not in key_to_id:
            key_to_id[key] = next_id
            next_id += 1
        mapping[raw_id] = key_to_id[key]
    return mapping, next_id


class SeedanceTokenizer:
    """Byte-level BPE + compression. `__call__` returns compressed ids, padded with 0."""

    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2

    def __init__(self, tokenizer, compression: Sequence[int] | None = None, max_length: int = DEFAULT_MAX_LENGTH):
        from tokenizers import Tokenizer

        if not isinstance(tokenizer, Tokenizer):
            raise TypeError("tokenizer must be a tokenizers.Tokenizer")
        self._bpe = tokenizer
        if compression is None:
            compression, _ = _build_compression(tokenizer)
        if len(compression) != tokenizer.get_vocab_size():
            raise WeightsError("tokenizer compression map does not match its vocabulary; re-copy or retrain it")
        self._map = torch.tensor(list(compression), dtype=torch.long)
        self.vocab_size = int(self._map.max()) + 1  # compressed vocabulary size (the model's embedding rows)
        self.raw_vocab_size = tokenizer.get_vocab_size()
        if max_length < 3:
            raise SeedanceError(f"max_length must be at least 3 (room for <s>, one token, </s>), got {max_length}")
        self.model_max_length = int(max_length)

    # ---- construction ---------------------------------------------------------------------------------------

    @classmethod
    def train(
        cls, corpus: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2, max_length: int = DEFAULT_MAX_LENGTH
    ) -> SeedanceTokenizer:
        """Train the byte-level BPE on `corpus` (cleaned like prompts) and derive the compression map."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        bpe = Tokenizer(models.BPE())
        bpe.normalizer = normalizers.NFKC()
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        bpe.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        bpe.train_from_iterator((clean_text(t) for t in corpus), trainer)
        return cls(bpe, max_length=max_length)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> SeedanceTokenizer:
        from tokenizers import Tokenizer

        folder = Path(path)
        for name in (TOKENIZER_FILE, CONFIG_FILE):
            if not (folder / name).is_file():
                raise WeightsError(f"missing {folder / name}: the tokenizer folder is incomplete; re-copy or retrain")
        try:
            bpe = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
            config = json.loads((folder / CONFIG_FILE).read_text())
            compression = [int(i) for i in config["compression"]]
            max_length = int(config.get("max_length", DEFAULT_MAX_LENGTH))
        except WeightsError:
            raise
        except Exception as exc:
            reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
            raise WeightsError(f"corrupt tokenizer in {folder}: {reason}; re-copy or retrain it") from None
        return cls(bpe, compression, max_length=max_length)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write tokenizer.json and seedance_tokenizer.json, each atomically."""
        from seedance.models.io import atomic_write_bytes

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / TOKENIZER_FILE, self._bpe.to_str().encode())
        config = {
            "tokenizer_class": type(self).__name__,
            "max_length": self.model_max_length,
            "special_tokens": list(SPECIAL_TOKENS),
            "raw_vocab_size": self.raw_vocab_size,
            "vocab_size": self.vocab_size,
            "compression_ratio": round(self.compression_ratio, 4),
            "compression": self._map.tolist(),
        }
        atomic_write_bytes(folder / CONFIG_FILE, json.dumps(config).encode())

    # ---- encoding -------------------------------------------------------------------------------------------

    @property
    def compression_ratio(self) -> float:
        """Compressed vocabulary size / raw vocabulary size (smaller = more folded)."""
        return self.vocab_size / self.raw_vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """One prompt -> compressed ids with <s> ... </s>, truncated (with a warning) to max_length."""
        return self._encode_many([text], max_length)[0]

    def _encode_many(self, texts: Sequence[str], max_length: int | None) -> list[list[int]]:
        max_length = self.model_max_length if max_length is None else int(max_length)
        if max_length < 3:
            raise SeedanceError(f"max_length must be at least 3, got {max_length}")
        cleaned = [clean_text(t) for t in texts]
        encodings = self._bpe.encode_batch(cleaned, add_special_tokens=False)
        out = []
        for text, enc in zip(cleaned, encodings):
            raw = enc.ids
            if len(raw) > max_length - 2:
                warnings.warn(
                    f"prompt of {len(raw)} tokens ({len(text)} characters) truncated to {max_length - 2} tokens",
                    PromptTruncatedWarning,
                    stacklevel=3,
                )
                raw = raw[: max_length - 2]
            ids = self._map[torch.tensor(raw, dtype=torch.long)].tolist() if raw else []
            out.append([self.bos_token_id, *ids, self.eos_token_id])
        return out

    def __call__(
        self, texts: str | Sequence[str], max_length: int | None = None, padding: str = "longest"
    ) -> dict[str, torch.Tensor]:
        """Prompts -> dict(input_ids [B,L] long, attention_mask [B,L] long), right-padded with 0.

        padding="longest" pads to the longest prompt in the batch; "max_length" pads to max_length.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise SeedanceError("no prompts given; pass at least one prompt (an empty string is allowed)")
        if padding not in ("longest", "max_length"):
            raise SeedanceError(f"padding must be 'longest' or 'max_length', got {padding!r}")
        seqs = self._encode_many(texts, max_length)
        width = max(len(s) for s in seqs)
        if padding == "max_length":
            width = self.model_max_length if max_length is None else int(max_length)
        input_ids = torch.zeros(len(seqs), width, dtype=torch.long)
        attention_mask = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            attention_mask[i, : len(s)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def word_ids(self, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
        """For each token of `__call__(texts, max_length)`, the index of the whitespace-separated word of
        `clean_text(text)` it belongs to; -1 for <s>, </s>, padding and bare-space pieces. [B,L] long."""
        max_length = self.model_max_length if max_length is None else int(max_length)
        cleaned = [clean_text(t) for t in texts]
        rows = []
        for text, enc in zip(cleaned, self._bpe.encode_batch(cleaned, add_special_tokens=False)):
            starts = [m.start() for m in word_spans(text)]
            row = [-1]
            for _, end in enc.offsets[: max_length - 2]:
                last = end - 1  # a piece's last character lies inside its word (its first may be the space)
                row.append(bisect.bisect_right(starts, last) - 1 if 0 <= last < len(text) and text[last] != " " else -1)
            rows.append([*row, -1])
        out = torch.full((len(rows), max(len(r) for r in rows)), -1, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out

    def id_texts(self) -> list[str]:
        """A normalised text for every compressed id (its first raw piece's); specials keep their names."""
        texts = [""] * self.vocab_size
        for raw_id in range(self.raw_vocab_size):
            c = int(self._map[raw_id])
            if not texts[c]:
                piece = self._bpe.id_to_token(raw_id)
                texts[c] = piece if piece in SPECIAL_TOKENS else normalize_piece(self._bpe.decode([raw_id]))
        return texts

    def tokenize(self, text: str, max_length: int | None = None) -> list[str]:
        """Readable pieces of one prompt, aligned with `encode` (for showing Engram gates per token)."""
        max_length = self.model_max_length if max_length is None else int(max_length)
        enc = self._bpe.encode(clean_text(text), add_special_tokens=False)
        pieces = [self._bpe.decode([i], skip_special_tokens=False) for i in enc.ids[: max_length - 2]]
        return [BOS, *pieces, EOS]

"""Grow a trained SeedanceTokenizer's vocabulary without changing how it splits the captions it was made for.

Why: the shipped byte-level BPE was trained on captions only (a few thousand pieces), so everyday words
outside them fall apart into letters (" while" -> " w" "hi" "le", " you" -> " y" "o" "u"). A 4-layer
student then has to rebuild each such word from fragments, and general English is where it lags its
teacher. Retraining the BPE would renumber every piece and orphan the embeddings a generator was trained
on; instead the BPE is *continued*:

1. every word of the new text is split by the existing merges (its final pieces);
2. the most frequent adjacent pair of pieces is merged into a new piece, again and again (ordinary BPE
   training, started from where the old merges stop), until `num_new` pieces are added;
3. the new merges go after all the old ones (the lowest priority), so the old merges act first on any
   word, exactly as before;
4. a pair that occurs inside any word of the `protect` text is never merged, so every protected word -
   and so every caption a generator was trained on - keeps its exact old pieces and ids.

Old raw ids and compressed ids keep their numbers; new pieces get the next ids (a new piece whose
normalised text equals an old piece's shares that old compressed id, as tokenizer compression would).

    bigger = extend_vocabulary(tokenizer, general_sentences, num_new=3000, protect=captions)
    rows = new_piece_sources(tokenizer, bigger)   # for each new compressed id, the old ids it replaces
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable

from seedance.errors import SeedanceError
from seedance.models.tokenizer import SeedanceTokenizer, clean_text


def _words(bpe, texts: Iterable[str]) -> Counter:
    """Pre-tokenised words (byte-level, with their leading space marker) and their counts."""
    counts: Counter = Counter()
    for text in texts:
        counts.update(w for w, _ in bpe.pre_tokenizer.pre_tokenize_str(clean_text(text)))
    return counts


def _pieces(bpe, word: str) -> tuple[str, ...]:
    """The word's pieces under the existing merges."""
    return tuple(t.value for t in bpe.model.tokenize(word))


def _pairs(pieces: tuple[str, ...]) -> Iterable[tuple[str, str]]:
    return zip(pieces, pieces[1:])


def _merge(pieces: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, i = [], 0
    while i < len(pieces):
        if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == pair:
            out.append(pieces[i] + pieces[i + 1])
            i += 2
        else:
            out.append(pieces[i])
            i += 1
    return tuple(out)


def learn_merges(
    tokenizer: SeedanceTokenizer, texts: Iterable[str], num_new: int, protect: Iterable[str] = (), min_count: int = 3
) -> list[tuple[str, str]]:
    """Up to `num_new` new merges (in priority order) learned on `texts`, none inside a `protect` word."""
    bpe = tokenizer._bpe
    vocab = bpe.get_vocab()
    blocked = {p for w in _words(bpe, protect) for p in _pairs(_pieces(bpe, w))}
    words = {w: [_pieces(bpe, w), c] for w, c in _words(bpe, texts).items()}
    pair_count: Counter = Counter()
    pair_words: dict[tuple[str, str], set[str]] = defaultdict(set)
    for w, (pieces, c) in words.items():
        for p in _pairs(pieces):
            pair_count[p] += c
            pair_words[p].add(w)
    merges: list[tuple[str, str]] = []
    while len(merges) < num_new and pair_count:
        pair, count = max(pair_count.items(), key=lambda kv: (kv[1], kv[0]))  # ties: a fixed order
        if count < min_count:
            break
        del pair_count[pair]
        # a pair inside a protected word, or one whose join is already a piece (reachable another way, so
        # the old merges could act again after it), is skipped: both would change some old segmentation
        if pair in blocked or pair[0] + pair[1] in vocab:
            continue
        merges.append(pair)
        vocab[pair[0] + pair[1]] = len(vocab)
        for w in pair_words.pop(pair, set()):
            pieces, c = words[w]
            for p in _pairs(pieces):
                if p != pair and p in pair_count:
                    pair_count[p] -= c
                    if pair_count[p] <= 0:
                        del pair_count[p]
            pieces = _merge(pieces, pair)
            words[w][0] = pieces
            for p in _pairs(pieces):
                pair_count[p] += c
                pair_words[p].add(w)
    return merges


def extend_vocabulary(
    tokenizer: SeedanceTokenizer, texts: Iterable[str], num_new: int, protect: Iterable[str] = (), min_count: int = 3
) -> SeedanceTokenizer:
    """A new tokenizer: the old BPE plus up to `num_new` merges learned on `texts` (see the module docstring)."""
    from tokenizers import Tokenizer

    if num_new < 1:
        raise SeedanceError(f"the number of new pieces must be at least 1, got {num_new}")
    merges = learn_merges(tokenizer, texts, num_new, protect, min_count)
    spec = json.loads(tokenizer._bpe.to_str())
    model = spec["model"]
    if model.get("type") != "BPE":
        raise SeedanceError("only a BPE tokenizer can be extended")
    strings = bool(model["merges"]) and isinstance(model["merges"][0], str)  # "a b" (older files) or ["a", "b"]
    used = set(model["vocab"].values()) | {t["id"] for t in spec.get("added_tokens", [])}
    next_id = max(used) + 1
    for a, b in merges:
        model["vocab"][a + b] = next_id
        model["merges"].append(f"{a} {b}" if strings else [a, b])
        next_id += 1
    bpe = Tokenizer.from_str(json.dumps(spec))
    old = tokenizer._map.tolist()
    grown = SeedanceTokenizer(bpe, max_length=tokenizer.model_max_length)
    if grown._map[: len(old)].tolist() != old:  # appended raw ids come last, so the old numbering must hold
        raise SeedanceError("extending the vocabulary renumbered old pieces; this tokenizer cannot be extended")
    return grown


def new_piece_sources(old: SeedanceTokenizer, new: SeedanceTokenizer) -> dict[int, list[int]]:
    """For each compressed id of `new` beyond `old`'s vocabulary: the old compressed ids its text splits into
    (what the new embedding row starts from)."""
    sources: dict[int, list[int]] = {}
    for raw_id in range(old.raw_vocab_size, new.raw_vocab_size):
        cid = int(new._map[raw_id])
        if cid < old.vocab_size or cid in sources:
            continue
        pieces = old._bpe.model.tokenize(new._bpe.id_to_token(raw_id))  # its byte-level string, old merges
        sources[cid] = old._map[[t.id for t in pieces]].tolist()
    return sources

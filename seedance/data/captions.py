"""The text encoder's caption corpus: SyncWorld captions, paraphrases, held-out phrasings.

Training captions come from three writers over the same SyncWorld factors
(`seedance.data.syncworld.sample_labels`, split="train"):

1. the scene modules' own caption generators (`sample_caption`);
2. `paraphrase`: other sentence frames and synonyms over the same labels;
3. `short_prompt`: terse, user-style prompts ("red ball bouncing on navy");

then `vary_surface` adds casing and punctuation variants (what tokenizer
compression and a robust encoder must absorb).

Held-out evaluation never overlaps training:
- `heldout_captions`: the scene generators on split="test" (held-out factor
  combinations and voices), minus any string that also occurs in training;
- `heldout_phrasings`: test-split labels written with sentence frames and
  openers that no training caption uses (`HELDOUT_FRAMES`, `HELDOUT_OPENERS`).
All of it is deterministic in (seed, index).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from seedance.data.syncworld import sample_caption, sample_labels
from seedance.data.syncworld.common import NUMBER_WORDS, pick, scene_rng

SCENES = ("face", "bounce", "keys")

_NOUNS = {
    "circle": (("ball", "balls"), ("sphere", "spheres"), ("orb", "orbs")),
    "square": (("box", "boxes"), ("cube", "cubes"), ("block", "blocks")),
    "triangle": (("triangle", "triangles"), ("pyramid", "pyramids"), ("wedge", "wedges")),
}
_SIZES = {"small": ("small", "little"), "medium": ("medium-sized", "medium"), "large": ("large", "big")}
_BOUNCY = {
    "low": ("heavy", "barely bouncing", "dull"),
    "medium": ("bouncing", "hopping"),
    "high": ("very bouncy", "springy", "bouncy"),
}
_INSTRUMENTS = {
    "piano": ("piano",),
    "marimba": ("marimba",),
    "harp": ("harp",),
    "glockenspiel": ("glockenspiel",),
    "synth": ("synth", "synthesizer"),
    "drums": ("drums", "drum"),
}
_CONTOURS = {
    "rising": ("rising", "upward"),
    "falling": ("falling", "downward"),
    "arch": ("arching", "up-and-down"),
    "valley": ("dipping", "down-and-up"),
    "wander": ("wandering", "playful"),
    "repeat": ("repeated-note", "one-note"),
}
_RATES = {"slow": ("slowly", "slow"), "normal": ("calmly", "normally"), "fast": ("quickly", "fast")}
_PITCH = {"low": "deep", "medium": "", "high": "high"}
OPENERS = ("", "", "", "", "a video of ", "a clip of ", "footage of ", "animation: ", "short clip, ")
HELDOUT_OPENERS = ("picture this: ", "we watch ", "imagine ", "in this shot, ", "look: ")


def _colors(labels: dict) -> str:
    colors = list(dict.fromkeys(labels.get("colors") or [labels["color"]]))
    return colors[0] if len(colors) == 1 else ", ".join(colors[:-1]) + " and " + colors[-1]


def _count(n: int) -> str:
    return NUMBER_WORDS.get(n, str(n))


def _voice(labels: dict) -> str:
    pitch = _PITCH.get(labels.get("pitch", "medium"), "")
    return " ".join(w for w in (pitch, labels.get("accent", ""), labels.get("gender", ""), "voice") if w)


def _fields(scene: str, labels: dict, rng: np.random.Generator) -> dict:
    f = {"bg": labels["background"]}
    if scene == "bounce":
        n = int(labels["count"])
        one, many = pick(rng, _NOUNS[labels["shape"]])
        f.update(
            noun=many if n > 1 else one,
            count=_count(n) if n > 1 else "a",
            colors=_colors(labels),
            size=pick(rng, _SIZES[labels["size"]]),
            material=labels["material"],
            bouncy=pick(rng, _BOUNCY[labels["bounciness"]]),
            verb="bounce" if n > 1 else "bounces",
        )
    elif scene == "keys":
        drums = labels["instrument"] == "drums"
        f.update(
            instrument=pick(rng, _INSTRUMENTS[labels["instrument"]]),
            key=labels["key_color"],
            light=labels["light_color"],
            layout="pads" if labels["layout"] == "pads" else "keys",
            bpm=f"{labels['tempo']} bpm",
            tune="beat" if drums else pick(rng, ("melody", "tune")),
            contour=pick(rng, _CONTOURS[labels["contour"]]),
            tempo="slow" if labels["tempo"] < 95 else ("medium" if labels["tempo"] <= 125 else "fast"),
        )
    else:
        f.update(
            face=labels["face_color"],
            lips=labels["lip_color"],
            text=labels["text"],
            voice=_voice(labels),
            rate=pick(rng, _RATES[labels["rate"]]),
        )
    return f


FRAMES = {
    "bounce": (
        "{count} {colors} {material} {noun} {verb} on a {bg} floor, {bouncy}",
        "{bg} scene with {count} {size} {colors} {noun} made of {material}, {bouncy}",
        "{count} {material} {noun} ({colors}, {size}) bouncing on {bg}",
        "{bouncy} {colors} {noun}, {material}, {size}, against a {bg} backdrop",
    ),
    "keys": (
        "{instrument} music with {light} lights on {key} {layout}, {tempo} tempo, {bg} background",
        "{key} {layout} light up {light} in time with a {contour} {instrument} {tune}, {bg}",
        "a {tempo} {contour} {tune} played on {instrument} at {bpm}; {key} {layout} glowing {light} on {bg}",
    ),
    "face": (
        "{face} face with {lips} lips saying '{text}', {voice}, {bg} background",
        "cartoon character, {face} with {lips} lips, speaks '{text}' {rate} in a {voice} on {bg}",
        "a talking {face} head says '{text}' {rate}; {lips} mouth; {voice}; {bg} backdrop",
    ),
}
SHORT = {
    "bounce": ("{colors} {noun} bouncing", "{count} {colors} {noun} on {bg}", "{material} {noun} bouncing on {bg}"),
    "keys": ("{instrument} playing, {key} {layout}", "{light} lights on {key} {layout}", "{tempo} {instrument} {tune}"),
    "face": ("a {face} face saying {text}", "talking {face} head, {lips} lips", "{face} face says '{text}'"),
}
# A clause grammar for more sentence shapes: a main clause plus 1-3 side clauses in random order.
# (Written without the held-out frames' constructions; the held-out check in the tests covers it.)
_MAIN = {
    "bounce": (
        "{count} {size} {colors} {material} {noun} {motion}",
        "{count} {colors} {noun} made of {material} {motion}",
        "{count} {size} {noun} in {colors} {motion}",
        "{count} {material} {noun} colored {colors} {motion}",
    ),
    "keys": (
        "{instrument} plays a {tempo} {contour} {tune}",
        "a {contour} {tune} on {instrument} at {bpm}",
        "{key} {layout} flash {light} to a {instrument} {tune}",
        "the {instrument} plays a {contour} {tune} and the {key} {layout} light {light}",
    ),
    "face": (
        "a {face} cartoon face with {lips} lips {speech}",
        "a talking {face} head with a {lips} mouth {speech}",
        "a {face} character {speech}",
        "cartoon face ({face}, {lips} lips) {speech}",
    ),
}
_SIDE = {
    "bounce": (
        "on a {bg} floor",
        "the background is {bg}",
        "set against {bg}",
        "{bg} all around",
        "over a {bg} surface",
        "each landing sounds like {material}",
        "with {material} clacks",
        "a {material} thud on each bounce",
        "{bouncy}",
        "{size} in size",
        "{colors} in color",
    ),
    "keys": (
        "the background is {bg}",
        "on {bg}",
        "set against {bg}",
        "{key} {layout} lighting up {light}",
        "lit note by note in {light}",
        "at {bpm}",
        "{tempo} tempo",
        "the {layout} are {key}",
        "{light} light on each pressed {layout_one}",
        "sounds like {instrument}",
    ),
    "face": (
        "the background is {bg}",
        "on {bg}",
        "set against {bg}",
        "in a {voice}",
        "voiced by a {voice}",
        "{rate}",
        "{lips} lips",
        "lips move with every word",
        "{voice}",
    ),
}
_MOTION = (("bounces up and down", "bounce up and down"), ("hops across the floor", "hop across the floor"),
           ("falls and bounces back", "fall and bounce back"), ("lands and rebounds", "land and rebound"),
           ("jumps around", "jump around"), ("is bouncing", "are bouncing"))  # fmt: skip
_SPEECH = ("says '{text}'", "speaking the words '{text}'", "talks: '{text}'", "mouthing '{text}' {rate}",
           "saying '{text}' {rate}", "speaks '{text}' in a {voice}")  # fmt: skip
_JOIN = (", ", "; ", " - ", ", with ", " and ")


def compose(scene: str, labels: dict, rng: np.random.Generator) -> str:
    """A caption from the clause grammar: main clause and side clauses, shuffled, joined variously."""
    f = _fields(scene, labels, rng)
    if scene == "bounce":
        f["motion"] = pick(rng, _MOTION)[1 if f["noun"].endswith("s") and f["count"] != "a" else 0]
    elif scene == "keys":
        f["layout_one"] = f["layout"][:-1]
    else:
        f["speech"] = pick(rng, _SPEECH).format(**f)
    main = pick(rng, _MAIN[scene]).format(**f)
    sides = [s.format(**f) for s in rng.choice(_SIDE[scene], size=int(rng.integers(1, 4)), replace=False)]
    clauses = [main, *sides]
    if rng.random() < 0.3:  # setting or sound first sometimes
        clauses = [*sides[:1], main, *sides[1:]]
    text = clauses[0]
    for clause in clauses[1:]:
        text += pick(rng, _JOIN) + clause
    return pick(rng, OPENERS + EXTRA_OPENERS) + text


# Sentence frames used only for evaluation: never in the training corpus.
HELDOUT_FRAMES = {
    "bounce": (
        "there is {count} {colors} {noun} made of {material} that keeps bouncing in front of {bg}",
        "the {material} {noun}, {colors} and {size}, drop onto the ground again and again; behind: {bg}",
    ),
    "keys": (
        "you can hear {instrument} playing a {contour} {tune} at a {tempo} speed while {key} {layout} shine {light}"
        " over {bg}",
        "every note of the {tempo} {tune} makes a {key} key turn {light}; the sound is {instrument}; backdrop {bg}",
    ),
    "face": (
        "with a {voice}, a {face} cartoon with {lips} lips pronounces '{text}' {rate} against {bg}",
        "'{text}' comes out of a {face} face, spoken {rate} in a {voice}, {bg} behind it",
    ),
}


def paraphrase(scene: str, labels: dict, rng: np.random.Generator) -> str:
    return pick(rng, OPENERS) + pick(rng, FRAMES[scene]).format(**_fields(scene, labels, rng))


def short_prompt(scene: str, labels: dict, rng: np.random.Generator) -> str:
    return pick(rng, SHORT[scene]).format(**_fields(scene, labels, rng))


def heldout_phrasing(scene: str, labels: dict, rng: np.random.Generator) -> str:
    return pick(rng, HELDOUT_OPENERS) + pick(rng, HELDOUT_FRAMES[scene]).format(**_fields(scene, labels, rng))


EXTRA_OPENERS = ("here is ", "a scene where ", "video showing ", "an animation of ", "a short film of ",
                 "render of ", "demo: ", "shown: ", "clip showing ", "a loop of ")  # fmt: skip


_FUNCTION_WORDS = frozenset({"a", "an", "the", "and", "of", "in", "on", "at", "with", "to", "by", "is"})


def words_of(text: str) -> str:
    """Lowercase words joined by single spaces (punctuation dropped): for phrase-overlap checks."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def heldout_phrases() -> tuple[str, ...]:
    """The held-out frames' literal runs of 3+ words and the multi-word held-out openers, as `words_of` text.

    None of them may occur in a training caption (tests/test_text_encoder.py checks): the frames stay
    unseen even though single common words ("hear", "imagine") may turn up among the augmentation words.
    """

    def distinctive(run: str) -> bool:  # 3+ words, or 2 words neither of which is a function word
        words = run.split()
        return len(words) >= 3 or (len(words) == 2 and not set(words) & _FUNCTION_WORDS)

    runs = [words_of(o) for o in HELDOUT_OPENERS if len(words_of(o).split()) >= 2]
    for frame in (f for frames in HELDOUT_FRAMES.values() for f in frames):
        runs += [words_of(chunk) for chunk in re.split(r"\{[a-z_]+\}", frame) if distinctive(words_of(chunk))]
    return tuple(runs)


def augment(text: str, rng: np.random.Generator, words: Sequence[str] = ()) -> str:
    """One random edit: shuffled clauses, inserted common words, a new opener, a dropped or swapped word.

    `words` is a generic list of common English words (the recipe takes the teacher's WordPiece
    vocabulary). The teacher re-embeds the edited caption, so the student learns how word order and
    words outside the caption vocabulary move the teacher's embedding.
    """
    op = int(rng.integers(5))
    clauses = [c for c in re.split(r"\s*[,;:]\s*", text) if c]
    if op == 0 and len(clauses) > 1:
        order = rng.permutation(len(clauses))
        return pick(rng, (", ", "; ", " - ", ", and ")).join(clauses[i] for i in order)
    tokens = text.split()
    if op == 1 and words:
        for _ in range(int(rng.integers(2, 6))):
            tokens.insert(int(rng.integers(len(tokens) + 1)), pick(rng, words))
        return " ".join(tokens)
    if op == 2 or len(tokens) < 3 or not words:
        filler = " ".join(pick(rng, words) for _ in range(int(rng.integers(1, 4)))) + " " if words else ""
        return (pick(rng, EXTRA_OPENERS) if rng.random() < 0.5 or not words else filler) + text
    i = int(rng.integers(len(tokens)))
    if op == 3:
        del tokens[i]
    else:
        tokens[i] = pick(rng, words)
    return " ".join(tokens)


def word_bag(rng: np.random.Generator, words: Sequence[str]) -> str:
    """3-9 common words in random order: the teacher's view of words the captions never use."""
    return " ".join(pick(rng, words) for _ in range(int(rng.integers(3, 10))))


def vary_surface(text: str, rng: np.random.Generator) -> str:
    """Casing and punctuation variants."""
    r = rng.random()
    if r < 0.35:
        text = text[:1].upper() + text[1:]
    elif r < 0.42:
        text = text.title()
    elif r < 0.46:
        text = text.upper()
    if rng.random() < 0.35:
        text += "."
    return text


def training_corpus(
    n: int,
    seed: int = 0,
    augment_fraction: float = 0.0,
    words: Sequence[str] = (),
    bag_fraction: float = 0.0,
    grammar_fraction: float = 0.0,
) -> list[str]:
    """`n` unique training captions: 55% scene generators, 30% paraphrases, 15% short prompts.

    grammar_fraction of the paraphrases and short prompts come from the clause grammar (`compose`) instead.
    With augment_fraction > 0, that share of captions also gets one `augment` edit; with `words`,
    bag_fraction of the corpus are `word_bag`s instead of captions.
    """
    out: dict[str, None] = {}
    i = 0
    while len(out) < n and i < 50 * n:
        rng = scene_rng("corpus", seed, "train", str(i))
        scene = SCENES[i % len(SCENES)]
        scene_seed = int(rng.integers(1 << 31))
        r = rng.random()
        if r < 0.55:
            text = sample_caption(scene, scene_seed, "train")[0]
        else:
            labels = sample_labels(scene, scene_seed, "train")
            text = (paraphrase if r < 0.85 else short_prompt)(scene, labels, rng)
            if grammar_fraction > 0 and rng.random() < grammar_fraction:  # drawn after: others keep theirs
                text = compose(scene, labels, rng)
        if augment_fraction > 0 and rng.random() < augment_fraction:
            text = augment(text, rng, words)
        text = vary_surface(text, rng)
        if words and bag_fraction > 0 and rng.random() < bag_fraction:  # drawn last: other captions keep theirs
            text = word_bag(rng, words)
        out.setdefault(text)
        i += 1
    return list(out)


def heldout_captions(n: int, seed: int = 0, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Unique test-split captions from the scene generators, none of them in `exclude`."""
    out: dict[str, None] = {}
    i = 0
    while len(out) < n and i < 50 * n:
        rng = scene_rng("heldout", seed, "test", str(i))
        scene = SCENES[i % len(SCENES)]
        text = vary_surface(sample_caption(scene, int(rng.integers(1 << 31)), "test")[0], rng)
        if text not in exclude:
            out.setdefault(text)
        i += 1
    return list(out)


def heldout_phrasings(n: int, seed: int = 0, exclude: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Unique test-split labels in sentence frames that training never uses."""
    out: dict[str, None] = {}
    i = 0
    while len(out) < n and i < 50 * n:
        rng = scene_rng("phrasing", seed, "test", str(i))
        scene = SCENES[i % len(SCENES)]
        labels = sample_labels(scene, int(rng.integers(1 << 31)), "test")
        text = vary_surface(heldout_phrasing(scene, labels, rng), rng)
        if text not in exclude:
            out.setdefault(text)
        i += 1
    return list(out)


def caption_writer_texts(n: int, seed: int = 0) -> list[str]:
    """What the caption writers say, without augmentation or word bags: `n` training-style captions (scene
    generators, paraphrases, short prompts, the clause grammar) and n // 4 test-split scene-generator captions.

    Their words are the ones a generator is trained on and prompted with: a grown tokenizer must split them
    exactly as before (seedance.models.vocab_extension `protect`)."""
    return training_corpus(n, seed, grammar_fraction=0.6) + heldout_captions(n // 4, seed)

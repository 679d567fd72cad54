"""General English sentences for the text encoder's distillation, gathered from local documentation.

The caption corpus (`seedance.data.captions`) covers SyncWorld's words in a few dozen sentence frames; a
prompt written another way ("imagine you can hear a piano while ...") leaves the student to guess how the
teacher would read the unfamiliar words around the familiar ones. Here the student gets the teacher's
reading of ordinary English sentences as well: the prose of the docstrings and text files of the installed
Python packages (nothing is downloaded). Sentences are kept when they look like prose (5-30 words, nearly all
of them alphabetic, no code punctuation, a capital first letter and a full stop), and every sentence that
contains one of the held-out evaluation frames' distinctive phrases is dropped, so the held-out phrasings
stay unseen.

The result depends only on the files installed (the venv is pinned by `requirements.lock`) and is returned
in a fixed order for a given seed.
"""

from __future__ import annotations

import ast
import random
import re
import sysconfig
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from seedance.data.captions import heldout_phrases, words_of

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_CODE_LIKE = re.compile(r"[`=_{}\[\]<>/\\|#*@$%^~\d]|::|\(\)|\.\.|http|www")
TEXT_SUFFIXES = (".md", ".rst", ".txt")
MAX_TEXT_FILE_CHARS = 2_000_000


def prose_sentences(text: str) -> list[str]:
    """The sentences of `text` that read as prose (see the module docstring for the rules)."""
    out = []
    for sentence in _SENTENCE_END.split(re.sub(r"\s+", " ", text)):
        sentence = sentence.strip()
        if not 20 <= len(sentence) <= 200 or _CODE_LIKE.search(sentence):
            continue
        words = sentence.split()
        if not 5 <= len(words) <= 30 or not sentence[0].isupper() or sentence[-1] not in ".!?":
            continue
        if sum(w.strip(".,;:!?'\"()").isalpha() for w in words) < 0.9 * len(words):
            continue
        out.append(sentence)
    return out


def _docstrings(path: Path) -> Iterable[str]:
    try:
        tree = ast.parse(path.read_text(errors="ignore"))
    except (SyntaxError, ValueError, OSError, RecursionError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node)
            if doc:
                yield from doc.split("\n\n")  # paragraph by paragraph: parameter lists fall out as non-prose


def _text_paragraphs(path: Path) -> Iterable[str]:
    try:
        text = path.read_text(errors="ignore")
    except OSError:
        return
    if len(text) <= MAX_TEXT_FILE_CHARS:
        yield from text.split("\n\n")


def generic_sentences(n: int, seed: int = 0, root: Path | None = None, progress: bool = True) -> list[str]:
    """Up to `n` distinct prose sentences from the package files under `root` (default: this environment's
    site-packages), none containing a held-out phrase; a seeded random choice, in a fixed order."""
    root = Path(root or sysconfig.get_paths()["purelib"])
    files = sorted(p for p in root.rglob("*") if p.suffix in (".py", *TEXT_SUFFIXES) and p.is_file())
    held_out = heldout_phrases()
    found: set[str] = set()
    for path in tqdm(files, desc="general English", unit="file", disable=not progress, mininterval=2.0):
        for paragraph in _docstrings(path) if path.suffix == ".py" else _text_paragraphs(path):
            found.update(prose_sentences(paragraph))
    kept = sorted(s for s in found if not any(p in words_of(s) for p in held_out))
    random.Random(seed).shuffle(kept)
    return kept[:n]

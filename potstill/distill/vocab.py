"""The static model's vocabulary and tokenizer: teacher wordpieces plus frequent corpus words.

A corpus word the teacher splits into several pieces (e.g. "photosynthesis" -> photo ##sy ...)
becomes one token of its own, so the static model learns one vector for it instead of averaging
its pieces. New words go into the WordPiece vocabulary itself: WordPiece matches the longest
prefix first, so a whole word in the vocabulary always wins over its pieces.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

DEFAULT_REMOVE = r"\[unused\d+\]"
_HAS_LETTER = re.compile(r"[^\W\d_]")


class VocabularyError(ValueError):
    """A vocabulary that cannot make a model (empty after cleaning, unknown tokenizer type)."""


def teacher_tokens(tokenizer: Tokenizer, remove_pattern: str | None = DEFAULT_REMOVE) -> list[str]:
    """The teacher's vocabulary in id order, without tokens matching `remove_pattern`."""
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    ordered = sorted(vocab, key=vocab.__getitem__)
    if remove_pattern:
        regex = re.compile(remove_pattern)
        ordered = [t for t in ordered if not regex.match(t)]
    if not ordered:
        raise VocabularyError(f"the vocabulary is empty after removing tokens matching {remove_pattern!r}")
    return ordered


def words_of(tokenizer: Tokenizer, text: str) -> list[str]:
    """The words the teacher's normalizer and pre-tokenizer make of a text."""
    if tokenizer.normalizer is not None:
        text = tokenizer.normalizer.normalize_str(text)
    if tokenizer.pre_tokenizer is None:
        return text.split()
    return [w for w, _ in tokenizer.pre_tokenizer.pre_tokenize_str(text)]


def count_words(tokenizer: Tokenizer, texts: Iterable[str]) -> Counter[str]:
    """Word counts over texts, words as the teacher's pre-tokenizer splits them."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(words_of(tokenizer, text))
    return counts


def corpus_words(
    tokenizer: Tokenizer, counts: Counter[str], known: set[str], max_words: int, min_count: int = 2
) -> list[str]:
    """The `max_words` most frequent words with a letter that the teacher splits into pieces."""
    picked: list[str] = []
    for word, n in counts.most_common():
        if len(picked) >= max_words or n < min_count:
            break
        if word in known or len(word) < 2 or word.startswith("##") or not _HAS_LETTER.search(word):
            continue
        if len(tokenizer.encode(word, add_special_tokens=False).ids) < 2:
            continue  # a single piece already: nothing to gain
        picked.append(word)
    return picked


def read_vocab_file(path: str | Path) -> list[str]:
    """A user vocabulary: one token per line, blank lines ignored."""
    p = Path(path)
    if not p.is_file():
        raise VocabularyError(f"vocabulary file {p} does not exist")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def static_tokenizer(teacher: Tokenizer, tokens: list[str]) -> Tokenizer:
    """The teacher's tokenizer with `tokens` (in order) as its WordPiece vocabulary and no
    post-processor, padding or truncation: a static model adds no [CLS]/[SEP]."""
    spec: dict[str, Any] = json.loads(teacher.to_str())
    model = spec.get("model", {})
    if model.get("type") != "WordPiece":
        raise VocabularyError(
            f"tokenizer model {model.get('type')!r} is not supported; potstill builds WordPiece"
        )
    unk = model.get("unk_token", "[UNK]")
    if unk not in tokens:
        raise VocabularyError(f"the vocabulary lost the unknown token {unk!r}; keep it")
    model["vocab"] = {t: i for i, t in enumerate(tokens)}
    spec["post_processor"] = None
    spec["padding"] = None
    spec["truncation"] = None
    spec["added_tokens"] = [
        {**a, "id": tokens.index(a["content"])}
        for a in spec.get("added_tokens", [])
        if a["content"] in tokens
    ]
    return Tokenizer.from_str(json.dumps(spec))

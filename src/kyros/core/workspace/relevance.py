"""How relevant a file is to a goal: words of the goal in its path and its head."""

from __future__ import annotations

from functools import lru_cache

from kyros.core.workspace.model import (
    _CAMEL_RE,
    _CONTENT_CAP,
    _CONTENT_HITS_PER_WORD,
    _DEPTH_PENALTY,
    _ENTRY_POINT_NAMES,
    _NAME_IN_GOAL_RE,
    _STOP_WORDS,
    _W_CONTENT_HIT,
    _W_DIR,
    _W_ENTRY_POINT,
    _W_NAME,
    _W_NAMED_IN_GOAL,
    _W_SUBSTRING,
    _WORD_RE,
)

# --- relevance -----------------------------------------------------------------------------------


def _split_words(text: str) -> list[str]:
    words: list[str] = []
    for chunk in _WORD_RE.findall(text):
        parts = _CAMEL_RE.findall(chunk)
        words.extend(p.lower() for p in parts)
    return words


def _norm(word: str) -> str:
    """A crude singular so that "tests" matches "test" and "policies" matches "policy"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def goal_terms(goal: str) -> list[str]:
    """The lowercase search words of a goal: split on non-alphanumerics and camelCase, without
    stop-words, numbers or words shorter than three characters; first occurrence order."""
    seen: dict[str, None] = {}
    for word in _split_words(goal):
        if len(word) < 3 or word.isdigit() or word in _STOP_WORDS:
            continue
        seen.setdefault(_norm(word), None)
    return list(seen)


def _names_in_goal(goal: str) -> set[str]:
    return {m.strip(".").removeprefix("./") for m in _NAME_IN_GOAL_RE.findall(goal)} - {""}


@lru_cache(maxsize=8192)
def _path_words(part: str) -> frozenset[str]:
    """The normalised words of a file name or directory path (directories repeat: cached)."""
    return frozenset(_norm(w) for w in _split_words(part))


def _path_score(rel: str, terms: list[str], named: set[str]) -> float:
    dirname, _, name = rel.rpartition("/")
    score = 0.0
    if rel in named or name in named:
        score += _W_NAMED_IN_GOAL
    if name.lower() in _ENTRY_POINT_NAMES:
        score += _W_ENTRY_POINT
    if terms:
        name_words = _path_words(name)
        dir_words = _path_words(dirname)
        lower = rel.lower()
        for term in terms:
            if term in name_words:
                score += _W_NAME
            elif term in dir_words:
                score += _W_DIR
            elif term in lower:
                score += _W_SUBSTRING
    if score:
        score -= _DEPTH_PENALTY * rel.count("/")
    return score


def _content_score(text: str, terms: list[str]) -> float:
    score = 0.0
    for term in terms:
        hits = text.count(term)
        if hits:
            score += _W_CONTENT_HIT * min(hits, _CONTENT_HITS_PER_WORD)
    return min(score, _CONTENT_CAP)

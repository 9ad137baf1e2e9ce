"""Packing the tree, the README and the most relevant files into a token budget."""

from __future__ import annotations

import os
from pathlib import Path

from kyros.core.workspace import model
from kyros.core.workspace.listing import (
    _classify,
    _Entry,
    _git_list,
    _is_binary,
    _never_read,
    _read,
    _skipped_dir,
    _walk,
)
from kyros.core.workspace.model import (
    _CHARS_PER_TOKEN,
    _MIN_PARTIAL_CHARS,
    _README_NAMES,
    _README_SHARE,
    _SEPARATOR,
    _TREE_SHARE,
    _TRUNCATED_MARK,
    HEAD_BYTES,
    MAX_FILE_BYTES,
    MAX_SCORED_FILES,
    ContextFile,
    WorkspaceContext,
    estimate_tokens,
)
from kyros.core.workspace.relevance import _content_score, _names_in_goal, _path_score, goal_terms
from kyros.core.workspace.render import _file_block, _readme_block, _tree_block, render_context
from kyros.errors import InvalidInput

# --- packing -------------------------------------------------------------------------------------


class _Budget:
    """Characters left for blocks joined by :data:`_SEPARATOR`."""

    def __init__(self, chars: int) -> None:
        self.left = chars
        self.blocks = 0

    def room(self) -> int:
        """Characters available for the next block's own text."""
        return self.left - (len(_SEPARATOR) if self.blocks else 0)

    def take(self, block: str) -> bool:
        cost = len(block) + (len(_SEPARATOR) if self.blocks else 0)
        if not block or cost > self.left:
            return False
        self.left -= cost
        self.blocks += 1
        return True


def _cut_at_line(text: str, limit: int) -> str | None:
    """``text`` shortened to at most ``limit`` characters at a line end, or ``None``."""
    if limit <= 0:
        return None
    cut = text[:limit]
    newline = cut.rfind("\n")
    return cut[:newline] if newline > 0 else None


def _pack_tree(
    paths: list[str], listing_truncated: bool, is_git: bool, cap: int
) -> tuple[list[str], bool, str]:
    block = _tree_block(paths, listing_truncated, is_git)
    if len(block) <= cap:
        return paths, listing_truncated, block
    # Too long: keep the shallowest paths (the workspace's shape), shown in path order.
    overhead = len(_tree_block(["x"], True, is_git)) - 1
    room = cap - overhead
    chosen: list[str] = []
    for rel in sorted(paths, key=lambda p: (p.count("/"), p)):
        cost = len(rel) + 1
        if cost > room:
            break
        chosen.append(rel)
        room -= cost
    chosen.sort()
    return chosen, True, _tree_block(chosen, True, is_git)


def _decode(data: bytes) -> str:
    text = data.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").rstrip("\n")


def _pack_readme(entries: list[_Entry], cap: int) -> tuple[str | None, str, _Entry | None]:
    top = {e.rel.lower(): e for e in entries if "/" not in e.rel}
    entry = next((top[n] for n in _README_NAMES if n in top), None)
    if entry is None or _never_read(os.path.basename(entry.full)):
        return None, "", entry
    data = _read(entry.full, MAX_FILE_BYTES)
    if data is None or _is_binary(data):
        return None, "", entry
    name, content = entry.rel, _decode(data)
    readme = f"{name}\n{content}"
    block = _readme_block(readme)
    limit = cap - (len(block) - len(content)) - len(_TRUNCATED_MARK) - 1
    while len(block) > cap:
        cut = _cut_at_line(content, limit)
        if cut is None:
            return None, "", entry
        readme = f"{name}\n{cut}\n{_TRUNCATED_MARK}"
        block = _readme_block(readme)
        limit -= len(block) - cap
    return readme, block, entry


def _fit_partial(entry: _Entry, content: str, room: int) -> ContextFile | None:
    limit = room
    while True:
        cut = _cut_at_line(content, limit)
        if cut is None or len(cut) < _MIN_PARTIAL_CHARS:
            return None
        cf = ContextFile(entry.rel, cut, True, round(entry.score, 3))
        excess = len(_file_block(cf)) - room
        if excess <= 0:
            return cf
        limit = len(cut) - excess


def gather_context(root: Path, goal: str, token_budget: int) -> WorkspaceContext:
    """Collect the workspace context for ``goal`` within ``token_budget`` estimated tokens.

    Lists the workspace with ``git ls-files`` when ``root`` is inside a git work tree (so
    ``.gitignore`` applies and untracked files show), else walks the directory. The tree gets at
    most 15% of the budget, the README at most 15%, and the files most relevant to the goal
    (score descending, then path) fill what is left; the last file that only partly fits is cut
    at a line end and marked truncated.

    Raises :class:`~kyros.errors.InvalidInput` when ``root`` is not an existing directory or the
    budget is negative.
    """
    if token_budget < 0:
        raise InvalidInput(f"token budget must not be negative, got {token_budget}")
    if not root.exists():
        raise InvalidInput(f"workspace {str(root)!r} does not exist")
    if not root.is_dir():
        raise InvalidInput(f"workspace {str(root)!r} is not a directory")
    root = root.resolve()

    listed = _git_list(root)
    if listed is not None:
        listed = [rel for rel in listed if not _skipped_dir(rel)]
    # An empty answer from git usually means the root sits in an ignored part of an enclosing
    # repository (a home directory under version control, say); the walk sees what is there.
    is_git = bool(listed)
    if not listed:
        listed = _walk(root)
    listing_truncated = len(listed) > model.MAX_LISTED_FILES
    entries, skipped = _classify(root, listed[: model.MAX_LISTED_FILES])

    budget = _Budget(token_budget * _CHARS_PER_TOKEN)
    total = budget.left
    ctx = WorkspaceContext(root=root, is_git=is_git, skipped=skipped)

    tree_cap = min(int(total * _TREE_SHARE), budget.room())
    tree, ctx.tree_truncated, block = _pack_tree(
        [e.rel for e in entries], listing_truncated, is_git, tree_cap
    )
    if budget.take(block):
        ctx.tree = tree
    elif entries:
        ctx.tree_truncated = True

    readme_cap = min(int(total * _README_SHARE), budget.room())
    ctx.readme, block, readme_entry = _pack_readme(entries, readme_cap)
    if not budget.take(block):
        ctx.readme = None

    ctx.files, binary = _pack_files(entries, readme_entry, goal, budget)
    ctx.skipped += binary
    ctx.tokens = estimate_tokens(render_context(ctx))
    return ctx


def _pack_files(
    entries: list[_Entry], readme: _Entry | None, goal: str, budget: _Budget
) -> tuple[list[ContextFile], int]:
    """The selected files, and how many candidates turned out to be binary."""
    terms = goal_terms(goal)
    named = _names_in_goal(goal)
    candidates = [e for e in entries if e.readable and e is not readme]
    for e in candidates:
        e.path_score = _path_score(e.rel, terms, named)
    candidates.sort(key=lambda e: (-e.path_score, e.rel))

    binary: set[str] = set()
    if terms:
        for e in candidates[:MAX_SCORED_FILES]:
            head = _read(e.full, HEAD_BYTES)
            if head is None or _is_binary(head):
                binary.add(e.rel)
                continue
            e.content_score = _content_score(head.decode("utf-8", "replace").lower(), terms)

    usable = [e for e in candidates if e.rel not in binary]
    ranked = sorted((e for e in usable if e.score > 0), key=lambda e: (-e.score, e.rel))
    # Budget left after the relevant files goes to the rest, shallowest first: in a small
    # repository the model then sees all of the code, not only the files the goal names.
    ranked += sorted((e for e in usable if e.score <= 0), key=lambda e: (e.rel.count("/"), e.rel))
    files: list[ContextFile] = []
    for e in ranked:
        room = budget.room()
        if room <= 0:
            break
        data = _read(e.full, MAX_FILE_BYTES)
        if data is None or _is_binary(data):
            binary.add(e.rel)
            continue
        content = _decode(data)
        cf = ContextFile(e.rel, content, False, round(e.score, 3))
        block = _file_block(cf)
        if len(block) > room:
            partial = _fit_partial(e, content, room)
            if partial is not None:
                budget.take(_file_block(partial))
                files.append(partial)
            break
        budget.take(block)
        files.append(cf)
    return files, len(binary)

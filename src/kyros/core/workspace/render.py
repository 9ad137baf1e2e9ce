"""Rendering context as a prompt block: the tree, the README and fenced files."""

from __future__ import annotations

import os

from kyros.core.workspace.model import (
    _BACKTICKS_RE,
    _LANGUAGE_NAMES,
    _LANGUAGES,
    _SEPARATOR,
    _TREE_MORE,
    ContextFile,
    WorkspaceContext,
)

# --- rendering -----------------------------------------------------------------------------------


def _language(path: str) -> str:
    name = path.rpartition("/")[2].lower()
    return _LANGUAGES.get(os.path.splitext(name)[1]) or _LANGUAGE_NAMES.get(name, "")


def _fence(content: str) -> str:
    longest = max((len(m) for m in _BACKTICKS_RE.findall(content)), default=0)
    return "`" * max(3, longest + 1)


def _fenced(header: str, path: str, content: str) -> str:
    fence = _fence(content)
    return f"## {header}\n{fence}{_language(path)}\n{content}\n{fence}"


def _tree_block(tree: list[str], truncated: bool, is_git: bool) -> str:
    if not tree:
        return ""
    source = "git ls-files" if is_git else "directory walk"
    lines = [f"## Workspace files ({source})", *tree]
    if truncated:
        lines.append(_TREE_MORE)
    return "\n".join(lines)


def _readme_block(readme: str | None) -> str:
    if readme is None:
        return ""
    name, _, content = readme.partition("\n")
    return _fenced(name, name, content)


def _file_block(cf: ContextFile) -> str:
    header = f"{cf.path} (truncated)" if cf.truncated else cf.path
    return _fenced(header, cf.path, cf.content)


def render_context(ctx: WorkspaceContext) -> str:
    """The context as a compact prompt block: the file tree, the README, then each selected file
    in a fenced block under its path (language from the extension)."""
    blocks = [_tree_block(ctx.tree, ctx.tree_truncated, ctx.is_git), _readme_block(ctx.readme)]
    blocks.extend(_file_block(cf) for cf in ctx.files)
    return _SEPARATOR.join(b for b in blocks if b)

"""Workspace context for a planning model: a file tree, the README and the files most relevant to
a goal, packed into a token budget.

Everything here is plain blocking I/O; callers on an event loop run :func:`gather_context` in a
thread. The work is bounded regardless of workspace size: the listing stops at
:data:`MAX_LISTED_FILES` entries, only the first :data:`MAX_SCORED_FILES` candidates (by path
score) have their first :data:`HEAD_BYTES` read for content scoring, and full contents are read
only for the files that end up in the context.

Token estimate
    ``ceil(chars / 4)``. No tokenizer is downloaded or loaded (the daemon may be offline and the
    model is not known here), the result is stable across models and versions, and for source
    code and English prose it lands within roughly 10-20% of the BPE tokenizers in use. The budget
    is applied to the rendered text, so ``estimate_tokens(render_context(ctx)) <= token_budget``.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from kyros.errors import InvalidInput

#: The listing never holds more entries than this (the tree is marked truncated beyond it).
MAX_LISTED_FILES = 5_000
#: Files larger than this are listed but never read into the context.
MAX_FILE_BYTES = 256 * 1024
#: A NUL byte in this many leading bytes marks a file as binary.
BINARY_PROBE_BYTES = 8 * 1024
#: Content scoring reads at most this much of a file...
HEAD_BYTES = 16 * 1024
#: ...and only for this many candidates, the best by path score.
MAX_SCORED_FILES = 2_000
#: ``git ls-files`` gets this long before the plain directory walk takes over.
GIT_TIMEOUT_S = 10.0

#: Directories never descended into by the directory walk, and dropped from a git listing too
#: (untracked virtualenvs and caches would otherwise crowd out the sources).
SKIP_DIRS = frozenset(
    {
        ".git",
        "node_modules",
        ".venv",
        "venv",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        "dist",
        "build",
        ".tox",
        ".kyros",
    }
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_TREE_SHARE = 0.15
_README_SHARE = 0.15
_CHARS_PER_TOKEN = 4
#: A partially fitting file is only worth including if at least this much of it fits.
_MIN_PARTIAL_CHARS = 400
_SEPARATOR = "\n\n"
_TRUNCATED_MARK = "[... truncated]"
_TREE_MORE = "... (more files not shown)"

# Path scoring weights: path matches dominate, content matches only break ties between them.
_W_NAME = 4.0  # a goal word is a word of the file name
_W_DIR = 2.0  # ... of a directory name
_W_SUBSTRING = 1.0  # ... appears inside the path (e.g. "plan" in "planner.py")
_W_CONTENT_HIT = 0.25  # per occurrence in the file's head
_CONTENT_HITS_PER_WORD = 5
_CONTENT_CAP = 3.0
_W_ENTRY_POINT = 1.0
_W_NAMED_IN_GOAL = 8.0
_DEPTH_PENALTY = 0.01

_STOP_WORDS = _words(
    """
    about above after again all also and any are because been before being below between both
    but can could did does doing done down during each few for from further had has have having
    her here hers him his how into its itself just more most much must need needs not now off
    once only other our ours out over own please same she should some such than that the their
    theirs them then there these they this those through too under until very was way were what
    when where which while who whom why will with would you your yours see
    add adds added make makes use uses using want wants new change changes update updates fix
    fixes implement implements support supports code file files
    """
)

_ENTRY_POINT_NAMES = _words(
    """
    pyproject.toml setup.py setup.cfg package.json cargo.toml go.mod makefile dockerfile main.py
    __main__.py app.py cli.py manage.py main.go main.rs lib.rs index.js index.ts main.js main.ts
    """
)

_BINARY_SUFFIXES = _words(
    """
    .png .jpg .jpeg .gif .bmp .ico .webp .tif .tiff .psd .pdf .zip .gz .tgz .bz2 .xz .zst .7z
    .rar .tar .jar .war .class .so .dylib .dll .exe .o .a .lib .obj .pyc .pyo .whl .egg .woff
    .woff2 .ttf .otf .eot .mp3 .mp4 .m4a .mov .avi .mkv .webm .wav .flac .ogg .sqlite .sqlite3
    .db .bin .pkl .pickle .npy .npz .parquet .onnx .pt .safetensors
    """
)

#: Listed in the tree but never read: credentials, and generated files that only cost tokens.
_NEVER_READ_NAMES = _words(
    """
    .env .netrc .npmrc .pypirc id_rsa id_dsa id_ecdsa id_ed25519 package-lock.json yarn.lock
    pnpm-lock.yaml poetry.lock uv.lock pdm.lock cargo.lock composer.lock gemfile.lock go.sum
    """
)
_NEVER_READ_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".min.js", ".min.css", ".map")
_ENV_TEMPLATES = frozenset({".env.example", ".env.sample", ".env.template", ".env.dist"})

_README_NAMES = ("readme.md", "readme.rst", "readme.txt", "readme")

_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "jsx",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".rs": "rust",
    ".go": "go",
    ".java": "java",
    ".kt": "kotlin",
    ".swift": "swift",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".rb": "ruby",
    ".php": "php",
    ".scala": "scala",
    ".lua": "lua",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "zsh",
    ".sql": "sql",
    ".html": "html",
    ".css": "css",
    ".scss": "scss",
    ".md": "markdown",
    ".rst": "rst",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".ini": "ini",
    ".cfg": "ini",
    ".xml": "xml",
    ".txt": "text",
}
_LANGUAGE_NAMES = {"dockerfile": "dockerfile", "makefile": "makefile"}

_WORD_RE = re.compile(r"[A-Za-z0-9]+")
_CAMEL_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_NAME_IN_GOAL_RE = re.compile(r"[A-Za-z0-9_./-]+")
_BACKTICKS_RE = re.compile(r"`+")


@dataclass
class ContextFile:
    """One file's (possibly truncated) content in the context."""

    path: str
    content: str
    truncated: bool
    score: float


@dataclass
class WorkspaceContext:
    """What :func:`gather_context` found; :func:`render_context` turns it into prompt text.

    ``tree`` holds the relative POSIX paths shown. ``readme`` is the README's file name, a
    newline, then its (possibly truncated) content. ``tokens`` estimates the rendered size.
    ``skipped`` counts listed files kept out of content selection: binary, larger than
    :data:`MAX_FILE_BYTES`, unreadable, credentials or lock files, and symlinks leading outside
    the root.
    """

    root: Path
    is_git: bool
    tree: list[str] = field(default_factory=list)
    tree_truncated: bool = False
    readme: str | None = None
    files: list[ContextFile] = field(default_factory=list)
    tokens: int = 0
    skipped: int = 0


def estimate_tokens(text: str) -> int:
    """The token estimate used for budgets: ``ceil(len(text) / 4)`` (see the module docstring)."""
    return math.ceil(len(text) / _CHARS_PER_TOKEN)


# --- listing -------------------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    # GIT_DIR, GIT_WORK_TREE, GIT_INDEX_FILE, GIT_CONFIG_* and friends would point git somewhere
    # other than the workspace; drop them all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_OPTIONAL_LOCKS"] = "0"  # a read must not take index.lock
    return env


def _git_list(root: Path) -> list[str] | None:
    """Paths from ``git ls-files`` relative to ``root``; ``None`` when ``root`` is not in a work
    tree (or git is missing, refuses the repository, or is too slow)."""
    git = shutil.which("git")
    if git is None:
        return None
    cmd = [
        git,
        "-c",
        "core.fsmonitor=false",  # a repo-configured fsmonitor is a command git would run
        "-c",
        f"core.hooksPath={os.devnull}",
        "ls-files",
        "--cached",
        "--others",
        "--exclude-standard",
        "-z",
    ]
    try:
        proc = subprocess.run(
            cmd,
            cwd=root,
            env=_git_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    paths = (os.fsdecode(raw) for raw in proc.stdout.split(b"\0") if raw)
    # --cached lists a file once per unmerged stage during a conflict.
    return sorted(set(paths))


def _walk(root: Path) -> list[str]:
    """Relative paths of the files under ``root`` in sorted depth-first order, without the
    directories in :data:`SKIP_DIRS`, hidden directories, or symlinked directories."""
    found: list[str] = []
    stack = [""]
    while stack and len(found) <= MAX_LISTED_FILES:
        rel_dir = stack.pop()
        try:
            with os.scandir(root / rel_dir if rel_dir else root) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs: list[str] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name not in SKIP_DIRS and not entry.name.startswith("."):
                    subdirs.append(rel)
            else:
                found.append(rel)
        stack.extend(reversed(subdirs))
    return found


def _skipped_dir(rel: str) -> bool:
    parts = rel.split("/")
    return any(part in SKIP_DIRS for part in parts[:-1])


def _hidden_target(rel: str) -> bool:
    """Whether a symlink target (relative to the root) lies where the listing never looks."""
    parts = rel.split("/")[:-1]
    return any(part in SKIP_DIRS or part.startswith(".") for part in parts)


@dataclass
class _Entry:
    rel: str
    full: str
    size: int
    readable: bool  # eligible for content selection
    path_score: float = 0.0
    content_score: float = 0.0

    @property
    def score(self) -> float:
        return self.path_score + self.content_score


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _never_read(name: str) -> bool:
    lower = name.lower()
    if lower in _NEVER_READ_NAMES or lower.endswith(_NEVER_READ_SUFFIXES):
        return True
    if lower.startswith(".env.") and lower not in _ENV_TEMPLATES:
        return True
    return os.path.splitext(lower)[1] in _BINARY_SUFFIXES


def _classify(root: Path, rels: list[str]) -> tuple[list[_Entry], int]:
    """Stat the listed paths: keep regular files (and symlinks to regular files inside the root),
    note which may be read, and count the rest as skipped."""
    root_str = str(root)
    entries: list[_Entry] = []
    skipped = 0
    for rel in rels:
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:  # a non-UTF-8 name cannot go into a prompt
            skipped += 1
            continue
        full = os.path.join(root_str, rel)
        try:
            st = os.lstat(full)
            target = full
            if stat.S_ISLNK(st.st_mode):
                real = os.path.realpath(full)
                target_rel = os.path.relpath(real, root_str).replace(os.sep, "/")
                if not _inside(real, root_str) or _hidden_target(target_rel):
                    skipped += 1
                    continue
                st = os.stat(full)
                target = real
        except OSError:  # tracked but deleted, or a dangling symlink
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        readable = (
            st.st_size <= MAX_FILE_BYTES
            and not _never_read(os.path.basename(full))
            and (target is full or not _never_read(os.path.basename(target)))
        )
        if not readable:
            skipped += 1
        entries.append(_Entry(rel=rel, full=full, size=st.st_size, readable=readable))
    return entries, skipped


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


def _read(path: str, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_PROBE_BYTES]


def _content_score(text: str, terms: list[str]) -> float:
    score = 0.0
    for term in terms:
        hits = text.count(term)
        if hits:
            score += _W_CONTENT_HIT * min(hits, _CONTENT_HITS_PER_WORD)
    return min(score, _CONTENT_CAP)


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
    listing_truncated = len(listed) > MAX_LISTED_FILES
    entries, skipped = _classify(root, listed[:MAX_LISTED_FILES])

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

"""Limits, tables and the result types of workspace context."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

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

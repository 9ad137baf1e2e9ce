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

from kyros.core.workspace.model import (
    HEAD_BYTES,
    MAX_FILE_BYTES,
    MAX_LISTED_FILES,
    MAX_SCORED_FILES,
    SKIP_DIRS,
    ContextFile,
    WorkspaceContext,
    estimate_tokens,
)
from kyros.core.workspace.pack import gather_context
from kyros.core.workspace.relevance import goal_terms
from kyros.core.workspace.render import render_context

__all__ = [
    "HEAD_BYTES",
    "MAX_FILE_BYTES",
    "MAX_LISTED_FILES",
    "MAX_SCORED_FILES",
    "SKIP_DIRS",
    "ContextFile",
    "WorkspaceContext",
    "estimate_tokens",
    "gather_context",
    "goal_terms",
    "render_context",
]

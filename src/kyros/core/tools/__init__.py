"""The agent's tools: files, patches and the shell, all confined by one :class:`PathPolicy`.

``pathpolicy`` decides which paths may be read or written and performs every access through
descriptors; ``files``, ``patch`` and ``command`` are the tools; ``sanitize`` strips terminal
escapes from what they return; ``registry`` holds the schemas the model sees and dispatches
its calls. Only the standard library is used here.
"""

from __future__ import annotations

from kyros.core.tools.command import CommandResult, run_command
from kyros.core.tools.files import ToolError
from kyros.core.tools.pathpolicy import PathDenied, PathPolicy
from kyros.core.tools.registry import TOOL_CLASS, TOOL_SPECS, Toolbox, ToolResult, parse_arguments
from kyros.core.tools.sanitize import clean_text

__all__ = [
    "TOOL_CLASS",
    "TOOL_SPECS",
    "CommandResult",
    "PathDenied",
    "PathPolicy",
    "ToolError",
    "ToolResult",
    "Toolbox",
    "clean_text",
    "parse_arguments",
    "run_command",
]

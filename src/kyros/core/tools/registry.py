"""The tools a model may call: their JSON schemas, argument checking and dispatch.

:data:`TOOL_SPECS` goes to the provider as OpenAI-style function definitions. A call comes back
as a name and a JSON string; :func:`parse_arguments` checks it against the same schema (a small
validator for the subset used here, so no ``jsonschema`` dependency), and :class:`Toolbox` runs
it. Approval (which classes of tool need the user's yes) is the caller's business:
:data:`TOOL_CLASS` tells it what each tool does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kyros.core.tools import files, patch
from kyros.core.tools.command import MAX_OUTPUT, CommandResult, run_command
from kyros.core.tools.files import ToolError
from kyros.core.tools.pathpolicy import PathDenied, PathPolicy
from kyros.core.tools.sanitize import clean_text

__all__ = ["TOOL_CLASS", "TOOL_SPECS", "ToolResult", "Toolbox", "parse_arguments"]


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> Any:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        },
    }


_PATH = {"type": "string", "description": "Path relative to the workspace root."}

TOOL_SPECS: list[dict[str, Any]] = [
    _tool(
        "list_files",
        "List the files under a directory of the workspace, recursively, one relative path a "
        "line. Dependency and cache directories (.git, node_modules, .venv, __pycache__) are "
        "left out.",
        {"path": {**_PATH, "description": "Directory to list; default the workspace root."}},
        [],
    ),
    _tool(
        "read_file",
        "Read a text file. Each line comes back prefixed with its number and '| ', which are "
        "not part of the file. Long files are cut; read on with start_line.",
        {
            "path": _PATH,
            "start_line": {"type": "integer", "minimum": 1, "description": "First line, 1-based."},
            "end_line": {"type": "integer", "minimum": 1, "description": "Last line, inclusive."},
        },
        ["path"],
    ),
    _tool(
        "search",
        "Search the text files under a path for a string (or a Python regular expression when "
        "regex is true). Results are 'path:line: text'.",
        {
            "pattern": {"type": "string", "description": "Text or regular expression to find."},
            "regex": {"type": "boolean", "description": "Treat pattern as a regex."},
            "path": {**_PATH, "description": "File or directory to search; default the root."},
            "case_sensitive": {"type": "boolean", "description": "Default true."},
        },
        ["pattern"],
    ),
    _tool(
        "write_file",
        "Create or replace a whole file with the given content (parent directories are made). "
        "For small edits of an existing file prefer apply_patch. Files under .git and .kyros "
        "cannot be written.",
        {"path": _PATH, "content": {"type": "string", "description": "The complete new content."}},
        ["path", "content"],
    ),
    _tool(
        "apply_patch",
        "Apply a unified diff (as printed by 'git diff') to one or more files: '--- a/path' and "
        "'+++ b/path' headers ('/dev/null' to create or delete), then '@@ -l,n +l,n @@' hunks "
        "whose context and '-' lines must match the file exactly. Either every hunk applies or "
        "nothing changes.",
        {"patch": {"type": "string", "description": "The unified diff."}},
        ["patch"],
    ),
    _tool(
        "delete_file",
        "Delete a file (or an empty directory).",
        {"path": _PATH},
        ["path"],
    ),
    _tool(
        "rename_file",
        "Rename or move a file or directory; the destination must not exist.",
        {"src": _PATH, "dst": _PATH},
        ["src", "dst"],
    ),
    _tool(
        "run_command",
        "Run a shell command (bash -c) in the workspace and get its exit code and combined "
        "output (long output keeps its start and end). No input can be given; background "
        "processes are ended when the command exits.",
        {
            "command": {"type": "string", "description": "The command line."},
            "cwd": {**_PATH, "description": "Working directory; default the workspace root."},
            "timeout": {"type": "integer", "minimum": 1, "description": "Seconds; capped."},
        },
        ["command"],
    ),
]

#: What each tool does, for the approval policy: reading, writing files, or running commands.
TOOL_CLASS = {
    "list_files": "read",
    "read_file": "read",
    "search": "read",
    "write_file": "write",
    "apply_patch": "write",
    "delete_file": "write",
    "rename_file": "write",
    "run_command": "command",
}

_BY_NAME = {spec["function"]["name"]: spec["function"]["parameters"] for spec in TOOL_SPECS}
_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "number": (int, float),
}
#: Longest argument value quoted back in an error message.
_QUOTE = 60


def validate_arguments(name: str, args: Any) -> dict[str, Any]:
    """``args`` checked against the schema of tool ``name``; a ``null`` for an optional
    argument counts as leaving it out. Raises :class:`ToolError` saying what is wrong."""
    schema = _BY_NAME.get(name)
    if schema is None:
        raise ToolError(f"unknown tool {name[:_QUOTE]!r}; the tools are {', '.join(_BY_NAME)}")
    if not isinstance(args, dict):
        raise ToolError(f"{name}: the arguments must be a JSON object")
    props: dict[str, Any] = schema["properties"]
    required: list[str] = schema["required"]
    clean: dict[str, Any] = {}
    for key, value in args.items():
        if key not in props:
            raise ToolError(
                f"{name}: unknown argument {str(key)[:_QUOTE]!r}; "
                f"expected {', '.join(props) or 'none'}"
            )
        if value is None and key not in required:
            continue
        want = props[key]["type"]
        # bool is an int in Python, but true is not a line number.
        if not isinstance(value, _TYPES[want]) or (want != "boolean" and isinstance(value, bool)):
            raise ToolError(f"{name}: argument {key!r} must be a {want}, not {_json_type(value)}")
        minimum = props[key].get("minimum")
        if minimum is not None and value < minimum:
            raise ToolError(f"{name}: argument {key!r} must be at least {minimum}")
        clean[key] = value
    missing = [key for key in required if key not in clean]
    if missing:
        raise ToolError(f"{name}: missing required argument {', '.join(map(repr, missing))}")
    return clean


def _json_type(value: Any) -> str:
    for json_name, kinds in (("boolean", (bool,)), ("integer", (int,)), ("number", (float,))):
        if isinstance(value, kinds):
            return json_name
    return {str: "string", list: "array", dict: "object", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def parse_arguments(name: str, raw: str) -> dict[str, Any]:
    """Decode the JSON ``raw`` arguments of a call to tool ``name`` and check them; an empty
    string means no arguments. Raises :class:`ToolError` with a message for the model."""
    if name not in _BY_NAME:
        validate_arguments(name, {})  # raises "unknown tool"
    try:
        args = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ToolError(f"{name}: the arguments are not valid JSON ({exc})") from None
    return validate_arguments(name, args)


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one call: ``ok`` is false for an error (the output says which), and for
    a command that failed or timed out. ``changed`` lists the root-relative paths written."""

    ok: bool
    output: str
    changed: list[str] = field(default_factory=list)


#: Runs ``command`` in ``cwd`` (already checked) for at most ``timeout`` seconds, keeping at
#: most ``max_output`` bytes of output: another home for run_command (a daemon terminal).
CommandRunner = Callable[[str, Path, float, int], Awaitable[CommandResult]]


class Toolbox:
    """Runs tool calls against one workspace. ``runner`` replaces the plain subprocess that
    runs ``run_command`` (the daemon runs an agent's commands in terminals users can watch)."""

    def __init__(
        self,
        policy: PathPolicy,
        *,
        command_timeout: float = 60.0,
        max_output: int = MAX_OUTPUT,
        runner: CommandRunner | None = None,
    ) -> None:
        self.policy = policy
        self.command_timeout = command_timeout
        self.max_output = max_output
        self.runner = runner

    async def call(self, name: str, args: dict[str, Any]) -> ToolResult:
        """Run tool ``name``; a refused path or a failed tool becomes ``ok=False`` with the
        message, for the model to read. Other exceptions are bugs and propagate."""
        try:
            args = validate_arguments(name, args)
            if name == "run_command":
                result = await self._command(args)
            else:
                result = await asyncio.to_thread(self._file_tool, name, args)
        except (ToolError, PathDenied) as exc:
            # A message may quote the model's input (a regex error quotes the pattern).
            return ToolResult(ok=False, output=f"error: {clean_text(exc.message)}")
        # The tools clean what they read already; this makes "no ESC reaches the model" (S13)
        # hold for every output whatever a tool forgot. Cleaning clean text is a quick scan.
        return ToolResult(result.ok, clean_text(result.output), result.changed)

    async def _command(self, args: dict[str, Any]) -> ToolResult:
        timeout = min(float(args.get("timeout", self.command_timeout)), self.command_timeout)
        if self.runner is not None:
            cwd = await asyncio.to_thread(self.policy.cwd, args.get("cwd", "."))
            result = await self.runner(args["command"], cwd, timeout, self.max_output)
            return ToolResult(ok=result.exit_code == 0, output=result.for_model())
        result = await run_command(
            self.policy,
            args["command"],
            cwd=args.get("cwd", "."),
            timeout=timeout,
            max_output=self.max_output,
        )
        return ToolResult(ok=result.exit_code == 0, output=result.for_model())

    def _file_tool(self, name: str, args: dict[str, Any]) -> ToolResult:
        policy = self.policy
        if name == "list_files":
            return ToolResult(True, files.list_files(policy, args.get("path", ".")))
        if name == "read_file":
            out = files.read_file(
                policy, args["path"], args.get("start_line"), args.get("end_line")
            )
            return ToolResult(True, out)
        if name == "search":
            out = files.search(
                policy,
                args["pattern"],
                regex=args.get("regex", False),
                path=args.get("path", "."),
                case_sensitive=args.get("case_sensitive", True),
            )
            return ToolResult(True, out)
        if name == "write_file":
            out = files.write_file(policy, args["path"], args["content"])
            return ToolResult(True, out, [policy.relative(args["path"], write=True)])
        if name == "apply_patch":
            applied = patch.apply_diff(policy, args["patch"])
            return ToolResult(True, applied.summary, applied.changed)
        if name == "delete_file":
            rel = policy.resolve(args["path"], write=True, follow_last=False).relative
            return ToolResult(True, files.delete_file(policy, args["path"]), [rel])
        if name == "rename_file":
            src = policy.resolve(args["src"], write=True, follow_last=False).relative
            dst = policy.resolve(args["dst"], write=True, follow_last=False).relative
            return ToolResult(True, files.rename_file(policy, args["src"], args["dst"]), [src, dst])
        raise ToolError(f"unknown tool {name!r}")  # validate_arguments knows no other names

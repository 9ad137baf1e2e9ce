"""Options shared by every command (set by the top-level callback) and the helpers that use them."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

    from kyros.client.api import Client
    from kyros.settings import Loaded


def group(help_text: str) -> typer.Typer:
    """A command group styled like the top level: plain help, ``-h``, help when bare."""
    import typer

    app = typer.Typer(
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode=None,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _group() -> None:
        # A callback keeps a one-command group a group (`kyros run plan`, not `kyros run`).
        pass

    _group.__doc__ = help_text
    return app


@dataclass
class Globals:
    daemon: str | None = None
    token: str | None = None
    debug: bool = False


GLOBALS = Globals()


def settings(overrides: dict[str, Any] | None = None, workspace: Path | None = None) -> Loaded:
    from kyros import settings as settings_mod

    # Checked whole only where a command reads them all (see kyros.settings).
    return settings_mod.load(overrides, workspace=workspace, check=False)


def client(
    loaded: Loaded | None = None, *, autostart: bool = True, timeout: float = 30.0
) -> Client:
    """A client of the daemon the user chose; starts a local daemon if none answers."""
    from kyros.client import connect

    _, c = connect(
        loaded or settings(), GLOBALS.daemon, GLOBALS.token, autostart=autostart, timeout=timeout
    )
    return c


def print_json(value: Any) -> None:
    """Exactly one JSON document on stdout."""
    import json
    from datetime import datetime

    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat()
        raise TypeError(type(obj).__name__)

    text = json.dumps(value, indent=2, default=default, ensure_ascii=False)
    sys.stdout.write(_escape_c1(text) + "\n")
    sys.stdout.flush()


def print_jsonl(value: Any) -> None:
    import json

    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    sys.stdout.write(_escape_c1(text) + "\n")
    sys.stdout.flush()


def _escape_c1(text: str) -> str:
    """JSON escapes C0 controls (ESC is ``\\u001b``) but not C1 ones (U+0080-U+009F, CSI
    among them), which some terminals obey: escape them too; the document means the same."""
    import re

    return re.sub("[\x80-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)


def stderr_console() -> Any:
    from rich.console import Console

    # Not a terminal: no 80-column wrapping, a message stays one line for grep and logs.
    return Console(stderr=True, highlight=False, soft_wrap=not sys.stderr.isatty())


def stdout_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())

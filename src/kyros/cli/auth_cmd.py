"""`kyros auth …`: provider API keys in the OS keyring, or in kyros's own 0600 file.

Keys are read from a hidden prompt or from stdin, never from an argument, so they stay out of
shell history and `ps`. No command prints key material.

Exit codes: 0 done; 2 invalid input, nothing to remove, or a key that only an environment
variable provides (`rm-key` cannot unset a variable in the caller's shell).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from kyros.cli.state import group, print_json

if TYPE_CHECKING:
    from kyros.credentials import Credentials

app = group("Store, list and remove provider API keys (OS keyring, else a 0600 file).")

PROVIDER_HELP = "Provider: openai, anthropic, gemini … or a custom name (its key is NAME_API_KEY)."


def _credentials() -> Credentials:
    import os

    from kyros import paths
    from kyros.credentials import Credentials

    return Credentials(paths.resolve(), os.environ)


def _warn(kind: str, text: str) -> None:
    sys.stderr.write(f"kyros: {kind}: {text}\n")
    sys.stderr.flush()


def _read_key(provider: str, use_stdin: bool) -> str:
    """The key from a hidden prompt (stdin is a terminal) or from stdin (a pipe, or --stdin)."""
    from kyros.credentials import MAX_KEY_LENGTH
    from kyros.errors import UsageError

    stdin = sys.stdin
    if stdin is None:
        raise UsageError("no standard input to read the key from")
    if not use_stdin and stdin.isatty():
        import getpass

        try:
            return getpass.getpass(f"API key for {provider} (input is hidden): ")
        except EOFError:
            return ""
    # Bytes, so undecodable input is reported instead of turning into replacement characters;
    # bounded, so a mistaken `< big-file` is not read whole.
    raw = stdin.buffer.read(MAX_KEY_LENGTH + 3)
    if len(raw) > MAX_KEY_LENGTH + 2:
        raise UsageError(f"the key is longer than {MAX_KEY_LENGTH} characters")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the key on stdin is not valid UTF-8") from None


@app.command("set-key")
def set_key(
    provider: Annotated[str, typer.Argument(help=PROVIDER_HELP, show_default=False)],
    use_stdin: Annotated[
        bool,
        typer.Option("--stdin", help="Read the key from stdin even when it is a terminal."),
    ] = False,
) -> None:
    """Store a provider's API key, in the OS keyring if one is usable, else in a 0600 file.

    The key is read from a hidden prompt, or from stdin when it is not a terminal:
    `pass show openai | kyros auth set-key openai`. With CI set or KYROS_KEYRING=off the file
    is used without trying the keyring.
    """
    from kyros.credentials import env_var_for, validate_key, validate_provider

    validate_provider(provider)  # before prompting: a typo should not cost a paste
    key = validate_key(_read_key(provider, use_stdin))
    creds = _credentials()
    result = creds.set(provider, key)
    if result.where == "keyring":
        backend = creds.keyring_status().backend
        typer.echo(f"Stored the {provider} key in the OS keyring ({backend}).")
    else:
        typer.echo(f"Stored the {provider} key in {result.path}.")
    if result.warning:
        _warn("warning", result.warning)
    env_var = env_var_for(provider)
    if creds.env.get(env_var):
        _warn("note", f"{env_var} is set in this environment and takes precedence over it")


@app.command("rm-key")
def rm_key(
    provider: Annotated[str, typer.Argument(help=PROVIDER_HELP, show_default=False)],
) -> None:
    """Remove a provider's stored key from the OS keyring and the file.

    A key that comes from an environment variable cannot be removed by kyros: unset the
    variable where it is set. That case, and a provider with no stored key, exit with 2.
    """
    from kyros.credentials import env_var_for, validate_provider
    from kyros.errors import NotFound, UsageError

    validate_provider(provider)
    creds = _credentials()
    removed = creds.remove(provider)
    env_var = env_var_for(provider)
    in_env = bool(creds.env.get(env_var))
    if not removed:
        if in_env:
            raise UsageError(
                f"the {provider} key comes from the environment variable {env_var}, which "
                f"kyros cannot remove: unset it in your shell (and its start-up files)"
            )
        raise NotFound(f"no stored key for {provider}")
    places = ["the OS keyring" if r == "keyring" else r.removeprefix("file ") for r in removed]
    typer.echo(f"Removed the {provider} key from {' and '.join(places)}.")
    if in_env:
        _warn("note", f"{env_var} is still set in this environment and still provides a key")


@app.command("list")
def list_keys(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Providers, their environment variable and where their key comes from; never keys."""
    creds = _credentials()
    entries = creds.entries()
    status = creds.keyring_status()
    if json_out:
        print_json(
            {
                "providers": entries,
                "keyring": {
                    "usable": status.usable,
                    "backend": status.backend,
                    "reason": status.reason,
                },
                "file": str(creds.file),
            }
        )
        return
    from rich.table import Table
    from rich.text import Text

    from kyros.cli.state import stdout_console
    from kyros.sanitize import one_line

    table = Table(box=None, header_style="bold")
    for column in ("PROVIDER", "ENV VAR", "SOURCE", "STORED IN"):
        table.add_column(column)
    for e in entries:
        # The file's path is printed once below rather than in every row.
        source = "file" if (e["source"] or "").startswith("file ") else e["source"]
        cells = (e["provider"], e["env_var"], source or "-", ", ".join(e["stored_in"]) or "-")
        table.add_row(*(Text(one_line(cell)) for cell in cells))
    from rich.markup import escape

    console = stdout_console()
    console.print(table)
    keyring = status.backend if status.usable else f"not used ({status.reason})"
    console.print(f"[dim]keyring: {escape(str(keyring))}[/dim]")
    console.print(f"[dim]file: {escape(str(creds.file))}[/dim]")

"""`kyros models …`: the model catalogue (list, show) and a test call to one model."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyros.cli.state import client, group, print_json

app = group("List the models kyros can use, inspect one, or test one with a tiny call.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
NameArg = Annotated[
    str,
    typer.Argument(metavar="NAME", help="Alias, litellm id (provider/model) or demo."),
]

#: A failed call's class in plain words.
FAILURE_WORDS = {
    "auth": "authentication failed — the key is missing, wrong or lacks access",
    "rate_limit": "rate-limited by the provider",
    "timeout": "the provider did not answer in time",
    "context_overflow": "the prompt is too long for the model",
    "bad_request": "the provider refused the request",
    "provider": "the provider failed",
    "cut": "the answer stopped mid-stream",
    "cooldown": "the model is resting after recent failures",
}


def _per_million(value: float | None) -> str:
    return "-" if value is None else f"${value:g}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _cooldown(value: dict[str, Any] | None) -> str:
    return "" if not value else f"{value['seconds']:.0f}s ({value['reason']})"


def _price_source(entry: dict[str, Any]) -> str:
    source = entry.get("price_source")
    if source is None:
        return "-"
    detail = entry.get("price_detail")
    return f"{source} ({detail})" if detail else source


def _status(entry: dict[str, Any]) -> str:
    return "ok" if entry["available"] else f"unavailable: {entry.get('problem') or '?'}"


@app.command("list")
def list_models(json_out: JsonOpt = False) -> None:
    """Every model kyros could use: configured aliases, role models, models detected from
    provider keys and the built-in demo, with roles, limits, prices (USD per 1M tokens),
    availability and cooldowns; then each role's model and fallbacks."""
    listing = client().models()
    if json_out:
        print_json(listing)
        return
    from rich.table import Table
    from rich.text import Text

    from kyros.cli.state import stdout_console
    from kyros.sanitize import one_line

    console = stdout_console()
    table = Table(box=None, header_style="bold")
    # Names and ids have no spaces to wrap at: folded rather than cut on a narrow terminal.
    for column in ("NAME", "MODEL", "PROVIDER", "ROLES", "STATUS"):
        table.add_column(column, overflow="fold")
    for column in ("CONTEXT", "IN/1M", "OUT/1M"):
        table.add_column(column, justify="right")
    table.add_column("PRICE FROM")
    table.add_column("COOLDOWN")
    for m in listing["models"]:
        cells = (
            m["name"],
            m["model"],
            m["provider"],
            ", ".join(m.get("roles") or []),
            "ok" if m["available"] else "unavailable",
            _count(m.get("context_window")),
            _per_million(m.get("price_in")),
            _per_million(m.get("price_out")),
            m.get("price_source") or "-",
            _cooldown(m.get("cooldown")),
        )
        table.add_row(*(Text(one_line(cell)) for cell in cells))
    if not console.is_terminal:  # piped: a wide table beats folded cells
        wide = console.options.update_width(1000)
        console.width = max(console.width, console.measure(table, options=wide).maximum)
    console.print(table)
    problems = [m for m in listing["models"] if not m["available"]]
    if problems:
        console.print()
        for m in problems:
            console.print(f"{m['name']}: {m.get('problem') or 'unavailable'}", soft_wrap=True)
    roles = listing.get("roles") or {}
    if roles:
        available = {m["name"]: m["available"] for m in listing["models"]}
        console.print()
        for role, names in roles.items():
            chain = " → ".join(n if available.get(n, True) else f"{n} (unavailable)" for n in names)
            console.print(f"{role:<10} {chain or '(no model: set one or export a provider key)'}")


@app.command("show")
def show(name: NameArg, json_out: JsonOpt = False) -> None:
    """One model's source, roles, limits, prices, key variable and cooldown."""
    entry = client().model(name)
    if json_out:
        print_json(entry)
        return
    rows = {
        "name": entry["name"],
        "model": entry["model"],
        "provider": entry["provider"],
        "source": entry["source"],
        "roles": ", ".join(entry.get("roles") or []) or "-",
        "api_base": entry.get("api_base") or "-",
        "status": _status(entry),
        "key": entry.get("key") or "-",
        "context_window": _count(entry.get("context_window")),
        "max_output": _count(entry.get("max_output")),
        "price_in": _per_million(entry.get("price_in")) + " per 1M tokens",
        "price_out": _per_million(entry.get("price_out")) + " per 1M tokens",
        "price_cached": _per_million(entry.get("price_cached")) + " per 1M tokens",
        "price_source": _price_source(entry),
        "tools": "-" if entry.get("tools") is None else str(entry["tools"]).lower(),
        "vision": "-" if entry.get("vision") is None else str(entry["vision"]).lower(),
        "cooldown": _cooldown(entry.get("cooldown")) or "-",
    }
    for key, value in rows.items():
        typer.echo(f"{key:<15} {value}")


@app.command("test")
def test(name: NameArg, json_out: JsonOpt = False) -> None:
    """Call the model once with a one-word prompt, without fallbacks or retries, and print the
    latency, tokens, cost and reply. Exits 1 when the call failed, saying why.

    The call is recorded in the ledger with role `test` (see `kyros usage --calls`).
    """
    result = client().test_model(name)
    if json_out:
        print_json(result)
    else:
        _print_test(result)
    if not result["ok"]:
        raise typer.Exit(1)


def _print_test(r: dict[str, Any]) -> None:
    where = f" at {r['api_base']}" if r.get("api_base") else ""
    typer.echo(f"model      {r['name']} ({r['model']}{where})")
    latency = "-" if r.get("latency_ms") is None else f"{r['latency_ms']:,.0f} ms"
    if not r["ok"]:
        error = r.get("error") or {}
        words = FAILURE_WORDS.get(error.get("kind", ""), "the call failed")
        typer.echo(f"result     FAILED: {words}")
        typer.echo(f"error      {error.get('message') or '(no message)'}")
        typer.echo(f"after      {latency}")
        return
    typer.echo("result     ok")
    typer.echo(f"latency    {latency}")
    typer.echo(f"tokens     {r['tokens_in']:,} in, {r['tokens_out']:,} out")
    cost = "unknown (no price known)" if r.get("cost") is None else f"${r['cost']:.6f}"
    source = f" ({r['cost_source']})" if r.get("cost_source") else ""
    typer.echo(f"cost       {cost}{source}")
    reply = " ".join((r.get("reply") or "").split())  # one line, however the model spaced it
    typer.echo(f"reply      {reply or '(empty)'}")

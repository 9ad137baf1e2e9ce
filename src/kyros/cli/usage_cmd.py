"""`kyros usage`: what the model calls cost, grouped (by model, run, day…) or call by call.

A single command, loaded lazily like the command groups: its app has one command and no
callback, so Typer makes it a plain command that `kyros usage` runs directly.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

import typer

from kyros.cli.state import client, print_json
from kyros.client.cost_words import group_cost, money
from kyros.protocol import UsageBy

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

WHEN_FORMS = (
    "a duration back from now (30m, 24h, 7d, 2w) or an ISO-8601 date or timestamp "
    "(2026-11-01, 2026-11-01T09:30:00Z; UTC unless it carries an offset)"
)
_DURATION = re.compile(r"^(\d{1,9})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def resolve_when(value: str | None, option: str, now: datetime | None = None) -> str | None:
    """``--since``/``--until`` as the daemon takes it: a duration becomes an absolute UTC
    timestamp, a date stays a date (the daemon reads it as a UTC calendar day), a timestamp
    is checked and made explicit UTC. Anything else is a usage error naming the forms."""
    if value is None:
        return None
    text = value.strip()
    match = _DURATION.match(text.lower())
    try:
        if match:
            amount, unit = int(match.group(1)), _UNITS[match.group(2)]
            return ((now or datetime.now(UTC)) - timedelta(**{unit: amount})).isoformat()
        try:
            return date.fromisoformat(text).isoformat()
        except ValueError:
            instant = datetime.fromisoformat(text)
    except (ValueError, OverflowError):
        raise typer.BadParameter(
            f"{value!r} is not a time: use {WHEN_FORMS}", param_hint=option
        ) from None
    aware = instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)
    return aware.isoformat()


def _count(value: int) -> str:
    return f"{value:,}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def _not_ok(outcomes: dict[str, int]) -> str:
    return " ".join(f"{name}={n}" for name, n in outcomes.items() if name != "ok")


def _window(since: str | None, until: str | None, run: str | None) -> str:
    parts = [f"since {since}" if since else "", f"until {until}" if until else ""]
    parts.append(f"run {run}" if run else "")
    return " ".join(p for p in parts if p)


def _print_report(report: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from kyros.cli.state import stdout_console
    from kyros.sanitize import one_line

    console = stdout_console()
    window = _window(report.get("since"), report.get("until"), report.get("run"))
    if not report["groups"]:
        console.print(f"No model calls recorded{' ' + window if window else ''}.")
        return
    by = report["by"]
    table = Table(
        box=None,
        header_style="bold",
        title=f"usage by {by}{' — ' + window if window else ''}",
        title_justify="left",
    )
    table.add_column("DAY (UTC)" if by == "day" else by.upper())
    # Calls of unknown cost get their own column, shown only when there are any.
    unpriced = bool(report["total"].get("unknown_cost_calls"))
    columns = ("CALLS", "OK", "FAILED", "TOKENS IN", "TOKENS OUT", "CACHED", "COST")
    for column in (*columns, "UNPRICED") if unpriced else columns:
        table.add_column(column, justify="right")
    table.add_column("AVG LATENCY", justify="right")
    # Grouped by outcome, the rows already are the outcomes.
    breakdown = by != "outcome"
    if breakdown:
        table.add_column("NOT OK")

    def row(group: dict[str, Any], key: str, style: str | None = None) -> None:
        cells: list[Any] = [
            Text(one_line(key)),  # a model, run or agent name: shown, never interpreted
            _count(group["calls"]),
            _count(group["ok"]),
            _count(group["failed"]),
            _count(group["tokens_in"]),
            _count(group["tokens_out"]),
            _count(group["cached_tokens"]),
            group_cost(group),
            *([_count(int(group.get("unknown_cost_calls") or 0))] if unpriced else []),
            _ms(group["latency_ms_avg"]),
        ]
        if breakdown:
            cells.append(_not_ok(group["outcomes"]))
        table.add_row(*cells, style=style)

    for group in report["groups"]:
        row(group, "(none)" if group["key"] is None else str(group["key"]))
    table.add_section()
    row(report["total"], "total", style="bold")
    console.print(table)
    unknown = int(report["total"].get("unknown_cost_calls") or 0)
    if unknown:
        console.print(
            f"{unknown} call(s) of unknown cost (UNPRICED): no price was known for their "
            "model, so COST leaves them out. `kyros models show MODEL` says how to set one.",
            soft_wrap=True,
        )


def _print_calls(calls: list[dict[str, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    from kyros.cli.state import stdout_console
    from kyros.sanitize import one_line

    console = stdout_console()
    if not calls:
        console.print("No model calls recorded.")
        return
    table = Table(box=None, header_style="bold")
    table.add_column("TIME (UTC)")
    table.add_column("MODEL")
    table.add_column("OUTCOME")
    for column in ("IN", "OUT", "COST", "LATENCY"):
        table.add_column(column, justify="right")
    # Rows written before kyros recorded where costs come from have none to show.
    sources = any(call.get("cost_source") for call in calls)
    if sources:
        table.add_column("COST FROM")
    table.add_column("RUN")
    for call in calls:
        when = datetime.fromisoformat(call["created_at"]).astimezone(UTC)
        table.add_row(
            when.strftime("%Y-%m-%d %H:%M:%S"),
            Text(one_line(call["model"])),
            call["outcome"],
            _count(call["tokens_in"]),
            _count(call["tokens_out"]),
            money(call["cost"]),
            _ms(call["latency_ms"]),
            *([call.get("cost_source") or "-"] if sources else []),
            call.get("run_id") or "",
        )
    console.print(table)


@app.command("usage")
def usage(
    by: Annotated[
        UsageBy | None,
        typer.Option(
            "--by",
            help="Group by this; day = UTC calendar date. [default: model]",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help=f"Calls from this time on: {WHEN_FORMS}.", show_default=False),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option(
            help="Calls before this time (a date includes that day); same forms as --since.",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Only this run's calls.", show_default=False)
    ] = None,
    calls: Annotated[
        bool, typer.Option("--calls", help="List individual calls, newest first.")
    ] = False,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="With --calls: at most this many.")
    ] = 50,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """What model calls cost: calls, outcomes, tokens, cost and latency, grouped, with a total.

    Examples: kyros usage --by day --since 7d; kyros usage --by outcome --run RUN;
    kyros usage --calls --since 1h.
    """
    if calls and by is not None:
        raise typer.BadParameter("--by groups calls; --calls lists them: choose one")
    start = resolve_when(since, "--since")
    end = resolve_when(until, "--until")
    c = client()
    if calls:
        rows = c.usage_calls(since=start, until=end, run=run, limit=limit)
        if json_out:
            print_json(rows)
        else:
            _print_calls(rows)
        return
    report = c.usage((by or UsageBy.MODEL).value, since=start, until=end, run=run)
    if json_out:
        print_json(report)
    else:
        _print_report(report)

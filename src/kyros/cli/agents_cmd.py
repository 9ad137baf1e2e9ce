"""`kyros agents …`: list, inspect, add, edit and remove agents."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kyros.cli.state import client, group, print_json
from kyros.cli.table import PlainOpt, print_table
from kyros.sanitize import clean_text

app = group("List, inspect, add, edit and remove agents.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Agent name.")]
POLICY_HELP = (
    "read-only (no writes, no commands), ask (every write and command waits for approval), "
    "auto (writes and allow-listed commands run, others ask), full (everything runs)"
)


@app.command("list")
def list_agents(json_out: JsonOpt = False, plain: PlainOpt = False) -> None:
    """Every agent with its role, model, policy and live status."""
    agents = client().agents()
    if json_out:
        print_json(agents)
        return
    print_table(
        ("NAME", "ROLE", "MODEL", "POLICY", "STATUS", "RUN"),
        (
            (
                a["name"],
                a["role"],
                a.get("model") or "(default)",
                a["approval_policy"],
                a["status"],
                a.get("current_run") or "",
            )
            for a in agents
        ),
        plain=plain,
    )
    for a in agents:
        if a["status"] == "offline" and a.get("problem"):
            typer.echo(clean_text(f"{a['name']} is offline: {a['problem']}"))


#: What ``show`` prints, by the flag that sets it (never the wire's field names).
_SHOWN = (
    ("name", "name"),
    ("role", "--role"),
    ("model", "--model"),
    ("approval_policy", "--policy"),
    ("tools", "--tools"),
    ("paused", "paused"),
    ("builtin", "built in"),
)


@app.command("show")
def show(name: NameArg, json_out: JsonOpt = False) -> None:
    """One agent's effective settings."""
    agent = client().agent(name)
    if json_out:
        print_json(agent)
        return
    say = _say
    for key, label in _SHOWN:
        value = agent.get(key)
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        say(f"{label:<18} {shown}")
    from kyros.cli.report import FLAGS

    for key, value in [
        *(agent.get("limits") or {}).items(),
        *(agent.get("escalation") or {}).items(),
    ]:
        flag = FLAGS.get(key, "--" + key.replace("_", "-"))
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        say(f"{flag:<18} {shown}")
    if agent.get("system_prompt"):
        say(f"--prompt:\n{agent['system_prompt']}")


def _say(text: str) -> None:
    typer.echo(clean_text(text))


def _spec(
    *,
    role: str | None,
    model: str | None,
    prompt: str | None,
    tools: str | None,
    policy: str | None,
    max_turns: int | None,
    max_tool_calls: int | None,
    wall_seconds: float | None,
    budget: float | None,
    allow: list[str] | None,
    max_revisions: int | None,
    stronger_model: str | None,
    human: bool | None,
    paused: bool | None,
) -> dict[str, Any]:
    limits = {
        "max_turns": max_turns,
        "max_tool_calls": max_tool_calls,
        "wall_seconds": wall_seconds,
        "budget": budget,
        "allowed_commands": allow or None,
    }
    escalation = {"max_revisions": max_revisions, "stronger_model": stronger_model, "human": human}
    spec: dict[str, Any] = {
        "role": role,
        "model": model,
        "system_prompt": prompt,
        "tools": [t.strip() for t in tools.split(",") if t.strip()] if tools else None,
        "approval_policy": policy,
        "limits": {k: v for k, v in limits.items() if v is not None} or None,
        "escalation": {k: v for k, v in escalation.items() if v is not None} or None,
        "paused": paused,
    }
    return {k: v for k, v in spec.items() if v is not None}


Role = Annotated[
    str | None, typer.Option(help="plan, implement, critic or custom.", show_default=False)
]
ModelOpt = Annotated[str | None, typer.Option(help="Model (litellm id).", show_default=False)]
Prompt = Annotated[str | None, typer.Option("--prompt", help="System prompt.", show_default=False)]
Tools = Annotated[
    str | None,
    typer.Option(
        help="Tool classes, comma-separated: read,write,command. Default: the role's "
        "(implement: read,write,command; others: read).",
        show_default=False,
    ),
]
Policy = Annotated[str | None, typer.Option("--policy", help=POLICY_HELP, show_default=False)]
MaxTurns = Annotated[
    int | None, typer.Option(min=1, help="Model turns per run.", show_default=False)
]
MaxCalls = Annotated[
    int | None, typer.Option(min=0, help="Tool calls per run.", show_default=False)
]
Wall = Annotated[
    float | None, typer.Option(min=1, help="Working time per run, seconds.", show_default=False)
]
BudgetOpt = Annotated[
    float | None, typer.Option(min=0, help="Spending cap per run, USD.", show_default=False)
]
Allow = Annotated[
    list[str] | None,
    typer.Option(
        "--allow", help="A command `auto` runs without asking (repeat).", show_default=False
    ),
]
Revisions = Annotated[
    int | None,
    typer.Option(min=0, help="Revisions after a critic says revise/fail.", show_default=False),
]
Stronger = Annotated[
    str | None, typer.Option(help="Model to escalate to after the revisions.", show_default=False)
]
Human = Annotated[
    bool | None,
    typer.Option("--human/--no-human", help="Ask a human as the last step.", show_default=False),
]


@app.command("add")
def add(
    name: NameArg,
    role: Role = None,
    model: ModelOpt = None,
    prompt: Prompt = None,
    tools: Tools = None,
    policy: Policy = None,
    max_turns: MaxTurns = None,
    max_tool_calls: MaxCalls = None,
    wall_seconds: Wall = None,
    budget: BudgetOpt = None,
    allow: Allow = None,
    max_revisions: Revisions = None,
    stronger_model: Stronger = None,
    human: Human = None,
    json_out: JsonOpt = False,
) -> None:
    """Add an agent. Unset settings take the defaults (`kyros agents show implementer`).

    Example:

      kyros agents add careful --role implement --tools read,write,command --policy ask
    """
    spec = _spec(
        role=role,
        model=model,
        prompt=prompt,
        tools=tools,
        policy=policy,
        max_turns=max_turns,
        max_tool_calls=max_tool_calls,
        wall_seconds=wall_seconds,
        budget=budget,
        allow=allow,
        max_revisions=max_revisions,
        stronger_model=stronger_model,
        human=human,
        paused=None,
    )
    agent = client().add_agent({"name": name, **spec})
    if json_out:
        print_json(agent)
    else:
        _say(f"added agent {agent['name']} ({agent['role']}, {agent['approval_policy']})")


@app.command("edit")
def edit(
    name: NameArg,
    role: Role = None,
    model: ModelOpt = None,
    prompt: Prompt = None,
    tools: Tools = None,
    policy: Policy = None,
    max_turns: MaxTurns = None,
    max_tool_calls: MaxCalls = None,
    wall_seconds: Wall = None,
    budget: BudgetOpt = None,
    allow: Allow = None,
    max_revisions: Revisions = None,
    stronger_model: Stronger = None,
    human: Human = None,
    paused: Annotated[
        bool | None,
        typer.Option(
            "--pause/--resume",
            help="Pause the agent (no new runs) or resume it.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change some of an agent's settings; the others stay as they are."""
    spec = _spec(
        role=role,
        model=model,
        prompt=prompt,
        tools=tools,
        policy=policy,
        max_turns=max_turns,
        max_tool_calls=max_tool_calls,
        wall_seconds=wall_seconds,
        budget=budget,
        allow=allow,
        max_revisions=max_revisions,
        stronger_model=stronger_model,
        human=human,
        paused=paused,
    )
    if not spec:
        raise typer.BadParameter("nothing to change; see `kyros agents edit --help`")
    agent = client().edit_agent(name, spec)
    if json_out:
        print_json(agent)
    else:
        _say(f"updated agent {agent['name']}")


@app.command("rm")
def rm(name: NameArg) -> None:
    """Remove an agent (built-in agents can be edited or paused, not removed)."""
    client().remove_agent(name)
    _say(f"removed agent {name}")

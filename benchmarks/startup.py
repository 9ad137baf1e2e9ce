"""`kyros --help` wall time against a bare Typer app with one command.

Both run as fresh interpreters the same way (``python FILE --help`` / ``python -m kyros --help``,
and the installed console script), interleaved round-robin so background load hits all alike.
Target: kyros ≤ bare Typer x 1.10.

A default ``typer.Typer()`` renders help with rich (importing it costs ~200 ms); kyros turns that
off (``rich_markup_mode=None``). So a second anchor is the same bare app with rich markup off:
the like-for-like floor of the framework as kyros configures it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Result, log, median, process_env, temp_base, xdg_env

RUNS = 15
WARMUP = 2
TARGET = 1.10

BARE_TYPER = '''\
import typer

app = typer.Typer({options})


@app.command()
def hello(name: str = "world") -> None:
    """Say hello."""
    typer.echo(f"hello {name}")


if __name__ == "__main__":
    app()
'''


def _time(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.decode()[-500:]}")
    return elapsed


def console_script() -> str | None:
    beside = Path(sys.executable).with_name("kyros")
    if beside.exists():
        return str(beside)
    return shutil.which("kyros")


def run() -> list[Result]:
    with temp_base("kbs") as base:
        bare = base / "bare_typer.py"
        bare.write_text(BARE_TYPER.replace("{options}", ""))
        plain = base / "bare_plain.py"
        plain.write_text(BARE_TYPER.replace("{options}", "rich_markup_mode=None"))
        env = process_env(xdg_env(base))
        commands = {
            "bare": [sys.executable, str(bare), "--help"],
            "plain": [sys.executable, str(plain), "--help"],
            "module": [sys.executable, "-m", "kyros", "--help"],
        }
        script = console_script()
        if script:
            commands["script"] = [script, "--help"]
        for cmd in commands.values():
            for _ in range(WARMUP):
                _time(cmd, env)
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(RUNS):
            for key, cmd in commands.items():
                times[key].append(_time(cmd, env))
    med = {k: median(v) * 1000 for k, v in times.items()}
    log("median ms: " + ", ".join(f"{k} {v:.0f}" for k, v in med.items()))
    results = [
        Result(
            "startup: python -m kyros --help",
            med["module"],
            "ms",
            "bare Typer --help",
            med["bare"],
            f"ratio ≤ {TARGET}",
            med["module"] / med["bare"] <= TARGET,
            f"median of {RUNS}",
        ),
    ]
    if "script" in med:
        results.append(
            Result(
                "startup: kyros --help (console script)",
                med["script"],
                "ms",
                "bare Typer --help",
                med["bare"],
                f"ratio ≤ {TARGET}",
                med["script"] / med["bare"] <= TARGET,
                f"{script}, median of {RUNS}",
            )
        )
    results.append(
        Result(
            "startup: python -m kyros --help, like-for-like",
            med["module"],
            "ms",
            "bare Typer, rich markup off",
            med["plain"],
            f"ratio ≤ {TARGET}",
            med["module"] / med["plain"] <= TARGET,
            "anchor built as kyros builds its app (rich_markup_mode=None)",
        )
    )
    return results

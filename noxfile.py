"""Developer sessions: `nox -s tests lint typecheck imports bench soak`."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "imports", "typecheck", "tests"]
nox.options.default_venv_backend = "venv"

PY = "3.11"
CONSTRAINTS = ("-c", "constraints.txt")
ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The whole suite, on SQLite and PostgreSQL."""
    session.install(*CONSTRAINTS, "-e", ".[test]")
    session.run("python", "-m", "pytest", *(session.posargs or ["-n", "2"]), env=ENV)


@nox.session(python=PY)
def soak(session: nox.Session) -> None:
    """The fault suite, longer: random kill points under load with a poison job, on SQLite and
    PostgreSQL, each run's seed printed (`KYROS_TEST_SEED=N` replays one). `nox -s soak -- N`
    sets the kill points per run (default 30); the D1/D3/D5 drills run alongside."""
    session.install(*CONSTRAINTS, "-e", ".[test]")
    rounds = session.posargs[0] if session.posargs else "30"
    session.run(
        "python",
        "-m",
        "pytest",
        "-m",
        "soak or slow",
        "-s",
        "-p",
        "no:cacheprovider",
        "tests/test_soak.py",
        "tests/test_crash_attribution.py",
        "tests/test_drain.py",
        "tests/test_durability.py",
        env={**ENV, "KYROS_SOAK_ROUNDS": rounds},
    )


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session(python=PY)
def typecheck(session: nox.Session) -> None:
    session.install(*CONSTRAINTS, "-e", ".[test]", "mypy")
    session.run("mypy", env=ENV)


@nox.session(python=PY)
def imports(session: nox.Session) -> None:
    """Layer contracts (import-linter) — see [tool.importlinter] in pyproject.toml."""
    session.install(*CONSTRAINTS, "-e", ".", "import-linter")
    session.run("lint-imports")


@nox.session(python=PY)
def bench(session: nox.Session) -> None:
    """Benchmarks, each printed next to its anchor measured in the same run."""
    session.install(*CONSTRAINTS, "-e", ".[test]")
    session.install("pgqueuer")
    session.run("python", "-m", "benchmarks", *session.posargs, env=ENV)

"""Generated references in docs/ match the code: the CLI reference and the OpenAPI document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_openapi_document_is_current() -> None:
    from kyros.daemon.openapi import document

    current = json.loads(json.dumps(document(), sort_keys=True))
    stored = json.loads((DOCS / "openapi.json").read_text())
    assert current == stored, "regenerate: python -m kyros.daemon.openapi > docs/openapi.json"


def test_openapi_lists_every_route() -> None:
    spec = json.loads((DOCS / "openapi.json").read_text())
    paths = set(spec["paths"])
    assert {
        "/healthz",
        "/readyz",
        "/v1/config",
        "/v1/runs",
        "/v1/runs/{kind}",
        "/v1/runs/{run_id}",
        "/v1/runs/{run_id}/events",
        "/v1/runs/{run_id}/cancel",
        "/v1/jobs",
        "/v1/agents/status",
    } <= paths


def test_cli_reference_is_current(tmp_path: Path) -> None:
    out = tmp_path / "cli.md"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "typer",
            "kyros.cli.main",
            "utils",
            "docs",
            "--name",
            "kyros",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    assert out.read_text() == (DOCS / "cli.md").read_text(), (
        "regenerate: typer kyros.cli.main utils docs --name kyros --output docs/cli.md"
    )


def test_readme_names_every_command_the_console_and_a_remote_client() -> None:
    from kyros.cli.main import LAZY_GROUPS

    readme = (DOCS.parent / "README.md").read_text()
    for group in LAZY_GROUPS:
        assert f"`kyros {group}" in readme, group
    for needle in (
        "`kyros tui`",
        "restart",
        "(docs/cli.md)",
        "--daemon https://",
        "KYROS_DAEMON=",
        "KYROS_TOKEN=",
        "'.[test,dev]'",
        # The first command, exactly as tests/test_first_hour.py plays it.
        'kyros run plan "add a --verbose flag" --workspace examples/greeter --model demo',
    ):
        assert needle in readme, needle
    assert "soon" not in readme.lower()

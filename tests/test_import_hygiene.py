"""The CLI starts fast because it imports nothing heavy (DESIGN: layers; STACK-NOTES: start-up)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("litellm", "sqlalchemy", "textual", "fastapi", "alembic", "uvicorn")


def _loaded_after(code: str) -> list[str]:
    probe = f"""
import sys, json
{code}
tops = {(*HEAVY, "httpx", "pydantic", "keyring")!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in tops)))
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return sorted({m.split(".")[0] for m in json.loads(out.stdout.strip().splitlines()[-1])})


def test_import_cli_loads_no_heavy_module() -> None:
    loaded = _loaded_after("import kyros.cli.main")
    assert not set(loaded) & set(HEAVY), loaded
    # Not required by the design, but keeps `--help` and completion fast: no HTTP stack either.
    assert "httpx" not in loaded and "pydantic" not in loaded, loaded


def test_help_loads_no_heavy_module() -> None:
    code = (
        "import sys\nsys.argv=['kyros','--help']\nfrom kyros.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
    )
    loaded = _loaded_after(code)
    assert not set(loaded) & set(HEAVY), loaded
    # Importing keyring picks a backend (D-Bus, plugins): only commands that store keys pay it.
    assert "keyring" not in loaded, loaded


def test_auth_help_loads_no_keyring() -> None:
    code = (
        "import sys\nsys.argv=['kyros','auth','--help']\nfrom kyros.cli.main import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
    )
    loaded = _loaded_after(code)
    assert "keyring" not in loaded and not set(loaded) & set(HEAVY), loaded


def test_client_loads_no_core() -> None:
    loaded = _loaded_after("import kyros.client")
    assert not set(loaded) & set(HEAVY), loaded


def test_the_console_loads_the_terminal_pane_when_it_is_opened() -> None:
    """The emulator (pyte) and the WebSocket client wait for the terminals screen: ~40 ms of
    start-up a session that never opens a terminal would pay."""
    probe = (
        "import sys, json\nimport kyros.tui.app\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pyte', 'websockets') or m.startswith('kyros.emulator'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

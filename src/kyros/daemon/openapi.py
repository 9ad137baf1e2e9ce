"""The daemon's OpenAPI document, generated without starting anything (checked into docs/)."""

from __future__ import annotations

import json
import sys
import tempfile
from typing import Any

from kyros import settings
from kyros.core.app import Core
from kyros.daemon.app import create_app


def document() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        loaded = settings.load(
            {"database_url": f"sqlite+aiosqlite:///{tmp}/openapi.db"}, env={"HOME": tmp}
        )
        return create_app(Core(loaded)).openapi()


def main() -> None:
    """``python -m kyros.daemon.openapi > docs/openapi.json``"""
    sys.stdout.write(json.dumps(document(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()

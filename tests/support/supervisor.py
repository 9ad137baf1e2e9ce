"""Daemons that die on purpose: start one without waiting for it, read the store directly.

The fault tests (D3, the soak) restart a daemon whenever it dies, as a service manager would; a
poison job may kill a daemon before it answers, so :func:`spawn` does not wait for readiness.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from typing import Any


def spawn(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`kyros daemon serve` in the background, its output in the state dir's test log."""
    from kyros import paths

    p = paths.resolve(env)
    p.state_dir.mkdir(parents=True, exist_ok=True)
    log = p.state_dir / f"test-daemon-{secrets.token_hex(3)}.log"
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "kyros", "daemon", "serve"],
            env=env,
            stdout=fh,
            stderr=fh,
            start_new_session=True,
        )


async def with_store(url: str, work: Any) -> Any:
    """``await work(conn)`` in one write transaction of a store of the test's own."""
    from kyros.core.store.engine import Store

    store = Store(url)
    try:
        async with store.write() as conn:
            return await work(conn)
    finally:
        await store.close()

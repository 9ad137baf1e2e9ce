"""Conversations: the threads runs share (``--continue``), with their runs and messages.

A thread is made by its first run; every run continued from it (and every stage of a
pipeline) adds its turns. Nothing here writes: threads are written by the runs themselves.
"""

from __future__ import annotations

from typing import Any

from kyros.core.store import runs as runs_repo
from kyros.core.store import threads as threads_repo
from kyros.core.store.engine import Store
from kyros.errors import NotFound

#: Message text kept per message in a thread's listing (the store keeps all of it).
PREVIEW_CHARS = 2000


class ThreadService:
    """Reads threads for ``kyros threads ls|show`` and ``/v1/threads``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """Threads, the most recently active first, each with its runs."""
        async with self.store.read() as conn:
            found = await threads_repo.list_threads(conn, limit=limit)
            by_thread = await threads_repo.runs_of(conn, [t["id"] for t in found])
        return [{**t, "runs": by_thread.get(t["id"], [])} for t in found]

    async def show(self, ref: str) -> dict[str, Any]:
        """One thread (by its id, or the id of one of its runs) with its runs and messages."""
        async with self.store.read() as conn:
            thread = await threads_repo.get(conn, ref)
            if thread is None:
                run = await runs_repo.get(conn, ref)
                if run is not None and run.get("thread_id"):
                    thread = await threads_repo.get(conn, run["thread_id"])
            if thread is None:
                raise NotFound(f"no thread or run with id {ref!r}; `kyros threads ls` lists them")
            history = await threads_repo.history(conn, thread["id"])
            by_thread = await threads_repo.runs_of(conn, [thread["id"]])
        messages = [
            {
                "id": m["id"],
                "run_id": m.get("run_id"),
                "role": m["role"],
                "content": m["content"][:PREVIEW_CHARS],
                "truncated": len(m["content"]) > PREVIEW_CHARS,
                "meta": m.get("meta") or {},
                "created_at": m["created_at"],
            }
            for m in history
        ]
        active = history[-1]["created_at"] if history else thread["created_at"]
        return {
            **thread,
            "messages_count": len(history),
            "active_at": active,
            "runs": by_thread.get(thread["id"], []),
            "messages": messages,
        }

"""A run's side of the cost ledger: which caps apply to it, reservations and settlements.

Caps: the run's own (``--budget``, else its agent's ``limits.budget``, else ``budget_run``),
its agent's and its project's spend today, and everything today (``budget_agent``,
``budget_project``, ``budget_day``). Each capped call holds its worst case first — in the
daemon's :class:`BudgetBook` on SQLite, in a ``pending`` ledger row on PostgreSQL — and every
call ends as one ledger row with the run's totals, in one transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date
from typing import Any

from kyros.core.ai.backend import Completion
from kyros.core.ai.budget import BudgetExhausted, PriceUnknown
from kyros.core.ai.models import ResolvedModel
from kyros.core.ai.pricing import setting_line
from kyros.core.store import ledger
from kyros.core.store.engine import Store
from kyros.core.store.ledger import Cap, Refusal
from kyros.core.store.schema import utcnow
from kyros.redaction import Redactor
from kyros.settings.model import Settings


def caps_for(run: dict[str, Any], settings: Settings, agent_limits: dict[str, Any]) -> list[Cap]:
    """The spending limits a run's calls are checked against."""
    caps: list[Cap] = []
    run_cap = (run.get("params") or {}).get("budget")
    if run_cap is None:
        run_cap = agent_limits.get("budget")
    if run_cap is None:
        run_cap = settings.budget_run
    if run_cap is not None:
        caps.append(Cap("run", run["id"], float(run_cap)))
    if settings.budget_agent is not None and run.get("agent"):
        caps.append(Cap("agent", run["agent"], settings.budget_agent))
    if settings.budget_project is not None:
        caps.append(Cap("project", run["workspace"], settings.budget_project))
    if settings.budget_day is not None:
        caps.append(Cap("day", None, settings.budget_day))
    return caps


class BudgetBook:
    """What each cap has spent or holds, kept in memory by the daemon that owns an SQLite store.

    One daemon owns an SQLite store, so its book sees every call: a reservation is checked and
    held with no await in between, which makes racing runs safe without a write before each call
    (on PostgreSQL, which several daemons may share, the ledger reserves in the database). A cap's
    figure is read from the ledger once per day and kept up to date from then on.
    """

    def __init__(self) -> None:
        self._held: dict[tuple[str, str | None, date | None], float] = {}
        self._loading = asyncio.Lock()

    @staticmethod
    def _key(cap: Cap, today: date) -> tuple[str, str | None, date | None]:
        return (cap.scope, cap.key, None if cap.scope == "run" else today)

    async def reserve(self, store: Store, caps: list[Cap], worst: float) -> Refusal | Held:
        """Hold ``worst`` on every cap, or say which cap it would break."""
        today = utcnow().date()
        keys = [self._key(cap, today) for cap in caps]
        if any(key not in self._held for key in keys):
            async with self._loading, store.read() as conn:
                for cap, key in zip(caps, keys, strict=True):
                    if key not in self._held:
                        self._held[key] = await ledger.spent(conn, cap)
                self._forget_before(today)
        # From here to the return nothing awaits: the check and the hold are one step.
        for cap, key in zip(caps, keys, strict=True):
            if self._held[key] + worst > cap.limit + 1e-12:
                return Refusal(cap, self._held[key], worst)
        for key in keys:
            self._held[key] += worst
        return Held(tuple(keys), worst)

    def settle(self, held: Held, cost: float) -> None:
        """Replace a hold by what the call cost."""
        for key in held.keys:
            if key in self._held:
                self._held[key] += cost - held.worst

    def _forget_before(self, today: date) -> None:
        for key in [k for k in self._held if k[2] is not None and k[2] != today]:
            del self._held[key]


@dataclass(frozen=True)
class Held:
    """A reservation in a :class:`BudgetBook`."""

    keys: tuple[tuple[str, str | None, date | None], ...]
    worst: float


class RunSpender:
    """The :class:`kyros.core.ai.router.Spender` of one run's calls in one role."""

    def __init__(
        self,
        store: Store,
        run: dict[str, Any],
        caps: list[Cap],
        role: str | None,
        redact: Redactor,
        book: BudgetBook | None = None,
    ) -> None:
        self.store, self.run, self.caps, self.role, self.redact = store, run, caps, role, redact
        #: In-memory reservations (SQLite); None: pending rows in the database (PostgreSQL).
        self.book = book if not store.is_postgres else None

    @property
    def capped(self) -> bool:
        return bool(self.caps)

    def _tags(self, model: ResolvedModel) -> dict[str, Any]:
        return {
            "run_id": self.run["id"],
            "agent": self.run.get("agent"),
            "project": self.run["workspace"],
            "model": model.name,
            "provider": model.provider,
            "role": self.role,
        }

    async def reserve(self, model: ResolvedModel, worst: float | None) -> object:
        if not self.caps:
            return None
        if worst is None:
            # Nothing bounds what the call could cost, so no cap could hold: refused before
            # a byte is sent, as a call past a cap is.
            cap = self.caps[0]
            raise PriceUnknown(
                f"stopped before a call to {model.name} ({model.litellm_model}): its price is "
                f"unknown and {cap.describe()} applies, so the call could not be bounded. "
                f"Set its price: {setting_line(model)}",
                detail={
                    "scope": cap.scope,
                    "limit": cap.limit,
                    "model": model.name,
                    "setting": setting_line(model),
                },
            )
        if self.book is not None:
            held: int | Refusal | Held = await self.book.reserve(self.store, self.caps, worst)
        else:
            async with self.store.write() as conn:
                held = await ledger.reserve(
                    conn, self.caps, worst, postgres=self.store.is_postgres, **self._tags(model)
                )
        if isinstance(held, Refusal):
            raise BudgetExhausted(
                f"stopped before a call to {model.name} that could cost up to "
                f"${held.worst:.4f}: {held.cap.describe()} has ${held.spent:.4f} spent",
                detail={
                    "scope": held.cap.scope,
                    "limit": held.cap.limit,
                    "spent": round(held.spent, 6),
                    "worst_case": round(held.worst, 6),
                },
            )
        return held

    async def settle(
        self,
        ticket: object,
        model: ResolvedModel,
        completion: Completion | None,
        outcome: str,
        error: str | None,
    ) -> None:
        c = completion
        values = ledger.attempt_values(c, outcome, self.redact(error) if error else None)
        try:
            async with self.store.write() as conn:
                if isinstance(ticket, int):
                    await ledger.settle(conn, ticket, **values)
                else:
                    await ledger.record(conn, **self._tags(model), **values)
                if c is not None:
                    # A stage's usage is its pipeline's too: the parent's totals include it.
                    for run_id in (self.run["id"], self.run.get("parent_id")):
                        if run_id:
                            await ledger.add_run_totals(
                                conn, run_id, c.tokens_in, c.tokens_out, c.cost or 0.0
                            )
        finally:
            if isinstance(ticket, Held) and self.book is not None:
                self.book.settle(ticket, values["cost"] or 0.0)

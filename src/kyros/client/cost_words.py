"""Costs in words, shared by both faces: `kyros usage` and the console's usage screen.

A cost that is not known stays ``unknown``: it is never shown, nor summed, as $0.
"""

from __future__ import annotations

from typing import Any

__all__ = ["group_cost", "money"]


def money(value: float | None) -> str:
    """``$0.0421``; ``unknown`` for a cost that is not known (never ``$0``)."""
    return "unknown" if value is None else f"${value:.4f}"


def group_cost(group: dict[str, Any]) -> str:
    """A usage group's known cost; its calls of unknown cost are said apart, never added as
    $0 (``$0.0421 + unknown``, or ``unknown`` when no call's cost is known)."""
    unknown = int(group.get("unknown_cost_calls") or 0)
    if not unknown:
        return money(group["cost"])
    if unknown >= group["calls"]:
        return "unknown"
    return f"{money(group['cost'])} + unknown"
